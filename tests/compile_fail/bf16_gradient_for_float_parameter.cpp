// expect: a gradient must have the same element type as its parameter
#include <xoptim/optim/adam.hpp>
int main()
{
    std::vector<float> p(3);
    std::vector<xoptim::bfloat16> g(3);
    xoptim::adamw().step(p, g);
}
