// Quick start: fit a linear model y = W x + b to noisy data with AdamW.
// The model is a plain struct; xoptim_params lists its members with names, and one
// fused SIMD pass per tensor updates weights and AdamW state each step.
#include <cmath>
#include <cstdio>
#include <random>

#include <xtensor/xtensor.hpp>

#include <xoptim/xoptim.hpp>

struct linear
{
    xt::xtensor<float, 2> weight;  // (out, in)
    xt::xtensor<float, 1> bias;    // (out)
};

template <class L, std::enable_if_t<std::is_same_v<std::decay_t<L>, linear>, int> = 0>
auto xoptim_params(L& l)
{
    return std::make_tuple(xoptim::named("weight", l.weight), xoptim::named("bias", l.bias));
}

int main()
{
    constexpr std::size_t in = 16, out = 4, samples = 256;
    std::mt19937 rng(42);
    std::normal_distribution<float> normal(0.0f, 1.0f);

    // Data from a hidden linear map plus a little noise.
    xt::xtensor<float, 2> x({samples, in}), y({samples, out});
    xt::xtensor<float, 2> true_w({out, in});
    for (auto& v : true_w) v = normal(rng);
    for (auto& v : x) v = normal(rng);
    for (std::size_t s = 0; s < samples; ++s)
        for (std::size_t o = 0; o < out; ++o)
        {
            float acc = 0.5f * float(o) + 0.01f * normal(rng);
            for (std::size_t i = 0; i < in; ++i) acc += true_w(o, i) * x(s, i);
            y(s, o) = acc;
        }

    linear model{xt::zeros<float>({out, in}), xt::zeros<float>({out})};
    linear grad{xt::zeros<float>({out, in}), xt::zeros<float>({out})};

    xoptim::adamw_options options;
    options.lr = 0.05;
    options.weight_decay = 0.0;
    xoptim::adamw opt(options);

    for (int step = 0; step <= 300; ++step)
    {
        // Mean squared error and its gradient, written by hand.
        grad.weight.fill(0.0f);
        grad.bias.fill(0.0f);
        double loss = 0;
        for (std::size_t s = 0; s < samples; ++s)
            for (std::size_t o = 0; o < out; ++o)
            {
                float pred = model.bias(o);
                for (std::size_t i = 0; i < in; ++i) pred += model.weight(o, i) * x(s, i);
                const float err = pred - y(s, o);
                loss += double(err) * err / (samples * out);
                const float d = 2.0f * err / (samples * out);
                grad.bias(o) += d;
                for (std::size_t i = 0; i < in; ++i) grad.weight(o, i) += d * x(s, i);
            }
        if (step % 50 == 0)
            std::printf("step %3d  loss %.6f\n", step, loss);
        opt.step(model, grad);
    }

    const auto report = opt.report();
    for (std::size_t k = 0; k < opt.state().size(); ++k)
    {
        const auto& e = opt.state()[k];
        std::printf("parameter %-7s %zu elements, %zu state tensors\n", e.name.c_str(), e.size, e.count);
    }
    std::printf("AdamW state: %zu bytes for %zu parameter bytes (%.1fx)\n", report.state_bytes, report.param_bytes,
                report.ratio());
    std::printf("kernels: %s, %zu floats per batch\n", report.simd_arch, report.simd_width);
    std::printf("bias learned: %.3f %.3f %.3f %.3f (true 0 0.5 1 1.5)\n", model.bias(0), model.bias(1),
                model.bias(2), model.bias(3));
}
