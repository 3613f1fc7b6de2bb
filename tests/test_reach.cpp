// The engine's reach beyond element-wise assignments, each piece on its own: reductions
// inside a fused pass (sum, sum_squares), per-tensor scalars written by finalizing
// assignments and read as broadcast operands, their thread-count invariance, and that a
// program without them runs today's loop.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include <xoptim/engine/executor.hpp>

namespace
{
    using namespace xoptim::sym;
    using xoptim::fuse;

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

    // Tensors given as (parameter, gradient) pairs, one job each.
    template <class T>
    struct tensors
    {
        std::vector<std::vector<T>> p, g, s;
        xoptim::job_list<T> jobs;

        explicit tensors(const std::vector<std::size_t>& sizes, std::size_t offset = 0)
        {
            for (std::size_t k = 0; k < sizes.size(); ++k)
            {
                p.push_back(sample<T>(sizes[k] + offset, 0.1 * double(k)));
                g.push_back(sample<T>(sizes[k] + offset, 1.3 + 0.1 * double(k)));
                s.push_back(std::vector<T>(sizes[k] + offset));
            }
            for (std::size_t k = 0; k < sizes.size(); ++k)
            {
                xoptim::tensor_slots<T> slots;
                slots.param = p[k].data() + offset;  // offset 1: starts off every alignment
                slots.grad = g[k].data() + offset;
                slots.states[0] = s[k].data() + offset;
                slots.size = sizes[k];
                jobs.push_back(slots);
            }
        }

        double scalar(std::size_t k, std::size_t K) const
        {
            return jobs.scalars(k)[K];
        }
    };

    const std::vector<std::size_t> odd_sizes = {0, 1, 7, 15, 16, 17, 33, 100, 1000, 32768, 32768 + 5, 100003};

    // Sum of x (or x * x) over elements in float64, with the bound of any summation order:
    // n * 2^-53 * sum |x| (plus the squares' own exactness: exact in double for floats).
    template <class T, class F>
    void expect_within_bound(const std::vector<T>& x, std::size_t offset, std::size_t n, double got, F term)
    {
        double exact = 0, magnitude = 0;
        for (std::size_t i = 0; i < n; ++i)
        {
            const double t = term(double(x[offset + i]));
            exact += t;
            magnitude += std::abs(t);
        }
        const double bound = double(n) * std::ldexp(1.0, -53) * magnitude * (std::is_same_v<T, float> ? 1 : 2);
        EXPECT_LE(std::abs(got - exact), bound) << n << " elements";
    }

    template <class T>
    void reductions_equal_float64_sums(std::size_t offset)
    {
        tensors<T> t(odd_sizes, offset);
        xoptim::run_program(fuse(scalar<0> = sum(p), scalar<1> = sum_squares(g), scalar<2> = sum(p * g)), t.jobs);
        for (std::size_t k = 0; k < odd_sizes.size(); ++k)
        {
            const std::size_t n = odd_sizes[k];
            expect_within_bound(t.p[k], offset, n, t.scalar(k, 0), [](double x) { return x; });
            expect_within_bound(t.g[k], offset, n, t.scalar(k, 1), [](double x) { return x * x; });
            std::vector<T> products(n + offset);
            for (std::size_t i = 0; i < n; ++i)
            {
                products[offset + i] = t.p[k][offset + i] * t.g[k][offset + i];  // as the pass rounds it
            }
            expect_within_bound(products, offset, n, t.scalar(k, 2), [](double x) { return x; });
        }
    }

    TEST(reach, a_reduction_equals_the_float64_sum_within_its_bound)
    {
        reductions_equal_float64_sums<float>(0);
        reductions_equal_float64_sums<double>(0);
        reductions_equal_float64_sums<float>(1);
        reductions_equal_float64_sums<double>(1);
    }

