// Cautious AdamW and Lion against the float64 transcriptions of timm's adamw.py and
// C-Optim's c_lion.py (tests/reference/ref2026/cautious.py), and the checks every
// optimizer gets.
#include <cmath>
#include <cstddef>
#include <iterator>
#include <limits>
#include <memory>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "../tools/optimizer_json.hpp"
#include "support/optimizer_checks.hpp"

namespace
{
    using xoptim_test::reference_case_2026;

    std::vector<reference_case_2026> cautious_cases()
    {
        std::vector<reference_case_2026> out;
        for (auto& c : xoptim_test::load_reference_cases_2026())
        {
            if (c.hyper.value("caution", false))
            {
                out.push_back(std::move(c));
            }
        }
        return out;
    }

    template <class Opt>
    void replay(const reference_case_2026& c)
    {
        Opt opt(xoptim::tools::detail::read_options<typename Opt::options_type>(c.optimizer, c.hyper));
        if (c.dtype == "float32")
        {
            xoptim_test::replay_case<float>(c, opt);
        }
        else
        {
            xoptim_test::replay_case<double>(c, opt);
        }
    }

    class cautious_trajectory : public ::testing::TestWithParam<reference_case_2026>
    {
    };

    TEST_P(cautious_trajectory, matches_reference)
    {
        const reference_case_2026& c = GetParam();
        if (c.optimizer == "adamw")
        {
            replay<xoptim::adamw>(c);
        }
        else
        {
            ASSERT_EQ(c.optimizer, "lion");
            replay<xoptim::lion>(c);
        }
    }

    INSTANTIATE_TEST_SUITE_P(reference, cautious_trajectory, ::testing::ValuesIn(cautious_cases()),
                             [](const auto& info) { return info.param.name; });

    TEST(cautious, has_every_reference_case)
    {
        EXPECT_EQ(cautious_cases().size(), 10u);
    }

    xoptim::adamw cautious_adamw(bool amsgrad = false,
                                 xoptim::caution_normalization how = xoptim::caution_normalization::mean)
    {
        xoptim::adamw_options o;
        o.lr = 1e-2;
        o.caution = true;
        o.amsgrad = amsgrad;
        o.caution_normalize = how;
        return xoptim::adamw(o);
    }

    xoptim::lion cautious_lion(xoptim::caution_normalization how = xoptim::caution_normalization::mean)
    {
        xoptim::lion_options o;
        o.lr = 1e-3;
        o.weight_decay = 0.1;
        o.caution = true;
        o.caution_normalize = how;
        return xoptim::lion(o);
    }

    TEST(cautious, threads_change_no_bits)
    {
        xoptim_test::expect_thread_invariant([] { return cautious_adamw(true); });
        xoptim_test::expect_thread_invariant(
            [] { return cautious_lion(xoptim::caution_normalization::count_plus_one); });
    }

    TEST(cautious, resumes_bit_for_bit_and_saves_no_mask)
    {
        for (auto storage : {xoptim::state_storage::native, xoptim::state_storage::blockwise_8bit})
        {
            xoptim_test::expect_resume_bit_identical([] { return cautious_adamw(); }, "cautious_resume.safetensors",
                                                     storage);
            xoptim_test::expect_resume_bit_identical([] { return cautious_lion(); }, "cautious_resume.safetensors",
                                                     storage);
        }
        xoptim_test::expect_resume_bit_identical([] { return cautious_adamw(true); }, "cautious_resume.safetensors");
        // No mask is kept: a cautious AdamW's state and checkpoint hold what a plain AdamW's hold.
        auto with = cautious_adamw();
        std::vector<float> p(9, 0.5f), g(9, 0.25f);
        with.step(p, g);
        EXPECT_EQ(with.state()[0].count, 2u);
        EXPECT_EQ(xoptim::detail::kept_states(with), 2u);
        EXPECT_EQ(xoptim::detail::kept_states(cautious_adamw(true)), 3u);
        EXPECT_EQ(xoptim::detail::kept_states(cautious_lion()), 1u);
    }

