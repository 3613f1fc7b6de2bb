// The fused engine on its own: operations, assignment order, locals, lengths and
// alignment. Programs run through job lists directly, without an optimizer.
#include <gtest/gtest.h>

#include "support/emulation.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include <xoptim/engine/executor.hpp>

namespace
{
    using namespace xoptim::sym;
    using xoptim::fuse;

    // Values with both signs, zeros and a spread of magnitudes.
    template <class T>
    std::vector<T> sample(std::size_t n, double shift)
    {
        std::vector<T> x(n);
        for (std::size_t i = 0; i < n; ++i)
        {
            x[i] = i % 11 == 0 ? T(0) : static_cast<T>(std::sin(0.7 * double(i) + shift) * (1 + double(i % 5)));
        }
        return x;
    }

    // x as computed, rounded once: the scalar references round every product on its own,
    // as the engine does, whatever the compiler would contract into an fma (this file is
    // built with the default -ffp-contract, as users build).
    template <class T>
    T rounded(T x)
    {
        volatile T v = x;
        return v;
    }

    // Runs `prog` on one tensor: p and two states in place, g read-only.
    template <class T>
    struct identity
    {
        using type = T;
    };

    template <class T, class Program>
    void run_one(const Program& prog, T* p, const T* g, typename identity<T>::type* s0,
                 typename identity<T>::type* s1, std::size_t n)
    {
        xoptim::tensor_slots<T> slots;
        slots.param = p;
        slots.grad = g;
        slots.states[0] = s0;
        slots.states[1] = s1;
        slots.size = n;
        xoptim::job_list<T> jobs;
        jobs.push_back(slots);
        xoptim::run_program(prog, jobs);
    }

    template <class T, class Program, class Reference>
    void expect_elementwise(const Program& prog, Reference ref)
    {
        for (std::size_t n : {0, 1, 7, 15, 16, 17, 33, 100})
        {
            auto p = sample<T>(n, 0.1), s0 = sample<T>(n, 1.3), s1 = sample<T>(n, 2.9);
            const auto g = sample<T>(n, 4.2);
            auto want_p = p, want_s0 = s0, want_s1 = s1;
            for (std::size_t i = 0; i < n; ++i)
            {
                ref(want_p[i], g[i], want_s0[i], want_s1[i]);
            }
            run_one(prog, p.data(), g.data(), s0.data(), s1.data(), n);
            for (std::size_t i = 0; i < n; ++i)
            {
                ASSERT_EQ(p[i], want_p[i]) << "n = " << n << ", i = " << i;
                ASSERT_EQ(s0[i], want_s0[i]) << "n = " << n << ", i = " << i;
                ASSERT_EQ(s1[i], want_s1[i]) << "n = " << n << ", i = " << i;
            }
        }
    }

    const auto& s0 = state<0>;
    const auto& s1 = state<1>;

    TEST(engine, arithmetic_matches_scalar_code)
    {
        expect_elementwise<float>(fuse(p = (p + g) * 2.5f - s0 / (1 + abs(s1))),
                                  [](float& p, float g, float& s0, float& s1) {
                                      p = rounded((p + g) * 2.5f) - s0 / (1 + std::abs(s1));
                                  });
        expect_elementwise<double>(fuse(p = -p * g + 3), [](double& p, double g, double&, double&) { p = rounded(-p * g) + 3; });
    }

    TEST(engine, functions_match_scalar_code)
    {
        expect_elementwise<float>(
            fuse(p = sqrt(abs(p)) + min(g, s0) - max(g, s1), s0 = fma(s0, g, s1), s1 = sign(g)),
            [](float& p, float g, float& s0, float& s1) {
                p = std::sqrt(std::abs(p)) + std::min(g, s0) - std::max(g, s1);
                s0 = std::fma(s0, g, s1);
                s1 = float((g > 0) - (g < 0));
            });
    }

