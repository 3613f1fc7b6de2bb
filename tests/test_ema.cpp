// The EMA of the weights against the float64 transcription of timm's ModelEmaV3
// (tests/reference/ref2026/ema.py) over torch.optim.AdamW, and its own checks: threads,
// checkpoints, swap, bf16 shadows.
#include <gtest/gtest.h>

#include <xoptim/optim/ema.hpp>

#include "../tools/optimizer_json.hpp"
#include "support/message_of.hpp"
#include "support/optimizer_checks.hpp"

namespace
{
    using xoptim_test::reference_case_2026;

    template <class T>
    void replay(const reference_case_2026& c)
    {
        ASSERT_EQ(c.base.at("optimizer"), "adamw");
        xoptim::adamw opt(xoptim::tools::detail::read_options<xoptim::adamw_options>("adamw", c.base.at("hyper")));
        xoptim::ema average(xoptim::tools::detail::read_options<xoptim::ema_options>("ema", c.hyper));
        xoptim_test::case_tensors<T> x(c);
        double worst = 0;
        for (int t = 1; t <= c.steps; ++t)
        {
            x.set_grads(c, t);
            opt.step(x.param_views, x.grad_views);
            average.update(x.param_views, opt.step_count());
            if (c.ema_checkpoints.count(t) == 0)
            {
                continue;
            }
            // The parameters are AdamW's (bit for bit torch's); the shadow is the EMA's.
            xoptim_test::expect_close_scaled(x.params, c.checkpoints.at(t), xoptim_test::tolerance_2026(c),
                                             c.name + " parameters at step " + std::to_string(t));
            xoptim_test::case_tensors<T> shadow(c);
            average.copy_to(shadow.param_views);
            worst = std::max(worst, xoptim_test::expect_close_scaled(shadow.params, c.ema_checkpoints.at(t),
                                                                     xoptim_test::tolerance_2026(c),
                                                                     c.name + " shadow at step " + std::to_string(t)));
        }
        std::printf("%-40s worst scaled error of the shadow %.3g\n", c.name.c_str(), worst);
    }

    class ema_trajectory : public ::testing::TestWithParam<reference_case_2026>
    {
    };

    TEST_P(ema_trajectory, matches_reference)
    {
        const reference_case_2026& c = GetParam();
        c.dtype == "float32" ? replay<float>(c) : replay<double>(c);
    }

    INSTANTIATE_TEST_SUITE_P(reference, ema_trajectory, ::testing::ValuesIn(xoptim_test::cases_2026("ema")),
                             [](const auto& info) { return info.param.name; });

    TEST(ema, has_every_reference_case)
    {
        EXPECT_EQ(xoptim_test::cases_2026("ema").size(), 7u);
    }

    xoptim::ema_options warm(xoptim::ema_shadow shadow = xoptim::ema_shadow::same)
    {
        xoptim::ema_options o;
        o.decay = 0.99;
        o.use_warmup = true;
        o.shadow_dtype = shadow;
        return o;
    }

    // 12 AdamW steps, the EMA updated after each; the shadow copied out.
    std::vector<std::vector<float>> averaged(const xoptim::ema_options& o)
    {
        xoptim::adamw opt;
        xoptim::ema average(o);
        auto p = xoptim_test::check_tensors<float>(6, 0);
        for (int t = 1; t <= 12; ++t)
        {
            opt.step(p, xoptim_test::check_tensors<float>(6, t));
            average.update(p, opt.step_count());
        }
        average.copy_to(p);
        return p;
    }

    TEST(ema, threads_change_no_bits)
    {
        std::vector<std::vector<std::vector<float>>> results;
        for (std::size_t threads : {1, 2, 3})
        {
            xoptim::set_num_threads(threads);
            xoptim::set_parallel_threshold(64);
            results.push_back(averaged(warm()));
            results.push_back(averaged(warm(xoptim::ema_shadow::bfloat16)));
        }
        xoptim::set_num_threads(std::max(1u, std::thread::hardware_concurrency()));
        xoptim::set_parallel_threshold(std::size_t(1) << 16);
        EXPECT_EQ(results[0], results[2]);
        EXPECT_EQ(results[0], results[4]);
        EXPECT_EQ(results[1], results[3]);
        EXPECT_EQ(results[1], results[5]);
    }