    // The padding lanes of a tail never reach a sum: 1 per element counts the elements
    // exactly, though a padded lane of `g * 0 + 1` is 1.
    TEST(reach, tails_do_not_reach_the_sums)
    {
        tensors<float> f(odd_sizes, 1);
        tensors<double> d(odd_sizes);
        const auto count = fuse(scalar<0> = sum(g * 0 + 1), scalar<1> = sum_squares(g * 0 + 2));
        xoptim::run_program(count, f.jobs);
        xoptim::run_program(count, d.jobs);
        for (std::size_t k = 0; k < odd_sizes.size(); ++k)
        {
            EXPECT_EQ(f.scalar(k, 0), double(odd_sizes[k]));
            EXPECT_EQ(d.scalar(k, 0), double(odd_sizes[k]));
            EXPECT_EQ(f.scalar(k, 1), 4.0 * double(odd_sizes[k]));
        }
    }

    // The documented order (docs/design.md): element e of a unit of 32768 to lane e mod 16,
    // the lanes added (l[k] + l[k + 8]) then pairwise, the units in order. Pinned here bit
    // for bit, so every instruction set computes this sum.
    template <class T>
    double documented_sum(const std::vector<T>& x, std::size_t n)
    {
        double total = 0;
        for (std::size_t lo = 0; lo < n; lo += 32768)
        {
            double l[16] = {};
            for (std::size_t e = lo; e < std::min(n, lo + 32768); ++e)
            {
                l[(e - lo) % 16] += double(x[e]);
            }
            double h[8];
            for (std::size_t k = 0; k < 8; ++k)
            {
                h[k] = l[k] + l[k + 8];
            }
            const double unit = ((h[0] + h[1]) + (h[2] + h[3])) + ((h[4] + h[5]) + (h[6] + h[7]));
            total = lo == 0 ? unit : total + unit;
        }
        return total;
    }

    TEST(reach, sums_follow_the_documented_order_on_every_instruction_set)
    {
        tensors<float> f(odd_sizes);
        tensors<double> d(odd_sizes);
        xoptim::run_program(fuse(scalar<0> = sum(p)), f.jobs);
        xoptim::run_program(fuse(scalar<0> = sum(p)), d.jobs);
        for (std::size_t k = 0; k < odd_sizes.size(); ++k)
        {
            EXPECT_EQ(f.scalar(k, 0), documented_sum(f.p[k], odd_sizes[k])) << odd_sizes[k];
            EXPECT_EQ(d.scalar(k, 0), documented_sum(d.p[k], odd_sizes[k])) << odd_sizes[k];
        }
    }

    TEST(reach, the_same_sums_and_updates_for_any_thread_count)
    {
        const std::size_t before = xoptim::num_threads();
        const std::size_t threshold = xoptim::parallel_threshold();
        xoptim::set_parallel_threshold(1024);
        const std::vector<std::size_t> sizes = {100003, 5, 70000, 1, 32768 * 3 + 17};
        std::vector<std::vector<double>> sums;
        std::vector<std::vector<std::vector<float>>> params;
        for (std::size_t n : {1, 2, 3, 4})
        {
            xoptim::set_num_threads(n);
            tensors<float> t(sizes);
            xoptim::run_program(fuse(local<0> = g * 3, p = p - local<0>, scalar<0> = sum_squares(local<0>),
                                     scalar<1> = sum(p)),
                                t.jobs);
            xoptim::run_program(fuse(p = p * scalar<1>), t.jobs);
            sums.emplace_back();
            for (std::size_t k = 0; k < sizes.size(); ++k)
            {
                sums.back().push_back(t.scalar(k, 0));
                sums.back().push_back(t.scalar(k, 1));
            }
            params.push_back(t.p);
        }
        xoptim::set_num_threads(before);
        xoptim::set_parallel_threshold(threshold);
        for (std::size_t n = 1; n < sums.size(); ++n)
        {
            EXPECT_EQ(sums[n], sums[0]) << n + 1 << " threads";
            EXPECT_EQ(params[n], params[0]) << n + 1 << " threads";
        }
    }

