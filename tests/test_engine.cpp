// The fused engine on its own: operations, assignment order, locals, lengths and
// alignment. Programs run through job lists directly, without an optimizer.
#include <gtest/gtest.h>

#include "support/emulation.hpp"

#include <cmath>
#include <numeric>
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
                                      p = (p + g) * 2.5f - s0 / (1 + std::abs(s1));
                                  });
        expect_elementwise<double>(fuse(p = -p * g + 3), [](double& p, double g, double&, double&) { p = -p * g + 3; });
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
                                      s1 = s0 * 2;
                                      p = p - s0 - s1;
                                      s0 = p;
                                  });
    }

    TEST(engine, locals_live_in_registers)
    {
        const auto& c = local<0>;
        expect_elementwise<float>(fuse(c = 0.5f * s0 + g, p = p - sign(c), s0 = c * c),
                                  [](float& p, float g, float& s0, float&) {
                                      const float c = 0.5f * s0 + g;
                                      p = p - float((c > 0) - (c < 0));
                                      s0 = c * c;
                                  });
    }

    TEST(engine, sign_keeps_nan)
    {
        std::vector<float> param(17, 1.0f), grad(17, 0.0f);
        grad[3] = std::nanf("");
        grad[16] = -2;
        run_one(fuse(p = sign(g)), param.data(), grad.data(), nullptr, nullptr, param.size());
        EXPECT_EQ(param[0], 0.0f);
        EXPECT_TRUE(std::isnan(param[3]));
        EXPECT_EQ(param[16], -1.0f);
        // != follows C++: NaN differs from everything, itself included.
        run_one(fuse(p = where(g != g, 1, 0)), param.data(), grad.data(), nullptr, nullptr, param.size());
        EXPECT_EQ(param[3], 1.0f);
        EXPECT_EQ(param[16], 0.0f);
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
    // run element by element, then all at once, at every offset.
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
                for (std::size_t i = offset; i < n + offset; ++i)
                {
                    run_one(prog, &param1[i], &grad[i], &m1[i], nullptr, 1);
                }
                run_one(prog, param.data() + offset, grad.data() + offset, m.data() + offset, nullptr, n);
                ASSERT_EQ(param, param1) << "n = " << n << ", offset = " << offset;
                ASSERT_EQ(m, m1) << "n = " << n << ", offset = " << offset;
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