    TEST(ema, a_bf16_shadow_tracks_the_float_one)
    {
        const auto f = averaged(warm());
        const auto b = averaged(warm(xoptim::ema_shadow::bfloat16));
        double worst = 0;
        for (std::size_t k = 0; k < f.size(); ++k)
        {
            for (std::size_t i = 0; i < f[k].size(); ++i)
            {
                worst = std::max(worst, std::abs(double(b[k][i]) - double(f[k][i])));
            }
        }
        EXPECT_GT(worst, 0.0);
        // Values up to about 1.5, where a bf16 ulp is 2^-7 = 7.8e-3; measured 8.0e-3 after
        // 12 roundings of the shadow.
        EXPECT_LE(worst, 2e-2);
        xoptim::ema bf(warm(xoptim::ema_shadow::bfloat16));
        std::vector<float> p(4, 1.0f);
        bf.update(p, 1);
        EXPECT_EQ(bf.state()[0].states[0].format, xoptim::slot_format::bf16);
        EXPECT_THROW(bf.swap(p), std::logic_error);
    }

    TEST(ema, swap_twice_restores_the_parameters)
    {
        xoptim::ema average(warm());
        auto p = xoptim_test::check_tensors<float>(7, 0);
        average.update(p, 1);
        p = xoptim_test::check_tensors<float>(7, 1);
        average.update(p, 2);
        const auto trained = p;
        average.swap(p);
        EXPECT_NE(p, trained);
        std::vector<std::vector<float>> shadow = xoptim_test::check_tensors<float>(7, 0);
        average.copy_to(shadow);
        EXPECT_EQ(shadow, trained);  // after the swap the state holds the parameters
        average.swap(p);
        EXPECT_EQ(p, trained);
    }

    TEST(ema, the_first_update_copies_the_parameters_at_any_step)
    {
        // timm's shadow starts as a copy of the model; an EMA started late, or updated
        // every few steps, starts from the parameters of its first update.
        xoptim::ema_options o;
        o.decay = 0.999;
        xoptim::ema late(o);
        std::vector<float> p = {3.0f, -1.5f, 0.25f};
        late.update(p, 100);
        std::vector<float> out(3);
        late.copy_to(out);
        EXPECT_EQ(out, p);
        std::vector<float> q = {4.0f, -2.0f, 0.5f};
        late.update(q, 101);
        late.copy_to(out);
        for (std::size_t i = 0; i < p.size(); ++i)
        {
            EXPECT_EQ(out[i], p[i] + float(1 - 0.999) * (q[i] - p[i])) << i;  // lerp with weight < 0.5
        }
    }

    // init makes the shadows as update's first call does: copies of the parameters
    // (timm's copy of the model when the average is made), not zeros.
    TEST(ema, init_makes_the_shadows_copies_of_the_parameters)
    {
        xoptim::ema_options o;
        o.decay = 0.9;
        std::vector<float> p = {3.0f, -1.5f, 0.25f}, out(3);
        xoptim::ema made(o);
        made.init(p);
        made.copy_to(out);
        EXPECT_EQ(out, p);
        made.update(p, 10);
        made.copy_to(out);
        EXPECT_EQ(out, p);  // the average of equal values
    }

    // A checkpoint of an average saved before its first update holds no shadows: it loads
    // as no average (whatever the loading one had), and the next update copies the
    // parameters, as it would have without the checkpoint.
    TEST(ema, one_saved_before_the_first_update_loads_as_no_average)
    {
        const std::string file = "ema_unstarted.safetensors";
        xoptim::ema_options o;
        o.decay = 0.9;
        std::vector<float> p = {3.0f, -1.5f, 0.25f}, ones(3, 1.0f), out(3);
        xoptim::save_checkpoint(file, p, xoptim::ema(o));
        xoptim::ema fresh(o), started(o);
        started.update(ones, 1);
        xoptim::load_checkpoint(file, p, fresh);
        xoptim::load_checkpoint(file, p, started);
        std::remove(file.c_str());
        for (xoptim::ema* loaded : {&fresh, &started})
        {
            EXPECT_THROW(loaded->copy_to(out), std::logic_error);
            loaded->update(p, 10);
            loaded->copy_to(out);
            EXPECT_EQ(out, p);
        }
    }

    // A file of bf16 shadows into an average of the parameters' type: the message names
    // what sets it.
    TEST(ema, a_checkpoint_of_other_shadows_is_refused_naming_shadow_dtype)
    {
        const std::string file = "ema_bf16.safetensors";
        std::vector<float> p = {3.0f, -1.5f, 0.25f};
        xoptim::ema bf16(warm(xoptim::ema_shadow::bfloat16));
        bf16.update(p, 1);
        xoptim::save_checkpoint(file, p, bf16);
        xoptim::ema same(warm());
        const std::string message = xoptim_test::message_of<std::runtime_error>(
            [&] { xoptim::load_checkpoint(file, p, same); });
        std::remove(file.c_str());
        EXPECT_NE(message.find("shadow_dtype"), std::string::npos) << message;
        EXPECT_TRUE(same.state().empty());
    }

