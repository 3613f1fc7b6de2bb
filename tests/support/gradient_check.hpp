// Analytic gradients against central differences, in double: for a loss L(x), every
// d L / d x[i] must match (L(x + h) - L(x - h)) / 2h.
#ifndef XOPTIM_TESTS_SUPPORT_GRADIENT_CHECK_HPP
#define XOPTIM_TESTS_SUPPORT_GRADIENT_CHECK_HPP

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include <xoptim/train/layers.hpp>

namespace xoptim_test
{
    inline std::vector<double> random_vector(std::size_t n, std::uint64_t seed)
    {
        std::vector<double> v(n);
        for (std::size_t i = 0; i < n; ++i)
        {
            v[i] = xoptim::train::hash_uniform(seed, i);
        }
        return v;
    }

    inline double dot(const std::vector<double>& a, const std::vector<double>& b)
    {
        double s = 0;
        for (std::size_t i = 0; i < a.size(); ++i)
        {
            s += a[i] * b[i];
        }
        return s;
    }

    // Checks d loss / d x[i] for every i of `x` (n values) against central differences.
    inline void expect_gradient(double* x, const double* analytic, std::size_t n, const std::function<double()>& loss,
                                const std::string& what)
    {
        const double h = 1e-6;
        for (std::size_t i = 0; i < n; ++i)
        {
            const double keep = x[i];
            x[i] = keep + h;
            const double up = loss();
            x[i] = keep - h;
            const double down = loss();
            x[i] = keep;
            const double numeric = (up - down) / (2 * h);
            EXPECT_NEAR(analytic[i], numeric, 1e-7 * std::max(1.0, std::abs(numeric))) << what << " element " << i;
        }
    }

    inline void expect_gradient(std::vector<double>& x, const std::vector<double>& analytic,
                                const std::function<double()>& loss, const std::string& what)
    {
        ASSERT_EQ(x.size(), analytic.size()) << what;
        expect_gradient(x.data(), analytic.data(), x.size(), loss, what);
    }
}

#endif
