// Adafactor (torch.optim.Adafactor, PyTorch >= 2.5) against tests/reference/
// trajectories_2026.json (a float64 transcription, tests/reference/ref2026/adafactor.py):
// 60 steps over matrices, vectors, rank-3 and rank-4 (factored over the last two
// dimensions), odd and 1-wide shapes, float and double, also the final statistics with
// their own shapes; thread-count invariance, bit-identical resume with the factored
// states saved in their own shapes, named errors, the stepper.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <optional>
#include <utility>

#include <xoptim/io/checkpoint.hpp>
#include <xoptim/optim/router.hpp>
#include <xoptim/step/stepper.hpp>

#include "support/message_of.hpp"
#include "support/reference_2026.hpp"
#include "support/resume_check.hpp"
#include "support/trajectory_2026.hpp"
#include "support/temp_dir.hpp"

namespace
{
    using xoptim::slot_format;
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
        const auto with = [](const auto& hyper, auto&& f) { xoptim::tools::with_adafactor(hyper, f); };
        if (c.dtype == "float32")
        {
            xoptim_test::replay_2026<float>(c, with,
                                            [&](const auto& opt) { expect_final_states<float>(c, opt.state()); });
        }
        else
        {
            xoptim_test::replay_2026<double>(c, with,
                                             [&](const auto& opt) { expect_final_states<double>(c, opt.state()); });
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

    // What `run(opt)` returns (the parameters after some steps) on 1, 2 and 3 threads
    // with `threshold` (the tensors split between the threads): the same bits. Restores
    // the thread settings; returns the 1-thread result.
    template <class Make, class Run>
    auto expect_thread_invariance(Make make, Run run, std::size_t threshold)
    {
        const std::size_t before = xoptim::num_threads();
        const std::size_t saved_threshold = xoptim::parallel_threshold();
        xoptim::set_parallel_threshold(threshold);
        std::vector<decltype(run(std::declval<decltype(make())&>()))> results;
        for (std::size_t n : {1, 2, 3})
        {
            xoptim::set_num_threads(n);
            auto opt = make();
            results.push_back(run(opt));
        }
        xoptim::set_num_threads(before);
        xoptim::set_parallel_threshold(saved_threshold);
        for (std::size_t n : {2, 3})
        {
            EXPECT_EQ(results[n - 1], results[0]) << n << " threads";
        }
        return results[0];
    }

    // The model's four tensors after 4 steps.
    template <class Make>
    void expect_thread_invariance(Make make)
    {
        const auto first = expect_thread_invariance(
            make,
            [](auto& opt) {
                model m;
                m.steps(opt, 0, 4);
                return std::make_tuple(m.w, m.stack, m.b, m.d);
            },
            1024);
        EXPECT_NE(std::get<0>(first), model().w);
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

    /*************************************************
     * bf16 parameters, 8-bit and bf16 element states *
     *************************************************/

    // 1 x 1, 3 x 17, a rank-3 stack, 40 x 512 (rows of whole 8-bit blocks: an 8-bit first
    // moment), 20 x 300 (rows that split blocks), vectors of 1 and 4097 (beside
    // min_8bit_size 4096).
    const std::vector<std::vector<std::size_t>> low_shapes = {{1, 1}, {3, 17}, {2, 5, 7}, {40, 512}, {20, 300}, {1}, {4097}};

    template <class T>
    std::vector<std::vector<T>> low_tensors(int seed, int t)
    {
        std::vector<std::vector<T>> x;
        for (std::size_t k = 0; k < low_shapes.size(); ++k)
        {
            std::size_t n = 1;
            for (std::size_t d : low_shapes[k])
            {
                n *= d;
            }
            x.emplace_back(n);
            for (std::size_t i = 0; i < n; ++i)
            {
                x.back()[i] = T(float(std::sin(0.37 * double(i + 1) * double(seed + k + 1) + 1.3 * t)));
            }
        }
        return x;
    }

    template <class T>
    std::vector<xoptim::tensor_view<T>> views_of(std::vector<std::vector<T>>& x)
    {
        std::vector<xoptim::tensor_view<T>> v;
        for (std::size_t k = 0; k < x.size(); ++k)
        {
            v.emplace_back(x[k].data(), low_shapes[k]);
        }
        return v;
    }

    // The tensors by name, for one call: low_views(views_of(x)) (the views live to the
    // end of the full expression), or of views that outlive the tuple.
    template <class T, std::size_t... K>
    auto low_views(std::vector<xoptim::tensor_view<T>>& v, std::index_sequence<K...>)
    {
        static const char* names[] = {"a", "b", "c", "d", "e", "f", "g"};
        return std::make_tuple(xoptim::named(names[K], v[K])...);
    }

    template <class T>
    auto low_views(std::vector<xoptim::tensor_view<T>>& v)
    {
        return low_views(v, std::make_index_sequence<7>{});
    }

    template <class T>
    auto low_views(std::vector<xoptim::tensor_view<T>>&& v)
    {
        return low_views(v, std::make_index_sequence<7>{});
    }

    // low_tensors<float>(seed, 0) with views of their own, for checks that keep the
    // named tuple (xoptim_test::expect_resume_bit_identical_with).
    struct low_parameters
    {
        explicit low_parameters(int seed)
            : x(low_tensors<float>(seed, 0)), views(views_of(x))
        {
        }

        low_parameters(const low_parameters&) = delete;  // the views point into x

        std::vector<std::vector<float>> x;
        std::vector<xoptim::tensor_view<float>> views;

        bool operator==(const low_parameters& o) const
        {
            return x == o.x;
        }
    };

    // Gradients of step t, in [-1, 1); scaled by 1e-3 from step 3 on, so Adafactor's
    // relative steps fall below bf16's resolution and the rounding decides.
    template <class T>
    std::vector<std::vector<T>> low_grads(int t)
    {
        auto g = low_tensors<float>(7, t);
        std::vector<std::vector<T>> out(g.size());
        for (std::size_t k = 0; k < g.size(); ++k)
        {
            for (float x : g[k])
            {
                out[k].push_back(T(t >= 3 ? 1e-3f * x : x));
            }
        }
        return out;
    }

    // make_transformers() without the first moment.
    xoptim::adafactor_transformers transformers_without_moment()
    {
        xoptim::adafactor_transformers_options o = make_transformers().options();
        o.beta1 = std::nullopt;
        return xoptim::adafactor_transformers(o);
    }

    xoptim::adafactor torch_with_decay()
    {
        xoptim::adafactor_options o;
        o.weight_decay = 0.1;
        return xoptim::adafactor(o);
    }

    // bf16 parameters against the float path on the same values: each step, a float
    // optimizer steps the parameters as the bf16 one holds them (hi + lo where
    // compensated) with the bf16 gradients, and the bf16 step must write that float result
    // rounded as the storage says: nearest-even; stochastically with element i's bits
    // hash(stream_key(seed, step, tensor), i) (a matrix's rows continue its stream);
    // compensated hi = bf16(x), lo = bf16(x - hi). The gradient goes through a transform.
    template <class Opt>
    void expect_bf16_parameters_follow_the_float_path(Opt bf, Opt fl, xoptim::bf16_rounding rounding)
    {
        namespace codec = xoptim::codec;
        xoptim::storage_options s;
        s.parameters = rounding;
        s.seed = 5;
        bf.set_storage(s);
        auto p = low_tensors<xoptim::bfloat16>(0, 0);
        const auto before = p;
        const xoptim::grad_transform transform{0.5, 0.3};
        for (int t = 0; t < 6; ++t)
        {
            auto gb = low_grads<xoptim::bfloat16>(t);
            std::vector<std::vector<float>> q(p.size()), gf(p.size());
            for (std::size_t k = 0; k < p.size(); ++k)
            {
                const std::uint16_t* lo = bf.state().empty() ? nullptr : bf.state()[k].compensation;
                for (std::size_t i = 0; i < p[k].size(); ++i)
                {
                    q[k].push_back(lo != nullptr ? float(p[k][i]) + xoptim::bfloat16::to_float(lo[i]) : float(p[k][i]));
                    gf[k].push_back(float(gb[k][i]));
                }
            }
            bf.step(low_views(views_of(p)), low_views(views_of(gb)), transform);
            fl.step(low_views(views_of(q)), low_views(views_of(gf)), transform);
            for (std::size_t k = 0; k < p.size(); ++k)
            {
                const std::uint32_t key = codec::stream_key(s.seed, std::uint64_t(t), k);
                const std::uint16_t* lo = bf.state()[k].compensation;
                for (std::size_t i = 0; i < p[k].size(); ++i)
                {
                    const float x = q[k][i];
                    const std::uint16_t hi = rounding == xoptim::bf16_rounding::stochastic
                                                 ? codec::round_stochastic(x, codec::hash(key, std::uint32_t(i)) >> 16)
                                                 : xoptim::bfloat16::round_nearest_even(x);
                    ASSERT_EQ(p[k][i].bits, hi) << Opt::name << " step " << t << " tensor " << k << " element " << i;
                    if (rounding == xoptim::bf16_rounding::compensated)
                    {
                        ASSERT_EQ(lo[i], xoptim::bfloat16::round_nearest_even(x - xoptim::bfloat16::to_float(hi)))
                            << Opt::name << " step " << t << " tensor " << k << " element " << i;
                    }
                }
                for (std::size_t j = 0; j < bf.state()[k].count; ++j)  // the states stay float: the same values
                {
                    ASSERT_EQ(bf.state().values(bf.state()[k].name, j), fl.state().values(fl.state()[k].name, j))
                        << Opt::name << " step " << t << " tensor " << k << " state " << j;
                }
            }
        }
        std::size_t moved = 0;
        for (std::size_t k = 0; k < p.size(); ++k)
        {
            for (std::size_t i = 0; i < p[k].size(); ++i)
            {
                moved += p[k][i].bits != before[k][i].bits;
            }
        }
        EXPECT_GT(moved, 1000u);
    }

    TEST(adafactor_low_memory, bf16_parameters_are_the_float_step_rounded)
    {
        for (auto r : {xoptim::bf16_rounding::nearest_even, xoptim::bf16_rounding::stochastic,
                       xoptim::bf16_rounding::compensated})
        {
            expect_bf16_parameters_follow_the_float_path(torch_with_decay(), torch_with_decay(), r);
            expect_bf16_parameters_follow_the_float_path(make_transformers(), make_transformers(), r);
            expect_bf16_parameters_follow_the_float_path(transformers_without_moment(),
                                                         transformers_without_moment(), r);
        }
    }

    // Stochastic rounding where every row of a matrix computes the same float update:
    // rows drawing the same bits would round alike.
    TEST(adafactor_low_memory, stochastic_rounding_differs_between_equal_rows)
    {
        const std::size_t rows = 64, cols = 64;
        std::vector<xoptim::bfloat16> p(rows * cols), g(rows * cols);
        for (std::size_t i = 0; i < p.size(); ++i)
        {
            p[i] = xoptim::bfloat16(1.0f + 0.01f * float(i % cols));
            g[i] = xoptim::bfloat16(float(std::sin(0.3 * double(i % cols))));
        }
        xoptim::adafactor_options o;
        o.lr = 1e-4;  // updates far below bf16's resolution at 1
        xoptim::adafactor opt(o);
        xoptim::storage_options s;
        s.parameters = xoptim::bf16_rounding::stochastic;
        opt.set_storage(s);
        opt.step(xoptim::view(p.data(), {rows, cols}), xoptim::view(g.data(), {rows, cols}));
        std::size_t like_first = 0;
        for (std::size_t r = 1; r < rows; ++r)
        {
            like_first += std::equal(p.begin() + r * cols, p.begin() + (r + 1) * cols, p.begin(),
                                     [](auto a, auto b) { return a.bits == b.bits; });
        }
        EXPECT_LT(like_first, 4u);
    }

    // 8-bit or bf16 element states (torch: the vectors' variance; transformers: its
    // variance and first moment), the factored statistics float: formats as documented,
    // and 20 steps within the states' rounding of the float run.
    template <class Make>
    void expect_low_memory_states_track_float(Make make, bool first_moment)
    {
        const auto run = [&](xoptim::state_storage storage, auto check) {
            xoptim::storage_options s;
            s.states = storage;
            auto opt = make();
            opt.set_storage(s);
            auto p = low_tensors<float>(0, 0);
            for (int t = 0; t < 20; ++t)
            {
                auto g = low_grads<float>(t % 3);
                opt.step(low_views(views_of(p)), low_views(views_of(g)));
            }
            check(opt.state());
            return std::make_pair(p, opt.report().state_bytes);
        };
        const auto native = run(xoptim::state_storage::native, [](const auto&) {});
        for (auto storage : {xoptim::state_storage::bf16, xoptim::state_storage::blockwise_8bit})
        {
            const bool eight = storage == xoptim::state_storage::blockwise_8bit;
            const auto low = run(storage, [&](const xoptim::state_store& st) {
                for (std::size_t k = 0; k < st.size(); ++k)
                {
                    const auto& e = st[k];
                    const bool matrix = e.shape.size() >= 2;
                    for (std::size_t j = 0; j < e.count; ++j)
                    {
                        slot_format want = slot_format::native;
                        if (e.extents[j] == xoptim::state_extent::elements)
                        {
                            // 8-bit from 4096 elements; bf16 for the second moment (divided
                            // by) and for a matrix's first moment where its rows split blocks.
                            const bool q8 = j == 3 && (!matrix || e.shape.back() % 256 == 0);
                            want = !eight || e.size >= 4096 ? (eight && q8 ? slot_format::q8_signed : slot_format::bf16)
                                                            : slot_format::native;
                        }
                        EXPECT_EQ(int(e.states[j].format), int(want)) << e.name << " state " << j;
                    }
                }
                // Each case is there: the 4097 vector's second moment bf16; the first moment
                // 8-bit for it and the 40 x 512 matrix, bf16 for the 20 x 300 one.
                if (eight)
                {
                    EXPECT_EQ(st.at("g").states[2].format, slot_format::bf16);
                    EXPECT_EQ(st.at("g").states[3].format, first_moment ? slot_format::q8_signed : slot_format::native);
                    EXPECT_EQ(st.at("d").states[3].format, first_moment ? slot_format::q8_signed : slot_format::native);
                    EXPECT_EQ(st.at("e").states[3].format, first_moment ? slot_format::bf16 : slot_format::native);
                }
            });
            double worst = 0;
            for (std::size_t k = 0; k < native.first.size(); ++k)
            {
                for (std::size_t i = 0; i < native.first[k].size(); ++i)
                {
                    worst = std::max(worst, std::abs(double(low.first[k][i]) - double(native.first[k][i])));
                }
            }
            EXPECT_LE(worst, 2e-3) << xoptim::to_string(storage);
            EXPECT_GT(worst, 0.0) << xoptim::to_string(storage) << ": the states should round somewhere";
            EXPECT_LT(low.second, native.second) << xoptim::to_string(storage);
        }
    }

    TEST(adafactor_low_memory, element_states_track_float_and_statistics_stay_float)
    {
        expect_low_memory_states_track_float(torch_with_decay, false);
        expect_low_memory_states_track_float(make_transformers, true);
        expect_low_memory_states_track_float(transformers_without_moment, false);
    }

    // bf16 parameters (stochastic) with 8-bit states on 1, 2 and 3 threads, the rows of
    // the 40 x 512 matrix and the 4097 vector split between them: the same bits.
    TEST(adafactor_low_memory, the_same_bits_for_any_thread_count)
    {
        const auto with_storage = [](auto make) {
            return [make] {
                auto opt = make();
                xoptim::storage_options s;
                s.states = xoptim::state_storage::blockwise_8bit;
                s.parameters = xoptim::bf16_rounding::stochastic;
                s.seed = 9;
                opt.set_storage(s);
                return opt;
            };
        };
        const auto run = [](auto& opt) {
            auto p = low_tensors<xoptim::bfloat16>(0, 0);
            for (int t = 0; t < 4; ++t)
            {
                auto g = low_grads<xoptim::bfloat16>(t);
                opt.step(low_views(views_of(p)), low_views(views_of(g)));
            }
            std::vector<std::uint16_t> bits;
            for (const auto& x : p)
            {
                for (const auto& v : x)
                {
                    bits.push_back(v.bits);
                }
            }
            return bits;
        };
        expect_thread_invariance(with_storage(torch_with_decay), run, 256);
        expect_thread_invariance(with_storage(make_transformers), run, 256);
    }

    // 8-bit (or bf16) element states: saved as they are stored, each in its own shape,
    // and a resumed run equals a straight one bit for bit (checkpoints take float and
    // double parameters).
    class adafactor_low_memory_checkpoint : public xoptim_test::temp_dir_test
    {
    };

    TEST_F(adafactor_low_memory_checkpoint, resumes_bit_for_bit)
    {
        const std::string file = (dir_ / "adafactor_low_memory.safetensors").string();
        for (auto states : {xoptim::state_storage::blockwise_8bit, xoptim::state_storage::bf16})
        {
            xoptim::storage_options s;
            s.states = states;
            const auto check = [&](auto make) {
                xoptim_test::expect_resume_bit_identical_with(
                    make, file, s, [](int seed) { return low_parameters(seed); },
                    [](low_parameters& p) { return low_views(p.views); },
                    [](auto& opt, low_parameters& p, int t) {
                        auto g = low_grads<float>(t);
                        opt.step(low_views(p.views), low_views(views_of(g)));
                    });
            };
            check(torch_with_decay);
            check(make_transformers);
        }
        // The state in its own shapes: the 40 x 512 matrix's statistics and its 8-bit moment.
        auto opt = make_transformers();
        xoptim::storage_options s;
        s.states = xoptim::state_storage::blockwise_8bit;
        opt.set_storage(s);
        auto p = low_tensors<xoptim::bfloat16>(0, 0);
        auto g = low_grads<xoptim::bfloat16>(0);
        opt.step(low_views(views_of(p)), low_views(views_of(g)));
        EXPECT_EQ(opt.state().at("d").state_shape(0), (std::vector<std::size_t>{40}));
        EXPECT_EQ(opt.state().at("d").state_shape(1), (std::vector<std::size_t>{512}));
        EXPECT_EQ(opt.state().at("d").state_shape(3), (std::vector<std::size_t>{40, 512}));
        EXPECT_EQ(opt.state().at("d").states[3].format, slot_format::q8_signed);
    }
}
