// Schedule-Free AdamW and SGD against the float64 transcriptions of
// facebookresearch/schedule_free (tests/reference/ref2026/schedulefree.py), with the
// eval()/train() round trip at every checkpoint step, and the checks every optimizer gets.
#include <gtest/gtest.h>

#include <xoptim/optim/schedulefree.hpp>

#include "../tools/optimizer_json.hpp"
#include "support/message_of.hpp"
#include "support/optimizer_checks.hpp"

namespace
{
    using xoptim_test::reference_case_2026;

    std::vector<reference_case_2026> schedulefree_cases()
    {
        auto out = xoptim_test::cases_2026("adamw_schedulefree");
        for (auto& c : xoptim_test::cases_2026("sgd_schedulefree"))
        {
            out.push_back(std::move(c));
        }
        return out;
    }

    template <class T, class Opt>
    void replay(const reference_case_2026& c)
    {
        Opt opt(xoptim::tools::detail::read_options<typename Opt::options_type>(c.optimizer, c.hyper));
        double worst = 0;
        xoptim_test::replay_case<T>(c, opt, [&](int t, xoptim_test::case_tensors<T>& x) {
            ASSERT_EQ(c.eval_checkpoints.count(t), 1u);
            opt.eval(x.param_views);
            EXPECT_TRUE(opt.in_eval_mode());
            worst = std::max(worst, xoptim_test::expect_close_scaled(x.params, c.eval_checkpoints.at(t),
                                                                     xoptim_test::tolerance_2026(c),
                                                                     c.name + " eval at step " + std::to_string(t)));
            opt.train(x.param_views);
        });
        std::printf("%-40s worst scaled error of eval() %.3g\n", c.name.c_str(), worst);
    }

    class schedulefree_trajectory : public ::testing::TestWithParam<reference_case_2026>
    {
    };

    TEST_P(schedulefree_trajectory, matches_reference)
    {
        const reference_case_2026& c = GetParam();
        const bool f32 = c.dtype == "float32";
        if (c.optimizer == "adamw_schedulefree")
        {
            f32 ? replay<float, xoptim::adamw_schedulefree>(c) : replay<double, xoptim::adamw_schedulefree>(c);
        }
        else
        {
            f32 ? replay<float, xoptim::sgd_schedulefree>(c) : replay<double, xoptim::sgd_schedulefree>(c);
        }
    }

    INSTANTIATE_TEST_SUITE_P(reference, schedulefree_trajectory, ::testing::ValuesIn(schedulefree_cases()),
                             [](const auto& info) { return info.param.name; });

    TEST(schedulefree, has_every_reference_case)
    {
        EXPECT_EQ(schedulefree_cases().size(), 14u);
    }

    xoptim::adamw_schedulefree adamw_sf()
    {
        xoptim::adamw_schedulefree_options o;
        o.lr = 1e-2;
        o.warmup_steps = 3;
        o.weight_decay = 0.01;
        return xoptim::adamw_schedulefree(o);
    }

    xoptim::sgd_schedulefree sgd_sf()
    {
        xoptim::sgd_schedulefree_options o;
        o.lr = 0.1;
        o.warmup_steps = 2;
        o.r = 0.5;
        return xoptim::sgd_schedulefree(o);
    }

    TEST(schedulefree, threads_change_no_bits)
    {
        xoptim_test::expect_thread_invariant(adamw_sf);
        xoptim_test::expect_thread_invariant(sgd_sf);
    }

    TEST(schedulefree, resumes_bit_for_bit_with_its_host_state)
    {
        for (auto storage : {xoptim::state_storage::native, xoptim::state_storage::blockwise_8bit})
        {
            xoptim_test::expect_resume_bit_identical(adamw_sf, "schedulefree_resume.safetensors", storage);
        }
        xoptim_test::expect_resume_bit_identical(sgd_sf, "schedulefree_resume.safetensors");
    }

    TEST(schedulefree, a_checkpoint_saved_in_eval_mode_resumes_in_eval_mode)
    {
        const std::string file = "schedulefree_eval.safetensors";
        auto straight = adamw_sf();
        auto p = xoptim_test::check_tensors<float>(1, 0);
        for (int t = 1; t <= 6; ++t)
        {
            straight.step(p, xoptim_test::check_tensors<float>(1, t));
        }
        straight.eval(p);
        xoptim::save_checkpoint(file, p, straight);
        straight.train(p);
        straight.step(p, xoptim_test::check_tensors<float>(1, 7));

        auto resumed = adamw_sf();
        auto q = xoptim_test::check_tensors<float>(2, 0);
        xoptim::load_checkpoint(file, q, resumed);
        std::remove(file.c_str());
        EXPECT_TRUE(resumed.in_eval_mode());
        EXPECT_THROW(resumed.step(q, xoptim_test::check_tensors<float>(1, 7)), std::logic_error);
        resumed.train(q);
        resumed.step(q, xoptim_test::check_tensors<float>(1, 7));
        EXPECT_EQ(q, p);
    }