    TEST(ema, swap_and_copy_to_refuse_before_the_first_update)
    {
        xoptim::ema average;
        std::vector<float> p = {1.0f, 2.0f};
        EXPECT_THROW(average.swap(p), std::logic_error);
        EXPECT_THROW(average.copy_to(p), std::logic_error);
        EXPECT_EQ(p, (std::vector<float>{1.0f, 2.0f}));
    }

    TEST(ema, swap_refuses_every_shadow_not_kept_as_its_parameter)
    {
        // A shadow in 8 bits (set_storage), and a bf16 parameter with a float shadow.
        xoptim::ema coded;
        xoptim::storage_options st;
        st.states = xoptim::state_storage::blockwise_8bit;
        st.min_8bit_size = 1;
        coded.set_storage(st);
        std::vector<float> p(300, 1.001f);
        coded.update(p, 1);
        const auto before = p;
        try
        {
            coded.swap(p);
            ADD_FAILURE() << "swap with an 8-bit shadow";
        }
        catch (const std::logic_error& e)
        {
            EXPECT_EQ(std::string(e.what()), "xoptim::ema: swap would round parameter '0' or its shadow (an 8-bit "
                                             "shadow): use copy_to on a copy of the model");
        }
        EXPECT_EQ(p, before);
        xoptim::ema bf;
        std::vector<xoptim::bfloat16> b(3, xoptim::bfloat16(1.0f));
        bf.update(b, 1);
        EXPECT_THROW(bf.swap(b), std::logic_error);
        // shadow_dtype cannot change after construction.
        auto o = bf.options();
        o.shadow_dtype = xoptim::ema_shadow::bfloat16;
        EXPECT_THROW(bf.set_options(o), std::invalid_argument);
        o.shadow_dtype = xoptim::ema_shadow::same;
        o.decay = 0.5;
        bf.set_options(o);
        EXPECT_EQ(bf.options().decay, 0.5);
    }

    TEST(ema, decay_follows_timm)
    {
        xoptim::ema_options o;
        o.decay = 0.99;
        o.min_decay = 0.5;
        o.update_after_step = 5;
        o.use_warmup = true;
        o.warmup_gamma = 2;
        xoptim::ema average(o);
        EXPECT_EQ(average.decay_at(6), 0.0);  // max(0, 6 - 5 - 1) = 0: a copy
        EXPECT_EQ(average.decay_at(7), std::max(std::min(1 - std::pow(1 + 1 / 2.0, -2.0 / 3.0), 0.99), 0.5));
        EXPECT_EQ(average.decay_at(100000), 0.99);
        o.use_warmup = false;
        EXPECT_EQ(xoptim::ema(o).decay_at(7), 0.99);
    }

    TEST(ema, resumes_bit_for_bit_from_a_checkpoint)
    {
        const std::string file = "ema_resume.safetensors";
        for (auto shadow : {xoptim::ema_shadow::same, xoptim::ema_shadow::bfloat16})
        {
            xoptim::adamw opt;
            xoptim::ema average(warm(shadow));
            auto p = xoptim_test::check_tensors<float>(6, 0);
            for (int t = 1; t <= 5; ++t)
            {
                opt.step(p, xoptim_test::check_tensors<float>(6, t));
                average.update(p, opt.step_count());
            }
            xoptim::save_checkpoint(file, p, average);
            xoptim::ema resumed(warm(shadow));
            auto q = xoptim_test::check_tensors<float>(9, 0);
            xoptim::load_checkpoint(file, q, resumed);
            std::remove(file.c_str());
            EXPECT_EQ(q, p);
            for (int t = 6; t <= 8; ++t)
            {
                opt.step(p, xoptim_test::check_tensors<float>(6, t));
                average.update(p, opt.step_count());
                resumed.update(p, opt.step_count());
            }
            auto a = p, b = p;
            average.copy_to(a);
            resumed.copy_to(b);
            EXPECT_EQ(a, b);
        }
    }

    TEST(ema, refuses_bad_hyperparameters_by_name)
    {
        using xoptim_test::expect_refused;
        xoptim::ema_options o;
        o.decay = 1.5;
        expect_refused<xoptim::ema>(o, "decay");
        o = {};
        o.min_decay = -0.1;
        expect_refused<xoptim::ema>(o, "min_decay");
        o = {};
        o.warmup_gamma = 0;
        expect_refused<xoptim::ema>(o, "warmup_gamma");
        o = {};
        o.warmup_power = -1;
        expect_refused<xoptim::ema>(o, "warmup_power");
    }
}
