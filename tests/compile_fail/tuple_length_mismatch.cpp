// expect: parameter and gradient tuples differ in length
#include <xoptim/optim/adam.hpp>
int main()
{
    std::vector<float> a(3), b(3);
    xoptim::adamw().step(std::tie(a, b), std::tie(a));
}
