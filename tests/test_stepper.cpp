// Around the step: clipping against torch.nn.utils.clip_grad_norm_, AdamW with a
// warmup-cosine schedule, clipping and accumulation against a PyTorch trajectory, the
// non-finite guard, and the one-read gradient reduction.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>
#include <xtensor/xarray.hpp>

#include <xoptim/engine/reduce.hpp>
#include <xoptim/optim/router.hpp>
#include <xoptim/optim/schedulefree.hpp>
#include <xoptim/step/stepper.hpp>
#include <xoptim/xoptim.hpp>

#include "support/counted_checks.hpp"
#include "support/message_of.hpp"
#include "support/reference.hpp"

namespace
{
    const nlohmann::json& reference()
    {
        static const nlohmann::json doc = [] {
            std::ifstream in(XOPTIM_TEST_DATA_DIR "/around_step.json");
            return nlohmann::json::parse(in);
        }();
        return doc;
    }

    std::vector<std::vector<std::size_t>> shapes()
    {
        return reference().at("shapes").get<std::vector<std::vector<std::size_t>>>();
    }

    // Gradient n of micro-batch `t` (generate.py's grad_values).
    template <class T>
    std::vector<std::vector<T>> grads_at(std::uint64_t seed, std::uint64_t t, double gscale)
    {
        std::vector<std::vector<T>> g;
        for (std::size_t n = 0; n < shapes().size(); ++n)
        {
            g.emplace_back(xoptim_test::numel(shapes()[n]));
            for (std::size_t i = 0; i < g.back().size(); ++i)
            {
                g.back()[i] = T(xoptim_test::u(seed * 1000 + n, t, i) * gscale);
            }
        }
        return g;
    }

    void expect_close(const std::vector<double>& want, const std::vector<double>& got, double tolerance)
    {
        ASSERT_EQ(want.size(), got.size());
        for (std::size_t i = 0; i < want.size(); ++i)
        {
            EXPECT_NEAR(got[i], want[i], tolerance * std::max(1.0, std::abs(want[i]))) << "element " << i;
        }
    }

    template <class T>
    std::vector<double> as_double(const std::vector<T>& v)
    {
        return {v.begin(), v.end()};
    }

    TEST(stepper, global_norm_clipping_matches_torch)
    {
        for (const auto& c : reference().at("clip"))
        {
            SCOPED_TRACE("seed " + std::to_string(c.at("seed").get<int>()));
            auto g = grads_at<float>(c.at("seed"), 1, c.at("gscale"));
            std::vector<std::vector<float>> p;
            for (const auto& gn : g)
            {
                p.emplace_back(gn.size(), 0.0f);
            }
            xoptim::stepper_options o;
            o.clip_global_norm = c.at("max_norm");
            xoptim::stepper step(xoptim::sgd({1.0}), o);  // p = 0 - 1 * g': the clipped gradient, negated
            ASSERT_TRUE(step(p, g));
            EXPECT_NEAR(step.last_norm(), c.at("norm").get<double>(), 1e-6 * c.at("norm").get<double>());
            for (std::size_t n = 0; n < p.size(); ++n)
            {
                std::vector<double> want = c.at("clipped")[n];
                for (double& x : want)
                {
                    x = -x;
                }
                expect_close(want, as_double(p[n]), 1e-6);
            }
        }
    }

    template <class T>
    void adamw_schedule_clip_accumulate(const nlohmann::json& c, double tolerance)
    {
        const auto& h = c.at("hyper");
        const auto& s = c.at("schedule").at("lr");
        xoptim::adamw_options a;
        a.betas = h.at("betas");
        a.eps = h.at("eps");
        a.weight_decay = h.at("weight_decay");
        xoptim::adamw adamw(a);
        adamw.schedule("lr", xoptim::warmup_cosine(s.at("base"), s.at("total_steps"), s.at("warmup_steps"),
                                                   s.at("min_ratio")));
        xoptim::stepper_options o;
        o.clip_global_norm = c.at("clip_global_norm");
        o.accumulate = c.at("accumulate");
        xoptim::stepper step(std::move(adamw), o);

        std::vector<std::vector<T>> p;
        for (std::size_t n = 0; n < shapes().size(); ++n)
        {
            p.emplace_back(xoptim_test::numel(shapes()[n]));
            for (std::size_t i = 0; i < p.back().size(); ++i)
            {
                p.back()[i] = T(xoptim_test::u(c.at("seed").get<std::uint64_t>() * 1000 + n, 0, i));
            }
        }
        const std::size_t k = o.accumulate;
        for (std::size_t t = 1; t <= c.at("steps"); ++t)
        {
            for (std::size_t j = 0; j < k; ++j)
            {
                const bool stepped = step(p, grads_at<T>(c.at("seed"), (t - 1) * k + j + 1, c.at("gscale")));
                EXPECT_EQ(stepped, j + 1 == k);
            }
            const double norm = c.at("norms")[t - 1];
            EXPECT_NEAR(step.last_norm(), norm, 1e-6 * norm) << "step " << t;
        }
        EXPECT_EQ(step.optimizer().step_count(), c.at("steps").get<std::size_t>());
        for (std::size_t n = 0; n < p.size(); ++n)
        {
            expect_close(c.at("final")[n].get<std::vector<double>>(), as_double(p[n]), tolerance);
        }
    }