    TEST(cautious, steps_through_groups_and_stepper)
    {
        xoptim_test::expect_groups_and_stepper([] { return cautious_adamw(); });
        xoptim_test::expect_groups_and_stepper([] { return cautious_lion(); });
    }

    TEST(cautious, low_memory_states_track_float)
    {
        // 20 steps of lr 1e-2 (AdamW) and 1e-3 (Lion, whose steps are ±lr * factor).
        xoptim_test::expect_low_memory_tracks_native([] { return cautious_adamw(); }, 5e-3);
        xoptim_test::expect_low_memory_tracks_native([] { return cautious_lion(); }, 5e-3);
    }

    TEST(cautious, masks_exactly_where_update_and_gradient_disagree)
    {
        // One step of Lion from m = 0 with b1 = 0.5: c = g / 2, sign(c) = sign(g) everywhere
        // but where g = 0: mask 1 on the 3 non-zero elements, 0 on the zero gradient.
        xoptim::lion_options o;
        o.lr = 1;
        o.betas = {0.5, 0.5};
        o.caution = true;
        o.caution_normalize = xoptim::caution_normalization::count_plus_one;
        xoptim::lion lion(o);
        std::vector<double> p(4, 0.0), g = {0.5, -2.0, 0.0, 1.0};
        lion.step(p, g);
        const double factor = 4.0 / (3.0 + 1.0);  // numel / (count + 1)
        EXPECT_EQ(p, (std::vector<double>{-factor, factor, 0.0, -factor}));
        // mean: 1 / max(3/4, 1e-3).
        o.caution_normalize = xoptim::caution_normalization::mean;
        xoptim::lion mean(o);
        std::vector<double> q(4, 0.0);
        mean.step(q, g);
        EXPECT_EQ(q, (std::vector<double>{-4.0 / 3.0, 4.0 / 3.0, 0.0, -4.0 / 3.0}));
        EXPECT_EQ(xoptim::detail::caution_factor<float>(0, 5, xoptim::caution_normalization::mean), 1.0f / 1e-3f);
        EXPECT_EQ(xoptim::detail::caution_factor<float>(0, 0, xoptim::caution_normalization::count_plus_one), 0.0f);
    }

    // One cautious Lion step from m = 0 (c = g / 2) over zeros, signed zeros, the
    // smallest subnormals (whose halves round to 0), infinities, NaN and ordinary values,
    // repeated past a batch and into an odd tail, against the step written one element at
    // a time as C-Optim writes it: the count of sign(c) * g > 0, the factor numel /
    // (count + 1), and p = 0 - lr * (sign(c) * (agrees ? factor : 0)). NaN gives NaN;
    // every other element the same bits, signed zeros included (the step counts by
    // compares and folds lr into the factor).
    template <class T>
    void expect_lion_counts_edges_as_the_formula(std::size_t n, double lr)
    {
        const T tiny = std::numeric_limits<T>::denorm_min();
        const T inf = std::numeric_limits<T>::infinity();
        const T values[] = {T(1), T(-1), T(0), -T(0), tiny, -tiny, inf, -inf,
                            std::numeric_limits<T>::quiet_NaN(), T(0.75), T(-3e-30), T(2) * tiny};
        std::vector<T> g;
        for (std::size_t i = 0; i < n; ++i)
        {
            g.push_back(values[(i * 5) % std::size(values)]);
        }
        xoptim::lion_options o;
        o.lr = lr;
        o.betas = {0.5, 0.5};
        o.caution = true;
        o.caution_normalize = xoptim::caution_normalization::count_plus_one;
        xoptim::lion lion(o);
        std::vector<T> p(g.size(), T(0));
        lion.step(p, g);

        const auto sign = [](T x) { return std::isnan(x) ? x : x > 0 ? T(1) : x < 0 ? T(-1) : T(0); };
        std::size_t count = 0;
        for (const T x : g)
        {
            count += sign(T(0.5) * T(0) + T(0.5) * x) * x > 0 ? 1 : 0;
        }
        // 1, -1, 0.75, -3e-30, 2 * tiny (c = tiny), inf and -inf agree: 30 of 53, 16 of 29.
        EXPECT_EQ(count, n == 53 ? 30u : 16u);
        const T factor = T(g.size()) / (T(count) + T(1));
        for (std::size_t i = 0; i < g.size(); ++i)
        {
            const T s = sign(T(0.5) * T(0) + T(0.5) * g[i]);
            const T expected = T(0) - T(lr) * (s * (s * g[i] > 0 ? factor : T(0)));
            if (std::isnan(expected))
            {
                EXPECT_TRUE(std::isnan(p[i])) << "element " << i;
            }
            else
            {
                EXPECT_EQ(std::signbit(p[i]), std::signbit(expected)) << "element " << i << ", g = " << g[i];
                EXPECT_EQ(p[i], expected) << "element " << i << ", g = " << g[i] << ", lr = " << lr;
            }
        }
    }

