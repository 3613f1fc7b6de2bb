// expect: an xtensor expression such as a \+ b is lazy
#include <xtensor/xtensor.hpp>
#include <xoptim/optim/adam.hpp>
int main()
{
    xt::xtensor<float, 1> w({3}), a({3}), b({3});
    auto g = a + b;
    xoptim::adamw().step(w, g);
}
