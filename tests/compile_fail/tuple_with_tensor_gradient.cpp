// expect: a tuple of parameters needs a tuple of gradients
#include <xoptim/optim/adam.hpp>
int main()
{
    std::vector<float> w(3), v(2), g(3);
    xoptim::adamw().step(std::tie(w, v), g);
}
