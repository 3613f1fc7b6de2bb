// expect: gradient and parameter have different \(compile-time\) sizes
#include <xtensor/xfixed.hpp>
#include <xoptim/optim/adam.hpp>
int main()
{
    xt::xtensor_fixed<float, xt::xshape<2, 3>> p;
    xt::xtensor_fixed<float, xt::xshape<3, 3>> g;
    xoptim::adamw().step(p, g);
}
