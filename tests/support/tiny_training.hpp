// A tiny model and the trainers a checkpoint can hold, trained a few calls, for the
// checkpoint tests that damage files (the bit-flip sweep) and for fuzz_checkpoint.
// Needs BLAS at link time (Muon).
#ifndef XOPTIM_TESTS_SUPPORT_TINY_TRAINING_HPP
#define XOPTIM_TESTS_SUPPORT_TINY_TRAINING_HPP

#include <cmath>
#include <limits>
#include <tuple>
#include <vector>

#include <xoptim/io/checkpoint.hpp>
#include <xoptim/optim/hybrid.hpp>
#include <xoptim/xoptim.hpp>

namespace xoptim_test
{
    // embed.weight (5, 3) and hidden.weight (4, 3) in float, bias (3) in double.
    struct tiny_model
    {
        std::vector<float> embed = std::vector<float>(15);
        std::vector<float> hidden = std::vector<float>(12);
        std::vector<double> bias = std::vector<double>(3);
        xoptim::tensor_view<float> embed_view = xoptim::view(embed.data(), {5, 3});
        xoptim::tensor_view<float> hidden_view = xoptim::view(hidden.data(), {4, 3});

        tiny_model()
        {
            fill(0.0);
        }

        tiny_model(const tiny_model&) = delete;
        tiny_model& operator=(const tiny_model&) = delete;

        void fill(double shift)
        {
            for (std::size_t i = 0; i < embed.size(); ++i)
            {
                embed[i] = float(std::sin(double(i) + 1 + shift));
            }
            for (std::size_t i = 0; i < hidden.size(); ++i)
            {
                hidden[i] = float(std::cos(0.5 * double(i) + shift));
            }
            for (std::size_t i = 0; i < bias.size(); ++i)
            {
                bias[i] = 0.25 * double(i) - shift;
            }
        }

        auto params()
        {
            return std::make_tuple(xoptim::named("embed.weight", embed_view), xoptim::named("hidden.weight", hidden_view),
                                   xoptim::named("bias", bias));
        }

        std::string bytes() const
        {
            std::string out;
            out.append(reinterpret_cast<const char*>(embed.data()), embed.size() * sizeof(float));
            out.append(reinterpret_cast<const char*>(hidden.data()), hidden.size() * sizeof(float));
            out.append(reinterpret_cast<const char*>(bias.data()), bias.size() * sizeof(double));
            return out;
        }
    };

    // Gradients of call t; call 5's bias gradient holds a NaN.
    struct tiny_grads
    {
        std::vector<float> embed = std::vector<float>(15);
        std::vector<float> hidden = std::vector<float>(12);
        std::vector<double> bias = std::vector<double>(3);

        explicit tiny_grads(int t)
        {
            for (std::size_t i = 0; i < embed.size(); ++i)
            {
                embed[i] = float(std::sin(0.7 * double(t * 20 + int(i))));
            }
            for (std::size_t i = 0; i < hidden.size(); ++i)
            {
                hidden[i] = float(std::cos(0.3 * double(t * 20 + int(i))));
            }
            for (std::size_t i = 0; i < bias.size(); ++i)
            {
                bias[i] = std::sin(1.3 * double(t * 20 + int(i)));
            }
            if (t == 5)
            {
                bias[1] = std::numeric_limits<double>::quiet_NaN();
            }
        }

        auto tie()
        {
            return std::tie(embed, hidden, bias);
        }
    };

    // AdamW with amsgrad and a scheduled lr.
    inline xoptim::adamw make_adamw()
    {
        xoptim::adamw_options o;
        o.amsgrad = true;
        xoptim::adamw opt(o);
        opt.schedule("lr", xoptim::warmup_cosine(0.01, 20, 3, 0.1));
        return opt;
    }

    // The Muon + AdamW hybrid inside a stepper accumulating 2 micro-batches, clipping,
    // skipping non-finite steps.
    inline xoptim::stepper<xoptim::hybrid> make_stepper()
    {
        auto hybrid = xoptim::make_hybrid();
        hybrid.optimizer<1>().schedule("lr", xoptim::warmup_cosine(1e-3, 10, 2, 0.1));
        xoptim::stepper_options o;
        o.accumulate = 2;
        o.clip_global_norm = 1.0;
        return xoptim::stepper<xoptim::hybrid>(std::move(hybrid), o);
    }

    // Two groups of SGD with momentum, states stored as bf16.
    inline xoptim::param_groups<xoptim::sgd> make_groups()
    {
        xoptim::param_groups<xoptim::sgd> groups;
        xoptim::storage_options bf16;
        bf16.states = xoptim::state_storage::bf16;
        xoptim::sgd_options o;
        o.lr = 0.05;
        o.momentum = 0.9;
        groups.add("matrices", xoptim::min_ndim(2), std::move(xoptim::sgd(o).set_storage(bf16)));
        o.nesterov = true;
        groups.fallback("rest", std::move(xoptim::sgd(o).set_storage(bf16)));
        return groups;
    }

    // Calls [0, calls) of a run. The stepper: a step every second call, call 5 skipped
    // for its NaN, so after 7 calls: 2 steps, 1 skipped, 1 micro-batch pending.
    template <class Trainer>
    void train(tiny_model& m, Trainer& trainer, int calls)
    {
        for (int t = 0; t < calls; ++t)
        {
            tiny_grads g(t == 5 && !xoptim::detail::is_stepper<Trainer>::value ? 6 : t);
            if constexpr (xoptim::detail::is_stepper<Trainer>::value)
            {
                trainer(m.params(), g.tie());
            }
            else
            {
                trainer.step(m.params(), g.tie());
            }
        }
    }
}

#endif
