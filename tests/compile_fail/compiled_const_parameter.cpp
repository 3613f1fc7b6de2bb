// expect: xoptim: parameters must be mutable \(got a const tensor. a model lists its parameters through a non-const
#include <vector>

#include <xoptim/compiled.hpp>
int main()
{
    const std::vector<float> w(4, 1.0f);
    std::vector<float> g(4, 0.5f);
    xoptim::compiled<xoptim::adamw> opt;
    opt.step(xoptim::named("w", w), g);  // a const parameter cannot be stepped
}