    TEST(cautious, lion_counts_zeros_subnormals_infinities_and_nan_as_the_formula)
    {
        // Two lengths, two factors (53 / 31 and 29 / 17): with the second, lr * factor
        // rounded in double and then in float differs from the float product for some lr.
        for (const std::size_t n : {53, 29})
        {
            for (const double lr : {1.0, 0.37, 0.1, 3e-3, 1e-4, 0.0})
            {
                expect_lion_counts_edges_as_the_formula<float>(n, lr);
                expect_lion_counts_edges_as_the_formula<double>(n, lr);
            }
        }
    }

    // Steps `plain` and `careful` (its cautious twin) on the same parameters with
    // gradients of a fixed sign per element: m then never disagrees with g, the mask is
    // all ones and the mean factor 1, so the two must agree bit for bit.
    template <class Opt>
    void expect_agreeing_step_is_plain(Opt plain, Opt careful, xoptim::state_storage storage)
    {
        xoptim::storage_options s;
        s.states = storage;
        plain.set_storage(s);
        careful.set_storage(s);
        const std::size_t n = 5003;  // 8-bit blocks and an odd tail
        std::vector<float> p(n), q, g(n);
        for (std::size_t i = 0; i < n; ++i)
        {
            p[i] = float(std::sin(0.1 * double(i)));
        }
        q = p;
        for (int t = 0; t < 6; ++t)
        {
            for (std::size_t i = 0; i < n; ++i)
            {
                g[i] = float((i % 3 == 0 ? -1 : 1) * (0.25 + 0.5 * std::abs(std::cos(0.37 * double(i * (t + 1))))));
            }
            plain.step(p, g);
            careful.step(q, g);
        }
        EXPECT_EQ(p, q) << Opt::name << " under " << int(storage);
    }

    TEST(cautious, agreeing_everywhere_is_the_plain_step)
    {
        for (auto storage :
             {xoptim::state_storage::native, xoptim::state_storage::bf16, xoptim::state_storage::blockwise_8bit})
        {
            xoptim::adamw_options a;
            a.lr = 1e-2;
            xoptim::adamw_options ca = a;
            ca.caution = true;
            expect_agreeing_step_is_plain(xoptim::adamw(a), xoptim::adamw(ca), storage);
            xoptim::lion_options l;
            l.lr = 1e-3;
            l.weight_decay = 0.1;
            xoptim::lion_options cl = l;
            cl.caution = true;
            expect_agreeing_step_is_plain(xoptim::lion(l), xoptim::lion(cl), storage);
        }
    }