    TEST(stepper, adamw_with_warmup_cosine_clipping_and_accumulation_matches_torch)
    {
        for (const auto& c : reference().at("trajectories"))
        {
            SCOPED_TRACE(c.at("dtype").get<std::string>());
            if (c.at("dtype") == "float32")
            {
                adamw_schedule_clip_accumulate<float>(c, 1e-6);
            }
            else
            {
                adamw_schedule_clip_accumulate<double>(c, 1e-12);
            }
        }
    }

    // Three AdamW steps with a scheduled lr; `nan_at` inserts a NaN gradient call there.
    struct guarded_run
    {
        std::vector<float> w = std::vector<float>(37, 0.5f);
        std::vector<double> b = std::vector<double>(3, -0.25);
        xoptim::stepper<xoptim::adamw> step{xoptim::adamw(), xoptim::stepper_options{}};

        explicit guarded_run(int nan_at)
        {
            step.optimizer().schedule("lr", xoptim::linear(0.1, 0.01, 4));
            for (int t = 0; t < 4; ++t)
            {
                std::vector<float> gw(w.size());
                std::vector<double> gb(b.size());
                for (std::size_t i = 0; i < gw.size(); ++i)
                {
                    gw[i] = float(std::sin(double(t * 50 + int(i))));
                }
                for (std::size_t i = 0; i < gb.size(); ++i)
                {
                    gb[i] = std::cos(double(t + int(i)));
                }
                if (t == nan_at)
                {
                    gw[36] = std::numeric_limits<float>::quiet_NaN();  // the tail of a SIMD batch
                    EXPECT_FALSE(step(std::tie(w, b), std::tie(gw, gb)));
                    gw[36] = std::numeric_limits<float>::infinity();
                    EXPECT_FALSE(step(std::tie(w, b), std::tie(gw, gb)));
                    gw[36] = float(std::sin(double(t * 50 + 36)));
                }
                EXPECT_TRUE(step(std::tie(w, b), std::tie(gw, gb)));
            }
        }
    };

    TEST(stepper, a_non_finite_gradient_skips_exactly_that_step)
    {
        const guarded_run clean(-1);
        for (int nan_at : {0, 2})
        {
            const guarded_run skipped(nan_at);
            EXPECT_EQ(skipped.step.skipped_steps(), 2u);
            EXPECT_EQ(skipped.step.optimizer().step_count(), 4u);
            EXPECT_EQ(skipped.w, clean.w);  // bit-identical: the schedule did not move either
            EXPECT_EQ(skipped.b, clean.b);
            for (const char* name : {"0", "1"})
            {
                const auto& x = clean.step.optimizer().state().at(name);
                const auto& y = skipped.step.optimizer().state().at(name);
                ASSERT_EQ(x.bytes, y.bytes);
                EXPECT_EQ(std::memcmp(x.data.get(), y.data.get(), x.bytes), 0) << name;
            }
        }
        EXPECT_EQ(clean.step.skipped_steps(), 0u);
    }

    TEST(stepper, the_raise_policy_names_the_first_bad_parameter_and_changes_nothing)
    {
        std::vector<float> w(20, 1.0f), b(4, 1.0f), gw(20, 0.5f), gb(4, 0.5f);
        xoptim::stepper_options o;
        o.on_non_finite = xoptim::non_finite::raise;
        xoptim::stepper step(xoptim::adamw(), o);
        gb[3] = -std::numeric_limits<float>::infinity();
        gw[19] = std::numeric_limits<float>::quiet_NaN();
        try
        {
            step(std::make_tuple(xoptim::named("weight", w), xoptim::named("bias", b)), std::tie(gw, gb));
            FAIL() << "no error";
        }
        catch (const xoptim::non_finite_error& e)
        {
            EXPECT_STREQ(e.what(), "xoptim::stepper: parameter 'weight': gradient holds NaN or Inf; step not taken");
        }
        EXPECT_EQ(w, std::vector<float>(20, 1.0f));
        EXPECT_EQ(b, std::vector<float>(4, 1.0f));
        EXPECT_TRUE(step.optimizer().state().empty());

        // Refused before the optimizer's first step: the stepper is as new, and the next
        // call may pass another set (the weight alone).
        gw[19] = 0.5f;
        EXPECT_TRUE(step(xoptim::named("weight", w), gw));
        EXPECT_EQ(step.optimizer().state().size(), 1u);
    }

