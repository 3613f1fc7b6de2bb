// The router: one step for several optimizers, each on its routed share, atomic.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include <xoptim/optim/hybrid.hpp>
#include <xoptim/step/stepper.hpp>

#include "support/message_of.hpp"

namespace
{
    // SPEC section 3's four parameters, with their gradients.
    struct model
    {
        std::vector<std::vector<float>> data, grads;
        std::vector<std::vector<std::size_t>> shapes = {{100, 64}, {128, 64}, {64, 128}, {10, 64}};

        model()
        {
            for (std::size_t k = 0; k < shapes.size(); ++k)
            {
                const std::size_t n = shapes[k][0] * shapes[k][1];
                data.emplace_back(n);
                grads.emplace_back(n);
                for (std::size_t i = 0; i < n; ++i)
                {
                    data[k][i] = float(std::sin(0.01 * double(i) + double(k)));
                    grads[k][i] = float(std::cos(0.03 * double(i) - double(k)));
                }
            }
        }

        xoptim::tensor_view<float> view(std::size_t k)
        {
            return xoptim::view(data[k].data(), {shapes[k][0], shapes[k][1]});
        }

        xoptim::tensor_view<const float> grad(std::size_t k) const
        {
            return xoptim::view(grads[k].data(), {shapes[k][0], shapes[k][1]});
        }
    };

    xoptim::routing hybrid_rules()
    {
        xoptim::routing rules;
        rules.add("muon", xoptim::hidden_matrix({"*embed*", "output*"})).fallback("adamw");
        return rules;
    }

    TEST(router, hybrid_steps_each_share_as_its_optimizer_alone_would)
    {
        model m, alone;
        auto e = m.view(0), l1 = m.view(1), l2 = m.view(2), out = m.view(3);
        xoptim::router hybrid(hybrid_rules(), xoptim::muon(), xoptim::adamw());
        const auto params = std::make_tuple(xoptim::named("embedding.weight", e), xoptim::named("linear1.weight", l1),
                                            xoptim::named("linear2.weight", l2), xoptim::named("output.weight", out));
        const auto grads = std::make_tuple(m.grad(0), m.grad(1), m.grad(2), m.grad(3));

        auto ae = alone.view(0), al1 = alone.view(1), al2 = alone.view(2), aout = alone.view(3);
        xoptim::muon muon;
        xoptim::adamw adamw;
        for (int t = 0; t < 3; ++t)
        {
            hybrid.step(params, grads);
            muon.step(std::tie(al1, al2), std::make_tuple(alone.grad(1), alone.grad(2)));
            adamw.step(std::tie(ae, aout), std::make_tuple(alone.grad(0), alone.grad(3)));
        }
        EXPECT_EQ(m.data, alone.data);
        EXPECT_EQ(hybrid.routing_table(), "embedding.weight (100, 64) -> adamw\n"
                                          "linear1.weight (128, 64) -> muon\n"
                                          "linear2.weight (64, 128) -> muon\n"
                                          "output.weight (10, 64) -> adamw\n");
        EXPECT_EQ(hybrid.optimizer<0>().state()[1].name, "linear2.weight");
        EXPECT_EQ(hybrid.optimizer<1>().state()[1].name, "output.weight");
        EXPECT_EQ(hybrid.optimizer<1>().step_count(), 3u);
    }

    TEST(router, ready_hybrid_with_its_defaults)
    {
        model m;
        auto e = m.view(0), l1 = m.view(1), l2 = m.view(2), out = m.view(3);
        auto opt = xoptim::make_hybrid();
        EXPECT_DOUBLE_EQ(opt.optimizer<0>().options().lr, 0.02);
        EXPECT_DOUBLE_EQ(opt.optimizer<1>().options().lr, 1e-3);
        opt.step(std::make_tuple(xoptim::named("tok_embeddings.weight", e), xoptim::named("layers.0.weight", l1),
                                 xoptim::named("layers.1.weight", l2), xoptim::named("lm_head.weight", out)),
                 std::make_tuple(m.grad(0), m.grad(1), m.grad(2), m.grad(3)));
        EXPECT_EQ(opt.routing_table(), "tok_embeddings.weight (100, 64) -> adamw\n"
                                       "layers.0.weight (128, 64) -> muon\n"
                                       "layers.1.weight (64, 128) -> muon\n"
                                       "lm_head.weight (10, 64) -> adamw\n");
        xoptim::hybrid_options o;
        o.adamw_patterns.push_back("layers.0.*");  // the first layer off Muon too
        auto first_on_adamw = xoptim::make_hybrid(o);
        first_on_adamw.step(std::make_tuple(xoptim::named("layers.0.weight", l1), xoptim::named("layers.1.weight", l2)),
                            std::make_tuple(m.grad(1), m.grad(2)));
        EXPECT_EQ(first_on_adamw.routing_table(), "layers.0.weight (128, 64) -> adamw\n"
                                                  "layers.1.weight (64, 128) -> muon\n");
    }

