// The guide's "Compile time" section: a unit that steps AdamW through xoptim::compiled and
// includes <xoptim/compiled.hpp> alone (no engine, no xsimd); the step is compiled in
// compiled_instances.cpp, the program's instantiation unit.
//! [compiled]
#include <cstdio>
#include <tuple>
#include <vector>

#include <xoptim/compiled.hpp>

int main()
{
    std::vector<float> w(4, 1.0f), b(2, 0.5f);
    const std::vector<float> gw(4, 0.25f), gb(2, -1.0f);

    xoptim::adamw_options o;
    o.lr = 0.1;
    xoptim::compiled<xoptim::adamw> opt(o);  // checks o as xoptim::adamw does
    opt.step(std::tie(w, b), std::tie(gw, gb));
    std::printf("w[0] = %.6f, b[0] = %.6f after %zu step\n", w[0], b[0], opt.step_count());
}
//! [compiled]
