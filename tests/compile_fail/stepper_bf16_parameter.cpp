// expect: bf16 parameters are stepped by an optimizer itself
#include <xoptim/optim/adam.hpp>
#include <xoptim/step/stepper.hpp>
int main()
{
    std::vector<xoptim::bfloat16> p(3), g(3);
    xoptim::stepper<xoptim::adamw> step(xoptim::adamw(), xoptim::stepper_options{});
    step(p, g);
}