    // train() inverts eval() with the beta eval() used, not one set in eval mode, which
    // takes effect from the next step on.
    TEST(schedulefree, train_undoes_eval_after_a_beta_change_in_eval_mode)
    {
        auto opt = adamw_sf();
        auto twin = adamw_sf();
        auto p = xoptim_test::check_tensors<float>(3, 0);
        auto q = p;
        for (int t = 1; t <= 3; ++t)
        {
            opt.step(p, xoptim_test::check_tensors<float>(3, t));
            twin.step(q, xoptim_test::check_tensors<float>(3, t));
        }
        auto changed = opt.options();
        changed.betas[0] = 0.5;
        opt.eval(p);
        opt.set_options(changed);
        opt.train(p);
        twin.eval(q);
        twin.train(q);
        twin.set_options(changed);
        EXPECT_EQ(p, q);
        opt.step(p, xoptim_test::check_tensors<float>(3, 4));
        twin.step(q, xoptim_test::check_tensors<float>(3, 4));
        EXPECT_EQ(p, q);
    }

    // init() makes the state before the first step, but z becomes a copy of the parameters
    // only at that step (the reference has no z before it): eval() and train() then change
    // the mode only, for both optimizers.
    TEST(schedulefree, eval_before_the_first_step_moves_nothing_after_init_too)
    {
        const auto start = xoptim_test::check_tensors<float>(3, 0);
        auto sgd = sgd_sf();
        auto p = start;
        sgd.init(p);
        sgd.eval(p);
        EXPECT_EQ(p, start);
        EXPECT_TRUE(sgd.in_eval_mode());
        sgd.train(p);
        EXPECT_EQ(p, start);
        xoptim::adamw_schedulefree adamw;
        auto q = start;
        adamw.init(q);
        adamw.eval(q);
        EXPECT_EQ(q, start);
        adamw.train(q);
        EXPECT_EQ(q, start);
        EXPECT_FALSE(adamw.in_eval_mode());
    }

    TEST(schedulefree, a_step_in_eval_mode_changes_nothing)
    {
        auto opt = sgd_sf();
        auto p = xoptim_test::check_tensors<float>(3, 0);
        opt.eval(p);  // before any step: nothing to average, only the mode
        EXPECT_EQ(p, xoptim_test::check_tensors<float>(3, 0));
        opt.train(p);
        opt.step(p, xoptim_test::check_tensors<float>(3, 1));
        opt.eval(p);
        const auto x = p;
        try
        {
            opt.step(p, xoptim_test::check_tensors<float>(3, 2));
            ADD_FAILURE() << "stepped in eval mode";
        }
        catch (const std::logic_error& e)
        {
            EXPECT_NE(std::string(e.what()).find("train(params)"), std::string::npos) << e.what();
        }
        EXPECT_EQ(p, x);
        EXPECT_EQ(opt.step_count(), 1u);
        opt.eval(p);  // eval twice is eval once
        EXPECT_EQ(p, x);
    }

    // Eval mode is refused before anything changes: under a router, the other
    // optimizers' shares do not step either (they did, before the check moved out of the
    // update), and the step after train() is the one a run without the refusal takes.
    TEST(schedulefree, a_router_step_in_eval_mode_changes_nothing)
    {
        const auto run = [](bool refused_first) {
            std::vector<float> a(4, 1.0f), b(4, 1.0f), ga(4, 0.5f), gb(4, 0.5f);
            const auto params = [&] { return std::make_tuple(xoptim::named("a", a), xoptim::named("b", b)); };
            xoptim::routing r;
            r.add("adamw", xoptim::name_matches({"a"})).fallback("sf");
            xoptim::router opt(r, xoptim::adamw(), xoptim::adamw_schedulefree());
            opt.step(params(), std::tie(ga, gb));
            if (refused_first)
            {
                opt.optimizer<1>().eval(std::make_tuple(xoptim::named("b", b)));
                const auto a0 = a;
                EXPECT_EQ(xoptim_test::message_of<std::logic_error>([&] { opt.step(params(), std::tie(ga, gb)); }),
                          "xoptim::adamw_schedulefree: step in eval mode (call train(params) before stepping)");
                EXPECT_EQ(a, a0);
                EXPECT_EQ(opt.optimizer<0>().step_count(), 1u);
                EXPECT_EQ(opt.optimizer<1>().step_count(), 1u);
                opt.optimizer<1>().train(std::make_tuple(xoptim::named("b", b)));
            }
            opt.step(params(), std::tie(ga, gb));
            return std::make_pair(a, b);
        };
        EXPECT_EQ(run(true), run(false));
    }