    // A reduction reads the registers as the pass's element assignments leave them: the
    // new p and a local, not what memory held before.
    TEST(reach, reductions_see_the_values_the_pass_computes)
    {
        tensors<double> t({37});
        const std::vector<double> p0 = t.p[0];
        xoptim::run_program(fuse(local<0> = g * 2, p = p + 1, scalar<0> = sum(local<0>), scalar<1> = sum(p)), t.jobs);
        double twice_g = 0, new_p = 0;
        for (std::size_t i = 0; i < 37; ++i)
        {
            twice_g += 2 * t.g[0][i];
            new_p += p0[i] + 1;
            EXPECT_EQ(t.p[0][i], p0[i] + 1);
        }
        EXPECT_NEAR(t.scalar(0, 0), twice_g, 1e-13);
        EXPECT_NEAR(t.scalar(0, 1), new_p, 1e-13);
    }

    // Finalizers run in program order, in double, each reading the scalars before it.
    TEST(reach, finalizers_read_the_scalars_before_them)
    {
        tensors<float> t({0, 3, 40});
        xoptim::run_program(fuse(scalar<0> = sqrt(sum_squares(p)), scalar<1> = sqrt(sum_squares(g)),
                                 scalar<2> = where(scalar<0> != 0 && scalar<1> != 0, 0.5 * (scalar<0> / scalar<1>), 0.5),
                                 scalar<3> = scalar<2> + 1),
                            t.jobs);
        EXPECT_EQ(t.scalar(0, 2), 0.5);  // no elements: both norms 0
        for (std::size_t k = 1; k < 3; ++k)
        {
            const double ratio = 0.5 * (t.scalar(k, 0) / t.scalar(k, 1));
            EXPECT_EQ(t.scalar(k, 2), ratio);
            EXPECT_EQ(t.scalar(k, 3), ratio + 1);
        }
    }

    // Per-tensor scalars are broadcast operands: every element of tensor k, tails and odd
    // lengths included, reads tensor k's value (rounded once to the element type).
    template <class T>
    void scalars_are_broadcast_per_tensor()
    {
        tensors<T> t({1, 7, 16, 17, 33, 1000, 40000}, 1);
        for (std::size_t k = 0; k < t.jobs.size(); ++k)
        {
            t.jobs.scalars(k)[1] = 0.1 * double(k + 1);
        }
        const auto before = t.p;
        xoptim::run_program(fuse(p = p * scalar<1> + g, state<0> = scalar<1>), t.jobs);
        for (std::size_t k = 0; k < t.jobs.size(); ++k)
        {
            const T s = static_cast<T>(0.1 * double(k + 1));
            for (std::size_t i = 1; i < t.p[k].size(); ++i)
            {
                volatile T product = before[k][i] * s;  // rounded on its own, as the engine does
                ASSERT_EQ(t.p[k][i], static_cast<T>(product + t.g[k][i])) << "tensor " << k << " element " << i;
                ASSERT_EQ(t.s[k][i], s);
            }
            EXPECT_EQ(t.p[k][0], before[k][0]);  // before the tensor's start: untouched
        }
    }

    TEST(reach, scalars_are_broadcast_per_tensor)
    {
        scalars_are_broadcast_per_tensor<float>();
        scalars_are_broadcast_per_tensor<double>();
    }

    // The gradient transform reaches the reductions like every read of g.
    TEST(reach, reductions_see_the_transformed_gradient)
    {
        tensors<float> t({1000});
        xoptim::grad_transform clip;
        clip.clip = 0.25;
        xoptim::run_program(fuse(scalar<0> = sum(g)), t.jobs, clip);
        double expected = 0;
        for (float x : t.g[0])
        {
            expected += double(std::min(0.25f, std::max(-0.25f, x)));
        }
        EXPECT_NEAR(t.scalar(0, 0), expected, 1e-12);
    }

    // A program whose traits hold no finalizer is today's program: same loads and stores.
    TEST(reach, element_programs_are_unchanged)
    {
        using traits = xoptim::detail::program_traits<decltype(fuse(p = p - 0.1 * g, state<0> = g))>;
        static_assert(!traits::finalizes);
        static_assert(traits::loads == ((1u << xoptim::param_slot) | (1u << xoptim::grad_slot)));
        using reducing = xoptim::detail::program_traits<decltype(fuse(p = p - 0.1 * g, scalar<0> = sum(p)))>;
        static_assert(reducing::finalizes && reducing::reductions == 1);
        static_assert(reducing::stores == (1u << xoptim::param_slot));
        SUCCEED();
    }
}