    TEST(router, a_bad_gradient_in_one_share_changes_nothing_in_any)
    {
        model m;
        const auto before = m.data;
        auto e = m.view(0), l1 = m.view(1), l2 = m.view(2), out = m.view(3);
        xoptim::router hybrid(hybrid_rules(), xoptim::muon(), xoptim::adamw());
        const auto params = std::make_tuple(xoptim::named("embedding.weight", e), xoptim::named("linear1.weight", l1),
                                            xoptim::named("linear2.weight", l2), xoptim::named("output.weight", out));
        // AdamW's last gradient is the output weight's own memory: the router's check over
        // every share refuses it before any optimizer is asked.
        const auto grads = std::make_tuple(m.grad(0), m.grad(1), m.grad(2),
                                           xoptim::view(static_cast<const float*>(m.data[3].data()), {10, 64}));
        try
        {
            hybrid.step(params, grads);
            FAIL() << "a gradient in the parameter's own memory was accepted";
        }
        catch (const std::invalid_argument& e)
        {
            EXPECT_STREQ(e.what(), "xoptim::router: parameter 'output.weight': gradient and parameter share memory");
        }
        EXPECT_EQ(m.data, before);
        EXPECT_TRUE(hybrid.optimizer<0>().state().empty());
        EXPECT_TRUE(hybrid.optimizer<1>().state().empty());
        EXPECT_EQ(hybrid.optimizer<0>().step_count(), 0u);
        hybrid.step(params, std::make_tuple(m.grad(0), m.grad(1), m.grad(2), m.grad(3)));  // a good step works
        EXPECT_NE(m.data, before);
    }

    TEST(router, unmatched_parameter_without_fallback_is_named)
    {
        std::vector<float> w(12, 1), b(4, 1), gw(12, 1), gb(4, 1);
        auto wv = xoptim::view(w.data(), {3, 4});
        xoptim::routing rules;
        rules.add("muon", xoptim::min_ndim(2));
        xoptim::router only_muon(rules, xoptim::muon());
        EXPECT_THROW(
            {
                try
                {
                    only_muon.step(std::make_tuple(xoptim::named("w", wv), xoptim::named("bias", b)),
                                   std::make_tuple(xoptim::view(gw.data(), {3, 4}), gb));
                }
                catch (const std::invalid_argument& e)
                {
                    EXPECT_STREQ(e.what(), "xoptim::routing: parameter 'bias' (4,) matches no rule and there is no "
                                           "fallback");
                    throw;
                }
            },
            std::invalid_argument);
        EXPECT_EQ(w, std::vector<float>(12, 1));
        EXPECT_EQ(only_muon.routing_table(), "");
    }
}

namespace
{
    // A user's optimizer class derived from one of xoptim's.
    struct derived_adamw : xoptim::adamw
    {
        using xoptim::adamw::adam_base;
    };

    // A router may hold param_groups, and a user's class derived from an optimizer, as may
    // a stepper: each steps its share as it would alone.
    TEST(router, holds_param_groups_and_derived_optimizers)
    {
        std::vector<float> w(6, 1.0f), b(3, 1.0f), e(4, 1.0f), gw(6, 0.5f), gb(3, -0.5f), ge(4, 0.25f);
        auto [vw, vb, ve] = std::make_tuple(w, b, e);
        xoptim::routing rules;
        rules.add("embedding", xoptim::name_matches({"e"})).fallback("rest");
        xoptim::adamw_options no_decay;
        no_decay.weight_decay = 0;
        xoptim::param_groups<xoptim::adamw> groups;
        groups.add("no_decay", xoptim::name_matches({"b"}), xoptim::adamw(no_decay)).fallback("decay", xoptim::adamw());
        xoptim::stepper<xoptim::router<derived_adamw, xoptim::param_groups<xoptim::adamw>>> nested(
            xoptim::router(rules, derived_adamw(), std::move(groups)));
        nested(std::make_tuple(xoptim::named("w", w), xoptim::named("b", b), xoptim::named("e", e)),
               std::tie(gw, gb, ge));
        xoptim::adamw alone_decay, alone_no_decay(no_decay), alone_embedding;
        alone_decay.step(std::make_tuple(xoptim::named("w", vw)), std::tie(gw));
        alone_no_decay.step(std::make_tuple(xoptim::named("b", vb)), std::tie(gb));
        alone_embedding.step(std::make_tuple(xoptim::named("e", ve)), std::tie(ge));
        EXPECT_EQ(w, vw);
        EXPECT_EQ(b, vb);
        EXPECT_EQ(e, ve);
    }

