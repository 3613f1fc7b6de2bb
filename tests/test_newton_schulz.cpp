// Newton-Schulz on BLAS against the formula written in torch (tests/reference/
// generate.py), and the properties Muon relies on.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include <xoptim/linalg/newton_schulz.hpp>

#include "support/reference.hpp"

namespace
{
    template <class T>
    std::vector<T> input(std::uint64_t seed, std::size_t n)
    {
        std::vector<T> g(n);
        for (std::size_t i = 0; i < n; ++i)
        {
            g[i] = static_cast<T>(xoptim_test::u(seed, 0, i));
        }
        return g;
    }

    template <class T>
    void check_case(const nlohmann::json& c)
    {
        const auto shape = c.at("shape").get<std::vector<std::size_t>>();
        const std::size_t rows = shape[0];
        const std::size_t cols = xoptim_test::numel(shape) / rows;  // (shape[0], rest)
        xoptim::newton_schulz_options o;
        o.steps = c.at("steps").get<std::size_t>();
        xoptim::newton_schulz<T> ns(o);
        const auto g = input<T>(c.at("seed").get<std::uint64_t>(), rows * cols);
        std::vector<T> out(rows * cols);
        ns(g.data(), out.data(), rows, cols);
        const auto want = c.at("output").get<std::vector<double>>();
        ASSERT_EQ(want.size(), out.size());
        // Error relative to the output's largest element: the entries of an
        // orthogonalized matrix are all of one scale, some crossing zero.
        double scale = 0, worst = 0;
        for (double w : want)
        {
            scale = std::max(scale, std::abs(w));
        }
        for (std::size_t i = 0; i < out.size(); ++i)
        {
            worst = std::max(worst, std::abs(double(out[i]) - want[i]) / scale);
        }
        const double tolerance = std::is_same_v<T, float> ? 1e-4 : 1e-10;
        EXPECT_LE(worst, tolerance) << c.at("name");
        std::printf("%-20s worst error %.3g\n", c.at("name").get<std::string>().c_str(), worst);
    }

    TEST(newton_schulz, matches_the_torch_formula)
    {
        std::ifstream in(std::string(XOPTIM_TEST_DATA_DIR) + "/newton_schulz.json");
        const auto doc = nlohmann::json::parse(in);
        ASSERT_EQ(doc.at("cases").size(), 16u);
        for (const auto& c : doc.at("cases"))
        {
            if (c.at("dtype") == "float32")
            {
                check_case<float>(c);
            }
            else
            {
                check_case<double>(c);
            }
        }
    }

    TEST(newton_schulz, transposition_symmetry)
    {
        const std::size_t rows = 20, cols = 52;
        const auto g = input<double>(11, rows * cols);
        std::vector<double> gt(rows * cols), out(rows * cols), out_t(rows * cols);
        for (std::size_t i = 0; i < rows; ++i)
        {
            for (std::size_t j = 0; j < cols; ++j)
            {
                gt[j * rows + i] = g[i * cols + j];
            }
        }
        xoptim::newton_schulz<double> ns;
        ns(g.data(), out.data(), rows, cols);
        ns(gt.data(), out_t.data(), cols, rows);
        // Equal up to rounding: the tall input goes through BLAS's column-major kernels.
        for (std::size_t i = 0; i < rows; ++i)
        {
            for (std::size_t j = 0; j < cols; ++j)
            {
                ASSERT_NEAR(out[i * cols + j], out_t[j * rows + i], 1e-13);
            }
        }
    }

    // In place (out == g) and any number of steps, including none, give what a separate
    // output buffer gives.
    TEST(newton_schulz, in_place_and_step_counts)
    {
        for (std::size_t steps : {0, 1, 2, 5})
        {
            for (auto [rows, cols] : {std::pair<std::size_t, std::size_t>{12, 30}, {30, 12}, {16, 16}})
            {
                xoptim::newton_schulz_options o;
                o.steps = steps;
                xoptim::newton_schulz<double> ns(o);
                auto g = input<double>(5, rows * cols);
                std::vector<double> out(rows * cols);
                ns(g.data(), out.data(), rows, cols);
                ns(g.data(), g.data(), rows, cols);
                ASSERT_EQ(g, out) << steps << " steps, " << rows << " x " << cols;
            }
        }
    }

    TEST(newton_schulz, zero_input_stays_finite)
    {
        std::vector<float> g(6 * 9, 0.0f), out(6 * 9, 1.0f);
        xoptim::newton_schulz<float> ns;
        ns(g.data(), out.data(), 6, 9);
        for (float x : out)
        {
            ASSERT_EQ(x, 0.0f);
        }
    }

