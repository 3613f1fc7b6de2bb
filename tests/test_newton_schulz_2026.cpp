// Newton-Schulz's newer iterations against tests/reference/newton_schulz_2026.json
// (ref2026/muon.py): Polar Express's per-step table (float and double), and bf16 products
// as torch.optim.Muon computes them (the fixed quintic and Polar Express); and the bf16
// products' hardware kernel against its portable order, bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include <xoptim/linalg/newton_schulz.hpp>

#include "support/reference_2026.hpp"

namespace
{
    using xoptim_test::newton_schulz_case_2026;

    xoptim::newton_schulz_options options_of(const newton_schulz_case_2026& c)
    {
        xoptim::newton_schulz_options o;
        o.steps = c.ns_steps;
        o.table = c.ns_coefficients;
        o.eps = c.eps;
        o.norm_scale = c.ns_norm_scale;
        o.norm = c.ns_norm == "clamp_eps" ? xoptim::ns_norm::clamp_eps : xoptim::ns_norm::add_eps;
        o.precision = c.ns_precision == "bf16" ? xoptim::ns_precision::bf16 : xoptim::ns_precision::working;
        return o;
    }

    // common.py's bf16_ulps: the largest difference in bf16 spacings (2^(e-7) at the larger
    // magnitude's exponent e), over elements above 2^-20 of the largest magnitude.
    double bf16_ulps(const std::vector<double>& a, const std::vector<double>& b)
    {
        double top = 0;
        for (std::size_t i = 0; i < a.size(); ++i)
        {
            top = std::max(top, std::max(std::abs(a[i]), std::abs(b[i])));
        }
        double worst = 0;
        for (std::size_t i = 0; i < a.size(); ++i)
        {
            const double m = std::max(std::abs(a[i]), std::abs(b[i]));
            if (m > std::ldexp(top, -20))
            {
                worst = std::max(worst, std::abs(a[i] - b[i]) / std::ldexp(1.0, int(std::floor(std::log2(m))) - 7));
            }
        }
        return worst;
    }

    template <class T>
    std::vector<double> run(const newton_schulz_case_2026& c)
    {
        const std::size_t rows = c.shape[0], cols = xoptim_test::numel(c.shape) / rows;
        std::vector<T> g(rows * cols), out(rows * cols);
        for (std::size_t i = 0; i < g.size(); ++i)
        {
            g[i] = static_cast<T>(xoptim_test::u(c.seed, 0, i));
        }
        xoptim::newton_schulz<T> ns(options_of(c));
        ns(g.data(), out.data(), rows, cols);
        return {out.begin(), out.end()};
    }

    // Working precision: error relative to the output's largest element, float <= 1e-5
    // (the reference's own float32 spreads reach 1.6e-6), double <= 1e-10.
    // bf16: within 1 bf16 ulp. The reference sums products exactly, xoptim in float; the
    // generator measured 0 ulps between exact and float32 (OpenBLAS, two orders) sums on
    // these cases, and xoptim's order gives 0 too. One ulp is left for a float sum that
    // lands on the other side of a rounding boundary (tests/reference/README.md allows 4).
    TEST(newton_schulz_2026, matches_the_references)
    {
        const auto cases = xoptim_test::load_newton_schulz_cases_2026();
        ASSERT_EQ(cases.size(), 35u);
        std::size_t bf16_cases = 0, table_cases = 0;
        for (const auto& c : cases)
        {
            const auto out = c.dtype == "float32" ? run<float>(c) : run<double>(c);
            ASSERT_EQ(out.size(), c.output.size()) << c.name;
            table_cases += c.ns_coefficients.size() > 1;
            if (c.ns_precision == "bf16")
            {
                ++bf16_cases;
                const double ulps = bf16_ulps(out, c.output);
                EXPECT_LE(ulps, 1.0) << c.name;
                std::printf("%-36s %g bf16 ulps\n", c.name.c_str(), ulps);
                continue;
            }
            double scale = 0, worst = 0;
            for (std::size_t i = 0; i < out.size(); ++i)
            {
                scale = std::max(scale, std::abs(c.output[i]));
            }
            for (std::size_t i = 0; i < out.size(); ++i)
            {
                worst = std::max(worst, std::abs(out[i] - c.output[i]) / scale);
            }
            EXPECT_LE(worst, c.dtype == "float32" ? 1e-5 : 1e-10) << c.name;
            std::printf("%-36s worst error %.3g\n", c.name.c_str(), worst);
        }
        EXPECT_EQ(bf16_cases, 15u);
        EXPECT_EQ(table_cases, 25u);
    }

