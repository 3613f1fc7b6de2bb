// expect: xoptim::stepper wraps an optimizer, a router or param_groups \(not its options, a stepper, an ema or compiled<O>\)
#include <vector>

#include <xoptim/optim/adam.hpp>
#include <xoptim/step/stepper.hpp>
int main()
{
    std::vector<float> w(4), g(4);
    xoptim::stepper inner(xoptim::adamw(), xoptim::stepper_options{});
    xoptim::stepper outer(std::move(inner), xoptim::stepper_options{});  // one stepper does both
    outer(w, g);
}