    // A refused call leaves last_norm() as the last step set it (it held the refused
    // gradient's NaN before).
    TEST(stepper, a_refused_call_keeps_the_last_norm)
    {
        std::vector<float> w(4, 1.0f), g(4, 0.5f);
        xoptim::stepper_options o;
        o.on_non_finite = xoptim::non_finite::raise;
        o.clip_global_norm = 10;
        xoptim::stepper step(xoptim::adamw(), o);
        EXPECT_TRUE(step(xoptim::named("w", w), g));
        EXPECT_EQ(step.last_norm(), 1.0);
        g[2] = std::numeric_limits<float>::quiet_NaN();
        EXPECT_THROW(step(xoptim::named("w", w), g), xoptim::non_finite_error);
        EXPECT_EQ(step.last_norm(), 1.0);
    }

    // With accumulation, raise refuses the micro-batch that holds NaN or Inf before it
    // enters the sums: the call changes nothing, and the cycle goes on as if it had not
    // been made (the same bits as a stepper that never saw it).
    TEST(stepper, the_raise_policy_refuses_a_bad_micro_batch_before_it_is_added)
    {
        std::vector<float> w(20, 1.0f), clean_w = w, gw(20, 0.5f), bad = gw;
        bad[7] = std::numeric_limits<float>::quiet_NaN();
        xoptim::stepper_options o;
        o.accumulate = 3;
        o.on_non_finite = xoptim::non_finite::raise;
        xoptim::stepper step(xoptim::adamw(), o), clean(xoptim::adamw(), o);
        const auto named = [](std::vector<float>& x) { return std::make_tuple(xoptim::named("weight", x)); };
        EXPECT_FALSE(step(named(w), std::tie(gw)));
        EXPECT_FALSE(clean(named(clean_w), std::tie(gw)));
        const std::vector<float> sums(step.accumulators()[0].state<float>(0),
                                      step.accumulators()[0].state<float>(0) + 20);
        try
        {
            step(named(w), std::tie(bad));
            ADD_FAILURE() << "no error";
        }
        catch (const xoptim::non_finite_error& e)
        {
            EXPECT_STREQ(e.what(), "xoptim::stepper: parameter 'weight': gradient holds NaN or Inf; micro-batch not "
                                   "added (1 of 3 pending)");
        }
        EXPECT_EQ(step.pending_micro_batches(), 1u);
        EXPECT_EQ(std::vector<float>(step.accumulators()[0].state<float>(0),
                                     step.accumulators()[0].state<float>(0) + 20),
                  sums);
        for (std::size_t call = 0; call < 2; ++call)
        {
            std::vector<float> g(20, 0.25f * float(call + 1));
            EXPECT_EQ(step(named(w), std::tie(g)), call == 1);
            EXPECT_EQ(clean(named(clean_w), std::tie(g)), call == 1);
        }
        EXPECT_EQ(w, clean_w);
        EXPECT_NE(w, std::vector<float>(20, 1.0f));
    }

    TEST(stepper, the_ignore_policy_lets_nan_through_as_torch_does)
    {
        std::vector<float> w(3, 1.0f), g = {0.5f, std::numeric_limits<float>::quiet_NaN(), 0.5f};
        xoptim::stepper_options o;
        o.on_non_finite = xoptim::non_finite::ignore;
        xoptim::stepper step(xoptim::sgd({0.1}), o);
        EXPECT_TRUE(step(w, g));
        EXPECT_TRUE(std::isnan(w[1]));
        EXPECT_TRUE(std::isnan(step.last_norm()));  // not computed
    }

    // With clipping the NaN norm reaches every gradient: torch's clip_coef is NaN and
    // clamp(max=1) keeps it, so clip_grad_norm_ multiplies every gradient by NaN.
    TEST(stepper, the_ignore_policy_with_clipping_scales_every_gradient_by_nan_as_torch_does)
    {
        std::vector<float> w(3, 0.0f), g = {std::numeric_limits<float>::quiet_NaN(), 1.0f, 2.0f};
        xoptim::stepper_options o;
        o.clip_global_norm = 1;
        o.on_non_finite = xoptim::non_finite::ignore;
        xoptim::stepper step(xoptim::sgd({1.0}), o);
        EXPECT_TRUE(step(w, g));
        for (float x : w)
        {
            EXPECT_TRUE(std::isnan(x));
        }
        EXPECT_TRUE(std::isnan(step.last_norm()));
    }

