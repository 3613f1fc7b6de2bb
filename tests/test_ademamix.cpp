// AdEMAMix against the float64 transcription of apple/ml-ademamix
// (tests/reference/ref2026/ademamix.py), and the checks every optimizer gets.
#include <gtest/gtest.h>

#include <xoptim/optim/ademamix.hpp>

#include "../tools/optimizer_json.hpp"
#include "support/optimizer_checks.hpp"

namespace
{
    using xoptim_test::reference_case_2026;

    class ademamix_trajectory : public ::testing::TestWithParam<reference_case_2026>
    {
    };

    TEST_P(ademamix_trajectory, matches_reference)
    {
        const reference_case_2026& c = GetParam();
        // The options as xoptim-replay reads them (tools/optimizer_json.hpp).
        xoptim::ademamix opt(xoptim::tools::detail::read_options<xoptim::ademamix_options>("ademamix", c.hyper));
        if (c.dtype == "float32")
        {
            xoptim_test::replay_case<float>(c, opt);
        }
        else
        {
            xoptim_test::replay_case<double>(c, opt);
        }
    }

    INSTANTIATE_TEST_SUITE_P(reference, ademamix_trajectory, ::testing::ValuesIn(xoptim_test::cases_2026("ademamix")),
                             [](const auto& info) { return info.param.name; });

    TEST(ademamix, has_every_reference_case)
    {
        EXPECT_EQ(xoptim_test::cases_2026("ademamix").size(), 6u);
    }

    xoptim::ademamix_options warmed()
    {
        xoptim::ademamix_options o;
        o.lr = 1e-2;
        o.alpha_warmup = 7;
        o.beta3_warmup = 9;
        o.weight_decay = 0.01;
        return o;
    }

    // The warmups may be None in the reference: JSON null reads as 0, none.
    TEST(ademamix, json_null_warmups_are_none)
    {
        const auto o = xoptim::tools::detail::read_options<xoptim::ademamix_options>("ademamix",
                                                                                     {{"alpha_warmup", nullptr},
                                                                                      {"beta3_warmup", nullptr}});
        EXPECT_EQ(o.alpha_warmup, 0u);
        EXPECT_EQ(o.beta3_warmup, 0u);
        EXPECT_EQ(xoptim::tools::detail::read_options<xoptim::ademamix_options>("ademamix", {{"alpha_warmup", 7u}})
                      .alpha_warmup,
                  7u);
    }

    TEST(ademamix, threads_change_no_bits)
    {
        xoptim_test::expect_thread_invariant([] { return xoptim::ademamix(warmed()); });
    }

    TEST(ademamix, resumes_bit_for_bit)
    {
        for (auto storage : {xoptim::state_storage::native, xoptim::state_storage::blockwise_8bit})
        {
            xoptim_test::expect_resume_bit_identical([] { return xoptim::ademamix(warmed()); },
                                                     "ademamix_resume.safetensors", storage);
        }
        xoptim::ademamix_options no_fast = warmed();
        no_fast.betas[0] = 0;
        xoptim_test::expect_resume_bit_identical([&] { return xoptim::ademamix(no_fast); },
                                                 "ademamix_resume.safetensors");
    }

    TEST(ademamix, steps_through_groups_and_stepper)
    {
        xoptim_test::expect_groups_and_stepper([] { return xoptim::ademamix(warmed()); });
    }

    TEST(ademamix, low_memory_states_track_float)
    {
        // 20 steps of lr 1e-2 move a parameter by up to ~0.2; 8-bit and bf16 moments stay
        // within 5e-3 of float ones (measured: 3.0e-3 for 8-bit).
        xoptim_test::expect_low_memory_tracks_native([] { return xoptim::ademamix(warmed()); }, 5e-3);
    }

    TEST(ademamix, beta1_zero_keeps_no_fast_state)
    {
        xoptim::ademamix_options o;
        o.betas[0] = 0;
        xoptim::ademamix opt(o);
        std::vector<float> p(5, 1.0f), g(5, 0.5f);
        opt.step(p, g);
        EXPECT_EQ(opt.state()[0].count, 2u);
        o.betas[0] = 0.9;
        EXPECT_THROW(opt.set_options(o), std::invalid_argument);  // exp_avg_fast did not start at step 1
    }

    TEST(ademamix, a_schedule_on_alpha_replaces_the_warmup)
    {
        // The reference's alpha warmup at t equals a linear schedule from 0 evaluated at k = t - 1 + 1.
        xoptim::ademamix_options o = warmed();
        o.beta3_warmup = 0;
        xoptim::ademamix with_warmup(o);
        o.alpha_warmup = 0;
        xoptim::ademamix scheduled(o);
        scheduled.schedule("alpha", xoptim::schedule(
                                          [a = o.alpha](std::size_t k) { return k + 1 < 7 ? double(k + 1) / 7 * a : a; },
                                          "the warmup, shifted"));
        auto p = xoptim_test::check_tensors<float>(2, 0);
        auto q = p;
        for (int t = 1; t <= 10; ++t)
        {
            with_warmup.step(p, xoptim_test::check_tensors<float>(2, t));
            scheduled.step(q, xoptim_test::check_tensors<float>(2, t));
        }
        EXPECT_EQ(p, q);
    }

    TEST(ademamix, refuses_bad_hyperparameters_by_name)
    {
        using xoptim_test::expect_refused;
        auto o = xoptim::ademamix_options{};
        o.lr = -1;
        expect_refused<xoptim::ademamix>(o, "lr");
        o = {};
        o.betas[2] = 1;
        expect_refused<xoptim::ademamix>(o, "betas[2]");
        o = {};
        o.betas[0] = -0.1;
        expect_refused<xoptim::ademamix>(o, "betas[0]");
        o = {};
        o.alpha = std::nan("");
        expect_refused<xoptim::ademamix>(o, "alpha");
        o = {};
        o.eps = 0;
        expect_refused<xoptim::ademamix>(o, "eps");
        o = {};
        o.weight_decay = -1;
        expect_refused<xoptim::ademamix>(o, "weight_decay");
    }
}
