// expect: xoptim::stepper wraps an optimizer, a router or param_groups \(not its options, a stepper, an ema or compiled<O>\)
#include <vector>

#include <xoptim/compiled.hpp>
#include <xoptim/step/stepper.hpp>
int main()
{
    std::vector<float> w(4), g(4);
    xoptim::stepper step(xoptim::compiled<xoptim::adamw>(), xoptim::stepper_options{});
    step(w, g);
}