    // Overlapping views are refused whenever they come: also when a view keeps its start
    // and grows into the next one's memory, before the optimizer has state (a first
    // cycle accumulated by the caller) or after a skipped step.
    TEST(stepper, a_view_grown_into_its_neighbour_is_refused)
    {
        std::vector<float> buf(16, 1.0f), g12(12, 0.5f), g8(8, 0.5f), bad(8, 0.5f);
        bad[0] = std::numeric_limits<float>::quiet_NaN();
        const float* gp = g12.data();
        const std::string overlap = "xoptim::stepper: parameter '1': parameter '1' shares memory with parameter '0'";
        {
            xoptim::stepper_options o;
            o.accumulate = 2;
            o.caller_accumulates = true;
            xoptim::stepper st(xoptim::sgd({0.1}), o);
            EXPECT_FALSE(st(std::make_tuple(xoptim::view(buf.data(), {8}), xoptim::view(buf.data() + 8, {8})),
                            std::make_tuple(xoptim::view(gp, {8}), xoptim::view(static_cast<const float*>(g8.data()), {8}))));
            EXPECT_EQ(xoptim_test::message_of([&] {
                          st(std::make_tuple(xoptim::view(buf.data(), {12}), xoptim::view(buf.data() + 8, {8})),
                             std::make_tuple(xoptim::view(gp, {12}), xoptim::view(static_cast<const float*>(g8.data()), {8})));
                      }),
                      overlap);
        }
        {
            xoptim::stepper st(xoptim::sgd({0.1}));
            EXPECT_FALSE(st(std::make_tuple(xoptim::view(buf.data(), {8}), xoptim::view(buf.data() + 8, {8})),
                            std::make_tuple(xoptim::view(gp, {8}), xoptim::view(static_cast<const float*>(bad.data()), {8}))));
            EXPECT_EQ(st.skipped_steps(), 1u);
            EXPECT_EQ(xoptim_test::message_of([&] {
                          st(std::make_tuple(xoptim::view(buf.data(), {12}), xoptim::view(buf.data() + 8, {8})),
                             std::make_tuple(xoptim::view(gp, {12}), xoptim::view(static_cast<const float*>(g8.data()), {8})));
                      }),
                      overlap);
        }
        EXPECT_EQ(buf, std::vector<float>(16, 1.0f));
    }

    TEST(stepper, accumulating_into_the_callers_buffers_is_the_same_step_without_accumulators)
    {
        std::vector<float> own(45, 0.25f), callers(45, 0.25f), sum(45, 0.0f);
        xoptim::stepper_options o;
        o.accumulate = 3;
        o.clip_global_norm = 0.5;
        xoptim::stepper a(xoptim::adamw(), o);
        o.caller_accumulates = true;
        xoptim::stepper b(xoptim::adamw(), o);
        for (int call = 0; call < 9; ++call)
        {
            std::vector<float> g(45);
            for (std::size_t i = 0; i < g.size(); ++i)
            {
                g[i] = float(std::sin(0.3 * double(call * 45 + int(i))));
                sum[i] += g[i];
            }
            EXPECT_EQ(a(own, g), call % 3 == 2);
            EXPECT_EQ(b(callers, sum), call % 3 == 2);
            if (call % 3 == 2)
            {
                std::fill(sum.begin(), sum.end(), 0.0f);
            }
            EXPECT_EQ(own, callers) << "call " << call;
        }
        EXPECT_EQ(a.accumulators().size(), 1u);
        EXPECT_TRUE(b.accumulators().empty());
        EXPECT_EQ(a.optimizer().step_count(), 3u);
    }

    TEST(stepper, clipping_by_value_clamps_each_element)
    {
        std::vector<double> p(5, 0.0), g = {-3.0, -0.5, 0.0, 0.25, 7.0};
        xoptim::stepper_options o;
        o.clip_value = 1.0;
        xoptim::stepper step(xoptim::sgd({1.0}), o);
        step(p, g);
        EXPECT_EQ(p, (std::vector<double>{1.0, 0.5, 0.0, -0.25, -1.0}));
    }

