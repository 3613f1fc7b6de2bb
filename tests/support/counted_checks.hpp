// A user's tensor whose trait counts how often a walk asks whether it is contiguous. The
// per-leaf check (detail::leaf_problem) is the only code that asks, once for a parameter
// and once for its gradient, so the count says how often a step checked each leaf: it
// must be once, whoever drives the step (the optimizer, the stepper, a router,
// data_parallel). Checks of the views a walk hands on reach no user type; their cost is
// measured by bench/callgrind_steps.cpp (docs/benchmarks.md).
#ifndef XOPTIM_TESTS_SUPPORT_COUNTED_CHECKS_HPP
#define XOPTIM_TESTS_SUPPORT_COUNTED_CHECKS_HPP

#include <cstddef>
#include <vector>

#include <xoptim/params/tensor_traits.hpp>

namespace xoptim_test
{
    struct counted_tensor
    {
        std::vector<float> v;
    };

    inline std::size_t contiguity_asked = 0;

    inline std::vector<counted_tensor> counted_tensors(std::size_t n, std::size_t size, float value)
    {
        return std::vector<counted_tensor>(n, counted_tensor{std::vector<float>(size, value)});
    }

    // How often `step()` checked each of `leaves` leaves (parameter and gradient each once).
    template <class F>
    double checks_per_leaf(F&& step, std::size_t leaves)
    {
        contiguity_asked = 0;
        step();
        return double(contiguity_asked) / double(2 * leaves);
    }
}

template <>
struct xoptim::tensor_traits<xoptim_test::counted_tensor>
{
    using value_type = float;
    static float* data(xoptim_test::counted_tensor& t) { return t.v.data(); }
    static const float* data(const xoptim_test::counted_tensor& t) { return t.v.data(); }
    static std::size_t size(const xoptim_test::counted_tensor& t) { return t.v.size(); }
    static std::size_t rank(const xoptim_test::counted_tensor&) { return 1; }
    static std::size_t extent(const xoptim_test::counted_tensor& t, std::size_t) { return t.v.size(); }
    static bool contiguous(const xoptim_test::counted_tensor&) noexcept
    {
        ++xoptim_test::contiguity_asked;
        return true;
    }
};

#endif
