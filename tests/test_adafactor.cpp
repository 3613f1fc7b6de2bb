// Adafactor (torch.optim.Adafactor, PyTorch >= 2.5) against tests/reference/
// trajectories_2026.json (a float64 transcription, tests/reference/ref2026/adafactor.py):
// 60 steps over matrices, vectors, rank-3 and rank-4 (factored over the last two
// dimensions), odd and 1-wide shapes, float and double, also the final statistics with
// their own shapes; thread-count invariance, bit-identical resume with the factored
// states saved in their own shapes, named errors, the stepper.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include <xoptim/io/checkpoint.hpp>
#include <xoptim/optim/router.hpp>
#include <xoptim/step/stepper.hpp>

#include "support/message_of.hpp"
#include "support/reference_2026.hpp"
#include "support/trajectory_2026.hpp"
#include "support/temp_dir.hpp"

namespace
{
    using xoptim_test::reference_case_2026;

    // The statistics after the last step, by the reference's names (torch's row_var
    // (..., R, 1) and col_var (..., 1, C) hold the same values as ours of shape[:-1] and
    // shape[:-2] + shape[-1:]; transformers' names are ours).
    template <class T>
    void expect_final_states(const reference_case_2026& c, const xoptim::state_store& state)
    {
        ASSERT_EQ(c.final_states.size(), state.size());
        for (std::size_t k = 0; k < state.size(); ++k)
        {
            for (const auto& [key, want] : c.final_states[k])
            {
                const std::size_t s = key == "row_var" || key == "exp_avg_sq_row"   ? 0
                                      : key == "col_var" || key == "exp_avg_sq_col" ? 1
                                      : key == "exp_avg"                            ? 3
                                                                                    : 2;
                const std::vector<double> got = state.values(state[k].name, s);
                ASSERT_EQ(got.size(), want.values.size()) << key;
                for (std::size_t i = 0; i < got.size(); ++i)
                {
                    const double err = std::abs(got[i] - want.values[i]) / std::max(std::abs(want.values[i]), 1e-30);
                    ASSERT_LE(err, 10 * xoptim_test::tolerance_2026<T>)
                        << c.name << " " << key << " of parameter " << k << " element " << i;
                }
            }
        }
    }

    class adafactor_trajectory : public ::testing::TestWithParam<reference_case_2026>
    {
    };

    TEST_P(adafactor_trajectory, matches_reference)
    {
        const reference_case_2026& c = GetParam();
        ASSERT_GE(c.steps, 50);
        if (c.dtype == "float32")
        {
            xoptim_test::replay_2026<float>(c, [&](const auto& opt) { expect_final_states<float>(c, opt.state()); });
        }
        else
        {
            xoptim_test::replay_2026<double>(c, [&](const auto& opt) { expect_final_states<double>(c, opt.state()); });
        }
    }

    INSTANTIATE_TEST_SUITE_P(reference, adafactor_trajectory, ::testing::ValuesIn(xoptim_test::cases_2026("adafactor")),
                             [](const auto& info) { return info.param.name; });

    // Matrices split over threads (many rows), a rank-3 stack, a vector, a double tensor.
    struct model
    {
        std::vector<float> w = std::vector<float>(300 * 257);
        std::vector<float> stack = std::vector<float>(3 * 40 * 33);
        std::vector<float> b = std::vector<float>(70001);
        std::vector<double> d = std::vector<double>(129 * 65);
        xoptim::tensor_view<float> vw = xoptim::view(w.data(), {300, 257});
        xoptim::tensor_view<float> vs = xoptim::view(stack.data(), {3, 40, 33});
        xoptim::tensor_view<float> vb = xoptim::view(b.data(), {70001});
        xoptim::tensor_view<double> vd = xoptim::view(d.data(), {129, 65});

        model(const model&) = delete;  // the views point into this model

        model()
        {
            fill(w, 1.0, 0);
            fill(stack, 1.5, 0);
            fill(b, 2.0, 0);
            fill(d, 3.0, 0);
        }