    TEST(stepper, bad_options_are_named)
    {
        xoptim::stepper_options o;
        o.clip_global_norm = -1;
        EXPECT_THROW(
            {
                try
                {
                    xoptim::stepper step(xoptim::adamw(), o);
                }
                catch (const std::invalid_argument& e)
                {
                    EXPECT_STREQ(e.what(), "xoptim::stepper: clip_global_norm must be >= 0 and finite (got -1)");
                    throw;
                }
            },
            std::invalid_argument);
        o = {};
        o.accumulate = 0;
        EXPECT_THROW(xoptim::stepper(xoptim::adamw(), o), std::invalid_argument);
    }

    // The reduction: lengths around the SIMD and block edges, unaligned starts, and the
    // same bits for any number of threads.
    TEST(reduce_gradients, sums_squares_in_double_and_finds_non_finite_values)
    {
        std::vector<float> data(70000 + 3);
        for (std::size_t i = 0; i < data.size(); ++i)
        {
            data[i] = float(std::sin(double(i)) * 3.0);
        }
        std::vector<double> scratch;
        for (std::size_t offset : {0u, 1u, 3u})
        {
            for (std::size_t n : {0u, 1u, 15u, 31u, 32u, 33u, 65536u, 70000u})
            {
                xoptim::job_list<float> jobs;
                xoptim::tensor_slots<float> s;
                s.grad = data.data() + offset;
                s.size = n;
                jobs.push_back(s);
                long double want = 0;
                for (std::size_t i = 0; i < n; ++i)
                {
                    want += (long double)s.grad[i] * s.grad[i];
                }
                const xoptim::grad_stats got = xoptim::reduce_gradients(jobs, scratch);
                EXPECT_NEAR(got.sum_squares, double(want), 1e-13 * double(want)) << n << " at " << offset;
                EXPECT_TRUE(got.finite);
            }
        }
        xoptim::job_list<float> jobs;
        xoptim::tensor_slots<float> s;
        s.grad = data.data();
        s.size = data.size();
        jobs.push_back(s);
        data[data.size() - 1] = std::numeric_limits<float>::infinity();
        EXPECT_FALSE(xoptim::reduce_gradients(jobs, scratch).finite);
        data[data.size() - 1] = 0;
        data[40] = std::numeric_limits<float>::quiet_NaN();
        EXPECT_FALSE(xoptim::reduce_gradients(jobs, scratch).finite);
        data[40] = 0;
        EXPECT_TRUE(xoptim::reduce_gradients(jobs, scratch).finite);
    }

    TEST(reduce_gradients, any_thread_count_gives_the_same_bits)
    {
        std::vector<double> a(300001), b(1234);
        for (std::size_t i = 0; i < a.size(); ++i)
        {
            a[i] = std::cos(double(i) * 0.01);
        }
        for (std::size_t i = 0; i < b.size(); ++i)
        {
            b[i] = 1.0 / double(i + 1);
        }
        xoptim::job_list<double> jobs;
        for (auto* v : {&b, &a, &b})
        {
            xoptim::tensor_slots<double> s;
            s.grad = v->data();
            s.size = v->size();
            jobs.push_back(s);
        }
        std::vector<double> scratch;
        xoptim::set_parallel_threshold(1000);
        std::vector<double> sums;
        for (std::size_t threads : {1u, 2u, 3u})
        {
            xoptim::set_num_threads(threads);
            sums.push_back(xoptim::reduce_gradients(jobs, scratch).sum_squares);
        }
        xoptim::set_num_threads(1);
        xoptim::set_parallel_threshold(65536);
        EXPECT_EQ(sums[0], sums[1]);
        EXPECT_EQ(sums[0], sums[2]);
    }
}

namespace
{
    TEST(schedules, a_scheduled_value_out_of_range_or_needing_new_state_is_refused_before_any_change)
    {
        std::vector<float> w(8, 1.0f), g(8, 0.5f);
        xoptim::adamw adamw;
        adamw.schedule("lr", xoptim::linear(1e-3, -1e-3, 2));  // negative from step 2 on
        adamw.step(w, g);
        adamw.step(w, g);
        const auto w_before = w;
        try
        {
            adamw.step(w, g);
            FAIL() << "a negative lr was used";
        }
        catch (const std::invalid_argument& e)
        {
            EXPECT_STREQ(e.what(), "xoptim::adamw: lr must be >= 0 and finite (got -0.001) (the schedules' values for "
                                   "step 2)");
        }
        EXPECT_EQ(w, w_before);
        EXPECT_EQ(adamw.step_count(), 2u);

        xoptim::sgd sgd({0.1});
        sgd.schedule("momentum", xoptim::linear(0, 0.9, 4));  // no buffer on the first step
        sgd.step(w, g);
        const auto after_first = w;
        try
        {
            sgd.step(w, g);
            FAIL() << "momentum without a buffer";
        }
        catch (const std::invalid_argument& e)
        {
            EXPECT_NE(std::string(e.what()).find("xoptim::sgd: these options need 1 state tensors per parameter, the "
                                                 "state was made with 0"),
                      std::string::npos)
                << e.what();
            EXPECT_NE(std::string(e.what()).find("(the schedules' values for step 1)"), std::string::npos) << e.what();
        }
        EXPECT_EQ(w, after_first);
        EXPECT_EQ(sgd.options().momentum, 0.0);  // the last step's values, not the refused ones
    }
}

