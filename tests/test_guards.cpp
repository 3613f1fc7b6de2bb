// What a step refuses before it writes anything: a hyperparameter that is not finite or
// out of range, at construction or when a schedule sets it; memory written twice.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <xoptim/optim/hybrid.hpp>
#include <xoptim/optim/schedulefree.hpp>
#include <xoptim/optim/sparse.hpp>
#include <xoptim/step/stepper.hpp>
#include <xoptim/xoptim.hpp>

#include "support/message_of.hpp"

namespace
{
    using xoptim_test::message_of;

    constexpr double nan = std::numeric_limits<double>::quiet_NaN();
    constexpr double inf = std::numeric_limits<double>::infinity();

    // Calls f(name, field) for every number among the options' fields ("lr", "betas[1]"),
    // in the order the optimizer's schedules find them.
    template <class Options, class F>
    void each_number(Options& o, F&& f)
    {
        xoptim::detail::for_each_number(o, [&](const char* key, std::size_t index, bool element, double& x) {
            f(xoptim::detail::number_name(key, index, element), x);
        });
    }

    template <class Opt>
    typename Opt::options_type defaults()
    {
        typename Opt::options_type o;
        if constexpr (std::is_same_v<Opt, xoptim::sgd>)
        {
            o.lr = 0.1;
            o.momentum = 0.9;
        }
        return o;
    }

    // A schedule whose value at every step is `bad` (schedules refuse non-finite
    // numbers themselves, so it is made by a product that overflows).
    xoptim::schedule scheduled(double bad)
    {
        const xoptim::schedule overflow = xoptim::constant(1e300) * xoptim::constant(1e300);  // inf
        return std::isnan(bad) ? overflow * xoptim::constant(0) : overflow * xoptim::constant(bad > 0 ? 1 : -1);
    }

    template <class Opt>
    void expect_every_number_checked()
    {
        auto o = defaults<Opt>();
        std::vector<std::string> names;
        each_number(o, [&](const std::string& name, double&) { names.push_back(name); });
        ASSERT_FALSE(names.empty());
        for (const std::string& name : names)
        {
            for (const double bad : {nan, inf, -inf})
            {
                SCOPED_TRACE(std::string(Opt::name) + " " + name + " = " + std::to_string(bad));
                auto wrong = defaults<Opt>();
                each_number(wrong, [&](const std::string& n, double& x) { x = n == name ? bad : x; });
                // "xoptim::muon: ns_coefficients[1] must be finite (got nan)"; SGD's lr: "is required".
                const std::string prefix = std::string("xoptim::") + Opt::name + ": " + name + " ";
                EXPECT_EQ(message_of([&] { Opt opt(wrong); }).rfind(prefix, 0), 0u)
                    << message_of([&] { Opt opt(wrong); });

                // The same value from a schedule: refused by the step, which changes nothing.
                Opt opt(defaults<Opt>());
                opt.schedule(name, scheduled(bad));
                std::vector<float> p(16, 0.5f), g(16, 0.25f);
                const auto pv = xoptim::view(p.data(), {4, 4});
                const std::string error = message_of([&] { opt.step(pv, g); });
                EXPECT_EQ(error.rfind(prefix, 0), 0u) << error;
                EXPECT_NE(error.find("(the schedules' values for step 0)"), std::string::npos) << error;
                EXPECT_EQ(p, std::vector<float>(16, 0.5f));
                EXPECT_TRUE(opt.state().empty());
            }
        }
    }

    TEST(hyperparameters, every_number_of_every_optimizer_must_be_finite_and_in_range)
    {
        expect_every_number_checked<xoptim::sgd>();
        expect_every_number_checked<xoptim::adam>();
        expect_every_number_checked<xoptim::adamw>();
        expect_every_number_checked<xoptim::lion>();
        expect_every_number_checked<xoptim::lamb>();
        expect_every_number_checked<xoptim::adafactor>();
        expect_every_number_checked<xoptim::adafactor_transformers>();
        expect_every_number_checked<xoptim::signsgd>();
        expect_every_number_checked<xoptim::muon>();
        expect_every_number_checked<xoptim::ademamix>();
        expect_every_number_checked<xoptim::adamw_schedulefree>();
        expect_every_number_checked<xoptim::sgd_schedulefree>();
    }

    TEST(hyperparameters, muon_newton_schulz_coefficients_name_the_element)
    {
        xoptim::muon_options o;
        o.ns_coefficients[1] = nan;
        EXPECT_EQ(message_of([&] { xoptim::muon m(o); }),
                  "xoptim::muon: ns_coefficients[1] must be finite (got nan)");
    }

    TEST(hyperparameters, around_the_step_too)
    {
        for (const double bad : {nan, inf, -inf})
        {
            xoptim::stepper_options s;
            s.clip_global_norm = bad;
            EXPECT_NE(message_of([&] { xoptim::stepper<xoptim::adamw> st(xoptim::adamw(), s); }),
                      "no std::invalid_argument thrown");
            s = {};
            s.clip_value = bad;
            EXPECT_NE(message_of([&] { xoptim::stepper<xoptim::adamw> st(xoptim::adamw(), s); }),
                      "no std::invalid_argument thrown");
            xoptim::sparse_embedding_options e;
            e.embedding_lr_ratio = bad;
            EXPECT_NE(message_of([&] { xoptim::sparse_embedding_optimizer opt(e); }), "no std::invalid_argument thrown");
            e = {};
            e.embedding_weight_decay = bad;
            EXPECT_NE(message_of([&] { xoptim::sparse_embedding_optimizer opt(e); }), "no std::invalid_argument thrown");
        }
    }