    TEST(engine, comparisons_select)
    {
        expect_elementwise<double>(
            fuse(p = where(g > 0 && p <= s0, p, g), s0 = where(g == 0 || s1 != s0, s1, s0), s1 = where(g >= p, 1, 0) + where(g < 0, 2, 0)),
            [](double& p, double g, double& s0, double& s1) {
                p = (g > 0 && p <= s0) ? p : g;
                s0 = (g == 0 || s1 != s0) ? s1 : s0;
                s1 = (g >= p ? 1 : 0) + (g < 0 ? 2 : 0);
            });
    }

    TEST(engine, later_assignments_read_earlier_results)
    {
        // m and v are written first; p reads the new values, and so does the second write of m.
        expect_elementwise<float>(fuse(s0 = s0 + g, s1 = s0 * 2, p = p - s0 - s1, s0 = p),
                                  [](float& p, float g, float& s0, float& s1) {
                                      s0 = s0 + g;
                                      s1 = rounded(s0 * 2);
                                      p = p - s0 - s1;
                                      s0 = p;
                                  });
    }

    TEST(engine, locals_live_in_registers)
    {
        const auto& c = local<0>;
        expect_elementwise<float>(fuse(c = 0.5f * s0 + g, p = p - sign(c), s0 = c * c),
                                  [](float& p, float g, float& s0, float&) {
                                      const float c = rounded(0.5f * s0) + g;
                                      p = p - float((c > 0) - (c < 0));
                                      s0 = c * c;
                                  });
    }

    TEST(engine, sign_keeps_nan)
    {
        std::vector<float> param(17, 1.0f), grad(17, 0.0f);
        grad[1] = -0.0f;
        grad[2] = std::numeric_limits<float>::infinity();
        grad[3] = std::nanf("0x123");
        grad[4] = -std::numeric_limits<float>::infinity();
        grad[5] = std::numeric_limits<float>::denorm_min();
        grad[6] = -std::numeric_limits<float>::denorm_min();
        grad[16] = -2;
        run_one(fuse(p = sign(g)), param.data(), grad.data(), nullptr, nullptr, param.size());
        EXPECT_EQ(param[0], 0.0f);
        EXPECT_FALSE(std::signbit(param[1])) << "sign(-0) is +0, as torch.sign";
        EXPECT_EQ(param[2], 1.0f);
        EXPECT_EQ(std::memcmp(&param[3], &grad[3], sizeof(float)), 0) << "sign(NaN) is that NaN";
        EXPECT_EQ(param[4], -1.0f);
        EXPECT_EQ(param[5], 1.0f);
        EXPECT_EQ(param[6], -1.0f);
        EXPECT_EQ(param[16], -1.0f);
        // != follows C++: NaN differs from everything, itself included.
        run_one(fuse(p = where(g != g, 1, 0)), param.data(), grad.data(), nullptr, nullptr, param.size());
        EXPECT_EQ(param[3], 1.0f);
        EXPECT_EQ(param[16], 0.0f);
    }

    template <class T>
    bool same_bits(T a, T b)
    {
        return std::isnan(a) ? std::isnan(b) : std::memcmp(&a, &b, sizeof a) == 0;
    }

    // Random values of every kind: any bit pattern (subnormals, inf, NaN included), and
    // ordinary magnitudes.
    template <class T>
    T any_value(std::mt19937_64& rng, std::size_t i)
    {
        using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
        if (i % 2 == 0)
        {
            const U u = U(rng());
            T x;
            std::memcpy(&x, &u, sizeof x);
            return x;
        }
        std::uniform_real_distribution<double> m(-2, 2);
        return T(std::ldexp(m(rng), int(rng() % 40) - 20));
    }