namespace
{
    // Found by review: each of these once went wrong.
    TEST(review, options_that_need_new_state_are_refused_not_crashed)
    {
        std::vector<float> w(8, 1.0f), g(8, 0.5f);
        xoptim::adamw opt;
        opt.step(w, g);
        auto o = opt.options();
        o.amsgrad = true;  // a third state tensor the state was made without
        EXPECT_THROW(opt.set_options(o), std::invalid_argument);
        EXPECT_FALSE(opt.options().amsgrad);
        opt.step(w, g);
        EXPECT_EQ(opt.step_count(), 2u);
    }

    TEST(review, a_failed_step_keeps_the_options_and_a_second_commit_steps_nothing)
    {
        std::vector<float> w(8, 1.0f), g(8, 0.5f), short_g(7, 0.5f);
        xoptim::adamw opt;
        opt.schedule("lr", xoptim::linear(1.0, 0.0, 10));
        opt.step(w, g);
        EXPECT_EQ(opt.options().lr, 1.0);
        EXPECT_THROW(opt.step(w, short_g), std::invalid_argument);
        EXPECT_EQ(opt.options().lr, 1.0);  // the last step's value, not step 1's
        const auto before = w;
        opt.commit();  // nothing prepared
        EXPECT_EQ(opt.step_count(), 1u);
        EXPECT_EQ(w, before);
    }

    TEST(review, init_makes_the_state_the_scheduled_values_need)
    {
        std::vector<float> w(8, 1.0f), g(8, 0.5f);
        xoptim::sgd sgd({0.1});  // momentum 0 in the options ...
        sgd.schedule("momentum", xoptim::constant(0.9));  // ... but 0.9 from step 0 on
        sgd.init(w);
        EXPECT_EQ(sgd.state()[0].count, 1u);
        sgd.step(w, g);
        EXPECT_EQ(sgd.step_count(), 1u);
    }

    TEST(review, the_stepper_refuses_reordered_parameters_and_transposed_gradients)
    {
        std::vector<float> a(6, 1.0f), b(6, 2.0f), ga(6, 0.5f), gb(6, 0.25f);
        xoptim::stepper step(xoptim::adamw(), xoptim::stepper_options{});
        step(std::make_tuple(xoptim::named("a", a), xoptim::named("b", b)), std::tie(ga, gb));
        try
        {
            step(std::make_tuple(xoptim::named("b", b), xoptim::named("a", a)), std::tie(gb, ga));
            FAIL() << "swapped parameters were accepted";
        }
        catch (const std::invalid_argument& e)
        {
            EXPECT_STREQ(e.what(), "xoptim::stepper: parameter 'b': found where 'a' was on the first call "
                                   "(parameters must keep their order)");
        }
        std::vector<float> p(6, 1.0f), q(6, 0.5f);
        xoptim::stepper_options o;
        o.accumulate = 2;
        xoptim::stepper acc(xoptim::adamw(), o);
        EXPECT_THROW(acc(xoptim::view(p.data(), {2, 3}), xoptim::view(static_cast<const float*>(q.data()), {3, 2})),
                     std::invalid_argument);
    }
}

namespace
{
    TEST(validation, a_step_checks_each_leaf_once_whoever_drives_it)
    {
        using xoptim_test::checks_per_leaf;
        auto p = xoptim_test::counted_tensors(7, 5, 1.0f);
        const auto g = xoptim_test::counted_tensors(7, 5, 0.5f);
        xoptim::adamw alone;
        xoptim::stepper st(xoptim::adamw{});
        xoptim::param_groups<xoptim::adamw> groups;
        groups.add("first", xoptim::name_matches({"0", "1", "2"}), xoptim::adamw{}).fallback("rest", xoptim::adamw{});
        xoptim::param_groups<xoptim::adamw> inner;
        inner.add("first", xoptim::name_matches({"0", "1", "2"}), xoptim::adamw{}).fallback("rest", xoptim::adamw{});
        xoptim::stepper over_groups(std::move(inner));
        for (int step = 0; step < 2; ++step)  // the first step (state made) and a later one
        {
            EXPECT_EQ(checks_per_leaf([&] { alone.step(p, g); }, 7), 1.0);
            EXPECT_EQ(checks_per_leaf([&] { st(p, g); }, 7), 1.0);
            EXPECT_EQ(checks_per_leaf([&] { groups.step(p, g); }, 7), 1.0);
            EXPECT_EQ(checks_per_leaf([&] { over_groups(p, g); }, 7), 1.0);
        }
        EXPECT_EQ(st.optimizer().step_count(), 2u);
        EXPECT_EQ(over_groups.optimizer().group("rest").step_count(), 2u);
    }