    // Two parameters over one buffer: `hidden.weight` (4, 3) at element 0 and
    // `embed.weight` (4, 3) at element `at`; the hybrid routes one to Muon, one to AdamW.
    struct overlapping
    {
        std::vector<float> buffer = std::vector<float>(24, 0.5f);
        std::vector<float> g1 = std::vector<float>(12, 0.1f), g2 = std::vector<float>(12, -0.1f);
        xoptim::tensor_view<float> hidden, embed;

        explicit overlapping(std::size_t at)
            : hidden(xoptim::view(buffer.data(), {4, 3})), embed(xoptim::view(buffer.data() + at, {4, 3}))
        {
        }

        auto params()
        {
            return std::make_tuple(xoptim::named("hidden.weight", hidden), xoptim::named("embed.weight", embed));
        }
    };

    TEST(aliasing, a_router_refuses_parameters_of_two_shares_over_one_buffer)
    {
        overlapping m(6);
        auto hybrid = xoptim::make_hybrid();
        EXPECT_EQ(message_of([&] { hybrid.step(m.params(), std::tie(m.g1, m.g2)); }),
                  "xoptim::router: parameter 'embed.weight': parameter 'embed.weight' shares memory with parameter "
                  "'hidden.weight'");
        EXPECT_EQ(m.buffer, std::vector<float>(24, 0.5f));
        EXPECT_TRUE(hybrid.optimizer<0>().state().empty());
        EXPECT_TRUE(hybrid.optimizer<1>().state().empty());
        EXPECT_EQ(hybrid.routing_table(), "");  // a step that did not happen routed nothing

        overlapping apart(12);  // side by side: fine
        auto ok = xoptim::make_hybrid();
        ok.step(apart.params(), std::tie(apart.g1, apart.g2));
        EXPECT_EQ(ok.optimizer<0>().step_count(), 1u);
        EXPECT_EQ(ok.optimizer<1>().step_count(), 1u);
    }

    TEST(aliasing, a_router_refuses_a_gradient_that_is_another_shares_parameter)
    {
        overlapping m(12);
        auto hybrid = xoptim::make_hybrid();
        hybrid.step(m.params(), std::tie(m.g1, m.g2));
        const auto before = m.buffer;
        // Muon's gradient is AdamW's parameter: every check within one share passes.
        const auto g = xoptim::view(static_cast<const float*>(m.buffer.data() + 12), {4, 3});
        EXPECT_EQ(message_of([&] { hybrid.step(m.params(), std::make_tuple(g, m.g2)); }),
                  "xoptim::router: parameter 'embed.weight': the gradient of 'hidden.weight' shares memory with "
                  "parameter 'embed.weight'");
        EXPECT_EQ(m.buffer, before);
        EXPECT_EQ(hybrid.optimizer<0>().step_count(), 1u);
        EXPECT_EQ(hybrid.optimizer<1>().step_count(), 1u);
    }

    TEST(aliasing, param_groups_refuse_it_too)
    {
        overlapping m(6);
        xoptim::param_groups<xoptim::adamw> groups;
        groups.add("hidden", xoptim::name_matches({"hidden*"}), xoptim::adamw());
        groups.fallback("rest", xoptim::adamw());
        EXPECT_EQ(message_of([&] { groups.step(m.params(), std::tie(m.g1, m.g2)); }),
                  "xoptim::router: parameter 'embed.weight': parameter 'embed.weight' shares memory with parameter "
                  "'hidden.weight'");
        EXPECT_EQ(m.buffer, std::vector<float>(24, 0.5f));
        EXPECT_TRUE(groups.group(0).state().empty());
    }

    TEST(aliasing, a_stepper_accumulating_refuses_a_gradient_in_a_parameter)
    {
        // The accumulated sums, not the gradients, reach the optimizer: its own check
        // cannot see the gradient the stepper reads.
        std::vector<float> w(8, 1), v(8, 2), g(8, 0.5f);
        xoptim::stepper_options o;
        o.accumulate = 2;
        xoptim::stepper<xoptim::adamw> step(xoptim::adamw(), o);
        const auto params = std::make_tuple(xoptim::named("w", w), xoptim::named("v", v));
        EXPECT_EQ(message_of([&] { step(params, std::tie(g, w)); }),
                  "xoptim::stepper: parameter 'v': the gradient of 'v' shares memory with parameter 'w'");
        EXPECT_EQ(step.pending_micro_batches(), 0u);
        EXPECT_TRUE(step.accumulators().empty());
        EXPECT_FALSE(step(params, std::tie(g, g)));  // good calls work after it
        EXPECT_TRUE(step(params, std::tie(g, g)));
    }
}
