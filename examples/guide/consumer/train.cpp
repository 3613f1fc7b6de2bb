// A first program: AdamW on a two-layer model held in xtensor containers.
#include <cstdio>
#include <tuple>

#include <xtensor/xtensor.hpp>

#include <xoptim/xoptim.hpp>

int main()
{
    xt::xtensor<float, 2> w = xt::ones<float>({64, 32}), g_w = xt::ones<float>({64, 32});
    xt::xtensor<float, 1> b = xt::zeros<float>({64}), g_b = xt::ones<float>({64});

    xoptim::adamw_options o;
    o.lr = 1e-3;
    o.weight_decay = 0.01;
    xoptim::adamw opt(o);
    for (int step = 0; step < 10; ++step)
    {
        // ... your forward and backward passes write g_w and g_b here ...
        opt.step(std::tie(w, b), std::tie(g_w, g_b));  // one fused pass per tensor
    }
    std::printf("w[0][0] = %.6f, b[0] = %.6f after %zu steps\n", w(0, 0), b(0), opt.step_count());
}