    TEST(newton_schulz_2026, polar_express_table_is_the_references)
    {
        const auto cases = xoptim_test::load_newton_schulz_cases_2026();
        EXPECT_EQ(cases.front().ns_coefficients, xoptim::polar_express_coefficients());
    }

    // The hardware kernel (where this build has one), the portable panels (what a build
    // without it runs) and the portable loop give the same bits: random values of every exponent, tiny ones whose products underflow
    // (flushed), odd row counts and lengths, more columns than one register holds, and
    // the symmetric form (upper triangle computed, then mirrored).
    TEST(newton_schulz_2026, bf16_products_same_bits_portable_and_hardware)
    {
        std::mt19937 rng(7);
        std::size_t compared = 0;
        for (int trial = 0; trial < 120; ++trial)
        {
            const std::size_t m = 1 + rng() % 9, n = 1 + rng() % 90, k = 2 * (1 + rng() % 40);
            std::vector<std::uint16_t> l(m * k), r(n * k);
            for (auto* v : {&l, &r})
            {
                for (auto& x : *v)
                {
                    const std::uint32_t u = rng();
                    const std::uint32_t exponent = trial % 3 == 0 ? (u >> 16) % 255
                                                   : trial % 3 == 1 ? 1 + (u >> 16) % 8
                                                                    : 0x78 + (u >> 16) % 12;
                    x = std::uint16_t((u & 0x807fu) | exponent << 7);
                }
            }
            std::vector<float> hw(m * n), portable(m * n);
            xoptim::linalg::bf16_workspace w;
            xoptim::linalg::bf16_products(l.data(), m, r.data(), n, k, hw.data(), n, w);
            xoptim::linalg::bf16_products_portable(l.data(), m, r.data(), n, k, portable.data(), n);
            ASSERT_EQ(std::memcmp(hw.data(), portable.data(), hw.size() * sizeof(float)), 0) << "trial " << trial;
            std::vector<float> panels(m * n);
            xoptim::linalg::bf16_products_without_hardware(l.data(), m, r.data(), n, k, panels.data(), n, w);
            ASSERT_EQ(std::memcmp(panels.data(), portable.data(), hw.size() * sizeof(float)), 0) << "trial " << trial;
            std::vector<float> square(n * n), square_portable(n * n);
            xoptim::linalg::bf16_products(r.data(), n, r.data(), n, k, square.data(), n, w, true);
            xoptim::linalg::bf16_products_portable(r.data(), n, r.data(), n, k, square_portable.data(), n);
            ASSERT_EQ(std::memcmp(square.data(), square_portable.data(), square.size() * sizeof(float)), 0)
                << "trial " << trial;
            compared += hw.size() + square.size();
        }
        std::printf("%zu outputs compared, hardware kernel: %s\n", compared,
                    xoptim::linalg::bf16_dot_in_hardware() ? "AVX-512 BF16" : "none (portable only)");
    }

    TEST(newton_schulz_2026, bad_options_are_named)
    {
        xoptim::newton_schulz_options o;
        o.table = xoptim::polar_express_coefficients();
        o.table[3][2] = NAN;
        EXPECT_THROW(
            {
                try
                {
                    xoptim::newton_schulz<float> ns(o);
                }
                catch (const std::invalid_argument& e)
                {
                    EXPECT_STREQ(e.what(), "xoptim::newton_schulz: table[3] must be finite");
                    throw;
                }
            },
            std::invalid_argument);
        o = {};
        o.norm_scale = 0;
        EXPECT_THROW(xoptim::newton_schulz<double> ns(o), std::invalid_argument);
    }
}