        template <class V>
        static void fill(V& v, double f, int t)
        {
            for (std::size_t i = 0; i < v.size(); ++i)
            {
                v[i] = static_cast<typename V::value_type>(std::sin(f * double(i + 1) + 0.1 * t));
            }
        }

        auto params()
        {
            return std::make_tuple(xoptim::named("w", vw), xoptim::named("stack", vs), xoptim::named("b", vb),
                                   xoptim::named("d", vd));
        }

        template <class Opt>
        void steps(Opt& opt, int from, int to)
        {
            std::vector<float> gw(w.size()), gs(stack.size()), gb(b.size());
            std::vector<double> gd(d.size());
            for (int t = from; t < to; ++t)
            {
                fill(gw, 0.7, t);
                fill(gs, 0.5, t);
                fill(gb, 0.3, t);
                fill(gd, 0.9, t);
                opt.step(params(), std::make_tuple(xoptim::view(gw.data(), {300, 257}), xoptim::view(gs.data(), {3, 40, 33}),
                                                   xoptim::view(gb.data(), {70001}), xoptim::view(gd.data(), {129, 65})));
            }
        }
    };

    // transformers' variant with its first moment (an element-wise state beside the
    // factored ones) and weight decay.
    xoptim::adafactor_transformers make_transformers()
    {
        xoptim::adafactor_transformers_options o;
        o.beta1 = 0.9;
        o.weight_decay = 0.01;
        return xoptim::adafactor_transformers(o);
    }

    template <class Make>
    void expect_thread_invariance(Make make)
    {
        const std::size_t before = xoptim::num_threads();
        const std::size_t threshold = xoptim::parallel_threshold();
        xoptim::set_parallel_threshold(1024);
        std::vector<model> models(3);
        for (std::size_t n : {1, 2, 3})
        {
            xoptim::set_num_threads(n);
            auto opt = make();
            models[n - 1].steps(opt, 0, 4);
        }
        xoptim::set_num_threads(before);
        xoptim::set_parallel_threshold(threshold);
        for (std::size_t n : {2, 3})
        {
            EXPECT_EQ(models[n - 1].w, models[0].w) << n << " threads";
            EXPECT_EQ(models[n - 1].stack, models[0].stack) << n << " threads";
            EXPECT_EQ(models[n - 1].b, models[0].b) << n << " threads";
            EXPECT_EQ(models[n - 1].d, models[0].d) << n << " threads";
        }
        EXPECT_NE(models[0].w, model().w);
    }

    TEST(adafactor, the_same_bits_for_any_thread_count)
    {
        expect_thread_invariance([] { return xoptim::adafactor(); });
        expect_thread_invariance(make_transformers);
    }

    class adafactor_transformers_checkpoint : public xoptim_test::temp_dir_test
    {
    };

    TEST_F(adafactor_transformers_checkpoint, resumes_bit_for_bit)
    {
        const std::string file = (dir_ / "adafactor_transformers.safetensors").string();
        model whole;
        auto a = make_transformers();
        whole.steps(a, 0, 5);
        model first;
        auto b = make_transformers();
        first.steps(b, 0, 3);
        EXPECT_EQ(b.state().at("w").state_shape(3), (std::vector<std::size_t>{300, 257}));  // exp_avg
        xoptim::save_checkpoint(file, first.params(), b);
        model resumed;
        auto c = make_transformers();
        xoptim::load_checkpoint(file, resumed.params(), c);
        resumed.steps(c, 3, 5);
        EXPECT_EQ(resumed.w, whole.w);
        EXPECT_EQ(resumed.stack, whole.stack);
        EXPECT_EQ(resumed.b, whole.b);
        EXPECT_EQ(resumed.d, whole.d);
    }