    // fma(a, b, c) rounds once on every build: the instruction where there is one, an
    // exact emulation where not (SSE2). The first triple is one that a rounding through
    // double gets wrong (a * b + c is just above a float midpoint); the others cancel
    // a * b against c, or are any values at all.
    template <class T>
    void expect_fma_rounds_once()
    {
        constexpr T e = std::numeric_limits<T>::epsilon();
        std::vector<T> a = {1 + e, T(1.5), T(-0.0)}, b = {-(1 - e) * (e / 2), T(2), T(0)}, c = {1 + e, T(-3), T(-0.0)};
        std::mt19937_64 rng(5);
        for (std::size_t i = 0; i < 20000; ++i)
        {
            a.push_back(any_value<T>(rng, i));
            b.push_back(any_value<T>(rng, i / 2));
            c.push_back(i % 3 == 0 ? -rounded(a.back() * b.back()) * (1 + T(i % 5) * e) : any_value<T>(rng, i / 3));
        }
        auto out = a;
        run_one(fuse(p = fma(p, g, s0)), out.data(), b.data(), c.data(), static_cast<T*>(nullptr), out.size());
        std::size_t differ_from_two_roundings = 0;
        for (std::size_t i = 0; i < out.size(); ++i)
        {
            ASSERT_TRUE(same_bits(out[i], std::fma(a[i], b[i], c[i])))
                << i << ": fma(" << a[i] << ", " << b[i] << ", " << c[i] << ") = " << out[i];
            differ_from_two_roundings += same_bits(out[i], rounded(a[i] * b[i]) + c[i]) ? 0 : 1;
        }
        EXPECT_TRUE(same_bits(out[0], 1 + e));
        EXPECT_GT(differ_from_two_roundings, 1000u);  // the test tells one rounding from two
    }

    TEST(engine, fma_rounds_once)
    {
        expect_fma_rounds_once<float>();
        expect_fma_rounds_once<double>();
    }

    // A product followed by a sum rounds twice, as written: the engine never contracts
    // it into an fma, whatever the compiler flags (GCC contracts by default).
    TEST(engine, products_round_on_their_own)
    {
        std::mt19937_64 rng(6);
        std::vector<float> a, b, c;
        for (std::size_t i = 0; i < 5000; ++i)
        {
            a.push_back(any_value<float>(rng, 2 * i + 1));
            b.push_back(any_value<float>(rng, 2 * i + 1));
            c.push_back(-rounded(a.back() * b.back()) * (1 + float(i % 7) * 1e-7f));
        }
        auto out = a;
        auto other = b;
        run_one(fuse(p = p * g + s0, s1 = s0 - p * g), out.data(), b.data(), c.data(), other.data(), out.size());
        std::size_t fused_would_differ = 0;
        for (std::size_t i = 0; i < out.size(); ++i)
        {
            ASSERT_TRUE(same_bits(out[i], rounded(a[i] * b[i]) + c[i])) << i;
            ASSERT_TRUE(same_bits(other[i], c[i] - rounded(out[i] * b[i]))) << i;
            fused_would_differ += same_bits(out[i], std::fma(a[i], b[i], c[i])) ? 0 : 1;
        }
        EXPECT_GT(fused_would_differ, 1000u);
    }

    // Division and square root are IEEE's (correctly rounded) on every build: xsimd 8
    // computes them on ARM by an estimate and Newton steps.
    template <class T>
    void expect_ieee_division_and_root()
    {
        std::mt19937_64 rng(7);
        std::vector<T> x = {T(1), T(0), T(-0.0), std::numeric_limits<T>::infinity(), std::numeric_limits<T>::denorm_min(), T(3)},
                       y = {T(3), T(0), T(2), std::numeric_limits<T>::infinity(), T(7), std::numeric_limits<T>::min()};
        for (std::size_t i = 0; i < 20000; ++i)
        {
            x.push_back(any_value<T>(rng, i));
            y.push_back(any_value<T>(rng, i / 2));
        }
        auto out = x, root = x;
        run_one(fuse(p = p / g, s0 = sqrt(g)), out.data(), y.data(), root.data(), static_cast<T*>(nullptr), out.size());
        for (std::size_t i = 0; i < out.size(); ++i)
        {
            ASSERT_TRUE(same_bits(out[i], T(x[i] / y[i]))) << x[i] << " / " << y[i] << " = " << out[i];
            ASSERT_TRUE(same_bits(root[i], std::sqrt(y[i]))) << "sqrt(" << y[i] << ") = " << root[i];
        }
    }

    TEST(engine, division_and_square_root_are_ieee)
    {
        expect_ieee_division_and_root<float>();
        expect_ieee_division_and_root<double>();
    }

