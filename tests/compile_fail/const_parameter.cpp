// expect: parameters must be mutable
#include <xoptim/optim/adam.hpp>
int main()
{
    const std::vector<float> p(3);
    std::vector<float> g(3);
    xoptim::adamw().step(p, g);
}
