// expect: holds a parameter by value
#include <xoptim/step/stepper.hpp>
#include <xoptim/xoptim.hpp>
int main()
{
    std::vector<float> w(4), g(4);
    xoptim::stepper step(xoptim::adamw(), xoptim::stepper_options{});
    step(std::make_tuple(w), std::make_tuple(g));  // would step a copy of w
}