    // min(a, b) = a < b ? a : b and max(a, b) = a > b ? a : b on every build: the second
    // operand where one is NaN or both are equal (+0 and -0), by compares, not by an
    // instruction set's own NaN rule.
    TEST(engine, min_and_max_take_the_second_operand_for_nan_and_ties)
    {
        const float nan = std::numeric_limits<float>::quiet_NaN();
        std::vector<float> a = {nan, 1, nan, 0.0f, -0.0f, 2, -1}, b = {1, nan, nan, -0.0f, 0.0f, 3, -2};
        auto out = a, other = a;
        run_one(fuse(p = min(p, g), s0 = max(s0, g)), out.data(), b.data(), other.data(), static_cast<float*>(nullptr), out.size());
        for (std::size_t i = 0; i < a.size(); ++i)
        {
            EXPECT_TRUE(same_bits(out[i], a[i] < b[i] ? a[i] : b[i])) << "min(" << a[i] << ", " << b[i] << ") = " << out[i];
            EXPECT_TRUE(same_bits(other[i], a[i] > b[i] ? a[i] : b[i])) << "max(" << a[i] << ", " << b[i] << ") = " << other[i];
        }
        EXPECT_EQ(out[0], 1.0f);
        EXPECT_TRUE(std::isnan(out[1]));
        EXPECT_TRUE(std::signbit(out[3]));
        EXPECT_FALSE(std::signbit(out[4]));
    }

    TEST(engine, scalars_are_captured_by_value)
    {
        double lr = 0.5;
        const auto prog = fuse(p = p - lr * g);
        lr = 100;  // the program keeps the value it was built with
        std::vector<double> param(3, 1.0), grad(3, 1.0);
        run_one(prog, param.data(), grad.data(), nullptr, nullptr, 3);
        EXPECT_EQ(param[2], 0.5);
    }

    // Each element's result is independent of the length and of where it starts:
    // run element by element, then all at once, at every offset. The long tensor (split
    // across threads) is compared at its ends and at every 97th element in between: a
    // million single-element runs take minutes under emulation.
    TEST(engine, any_length_and_alignment)
    {
        const auto prog = fuse(s0 = 0.9 * s0 + 0.1 * g, p = p - 0.01 * s0 / (sqrt(abs(s0)) + 1e-8));
        // The largest still splits across two threads under an emulator.
        for (std::size_t n : {0, 1, 15, 16, 17, xoptim_test::smaller_when_emulated((1 << 20) + 3, (1 << 17) + 3)})
        {
            for (std::size_t offset : {0, 1})
            {
                auto param = sample<float>(n + offset, 0.3), m = sample<float>(n + offset, 1.1);
                const auto grad = sample<float>(n + offset, 2.2);
                auto param1 = param, m1 = m;
                const auto checked = [&](std::size_t i) { return i < 1000 + offset || n + offset - i <= 1000 || i % 97 == 0; };
                for (std::size_t i = offset; i < n + offset; ++i)
                {
                    if (checked(i))
                    {
                        run_one(prog, &param1[i], &grad[i], &m1[i], nullptr, 1);
                    }
                }
                run_one(prog, param.data() + offset, grad.data() + offset, m.data() + offset, nullptr, n);
                for (std::size_t i = 0; i < n + offset; ++i)
                {
                    if (i < offset || checked(i))
                    {
                        ASSERT_EQ(param[i], param1[i]) << "n = " << n << ", offset = " << offset << ", i = " << i;
                        ASSERT_EQ(m[i], m1[i]) << "n = " << n << ", offset = " << offset << ", i = " << i;
                    }
                }
            }
        }
    }

    TEST(engine, only_touched_slots_are_loaded_and_stored)
    {
        // s1 is unused: a null pointer there must never be dereferenced; g is never written.
        std::vector<float> param(20, 1), m(20, 0);
        const std::vector<float> grad(20, 2);
        run_one(fuse(s0 = s0 + g, p = p * s0), param.data(), grad.data(), m.data(), nullptr, 20);
        EXPECT_EQ(param[19], 2.0f);
        EXPECT_EQ(grad[19], 2.0f);
    }
}