    // Parameter groups: one optimizer type, per-group hyperparameters and schedules.
    TEST(param_groups, each_group_steps_as_its_own_optimizer_would)
    {
        std::vector<float> w1(30, 0.5f), w2(12, -0.25f), bias(5, 1.0f), g1(30), g2(12), gb(5);
        for (std::size_t i = 0; i < g1.size(); ++i)
        {
            g1[i] = float(std::sin(double(i)));
        }
        for (std::size_t i = 0; i < g2.size(); ++i)
        {
            g2[i] = float(std::cos(double(i)));
        }
        std::fill(gb.begin(), gb.end(), 0.75f);
        auto [v1, v2, vb] = std::make_tuple(w1, w2, bias);  // copies for the separate run

        xoptim::adamw_options no_decay;
        no_decay.weight_decay = 0;
        xoptim::param_groups<xoptim::adamw> groups;
        groups.add("no_decay", xoptim::name_matches({"*.bias"}), xoptim::adamw(no_decay));
        groups.fallback("decay", xoptim::adamw());
        groups.group("decay").schedule("lr", xoptim::linear(1e-2, 0, 3));

        xoptim::adamw alone_no_decay(no_decay), alone_decay;
        alone_decay.schedule("lr", xoptim::linear(1e-2, 0, 3));
        for (int t = 0; t < 3; ++t)
        {
            groups.step(std::make_tuple(xoptim::named("l1.weight", w1), xoptim::named("l1.bias", bias),
                                        xoptim::named("l2.weight", w2)),
                        std::tie(g1, gb, g2));
            alone_no_decay.step(std::make_tuple(xoptim::named("l1.bias", vb)), std::tie(gb));
            alone_decay.step(std::make_tuple(xoptim::named("l1.weight", v1), xoptim::named("l2.weight", v2)),
                             std::tie(g1, g2));
        }
        EXPECT_EQ(w1, v1);
        EXPECT_EQ(w2, v2);
        EXPECT_EQ(bias, vb);
        EXPECT_EQ(groups.routing_table(), "l1.weight (30,) -> decay\nl1.bias (5,) -> no_decay\nl2.weight (12,) -> decay\n");
        EXPECT_EQ(groups.group("decay").options().lr, alone_decay.options().lr);
        EXPECT_EQ(groups.group(0).state().size(), 1u);
        EXPECT_THROW(groups.group("embedding"), std::out_of_range);
        EXPECT_THROW(groups.fallback("late", xoptim::adamw()), std::logic_error);
    }
}

namespace
{
    TEST(param_groups, a_first_step_that_failed_routes_nothing)
    {
        std::vector<float> w(6, 1.0f), g(6, 0.5f), g_short(5, 0.5f);
        xoptim::param_groups<xoptim::adamw> groups;
        groups.add("w", xoptim::name_matches({"w"}), xoptim::adamw());
        // Fails in the walk: nothing routed, a group can still be added.
        EXPECT_THROW(groups.step(std::make_tuple(xoptim::named("w", w)), std::tie(g_short)), std::invalid_argument);
        EXPECT_EQ(groups.routing_table(), "");
        groups.fallback("rest", xoptim::adamw());
        // Fails in AdamW's own check (a gradient in the parameter's memory) after routing.
        EXPECT_THROW(groups.step(std::make_tuple(xoptim::named("w", w)), std::make_tuple(xoptim::view(
                                     static_cast<const float*>(w.data()), 6))),
                     std::invalid_argument);
        EXPECT_EQ(groups.routing_table(), "");
        groups.step(std::make_tuple(xoptim::named("w", w)), std::tie(g));
        EXPECT_EQ(groups.routing_table(), "w (6,) -> w\n");
    }

    // An init one optimizer refuses (Muon and a vector) is taken back whole: AdamW keeps
    // no state, nothing is routed, and an init of good parameters then works.
    TEST(router, an_init_one_optimizer_refuses_changes_nothing)
    {
        std::vector<float> a(6, 1.0f), b(4, 2.0f), m(12, 0.5f);
        xoptim::routing r;
        r.add("adamw", xoptim::name_matches({"a"})).fallback("muon");
        xoptim::router rt(r, xoptim::adamw(), xoptim::muon());
        EXPECT_THROW(rt.init(std::make_tuple(xoptim::named("a", a), xoptim::named("b", b))), std::invalid_argument);
        EXPECT_TRUE(rt.optimizer<0>().state().empty());
        EXPECT_TRUE(rt.optimizer<1>().state().empty());
        EXPECT_EQ(rt.routing_table(), "");
        auto mv = xoptim::view(m.data(), {3, 4});
        rt.init(std::make_tuple(xoptim::named("a", a), xoptim::named("m", mv)));
        EXPECT_EQ(rt.optimizer<0>().state().size(), 1u);
        EXPECT_EQ(rt.optimizer<1>().state().size(), 1u);
    }

