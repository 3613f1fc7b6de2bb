// expect: this tuple holds a parameter by value
#include <xoptim/optim/adam.hpp>
int main()
{
    std::vector<float> w(3), g(3);
    xoptim::adamw().step(std::make_tuple(w), std::tie(g));
}