    template <class T>
    std::vector<T> wave(std::size_t n, int seed, int t)
    {
        std::vector<T> v(n);
        for (std::size_t i = 0; i < n; ++i)
        {
            v[i] = T(std::sin(0.37 * double(i + 1) * (seed + 1) + 1.3 * t));
        }
        return v;
    }

    // One step over float and double tensors of different sizes against each tensor
    // stepped by an optimizer of its own: every tensor's count and factor are its own.
    template <class Opt, class Options>
    void expect_factor_per_tensor(const Options& o, xoptim::state_storage storage)
    {
        xoptim::storage_options s;
        s.states = storage;
        s.min_8bit_size = 256;
        std::vector<float> a = wave<float>(5000, 1, 0), c = wave<float>(33, 3, 0), e = wave<float>(700, 5, 0);
        std::vector<double> b = wave<double>(37, 2, 0), d = wave<double>(1, 4, 0);
        auto a1 = a, c1 = c, e1 = e;
        auto b1 = b, d1 = d;
        Opt together(o);
        together.set_storage(s);
        std::vector<std::unique_ptr<Opt>> alone;
        for (int k = 0; k < 5; ++k)
        {
            alone.push_back(std::make_unique<Opt>(o));
            alone.back()->set_storage(s);
        }
        for (int t = 1; t <= 5; ++t)
        {
            auto ga = wave<float>(5000, 11, t), gc = wave<float>(33, 13, t), ge = wave<float>(700, 15, t);
            auto gb = wave<double>(37, 12, t), gd = wave<double>(1, 14, t);
            together.step(std::tie(a, b, c, d, e), std::tie(ga, gb, gc, gd, ge));
            alone[0]->step(a1, ga);
            alone[1]->step(b1, gb);
            alone[2]->step(c1, gc);
            alone[3]->step(d1, gd);
            alone[4]->step(e1, ge);
        }
        EXPECT_TRUE(a == a1 && b == b1 && c == c1 && d == d1 && e == e1) << Opt::name << " under " << int(storage);
    }

    TEST(cautious, every_tensor_has_its_own_factor)
    {
        const auto count = xoptim::caution_normalization::count_plus_one;
        for (auto storage :
             {xoptim::state_storage::native, xoptim::state_storage::bf16, xoptim::state_storage::blockwise_8bit})
        {
            xoptim::adamw_options aw;
            aw.lr = 1e-2;
            aw.caution = true;
            aw.caution_normalize = count;
            expect_factor_per_tensor<xoptim::adamw>(aw, storage);
            aw.amsgrad = true;
            aw.maximize = true;
            expect_factor_per_tensor<xoptim::adamw>(aw, storage);
            xoptim::adam_options coupled;  // the gradient g + wd * p decides the mask
            coupled.lr = 1e-2;
            coupled.weight_decay = 0.5;
            coupled.caution = true;
            coupled.caution_normalize = count;
            expect_factor_per_tensor<xoptim::adam>(coupled, storage);
            xoptim::lion_options l;
            l.lr = 1e-3;
            l.weight_decay = 0.1;
            l.caution = true;
            l.caution_normalize = count;
            expect_factor_per_tensor<xoptim::lion>(l, storage);
        }
    }

    TEST(cautious, keeps_no_state_of_its_own)
    {
        xoptim::adamw_options a;
        a.caution = true;
        xoptim::adamw careful(a);
        EXPECT_EQ(careful.num_states(careful.options()), 2u);
        xoptim::lion_options l;
        l.caution = true;
        EXPECT_EQ(xoptim::lion::num_states(l), 1u);
    }

    TEST(cautious, json_names_the_bad_normalization)
    {
        try
        {
            xoptim::tools::detail::read_options<xoptim::adamw_options>("adamw", {{"caution_normalize", "median"}});
            ADD_FAILURE() << "accepted \"median\"";
        }
        catch (const std::invalid_argument& e)
        {
            EXPECT_NE(std::string(e.what()).find("caution_normalize"), std::string::npos) << e.what();
        }
    }
}
