// Compile-time benchmark (bench/compile_time.sh): a realistic user unit. A model struct of
// xtensor parameters (both xoptim_params overloads), its forward and backward by hand,
// AdamW with a warmup-cosine schedule under the stepper (accumulation, clipping, the
// non-finite guard), a checkpoint saved and loaded, and a training loop.
// With -DXOPTIM_EXTERN_INSTANCES it includes <xoptim/instances.hpp>: the optimizer's step
// is then compiled once, in the project's instantiation unit, not here.
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <tuple>

#include <xtensor/xtensor.hpp>

#include <xoptim/io/checkpoint.hpp>
#include <xoptim/step/stepper.hpp>
#include <xoptim/xoptim.hpp>
#ifdef XOPTIM_EXTERN_INSTANCES
#include <xoptim/instances.hpp>
#endif

namespace demo
{
    struct dense
    {
        xt::xtensor<float, 2> weight;  // (out, in)
        xt::xtensor<float, 1> bias;    // (out)
    };

    auto xoptim_params(dense& d)
    {
        return std::make_tuple(xoptim::named("weight", d.weight), xoptim::named("bias", d.bias));
    }

    auto xoptim_params(const dense& d)
    {
        return std::make_tuple(xoptim::named("weight", d.weight), xoptim::named("bias", d.bias));
    }

    struct model
    {
        dense hidden;
        dense output;
    };

    auto xoptim_params(model& m)
    {
        return std::make_tuple(xoptim::named("hidden", m.hidden), xoptim::named("output", m.output));
    }

    auto xoptim_params(const model& m)
    {
        return std::make_tuple(xoptim::named("hidden", m.hidden), xoptim::named("output", m.output));
    }

    dense make_dense(std::size_t out, std::size_t in, std::mt19937& rng)
    {
        std::normal_distribution<float> normal(0.0f, 1.0f / std::sqrt(float(in)));
        dense d{xt::xtensor<float, 2>({out, in}), xt::xtensor<float, 1>({out}, 0.0f)};
        for (auto& w : d.weight)
        {
            w = normal(rng);
        }
        return d;
    }

    // y = W x + b, for one sample.
    void affine(const dense& d, const float* x, float* y)
    {
        const std::size_t out = d.weight.shape()[0];
        const std::size_t in = d.weight.shape()[1];
        for (std::size_t i = 0; i < out; ++i)
        {
            float s = d.bias(i);
            for (std::size_t j = 0; j < in; ++j)
            {
                s += d.weight(i, j) * x[j];
            }
            y[i] = s;
        }
    }

    // Squared error of a two-layer tanh network on (x, target), its gradients added to g.
    float loss_and_grads(const model& m, const float* x, float target, model& g)
    {
        const std::size_t hidden = m.hidden.weight.shape()[0];
        const std::size_t in = m.hidden.weight.shape()[1];
        std::vector<float> h(hidden), a(hidden);
        affine(m.hidden, x, h.data());
        for (std::size_t i = 0; i < hidden; ++i)
        {
            a[i] = std::tanh(h[i]);
        }
        float y = 0;
        affine(m.output, a.data(), &y);
        const float err = y - target;
        g.output.bias(0) += err;
        for (std::size_t i = 0; i < hidden; ++i)
        {
            g.output.weight(0, i) += err * a[i];
            const float dh = err * m.output.weight(0, i) * (1 - a[i] * a[i]);
            g.hidden.bias(i) += dh;
            for (std::size_t j = 0; j < in; ++j)
            {
                g.hidden.weight(i, j) += dh * x[j];
            }
        }
        return 0.5f * err * err;
    }
}

int main(int argc, char** argv)
{
    const std::string path = argc > 1 ? argv[1] : "training_unit.safetensors";
    std::mt19937 rng(7);
    demo::model m{demo::make_dense(32, 8, rng), demo::make_dense(1, 32, rng)};
    demo::model g{demo::make_dense(32, 8, rng), demo::make_dense(1, 32, rng)};

    xoptim::adamw_options o;
    o.lr = 3e-3;
    o.weight_decay = 0.01;
    xoptim::stepper_options s;
    s.accumulate = 2;
    s.clip_global_norm = 1.0;
    xoptim::stepper step(xoptim::adamw(o), s);
    step.optimizer().schedule("lr", xoptim::warmup_cosine(3e-3, 200, 20, 0.1));

    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    float loss = 0;
    for (int call = 0; call < 400; ++call)
    {
        g.hidden.weight.fill(0);
        g.hidden.bias.fill(0);
        g.output.weight.fill(0);
        g.output.bias.fill(0);
        float x[8];
        for (float& v : x)
        {
            v = uniform(rng);
        }
        loss = demo::loss_and_grads(m, x, std::sin(x[0]) * x[1], g);
        step(m, static_cast<const demo::model&>(g));
        if (call == 200)
        {
            xoptim::save_checkpoint(path, m, step);
            xoptim::load_checkpoint(path, m, step);
        }
    }
    std::printf("loss %.4f after %zu steps\n", loss, step.optimizer().step_count());
    return 0;
}