    // The stepper checks each leaf once and hands the optimizer lists it does not check
    // again: the errors are the stepper's, naming the parameter, and a refused step
    // changes nothing, before the state exists and after.
    TEST(validation, bad_input_through_the_stepper_is_named_and_changes_nothing)
    {
        std::vector<float> a(6, 1.0f), b(6, 2.0f), ga(6, 0.5f), gb(6, 0.25f), short_grad(5, 0.25f);
        const auto params = std::make_tuple(xoptim::named("a", a), xoptim::named("b", b));
        xoptim::stepper st(xoptim::adamw{});
        std::vector<float> ra = a, rb = b;
        xoptim::stepper reference(xoptim::adamw{});
        const auto refused = [&](const auto& grads, const char* message) {
            const auto a0 = a, b0 = b;
            const std::size_t steps = st.optimizer().step_count();
            const std::size_t state = st.optimizer().state().size();
            EXPECT_EQ(xoptim_test::message_of([&] { st(params, grads); }), message);
            EXPECT_EQ(a, a0);
            EXPECT_EQ(b, b0);
            EXPECT_EQ(st.optimizer().step_count(), steps);
            EXPECT_EQ(st.optimizer().state().size(), state);
        };
        const auto wrong_size = std::tie(ga, short_grad);
        const auto in_a = xoptim::view(static_cast<const float*>(a.data()), {6});
        const auto aliased = std::tie(ga, in_a);
        const auto in_b = xoptim::view(static_cast<const float*>(b.data()), {6});
        const auto own = std::tie(ga, in_b);
        for (int round = 0; round < 2; ++round)  // before the first step, then after one
        {
            refused(wrong_size, "xoptim::stepper: parameter 'b': gradient has 5 elements, parameter has 6");
            refused(aliased, "xoptim::stepper: parameter 'b': the gradient of 'b' shares memory with parameter 'a'");
            refused(own, "xoptim::stepper: parameter 'b': gradient and parameter share memory");
            std::fill(ga.begin(), ga.end(), 0.5f - 0.7f * float(round));  // a lost step would show
            EXPECT_TRUE(st(params, std::tie(ga, gb)));
            EXPECT_TRUE(reference(std::tie(ra, rb), std::tie(ga, gb)));
        }
        // The refused calls left no trace in the state: the same bits as good steps alone.
        EXPECT_EQ(a, ra);
        EXPECT_EQ(b, rb);
        EXPECT_EQ(st.optimizer().step_count(), 2u);
    }

    // The stepper carries shapes of at most 8 dimensions (tensor_view): a parameter with
    // more is refused by name, not stepped under a shortened shape (which moved half of
    // this one's elements), and an optimizer stepping it directly keeps its full shape.
    TEST(validation, the_stepper_refuses_a_parameter_of_more_than_eight_dimensions)
    {
        const std::vector<std::size_t> shape(9, 2);
        xt::xarray<float> p = xt::ones<float>(shape), g = xt::ones<float>(shape);
        xoptim::stepper st(xoptim::adafactor{});
        EXPECT_EQ(xoptim_test::message_of([&] { st(xoptim::named("w", p), g); }),
                  "xoptim::stepper: parameter 'w': parameter has 9 dimensions; the stepper, routers and checkpoints "
                  "take at most 8");
        EXPECT_EQ(p, xt::xarray<float>(xt::ones<float>(shape)));
        EXPECT_TRUE(st.optimizer().state().empty());
        EXPECT_EQ(xoptim_test::message_of([&] { (void)xoptim::tensor_view<float>::of(p); }),
                  "xoptim::view: at most 8 dimensions (got 9)");

        xoptim::adafactor direct;
        direct.step(p, g);
        EXPECT_EQ(direct.state()[0].shape, shape);
        EXPECT_TRUE(std::all_of(p.begin(), p.end(), [](float x) { return x != 1.0f; }));
    }

