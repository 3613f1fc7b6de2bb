// std::span parameters (C++20); the rest of the suite is C++17.
#include <gtest/gtest.h>

#include <span>

#include <xoptim/optim/sgd.hpp>

TEST(params, span_of_mutable_parameter_and_const_gradient)
{
    std::vector<float> p(19, 1), g(19, 1);
    xoptim::sgd_options o;
    o.lr = 0.5;
    xoptim::sgd sgd(o);
    sgd.step(std::span<float>(p), std::span<const float>(g));
    sgd.step(std::span<float, 19>(p.data(), 19), std::span<const float, 19>(g.data(), 19));
    for (float x : p)
    {
        ASSERT_EQ(x, 0.0f);
    }
}
