// The engine's reach beyond element-wise assignments, each piece on its own: reductions
// inside a fused pass (sum, sum_squares, count), per-tensor scalars written by finalizing
// assignments and read as broadcast operands, their thread-count invariance, that a
// program without them runs today's loop, and the row and column sums of matrices
// (matrix_statistics) in their documented order, also of bf16 matrices, and two passes
// run in turn tensor by tensor (run_in_turn) giving the bits of the two passes, also
// where the second reads what the first carried, and what such a second pass asks for
// ahead of the next tensor.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include <xoptim/engine/executor.hpp>
#include <xoptim/engine/reduce.hpp>

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

    // count(c) is the number of elements where c holds, counted in the element type: the
    // same as a loop's count for every size and alignment, with the padding of a tail
    // (where `g * 0 + 1 > 0` holds too) left out, a NaN failing every comparison, and a
    // count that combines comparisons.
    template <class T>
    void counts_are_exact(std::size_t offset)
    {
        tensors<T> t(odd_sizes, offset);
        for (std::size_t k = 0; k < odd_sizes.size(); ++k)
        {
            for (std::size_t i = 0; i < odd_sizes[k]; i += 37)
            {
                t.g[k][offset + i] = std::numeric_limits<T>::quiet_NaN();
            }
        }
        xoptim::run_program(fuse(scalar<0> = count(p * g > 0), scalar<1> = count(g * 0 + 1 > 0),
                                 scalar<2> = count(p > 0 || g <= 0)),
                            t.jobs);
        for (std::size_t k = 0; k < odd_sizes.size(); ++k)
        {
            double agree = 0, any = 0;
            for (std::size_t i = offset; i < offset + odd_sizes[k]; ++i)
            {
                agree += t.p[k][i] * t.g[k][i] > 0 ? 1 : 0;
                any += t.p[k][i] > 0 || t.g[k][i] <= 0 ? 1 : 0;
            }
            EXPECT_EQ(t.scalar(k, 0), agree) << odd_sizes[k] << " elements";
            EXPECT_EQ(t.scalar(k, 1), double(odd_sizes[k] - (odd_sizes[k] + 36) / 37)) << odd_sizes[k] << " elements";
            EXPECT_EQ(t.scalar(k, 2), any) << odd_sizes[k] << " elements";
        }
    }

    TEST(reach, counts_are_exact)
    {
        counts_are_exact<float>(0);
        counts_are_exact<double>(0);
        counts_are_exact<float>(1);
        counts_are_exact<double>(1);
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
                                     scalar<1> = sum(p), scalar<2> = count(p > 0)),
                                t.jobs);
            xoptim::run_program(fuse(p = p * scalar<1>), t.jobs);
            sums.emplace_back();
            for (std::size_t k = 0; k < sizes.size(); ++k)
            {
                sums.back().push_back(t.scalar(k, 0));
                sums.back().push_back(t.scalar(k, 1));
                sums.back().push_back(t.scalar(k, 2));
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

    // run_in_turn's `between`: scalar<2> from the tensor's first-pass scalars and its
    // size, in the element type; counts its calls per tensor.
    struct scale_between
    {
        std::vector<int>* calls;

        template <class T>
        void operator()(const xoptim::tensor_slots<T>& job, xoptim::job_scalars& s) const
        {
            ++(*calls)[static_cast<std::size_t>(s[3])];
            s[2] = double(static_cast<T>(s[0]) / static_cast<T>(job.size + 1));
        }
    };

    // run_in_turn gives the bits of the first program's pass, `between` for each tensor,
    // then the second program's pass, for every size (none, the in-turn limit and one
    // past it, many small ones between big ones, tensors of several units), alignment and
    // thread count, calling `between` once per tensor; with Carry (run_carrying), the
    // second pass reads the state<0> * 2 that the first carried instead of computing it
    // again, and a second run over the same list (its carried array kept) gives the same
    // bits again.
    template <class T, bool Carry = false>
    void in_turn_is_pass_by_pass(std::size_t offset)
    {
        const std::size_t before = xoptim::num_threads();
        const std::size_t threshold = xoptim::parallel_threshold();
        xoptim::set_parallel_threshold(1024);
        std::vector<std::size_t> sizes = odd_sizes;
        for (std::size_t n : {16384, 16385, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096})
        {
            sizes.push_back(n);
        }
        const auto first = fuse(local<0> = g * 3, state<0> = state<0> * 0.5 + local<0>,
                                scalar<0> = sum_squares(local<0>), scalar<1> = 1 / (1 + abs(sum(p))));
        const auto second = fuse(p = p * scalar<1> + state<0> * 2 * scalar<2>);
        const auto carrying = fuse(local<0> = g * 3, state<0> = state<0> * 0.5 + local<0>, carried = state<0> * 2,
                                   scalar<0> = sum_squares(local<0>), scalar<1> = 1 / (1 + abs(sum(p))));
        const auto in_turn = fuse(p = p * scalar<1> + carried * scalar<2>);
        for (std::size_t n : {1, 2, 3})
        {
            xoptim::set_num_threads(n);
            tensors<T> expected(sizes, offset), got(sizes, offset);
            std::vector<int> expected_calls(sizes.size()), calls(sizes.size());
            for (std::size_t k = 0; k < sizes.size(); ++k)
            {
                expected.jobs.scalars(k)[3] = got.jobs.scalars(k)[3] = double(k);
            }
            for (int step = 1; step <= 2; ++step)
            {
                xoptim::run_program(first, expected.jobs);
                for (std::size_t k = 0; k < sizes.size(); ++k)
                {
                    scale_between{&expected_calls}(expected.jobs[k], expected.jobs.scalars(k));
                }
                xoptim::run_program(second, expected.jobs);
                if constexpr (Carry)
                {
                    xoptim::run_carrying(carrying, scale_between{&calls}, in_turn, got.jobs);
                    EXPECT_EQ(got.jobs.carried().size(), *std::max_element(sizes.begin(), sizes.end()));
                }
                else
                {
                    xoptim::run_in_turn(first, scale_between{&calls}, second, got.jobs);
                }
                EXPECT_EQ(got.p, expected.p) << n << " threads, step " << step;
                EXPECT_EQ(got.s, expected.s) << n << " threads, step " << step;
                EXPECT_EQ(calls, expected_calls) << n << " threads, step " << step;
                for (std::size_t k = 0; k < sizes.size(); ++k)
                {
                    EXPECT_EQ(got.jobs.scalars(k), expected.jobs.scalars(k))
                        << sizes[k] << " elements, " << n << " threads, step " << step;
                }
            }
        }
        xoptim::set_num_threads(before);
        xoptim::set_parallel_threshold(threshold);
    }

    TEST(reach, in_turn_is_pass_by_pass)
    {
        in_turn_is_pass_by_pass<float>(0);
        in_turn_is_pass_by_pass<float>(1);
        in_turn_is_pass_by_pass<double>(1);
    }

    TEST(reach, a_carried_array_gives_the_bits_of_computing_again)
    {
        in_turn_is_pass_by_pass<float, true>(0);
        in_turn_is_pass_by_pass<float, true>(1);
        in_turn_is_pass_by_pass<double, true>(1);
    }

    // What a second pass run in turn asks for ahead (detail::lines_ahead): the arrays in
    // the mask that the next tensor has, not the carried one, and each of their lines
    // once over the pass's lines where the tensors are the same size; a line in k
    // (stride k lines) where the next is bigger; nothing past the next one's end.
    TEST(reach, a_pass_in_turn_asks_for_the_next_tensors_lines)
    {
        std::vector<float> p(4096), g(4096), m(4096), v(4096), c(4096);
        xoptim::tensor_slots<float> next;
        next.param = p.data();
        next.grad = g.data();
        next.states[0] = m.data();
        next.states[1] = v.data();
        next.states[xoptim::carry_slot - xoptim::first_state] = c.data();
        next.size = 4096;
        constexpr std::uint64_t mask = std::uint64_t(1) << xoptim::grad_slot |
                                       std::uint64_t(1) << xoptim::first_state |
                                       std::uint64_t(1) << xoptim::carry_slot;
        const xoptim::detail::lines_ahead<float, mask> same(next, 4096 * sizeof(float) / 64);
        ASSERT_EQ(same.arrays().size(), 2u);
        EXPECT_EQ(same.arrays()[0], reinterpret_cast<const char*>(g.data()));
        EXPECT_EQ(same.arrays()[1], reinterpret_cast<const char*>(m.data()));
        for (std::size_t k = 0; k < 256; ++k)
        {
            EXPECT_EQ(same.offset(k), k * 64);
        }
        // A pass of 100 lines before a tensor of 256: every third line.
        const xoptim::detail::lines_ahead<float, mask> bigger(next, 100);
        EXPECT_EQ(bigger.offset(1), 192u);
        EXPECT_GE(bigger.offset(99), 4096 * sizeof(float) - 192);  // the pass reaches its end
        // A pass of 1,000 lines before it: lines 256 on ask for nothing.
        const xoptim::detail::lines_ahead<float, mask> smaller(next, 1000);
        EXPECT_EQ(smaller.offset(255), 255u * 64);
        EXPECT_GE(smaller.offset(256), 4096 * sizeof(float));
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
    // A matrix for matrix_statistics: p and g of rows x cols from one element on (off
    // every alignment), and where its sums go.
    template <class T>
    struct matrix_case
    {
        std::size_t rows, cols;
        std::vector<T> p, g;
        std::vector<double> row_sums, column_sums;

        matrix_case(std::size_t r, std::size_t c, double shift)
            : rows(r), cols(c), p(sample<T>(r * c + 1, shift)), g(sample<T>(r * c + 1, shift + 1.3)),
              row_sums(2 * r, -1.0), column_sums(c, -1.0)
        {
        }

        xoptim::matrix_sums_job<T> job()
        {
            return {p.data() + 1, g.data() + 1, rows, cols, row_sums.data(), column_sums.data()};
        }

        T at(const std::vector<T>& x, std::size_t r, std::size_t j) const
        {
            return x[1 + r * cols + j];
        }
    };

    // Runs the statistics pass over `cases`, f(g) = 2 g (so a transform's reach shows).
    template <bool Square, class T>
    void run_statistics(std::vector<matrix_case<T>>& cases, const xoptim::grad_transform& transform = {})
    {
        xoptim::matrix_statistics<T> stats;
        stats.clear();
        for (auto& c : cases)
        {
            stats.add(c.job());
        }
        stats.template run<Square>(transform, [](const auto& x) { return x + x; });
    }

    // acc + v^2 rounded once (a sum of squares), or acc + v.
    double add_term(double acc, double v, bool square)
    {
        return square ? std::fma(v, v, acc) : acc + v;
    }

    // The documented order (engine/reduce.hpp): a row's elements in the 16 lanes of a
    // reducing pass; a column's sum over each block of rows (at least 64 rows and 2^18
    // elements) in row order, then the blocks in order. Pinned bit for bit.
    template <class T, class F>
    double documented_row_sum(const matrix_case<T>& c, const std::vector<T>& x, std::size_t r, F value)
    {
        double l[16] = {};
        for (std::size_t j = 0; j < c.cols; ++j)
        {
            l[j % 16] = add_term(l[j % 16], value(double(c.at(x, r, j))), true);
        }
        double h[8];
        for (std::size_t k = 0; k < 8; ++k)
        {
            h[k] = l[k] + l[k + 8];
        }
        return ((h[0] + h[1]) + (h[2] + h[3])) + ((h[4] + h[5]) + (h[6] + h[7]));
    }

    template <class T, class F>
    double documented_column_sum(const matrix_case<T>& c, std::size_t j, F value)
    {
        const std::size_t block = std::max<std::size_t>(64, ((std::size_t(1) << 18) + c.cols - 1) / c.cols);
        double total = 0;
        for (std::size_t lo = 0; lo < c.rows; lo += block)
        {
            double partial = 0;
            for (std::size_t r = lo; r < std::min(c.rows, lo + block); ++r)
            {
                partial = add_term(partial, value(double(c.at(c.g, r, j))), true);
            }
            total = lo == 0 ? partial : total + partial;
        }
        return total;
    }

    template <class T>
    void statistics_follow_the_documented_order()
    {
        std::vector<matrix_case<T>> cases;
        for (auto [r, c] : {std::pair<std::size_t, std::size_t>{1, 1}, {3, 17}, {65, 16}, {2, 33}, {130, 4100},
                            {7, 100003}, {0, 5}, {5, 0}})
        {
            cases.emplace_back(r, c, 0.1 * double(cases.size()));
        }
        run_statistics<true>(cases);
        const auto itself = [](double x) { return x; };
        const auto doubled = [](double x) { return x + x; };
        for (const auto& c : cases)
        {
            for (std::size_t r = 0; r < c.rows; ++r)
            {
                EXPECT_EQ(c.row_sums[2 * r], documented_row_sum(c, c.p, r, itself)) << c.rows << "x" << c.cols;
                EXPECT_EQ(c.row_sums[2 * r + 1], documented_row_sum(c, c.g, r, doubled)) << c.rows << "x" << c.cols;
            }
            for (std::size_t j = 0; j < c.cols; ++j)
            {
                EXPECT_EQ(c.column_sums[j], documented_column_sum(c, j, doubled))
                    << c.rows << "x" << c.cols << " column " << j;
            }
        }
    }

    TEST(reach, matrix_statistics_follow_the_documented_order_on_every_instruction_set)
    {
        statistics_follow_the_documented_order<float>();
        statistics_follow_the_documented_order<double>();
    }

    // Padding lanes never reach a row or a column: f(g) = 1 everywhere counts exactly.
    TEST(reach, matrix_statistics_count_only_the_matrix)
    {
        std::vector<matrix_case<float>> cases;
        for (auto [r, c] : {std::pair<std::size_t, std::size_t>{3, 17}, {130, 4100}, {1, 1}})
        {
            cases.emplace_back(r, c, 0);
        }
        xoptim::matrix_statistics<float> stats;
        for (auto& c : cases)
        {
            stats.add(c.job());
        }
        stats.run<false>({}, [](const auto& x) { return x * 0 + 1; });
        for (const auto& c : cases)
        {
            for (std::size_t r = 0; r < c.rows; ++r)
            {
                EXPECT_EQ(c.row_sums[2 * r + 1], double(c.cols));
            }
            for (std::size_t j = 0; j < c.cols; ++j)
            {
                EXPECT_EQ(c.column_sums[j], double(c.rows));
            }
        }
    }

    TEST(reach, matrix_statistics_are_the_same_for_any_thread_count)
    {
        const std::size_t before = xoptim::num_threads();
        const std::size_t threshold = xoptim::parallel_threshold();
        xoptim::set_parallel_threshold(1024);
        std::vector<std::vector<double>> results;
        for (std::size_t n : {1, 2, 3, 4})
        {
            xoptim::set_num_threads(n);
            std::vector<matrix_case<float>> cases;
            cases.emplace_back(300, 4099, 0.0);
            cases.emplace_back(9, 33, 0.5);
            cases.emplace_back(1000, 300, 0.7);
            run_statistics<true>(cases);
            results.emplace_back();
            for (const auto& c : cases)
            {
                results.back().insert(results.back().end(), c.row_sums.begin(), c.row_sums.end());
                results.back().insert(results.back().end(), c.column_sums.begin(), c.column_sums.end());
            }
        }
        xoptim::set_num_threads(before);
        xoptim::set_parallel_threshold(threshold);
        for (std::size_t n = 1; n < results.size(); ++n)
        {
            EXPECT_EQ(results[n], results[0]) << n + 1 << " threads";
        }
    }

    // The step's gradient transform reaches the sums of g: clipped at 0.25, 2 g is 0.5
    // wherever |g| >= 0.25.
    TEST(reach, matrix_statistics_see_the_transformed_gradient)
    {
        std::vector<matrix_case<double>> cases;
        cases.emplace_back(5, 37, 0.3);
        xoptim::grad_transform clip;
        clip.clip = 0.25;
        run_statistics<false>(cases, clip);
        const auto& c = cases[0];
        const auto seen = [&](std::size_t r, std::size_t j) { return 2 * std::min(0.25, std::max(-0.25, c.at(c.g, r, j))); };
        for (std::size_t j = 0; j < c.cols; ++j)
        {
            double expected = 0;
            for (std::size_t r = 0; r < c.rows; ++r)
            {
                expected += seen(r, j);
            }
            EXPECT_NEAR(c.column_sums[j], expected, 1e-13);
        }
        for (std::size_t r = 0; r < c.rows; ++r)  // the rows' sums of f(g), and of p^2 untouched by it
        {
            double expected = 0, squares = 0;
            for (std::size_t j = 0; j < c.cols; ++j)
            {
                expected += seen(r, j);
                squares += c.at(c.p, r, j) * c.at(c.p, r, j);
            }
            EXPECT_NEAR(c.row_sums[2 * r + 1], expected, 1e-13);
            EXPECT_NEAR(c.row_sums[2 * r], squares, 1e-12);
        }
    }
    // bf16 matrices (run<Square, true>): p (with low halves, or without) and g decoded as
    // they are loaded give the sums a float matrix of the decoded values gives, bit for
    // bit, through a transform; float matrices beside them as before.
    TEST(reach, matrix_statistics_decode_bf16_matrices)
    {
        using xoptim::bfloat16;
        for (auto [rows, cols] : {std::pair<std::size_t, std::size_t>{3, 17}, {130, 4100}, {1, 1}})
        {
            for (bool compensated : {false, true})
            {
                const std::size_t n = rows * cols + 1;  // from one element on
                matrix_case<float> decoded(rows, cols, 0.2), coded(rows, cols, 0.2), plain(rows, cols, 0.9);
                std::vector<std::uint16_t> hi(n), lo(n), g(n);
                for (std::size_t i = 0; i < n; ++i)
                {
                    const float x = coded.p[i] * 1.001f;
                    hi[i] = bfloat16::round_nearest_even(x);
                    lo[i] = compensated ? bfloat16::round_nearest_even(x - bfloat16::to_float(hi[i])) : 0;
                    g[i] = bfloat16::round_nearest_even(coded.g[i]);
                    decoded.p[i] = bfloat16::to_float(hi[i]) + (compensated ? bfloat16::to_float(lo[i]) : 0.0f);
                    decoded.g[i] = bfloat16::to_float(g[i]);
                }
                xoptim::matrix_sums_job<float> job = coded.job();
                job.param = nullptr;
                job.grad = nullptr;
                job.bf16_param = hi.data() + 1;
                job.bf16_low = compensated ? lo.data() + 1 : nullptr;
                job.bf16_grad = g.data() + 1;
                xoptim::grad_transform transform;
                transform.clip = 0.6;
                const auto f = [](const auto& x) { return x + x; };
                xoptim::matrix_statistics<float> stats;
                stats.add(job);
                stats.add(plain.job());
                stats.run<true, true>(transform, f);
                std::vector<matrix_case<float>> expected;
                expected.emplace_back(rows, cols, 0.9);
                xoptim::matrix_statistics<float> floats;
                floats.add(decoded.job());
                floats.add(expected[0].job());
                floats.run<true>(transform, f);
                EXPECT_EQ(coded.row_sums, decoded.row_sums) << rows << " x " << cols;
                EXPECT_EQ(coded.column_sums, decoded.column_sums) << rows << " x " << cols;
                EXPECT_EQ(plain.row_sums, expected[0].row_sums);
                EXPECT_EQ(plain.column_sums, expected[0].column_sums);
                EXPECT_NE(decoded.row_sums[0], -1.0);
            }
        }
    }

}