    // The iteration sees G / (|G| + eps): with eps below |G|, a gradient near the largest
    // or smallest squares its type holds gives the update of the same gradient at scale 1
    // (floats gave NaN above 1e19 and lost the Gram matrix below 1e-19; doubles above 1e154
    // gave zeros and below 1e-154 NaN, their squares' sum being inf or 0), in place too; and a zero gradient with an
    // eps whose inverse squared is no float gives zeros (it gave NaN).
    template <class T>
    void expect_scale_free(std::initializer_list<double> scales, double tolerance)
    {
        const std::size_t rows = 6, cols = 9;
        const auto g = input<T>(3, rows * cols);
        xoptim::newton_schulz_options negligible;
        negligible.eps = 1e-320;  // below every scale's norm (the default 1e-7 dominates 1e-21 |G|)
        xoptim::newton_schulz<T> ns(negligible);
        std::vector<T> at_one(rows * cols), out(rows * cols);
        ns(g.data(), at_one.data(), rows, cols);
        for (double scale : scales)
        {
            std::vector<T> big(g.size());
            for (std::size_t i = 0; i < g.size(); ++i)
            {
                big[i] = static_cast<T>(g[i] * scale);
            }
            for (bool in_place : {false, true})
            {
                std::vector<T> x = big;
                T* target = in_place ? x.data() : out.data();
                ns(x.data(), target, rows, cols);
                for (std::size_t i = 0; i < g.size(); ++i)
                {
                    ASSERT_NEAR(target[i], at_one[i], tolerance)
                        << "scale " << scale << (in_place ? " in place" : "") << ", " << i;
                }
            }
        }
    }

    TEST(newton_schulz, the_update_does_not_depend_on_the_gradients_scale)
    {
        expect_scale_free<float>({1e-30, 1e-21, 1e19, 1e22, 1e30}, 1e-5);
        expect_scale_free<double>({1e-300, 1e-200, 1e-160, 1e150, 1e155, 1e160, 1e300}, 1e-12);
        const std::size_t rows = 6, cols = 9;
        std::vector<float> out(rows * cols);
        xoptim::newton_schulz_options o;
        o.eps = 1e-20;
        xoptim::newton_schulz<float> tiny(o);
        std::vector<float> zero(rows * cols, 0.0f);
        tiny(zero.data(), out.data(), rows, cols);
        for (float x : out)
        {
            ASSERT_EQ(x, 0.0f);
        }
    }

    // Eigenvalues of a symmetric matrix by cyclic Jacobi rotations (small n).
    std::vector<double> eigenvalues(std::vector<double> a, std::size_t n)
    {
        for (int sweep = 0; sweep < 100; ++sweep)
        {
            double off = 0;
            for (std::size_t p = 0; p < n; ++p)
                for (std::size_t q = p + 1; q < n; ++q)
                    off += a[p * n + q] * a[p * n + q];
            if (off < 1e-22)
                break;
            for (std::size_t p = 0; p < n; ++p)
                for (std::size_t q = p + 1; q < n; ++q)
                {
                    if (std::abs(a[p * n + q]) < 1e-300)
                        continue;
                    const double theta = (a[q * n + q] - a[p * n + p]) / (2 * a[p * n + q]);
                    const double t = (theta >= 0 ? 1 : -1) / (std::abs(theta) + std::sqrt(theta * theta + 1));
                    const double c = 1 / std::sqrt(t * t + 1), s = t * c;
                    for (std::size_t k = 0; k < n; ++k)
                    {
                        const double akp = a[k * n + p], akq = a[k * n + q];
                        a[k * n + p] = c * akp - s * akq;
                        a[k * n + q] = s * akp + c * akq;
                    }
                    for (std::size_t k = 0; k < n; ++k)
                    {
                        const double apk = a[p * n + k], aqk = a[q * n + k];
                        a[p * n + k] = c * apk - s * aqk;
                        a[q * n + k] = s * apk + c * aqk;
                    }
                }
        }
        std::vector<double> d(n);
        for (std::size_t i = 0; i < n; ++i)
            d[i] = a[i * n + i];
        return d;
    }

    // After 5 steps every singular value that was at least 1.5e-3 of the input's
    // Frobenius norm lies in [0.67, 1.21] (SPEC section 3). A random 32 x 80 input has
    // all its singular values well above that.
    TEST(newton_schulz, singular_values_land_in_the_published_band)
    {
        const std::size_t m = 32, n = 80;
        const auto g = input<double>(23, m * n);
        std::vector<double> out(m * n), gram(m * m, 0.0);
        xoptim::newton_schulz<double> ns;
        ns(g.data(), out.data(), m, n);
        for (std::size_t i = 0; i < m; ++i)
            for (std::size_t j = 0; j < m; ++j)
                for (std::size_t k = 0; k < n; ++k)
                    gram[i * m + j] += out[i * n + k] * out[j * n + k];
        for (double e : eigenvalues(gram, m))
        {
            const double sigma = std::sqrt(std::max(e, 0.0));
            EXPECT_GE(sigma, 0.67);
            EXPECT_LE(sigma, 1.21);
        }
    }
}
