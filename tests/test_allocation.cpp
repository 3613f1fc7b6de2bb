// A steady-state step allocates nothing: counted by replacing global operator new.
#include <gtest/gtest.h>

#include <xoptim/optim/router.hpp>
#include <xoptim/step/stepper.hpp>
#include <xoptim/xoptim.hpp>

#include "support/count_allocations.hpp"

namespace
{
    using xoptim_test::allocations;

    struct block
    {
        std::vector<float> weight, bias;
    };

    template <class B, std::enable_if_t<std::is_same_v<std::decay_t<B>, block>, int> = 0>
    auto xoptim_params(B& b)
    {
        return std::make_tuple(xoptim::named("weight", b.weight), xoptim::named("bias", b.bias));
    }

    // Allocations made by the steps after the first (which creates the state).
    template <class Optimizer, class P, class G>
    std::size_t steady_state_allocations(Optimizer& opt, P& params, const G& grads)
    {
        const std::size_t start = allocations;
        opt.step(params, grads);
        EXPECT_GT(allocations - start, 0u) << "the first step creates the state: the counter must see it";
        opt.step(params, grads);
        const std::size_t before = allocations;
        for (int k = 0; k < 5; ++k)
        {
            opt.step(params, grads);
        }
        return allocations - before;
    }

    TEST(allocation, none_in_steady_state_over_a_runtime_list)
    {
        std::vector<std::vector<float>> p(4096, std::vector<float>(33, 1.0f)), g = p;
        xoptim::adamw opt;
        EXPECT_EQ(steady_state_allocations(opt, p, g), 0u);
    }

    TEST(allocation, none_in_steady_state_threaded)
    {
        std::vector<std::vector<float>> p(64, std::vector<float>(1 << 14, 1.0f)), g = p;
        xoptim::set_num_threads(2);
        xoptim::lion opt;
        EXPECT_EQ(steady_state_allocations(opt, p, g), 0u);
    }

    // The optimizers with per-tensor reductions and row statistics: their job lists,
    // units, partial sums and workspaces are kept across steps.
    TEST(allocation, none_in_steady_state_with_reductions_and_factored_states)
    {
        std::vector<float> w(64 * 300, 1.0f), b(77, 1.0f), gw(w.size(), 0.5f), gb(b.size(), 0.25f);
        auto wv = xoptim::view(w.data(), {64, 300});
        auto params = std::make_tuple(xoptim::named("w", wv), xoptim::named("b", b));
        const auto grads = std::make_tuple(xoptim::view(gw.data(), {64, 300}), gb);
        xoptim::set_num_threads(2);
        xoptim::lamb lamb;
        EXPECT_EQ(steady_state_allocations(lamb, params, grads), 0u);
        xoptim::adafactor adafactor;
        EXPECT_EQ(steady_state_allocations(adafactor, params, grads), 0u);
        xoptim::adafactor_transformers_options o;
        o.beta1 = 0.9;
        xoptim::adafactor_transformers transformers(o);
        EXPECT_EQ(steady_state_allocations(transformers, params, grads), 0u);
    }

    TEST(allocation, none_in_steady_state_over_a_tuple_and_a_model)
    {
        std::vector<float> a(100, 1.0f), b(7, 1.0f);
        std::vector<double> c(9, 1.0);
        auto grads = std::make_tuple(a, b, c);
        xoptim::sgd_options o;
        o.lr = 0.1;
        o.momentum = 0.9;
        o.nesterov = true;
        xoptim::sgd sgd(o);
        auto params = std::tie(a, b, c);
        EXPECT_EQ(steady_state_allocations(sgd, params, grads), 0u);

        std::vector<block> model(3, block{std::vector<float>(64, 1.0f), std::vector<float>(8, 1.0f)});
        const auto model_grads = model;
        xoptim::adamw adamw;
        EXPECT_EQ(steady_state_allocations(adamw, model, model_grads), 0u);
    }

    // The stepper (accumulation, clipping, the guard) around parameter groups: its walk,
    // its reduction and the router's split reuse their buffers too.
    TEST(allocation, none_in_steady_state_through_the_stepper_and_groups)
    {
        std::vector<std::vector<float>> p(300, std::vector<float>(129, 1.0f)), g = p;
        xoptim::param_groups<xoptim::adamw> groups;
        groups.add("first", xoptim::name_matches({"0", "1"}), xoptim::adamw());
        groups.fallback("rest", xoptim::adamw());
        groups.group("rest").schedule("lr", xoptim::warmup_cosine(1e-3, 100, 10));
        xoptim::stepper_options o;
        o.accumulate = 2;
        o.clip_global_norm = 1.0;
        xoptim::stepper<xoptim::param_groups<xoptim::adamw>> step(std::move(groups), o);
        const std::size_t start = allocations;
        step(p, g);
        step(p, g);
        EXPECT_GT(allocations - start, 0u) << "the first step creates the state: the counter must see it";
        step(p, g);
        step(p, g);
        const std::size_t before = allocations;
        for (int k = 0; k < 6; ++k)
        {
            step(p, g);
        }
        EXPECT_EQ(allocations - before, 0u);
        EXPECT_EQ(step.optimizer().group(1).step_count(), 5u);
    }
}
