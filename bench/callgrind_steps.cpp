// 300 steps of AdamW, SGD-momentum or Lion (argv[1]) on 2^16 floats, one thread: a fixed
// workload whose instruction count callgrind measures repeatably (docs/benchmarks.md,
// "Existing optimizers, before and after"). Not a timing.
//
// "stepper_tiny" and "groups_tiny" take argv[2] steps (default 300) of AdamW over 1,000
// tensors of 16 floats through the stepper or param_groups (two groups): the per-step
// cost outside the element loop, such as the parameter checks (the difference between
// two step counts, divided, is the cost of one step).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <xoptim/optim/router.hpp>
#include <xoptim/step/stepper.hpp>
#include <xoptim/xoptim.hpp>

int main(int argc, char** argv)
{
    xoptim::set_num_threads(1);
    std::vector<float> p(1 << 16, 0.5f), g(1 << 16, 1e-3f);
    const char* which = argc > 1 ? argv[1] : "adamw";
    const auto run = [&](auto opt) {
        for (int t = 0; t < 300; ++t)
        {
            opt.step(p, g);
        }
    };
    if (std::strcmp(which, "adamw") == 0)
    {
        run(xoptim::adamw());
    }
    else if (std::strcmp(which, "sgd") == 0)
    {
        xoptim::sgd_options o;
        o.lr = 1e-3;
        o.momentum = 0.9;
        run(xoptim::sgd(o));
    }
    else if (std::strcmp(which, "lion") == 0)
    {
        run(xoptim::lion());
    }
    else if (std::strcmp(which, "stepper_tiny") == 0 || std::strcmp(which, "groups_tiny") == 0)
    {
        const int steps = argc > 2 ? std::atoi(argv[2]) : 300;
        std::vector<std::vector<float>> ps(1000, std::vector<float>(16, 0.5f)), gs(1000, std::vector<float>(16, 1e-3f));
        if (std::strcmp(which, "stepper_tiny") == 0)
        {
            xoptim::stepper st(xoptim::adamw{});
            for (int t = 0; t < steps; ++t)
            {
                st(ps, gs);
            }
        }
        else
        {
            xoptim::param_groups<xoptim::adamw> groups;
            const auto odd = [](std::string_view name, const std::vector<std::size_t>&) {
                return (name.back() - '0') % 2 == 1;
            };
            groups.add("odd", odd, xoptim::adamw{});
            groups.fallback("even", xoptim::adamw{});
            for (int t = 0; t < steps; ++t)
            {
                groups.step(ps, gs);
            }
        }
        std::printf("%g\n", double(ps[7][3]));
        return 0;
    }
    std::printf("%g\n", double(p[7]));
    return 0;
}