    // The optimizer reads the stepper's sums as the gradients, unchecked: a parameter
    // whose shape changed within a cycle is refused before anything is summed.
    TEST(validation, the_stepper_refuses_a_parameter_reshaped_within_a_cycle)
    {
        std::vector<float> p(6, 1.0f), g(6, 0.5f);
        xoptim::stepper_options o;
        o.accumulate = 2;
        xoptim::stepper acc(xoptim::adamw(), o);
        const auto g23 = xoptim::view(static_cast<const float*>(g.data()), {2, 3});
        const auto g32 = xoptim::view(static_cast<const float*>(g.data()), {3, 2});
        EXPECT_FALSE(acc(xoptim::view(p.data(), {2, 3}), g23));
        const auto sums = std::vector<float>(acc.accumulators()[0].state<float>(0),
                                             acc.accumulators()[0].state<float>(0) + 6);
        EXPECT_EQ(xoptim_test::message_of([&] { acc(xoptim::view(p.data(), {3, 2}), g32); }),
                  "xoptim::stepper: parameter '0' (float32 (3, 2)) does not fit its gradient accumulator (made for "
                  "'0': float32 (2, 3))");
        EXPECT_EQ(std::vector<float>(acc.accumulators()[0].state<float>(0), acc.accumulators()[0].state<float>(0) + 6),
                  sums);
        EXPECT_EQ(p, std::vector<float>(6, 1.0f));
        EXPECT_EQ(acc.pending_micro_batches(), 1u);
        EXPECT_TRUE(acc(xoptim::view(p.data(), {2, 3}), g23));
    }
}

namespace
{
    // A refusal of the optimizer's on a cycle's last call (a scheduled value out of range,
    // a Schedule-Free step in eval mode) changes nothing: the cycle's micro-batches stay
    // pending, and once the cause is mended the same call steps with the bits of a run
    // that was never refused. The micro-batches were dropped before.
    template <class Make, class Refuse, class Mend>
    void expect_last_call_refused_and_kept(Make make, Refuse refuse, Mend mend)
    {
        const auto run = [&](bool refused) {
            std::vector<float> w{0.5f, -1.0f, 2.0f}, b{0.25f, 0.75f};
            xoptim::stepper_options o;
            o.accumulate = 3;
            o.clip_global_norm = 1.0;
            auto step = make(o);
            const auto params = [&] { return std::make_tuple(xoptim::named("w", w), xoptim::named("b", b)); };
            for (int cycle = 0; cycle < 2; ++cycle)
            {
                for (int k = 0; k < 3; ++k)
                {
                    std::vector<float> gw{0.1f * float(k + 1), -0.3f, 0.2f * float(cycle + 1)};
                    std::vector<float> gb{-0.05f * float(k), 0.4f};
                    if (cycle == 1 && k == 2)  // both runs refuse and mend; one tries to step between
                    {
                        refuse(step, params());
                        if (refused)
                        {
                            const auto w0 = w;
                            EXPECT_ANY_THROW(step(params(), std::tie(gw, gb)));
                            EXPECT_EQ(step.pending_micro_batches(), 2u);
                            EXPECT_EQ(w, w0);
                        }
                        mend(step, params());
                    }
                    step(params(), std::tie(gw, gb));
                }
            }
            EXPECT_EQ(step.pending_micro_batches(), 0u);
            return std::make_pair(w, b);
        };
        EXPECT_EQ(run(true), run(false));
    }

    TEST(stepper, a_refused_last_call_keeps_the_cycle)
    {
        // lr scheduled negative, then right again (both runs end with the same schedule).
        expect_last_call_refused_and_kept(
            [](const xoptim::stepper_options& o) { return xoptim::stepper(xoptim::adamw(), o); },
            [](auto& step, auto&&) { step.optimizer().schedule("lr", xoptim::constant(-1.0)); },
            [](auto& step, auto&&) { step.optimizer().schedule("lr", xoptim::constant(1e-3)); });
        // Schedule-Free in eval mode, under a router: train() mends it.
        expect_last_call_refused_and_kept(
            [](const xoptim::stepper_options& o) {
                xoptim::routing r;
                r.add("sf", xoptim::name_matches({"w"})).fallback("adamw");
                return xoptim::stepper(xoptim::router(r, xoptim::adamw_schedulefree(), xoptim::adamw()), o);
            },
            [](auto& step, auto&& params) { step.optimizer().template optimizer<0>().eval(std::get<0>(params)); },
            [](auto& step, auto&& params) { step.optimizer().template optimizer<0>().train(std::get<0>(params)); });
    }
}
