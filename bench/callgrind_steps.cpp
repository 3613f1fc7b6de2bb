// 300 steps of AdamW, SGD-momentum or Lion (argv[1]) on 2^16 floats, one thread: a fixed
// workload whose instruction count callgrind measures repeatably (docs/benchmarks.md,
// "Existing optimizers, before and after"). Not a timing.
#include <cstdio>
#include <cstring>
#include <vector>

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
    std::printf("%g\n", double(p[7]));
    return 0;
}
