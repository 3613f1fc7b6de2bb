// expect: xoptim: step needs gradients
#include <vector>

#include <xoptim/compiled.hpp>
int main()
{
    std::vector<float> w(4, 1.0f);
    xoptim::compiled<xoptim::adamw> opt;
    opt.step(xoptim::named("w", w), xoptim::no_grads{});  // no_grads is for walks without a step
}