    // A router walks once for all its groups (and a stepper over it once for the router):
    // a gradient in another group's parameter, which no group alone could see, and a
    // gradient of the wrong size are named, and nothing changes in any group.
    TEST(validation, bad_input_through_a_router_is_named_and_changes_nothing)
    {
        std::vector<float> a(6, 1.0f), b(6, 2.0f), ga(6, 0.5f), gb(6, 0.25f), short_grad(5, 0.25f);
        const auto params = std::make_tuple(xoptim::named("a", a), xoptim::named("b", b));
        const auto make = [] {
            xoptim::param_groups<xoptim::adamw> groups;
            groups.add("a", xoptim::name_matches({"a"}), xoptim::adamw{}).fallback("b", xoptim::adamw{});
            return groups;
        };
        auto direct = make();
        xoptim::stepper through_stepper(make());
        // The same two trainers, never given a bad call, on copies.
        auto reference_direct = make();
        xoptim::stepper reference_through(make());
        std::vector<float> ra = a, rb = b;
        const auto in_a = xoptim::view(static_cast<const float*>(a.data()), {6});
        const auto aliased = std::tie(ga, in_a);
        const auto wrong_size = std::tie(ga, short_grad);
        const auto refused = [&](auto&& step, const auto& grads, const std::string& message) {
            const auto a0 = a, b0 = b;
            EXPECT_EQ(xoptim_test::message_of([&] { step(grads); }), message);
            EXPECT_EQ(a, a0);
            EXPECT_EQ(b, b0);
        };
        const auto step_direct = [&](const auto& grads) { direct.step(params, grads); };
        const auto step_through = [&](const auto& grads) { through_stepper(params, grads); };
        for (std::size_t round = 0; round < 2; ++round)  // before the first step, then after one
        {
            const std::string shared = "parameter 'b': the gradient of 'b' shares memory with parameter 'a'";
            const std::string size = "parameter 'b': gradient has 5 elements, parameter has 6";
            refused(step_direct, aliased, "xoptim::router: " + shared);
            refused(step_direct, wrong_size, "xoptim::router: " + size);
            refused(step_through, aliased, "xoptim::stepper: " + shared);
            refused(step_through, wrong_size, "xoptim::stepper: " + size);
            for (auto* groups : {&direct, &through_stepper.optimizer()})
            {
                EXPECT_EQ(groups->group("a").step_count(), round);
                EXPECT_EQ(groups->group("b").step_count(), round);
                EXPECT_EQ(groups->group("b").state().size(), round);
            }
            const auto reference_params = std::make_tuple(xoptim::named("a", ra), xoptim::named("b", rb));
            for (int k = 0; k < 2; ++k)  // gradients that differ from step to step, so that a lost step shows
            {
                std::fill(ga.begin(), ga.end(), 0.5f - 0.3f * float(round + k));
                std::fill(gb.begin(), gb.end(), 0.25f + 0.1f * float(round * k));
                if (k == 0)
                {
                    direct.step(params, std::tie(ga, gb));
                    reference_direct.step(reference_params, std::tie(ga, gb));
                }
                else
                {
                    through_stepper(params, std::tie(ga, gb));
                    reference_through(reference_params, std::tie(ga, gb));
                }
            }
        }
        // The refused calls left no trace in any group's state: the same bits as good steps alone.
        EXPECT_EQ(a, ra);
        EXPECT_EQ(b, rb);
    }

    TEST(param_groups, an_empty_predicate_or_a_group_out_of_range_is_named)
    {
        xoptim::param_groups<xoptim::adamw> groups;
        EXPECT_EQ(xoptim_test::message_of<std::invalid_argument>(
                      [&] { groups.add("decay", xoptim::param_predicate{}, xoptim::adamw()); }),
                  "xoptim::routing: the rule for 'decay' is an empty param_predicate");
        EXPECT_EQ(groups.size(), 0u);
        groups.fallback("rest", xoptim::adamw());
        EXPECT_EQ(xoptim_test::message_of<std::out_of_range>([&] { groups.group(5); }),
                  "xoptim::param_groups: no group 5 (there are 1)");
    }
}