    TEST(adafactor_transformers, bad_hyperparameters_are_named)
    {
        const auto refused = [](auto change, const char* field) {
            xoptim::adafactor_transformers_options o;
            change(o);
            const std::string what = xoptim_test::message_of([&] { xoptim::adafactor_transformers{o}; });
            EXPECT_NE(what.find("xoptim::adafactor_transformers: "), std::string::npos) << what;
            EXPECT_NE(what.find(field), std::string::npos) << what;
        };
        refused([](auto& o) { o.lr = 0.01; }, "lr");  // with relative_step
        refused([](auto& o) { o.relative_step = false; }, "lr");  // no lr then
        refused([](auto& o) { o.clip_threshold = 0; }, "clip_threshold");
        refused([](auto& o) { o.decay_rate = 0.1; }, "decay_rate");
        refused([](auto& o) { o.beta1 = 1.0; }, "beta1");
        refused([](auto& o) { o.eps[1] = -1; }, "eps[1]");
        refused([](auto& o) { o.relative_step = false; o.lr = 0.01; o.warmup_init = true; }, "warmup_init");
    }

    class adafactor_checkpoint : public xoptim_test::temp_dir_test
    {
    };

    TEST_F(adafactor_checkpoint, resumes_bit_for_bit_with_statistics_in_their_own_shapes)
    {
        const std::string file = (dir_ / "adafactor.safetensors").string();
        model whole;
        xoptim::adafactor a;
        whole.steps(a, 0, 5);

        model first;
        xoptim::adafactor b;
        first.steps(b, 0, 3);
        EXPECT_EQ(b.state().at("w").state_shape(0), (std::vector<std::size_t>{300}));
        EXPECT_EQ(b.state().at("w").state_shape(1), (std::vector<std::size_t>{257}));
        EXPECT_EQ(b.state().at("stack").state_shape(0), (std::vector<std::size_t>{3, 40}));
        EXPECT_EQ(b.state().at("stack").state_shape(1), (std::vector<std::size_t>{3, 33}));
        EXPECT_EQ(b.state().at("b").state_size(0), 0u);
        EXPECT_EQ(b.state().at("b").state_shape(2), (std::vector<std::size_t>{70001}));
        // The factored states are R + C values per matrix, not a parameter's size.
        EXPECT_LT(b.report().state_bytes, (300u + 257u + 3 * (40 + 33) + 70001u) * 4 + (129u + 65u) * 8 + 1);
        xoptim::save_checkpoint(file, first.params(), b);
        model resumed;
        xoptim::adafactor c;
        xoptim::load_checkpoint(file, resumed.params(), c);
        EXPECT_EQ(c.step_count(), 3u);
        EXPECT_EQ(c.state().values("stack", 1), b.state().values("stack", 1));
        resumed.steps(c, 3, 5);
        EXPECT_EQ(resumed.w, whole.w);
        EXPECT_EQ(resumed.stack, whole.stack);
        EXPECT_EQ(resumed.b, whole.b);
        EXPECT_EQ(resumed.d, whole.d);
    }

    TEST(adafactor, bad_hyperparameters_are_named)
    {
        const auto refused = [](auto change, const char* field) {
            xoptim::adafactor_options o;
            change(o);
            const std::string what = xoptim_test::message_of([&] { xoptim::adafactor{o}; });
            EXPECT_NE(what.find("xoptim::adafactor: "), std::string::npos) << what;
            EXPECT_NE(what.find(field), std::string::npos) << what;
        };
        refused([](auto& o) { o.lr = -1; }, "lr");
        refused([](auto& o) { o.beta2_decay = 0.5; }, "beta2_decay");
        refused([](auto& o) { o.eps[0] = -1.0; }, "eps[0]");
        refused([](auto& o) { o.eps[1] = std::nullopt; }, "eps[1]");
        refused([](auto& o) { o.d = 0.5; }, "d");
        refused([](auto& o) { o.weight_decay = std::numeric_limits<double>::infinity(); }, "weight_decay");
    }

