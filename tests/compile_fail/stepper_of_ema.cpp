// expect: xoptim::stepper wraps an optimizer, a router or param_groups \(not its options, a stepper, an ema or compiled<O>\)
#include <vector>

#include <xoptim/optim/ema.hpp>
#include <xoptim/step/stepper.hpp>
int main()
{
    std::vector<float> w(4), g(4);
    xoptim::stepper step(xoptim::ema(), xoptim::stepper_options{});  // an average is updated, not stepped
    step(w, g);
}