    // Options whose averaging weight the reference cannot compute (0.0 ** -1 raises
    // ZeroDivisionError, an overflowing power OverflowError) are refused at the step that
    // would need it, before anything changes (they made every parameter NaN).
    TEST(schedulefree, a_weight_that_is_not_finite_is_refused_before_anything_changes)
    {
        {
            xoptim::adamw_schedulefree_options o;
            o.lr = 0;
            o.weight_lr_power = -1;
            xoptim::adamw_schedulefree opt(o);
            std::vector<float> p(3, 1.0f), g(3, 0.1f);
            EXPECT_EQ(xoptim_test::message_of<std::logic_error>([&] { opt.step(p, g); }),
                      "xoptim::adamw_schedulefree: the averaging weight (k + 1)^r * lr_max^weight_lr_power is not "
                      "finite at step 1 (r = 0, weight_lr_power = -1, lr_max = 0)");
            EXPECT_EQ(p, std::vector<float>(3, 1.0f));
            EXPECT_EQ(opt.step_count(), 0u);
            EXPECT_TRUE(opt.state().empty());
        }
        {
            // (k + 1)^1100 overflows at step 2; step 1 ((0 + 1)^1100 = 1) is taken.
            xoptim::sgd_schedulefree_options o;
            o.r = 1100;
            xoptim::sgd_schedulefree opt(o);
            std::vector<float> p(3, 1.0f), g(3, 0.1f);
            opt.step(p, g);
            const auto after_one = p;
            const auto z = opt.state()[0].states[0];
            std::vector<float> z_before(static_cast<const float*>(z.data), static_cast<const float*>(z.data) + 3);
            EXPECT_EQ(xoptim_test::message_of<std::logic_error>([&] { opt.step(p, g); }),
                      "xoptim::sgd_schedulefree: the averaging weight (k + 1)^r * lr_max^weight_lr_power is not "
                      "finite at step 2 (r = 1100, weight_lr_power = 2, lr_max = 1)");
            EXPECT_EQ(p, after_one);
            EXPECT_EQ(std::vector<float>(static_cast<const float*>(z.data), static_cast<const float*>(z.data) + 3),
                      z_before);
            EXPECT_EQ(opt.step_count(), 1u);
            for (float x : p)
            {
                EXPECT_TRUE(std::isfinite(x));
            }
        }
    }

    TEST(schedulefree, steps_through_groups_and_stepper)
    {
        xoptim_test::expect_groups_and_stepper(adamw_sf);
        xoptim_test::expect_groups_and_stepper(sgd_sf);
    }

    TEST(schedulefree, low_memory_keeps_z_full_precision)
    {
        // exp_avg_sq in 8-bit or bf16; z, an average of the parameters, never narrowed.
        xoptim_test::expect_low_memory_tracks_native(adamw_sf, 5e-3);
        auto opt = adamw_sf();
        xoptim::storage_options s;
        s.states = xoptim::state_storage::blockwise_8bit;
        s.min_8bit_size = 1;
        opt.set_storage(s);
        std::vector<float> p(300, 0.5f), g(300, 0.25f);
        opt.step(p, g);
        EXPECT_EQ(opt.state()[0].states[0].format, xoptim::slot_format::native);
        EXPECT_NE(opt.state()[0].states[1].format, xoptim::slot_format::native);
    }

    TEST(schedulefree, refuses_bad_hyperparameters_by_name)
    {
        using xoptim_test::expect_refused;
        xoptim::adamw_schedulefree_options a;
        a.betas[0] = 0;
        expect_refused<xoptim::adamw_schedulefree>(a, "betas[0]");
        a = {};
        a.betas[1] = 1;
        expect_refused<xoptim::adamw_schedulefree>(a, "betas[1]");
        a = {};
        a.eps = -1;
        expect_refused<xoptim::adamw_schedulefree>(a, "eps");
        a = {};
        a.r = std::nan("");
        expect_refused<xoptim::adamw_schedulefree>(a, "r");
        xoptim::sgd_schedulefree_options s;
        s.momentum = 1;
        expect_refused<xoptim::sgd_schedulefree>(s, "momentum");
        s = {};
        s.lr = -1;
        expect_refused<xoptim::sgd_schedulefree>(s, "lr");
        s = {};
        s.weight_lr_power = INFINITY;
        expect_refused<xoptim::sgd_schedulefree>(s, "weight_lr_power");
    }
}