    // The stepper's gradient transform reaches every read of g (the engine's passes and
    // the column sums): a clipped step equals a plain step on the clipped gradients.
    TEST(adafactor, through_the_stepper)
    {
        xoptim::stepper_options so;
        so.clip_value = 0.5;
        xoptim::stepper<xoptim::adafactor> s(xoptim::adafactor(), so);
        model m1, m2;
        std::vector<float> gw(m1.w.size()), gs(m1.stack.size()), gb(m1.b.size());
        std::vector<double> gd(m1.d.size());
        model::fill(gw, 0.7, 0);
        model::fill(gs, 0.5, 0);
        model::fill(gb, 0.3, 0);
        model::fill(gd, 0.9, 0);
        const auto grads = [&] {
            return std::make_tuple(xoptim::view(gw.data(), {300, 257}), xoptim::view(gs.data(), {3, 40, 33}),
                                   xoptim::view(gb.data(), {70001}), xoptim::view(gd.data(), {129, 65}));
        };
        ASSERT_TRUE(s(m1.params(), grads()));
        for (auto* v : {&gw, &gs, &gb})
        {
            for (auto& x : *v) x = std::min(0.5f, std::max(-0.5f, x));
        }
        for (auto& x : gd) x = std::min(0.5, std::max(-0.5, x));
        xoptim::adafactor plain;
        plain.step(m2.params(), grads());
        EXPECT_EQ(m1.w, m2.w);
        EXPECT_EQ(m1.stack, m2.stack);
        EXPECT_EQ(m1.b, m2.b);
        EXPECT_EQ(m1.d, m2.d);
    }

    // Parameter groups: each group's statistics and norms are its own tensors', so the
    // groups step as two optimizers over their parameters alone would.
    TEST(adafactor, in_parameter_groups)
    {
        xoptim::adafactor_options slow;
        slow.lr = 1e-3;
        const auto make = [&] {
            xoptim::param_groups<xoptim::adafactor> g;
            g.add("matrices", xoptim::name_matches({"w", "stack"}), xoptim::adafactor(slow));
            g.fallback("rest", xoptim::adafactor());
            return g;
        };
        auto groups = make();
        model m;
        m.steps(groups, 0, 2);

        model alone;
        xoptim::adafactor matrices(slow), rest;
        std::vector<float> gw(alone.w.size()), gs(alone.stack.size()), gb(alone.b.size());
        std::vector<double> gd(alone.d.size());
        for (int t = 0; t < 2; ++t)
        {
            model::fill(gw, 0.7, t);
            model::fill(gs, 0.5, t);
            model::fill(gb, 0.3, t);
            model::fill(gd, 0.9, t);
            matrices.step(std::make_tuple(xoptim::named("w", alone.vw), xoptim::named("stack", alone.vs)),
                          std::make_tuple(xoptim::view(gw.data(), {300, 257}), xoptim::view(gs.data(), {3, 40, 33})));
            rest.step(std::make_tuple(xoptim::named("b", alone.vb), xoptim::named("d", alone.vd)),
                      std::make_tuple(xoptim::view(gb.data(), {70001}), xoptim::view(gd.data(), {129, 65})));
        }
        EXPECT_EQ(m.w, alone.w);
        EXPECT_EQ(m.stack, alone.stack);
        EXPECT_EQ(m.b, alone.b);
        EXPECT_EQ(m.d, alone.d);
        EXPECT_NE(m.w, model().w);
    }

    TEST(adafactor, refuses_coded_storage_with_a_message)
    {
        xoptim::adafactor opt;
        xoptim::storage_options s;
        s.states = xoptim::state_storage::blockwise_8bit;
        s.min_8bit_size = 1;
        opt.set_storage(s);
        model m;
        std::vector<float> gw(m.w.size()), gs(m.stack.size()), gb(m.b.size());
        std::vector<double> gd(m.d.size());
        const std::string what = xoptim_test::message_of<std::logic_error>([&] {
            opt.step(m.params(), std::make_tuple(xoptim::view(gw.data(), {300, 257}), xoptim::view(gs.data(), {3, 40, 33}),
                                                 xoptim::view(gb.data(), {70001}), xoptim::view(gd.data(), {129, 65})));
        });
        EXPECT_NE(what.find("xoptim::adafactor"), std::string::npos) << what;
        EXPECT_TRUE(opt.state().empty());
        EXPECT_EQ(m.b, model().b);
    }
}
