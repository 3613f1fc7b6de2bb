// expect: gradient and parameter have different \(compile-time\) sizes
#include <xoptim/optim/adam.hpp>
int main()
{
    std::array<float, 4> p{};
    std::array<float, 3> g{};
    xoptim::adamw().step(p, g);
}
