// One read of every gradient: the sum of their squares (accumulated in double) and
// whether all are finite. Global-norm clipping and the non-finite guard both come from
// this one pass (SPEC section 5). Also the row and column sums of matrices in one pass
// (matrix_statistics: a factored optimizer's statistics).
//
// The flat element range of a job list is cut into fixed blocks; each block's partial
// sum is computed in one fixed order and the partials are added in block order, so
// the result is bit-identical for any number of threads.
#ifndef XOPTIM_ENGINE_REDUCE_HPP
#define XOPTIM_ENGINE_REDUCE_HPP

#include <algorithm>
#include <array>
#include <cmath>
#include <type_traits>
#include <utility>
#include <vector>

#include "arch/arch.hpp"
#include "executor.hpp"

namespace xoptim
{
    struct grad_stats
    {
        double sum_squares = 0;
        bool finite = true;

        double norm() const noexcept
        {
            return std::sqrt(sum_squares);
        }
    };

    namespace detail
    {
        inline constexpr std::size_t reduce_block = std::size_t(1) << 15;

        // Sums of x*x in double over the segments of one block, reduced once at the end
        // (a block may span thousands of small tensors: no horizontal sum per tensor).
        //
        // Floats: a float squared cannot overflow a double (nor can any realistic count of
        // them), so the sum is finite exactly when every element is; no per-element check.
        // Chunks of 32 go to the 32 running sums of arch::square_lanes, what is left of a
        // segment to four scalar ones: the same sums in the same order on every
        // instruction set, whatever its width.
        template <class T>
        class square_sum;

        template <>
        class square_sum<float>
        {
        public:

            void add(const float* x, std::size_t n) noexcept
            {
                std::size_t i = 0;
                for (; i + 32 <= n; i += 32)
                {
                    m_lanes.add(x + i);
                }
                for (; i + 4 <= n; i += 4)
                {
                    m_part0 += double(x[i]) * double(x[i]);
                    m_part1 += double(x[i + 1]) * double(x[i + 1]);
                    m_part2 += double(x[i + 2]) * double(x[i + 2]);
                    m_part3 += double(x[i + 3]) * double(x[i + 3]);
                }
                for (; i < n; ++i)
                {
                    m_part0 += double(x[i]) * double(x[i]);
                }
            }

            // The sum; `bad` gets sum - sum: 0, or NaN when an element was not finite.
            double total(double& bad) const noexcept
            {
                const double sum = ((m_part0 + m_part1) + (m_part2 + m_part3)) + m_lanes.total();
                bad += sum - sum;
                return sum;
            }

        private:

            arch::square_lanes<xsimd::default_arch> m_lanes;
            double m_part0 = 0, m_part1 = 0, m_part2 = 0, m_part3 = 0;
        };

        // Doubles can overflow when squared: finiteness is checked element by element,
        // x - x being 0 for a finite x and NaN otherwise. Chunks of 16 go to 16 running
        // sums (an fma each, 16 / batch::size batches of them), what is left of a
        // segment to one: the same sums in the same order on every instruction set.
        template <>
        class square_sum<double>
        {
        public:

            square_sum() noexcept
            {
                m_acc.fill(batch(0.0));
            }

            void add(const double* x, std::size_t n) noexcept
            {
                std::size_t i = 0;
                for (; i + 16 <= n; i += 16)
                {
                    add_chunk(x + i, std::make_index_sequence<accumulators>{});
                }
                for (; i < n; ++i)
                {
                    m_rest = std::fma(x[i], x[i], m_rest);
                    m_rest_nan += x[i] - x[i];
                }
            }

            // (s[k] + s[k + 8]) for k = 0..7, then those eight pairwise.
            double total(double& bad) const noexcept
            {
                alignas(64) double s[16];
                for (std::size_t k = 0; k < accumulators; ++k)
                {
                    m_acc[k].store_aligned(s + k * batch::size);
                }
                double l[8];
                for (std::size_t k = 0; k < 8; ++k)
                {
                    l[k] = s[k] + s[k + 8];
                }
                bad += arch::reduce_add(m_nan) + m_rest_nan;  // 0 or NaN in any order
                return arch::sum_of_eight(l) + m_rest;
            }

        private:

            using batch = xsimd::batch<double>;
            static constexpr std::size_t accumulators = 16 / batch::size;

            template <std::size_t... K>
            void add_chunk(const double* x, std::index_sequence<K...>) noexcept
            {
                const batch v[] = {batch::load_unaligned(x + K * batch::size)...};
                ((m_acc[K] = arch::fma(v[K], v[K], m_acc[K])), ...);
                m_nan = m_nan + (... + (v[K] - v[K]));
            }

            std::array<batch, accumulators> m_acc;
            batch m_nan = batch(0.0);
            double m_rest = 0, m_rest_nan = 0;
        };

        template <class T>
        struct reduce_task
        {
            const job_list<T>* jobs;
            std::vector<double>* partials;  // (sum, bad) per block
            std::size_t blocks;

            static void call(void* self, std::size_t k, std::size_t n)
            {
                const auto& t = *static_cast<const reduce_task*>(self);
                const job_list<T>& jobs = *t.jobs;
                const std::size_t total = jobs.total();
                for (std::size_t b = t.blocks * k / n; b < t.blocks * (k + 1) / n; ++b)
                {
                    std::size_t lo = b * reduce_block;
                    const std::size_t hi = std::min(total, lo + reduce_block);
                    square_sum<T> sum;
                    for (std::size_t j = jobs.find(lo); j < jobs.size() && lo < hi; ++j)
                    {
                        const std::size_t base = jobs.begin_of(j);
                        const std::size_t end = std::min(hi, base + jobs[j].size);
                        sum.add(jobs[j].grad + (lo - base), end - lo);
                        lo = end;
                    }
                    double bad = 0;
                    (*t.partials)[2 * b] = sum.total(bad);
                    (*t.partials)[2 * b + 1] = bad;
                }
            }
        };
    }

    // Reads the gradients of `jobs` once; `partials` is scratch, reused across calls.
    template <class T>
    grad_stats reduce_gradients(const job_list<T>& jobs, std::vector<double>& partials)
    {
        const std::size_t total = jobs.total();
        const std::size_t blocks = (total + detail::reduce_block - 1) / detail::reduce_block;
        partials.assign(2 * blocks, 0.0);
        const std::size_t per_thread = std::max(parallel_threshold(), detail::reduce_block);
        const std::size_t n = std::min({num_threads(), blocks, std::max<std::size_t>(1, total / per_thread)});
        detail::reduce_task<T> task{&jobs, &partials, blocks};
        if (blocks > 0)
        {
            parallel_run(&detail::reduce_task<T>::call, &task, n);
        }
        grad_stats s;
        double bad = 0;
        for (std::size_t b = 0; b < blocks; ++b)
        {
            s.sum_squares += partials[2 * b];
            bad += partials[2 * b + 1];
        }
        s.finite = !std::isnan(bad);
        return s;
    }

    // A row-major matrix of a statistics pass (below) and where its sums go.
    template <class T>
    struct matrix_sums_job
    {
        const T* param;
        const T* grad;
        std::size_t rows;
        std::size_t cols;
        double* row_sums;     // two per row: the sum of p^2, the sum of f(g) (Square: f(g)^2)
        double* column_sums;  // one per column: the sum over the rows of f(g) (Square: f(g)^2)
        // A bf16 matrix (T float; param and grad null; matrix_statistics::run<Square,
        // true>): p and g decoded as they are loaded, p plus its low halves where it is
        // kept compensated.
        const std::uint16_t* bf16_param = nullptr;
        const std::uint16_t* bf16_low = nullptr;
        const std::uint16_t* bf16_grad = nullptr;

        // The same tensors from element `at` on.
        matrix_sums_job from(std::size_t at) const noexcept
        {
            const auto shift = [at](auto* x) { return x != nullptr ? x + at : nullptr; };
            matrix_sums_job m = *this;
            m.param = shift(param);
            m.grad = shift(grad);
            m.bf16_param = shift(bf16_param);
            m.bf16_low = shift(bf16_low);
            m.bf16_grad = shift(bf16_grad);
            return m;
        }
    };

    // The row and column statistics of matrices (a factored optimizer's) in one threaded
    // pass over p and g, g seen through the step's gradient transform and mapped by f
    // (batches of T, computed in T); every sum in double. A row's sums take its elements
    // in the 16 fixed lanes of a reducing pass (the same bits on every instruction set);
    // a column's sum adds the rows of each block of rows in order, then the blocks in
    // order. Blocks depend on the shape only (at least 64 rows and 2^18 elements), so the
    // sums are the same for any thread count. A matrix of one block adds straight into its
    // column sums; one of several keeps a partial per block, at most 1/64 of a double per
    // element. Scratch is kept across steps.
    template <class T>
    class matrix_statistics
    {
    public:

        void clear() noexcept
        {
            m_matrices.clear();
            m_blocks.clear();
            m_total = 0;
        }

        void add(const matrix_sums_job<T>& m)
        {
            if (m.rows == 0 || m.cols == 0)
            {
                std::fill(m.row_sums, m.row_sums + 2 * m.rows, 0.0);
                std::fill(m.column_sums, m.column_sums + m.cols, 0.0);
                return;
            }
            const std::size_t rows_per_block = std::max<std::size_t>(64, (block_elements + m.cols - 1) / m.cols);
            const std::size_t partial = m.rows <= rows_per_block ? direct : 0;
            for (std::size_t r = 0; r < m.rows; r += rows_per_block)
            {
                m_blocks.push_back({m_matrices.size(), r, std::min(m.rows, r + rows_per_block), m_total, partial});
                m_total += (m_blocks.back().end - r) * m.cols;
            }
            m_matrices.push_back(m);
        }

        // Bf16: some matrices may be bf16 (compiled only where they can be).
        template <bool Square, bool Bf16 = false, class F>
        void run(const grad_transform& transform, F f)
        {
            std::size_t partials = 0;
            for (block& b : m_blocks)
            {
                if (b.partial != direct)
                {
                    b.partial = partials;
                    partials += m_matrices[b.matrix].cols;
                }
            }
            m_partials.resize(partials);
            const std::size_t n = std::min({num_threads(), m_blocks.size(),
                                            std::max<std::size_t>(1, m_total / std::max(parallel_threshold(), block_elements))});
            task<Square, Bf16, F> t{this, detail::prepared_transform<batch>(transform), f};
            if (!m_blocks.empty())
            {
                parallel_run(&task<Square, Bf16, F>::call, &t, n);
            }
            for (const block& b : m_blocks)
            {
                if (b.partial == direct)
                {
                    continue;
                }
                const matrix_sums_job<T>& m = m_matrices[b.matrix];
                const double* partial = m_partials.data() + b.partial;
                for (std::size_t j = 0; j < m.cols; ++j)
                {
                    m.column_sums[j] = b.first_row == 0 ? partial[j] : m.column_sums[j] + partial[j];
                }
            }
        }

    private:

        using batch = xsimd::batch<T>;
        using dbatch = xsimd::batch<double>;
        using lanes_type = detail::reduction_lanes<T, typename batch::arch_type>;
        static constexpr std::size_t width = batch::size;
        static constexpr std::size_t block_elements = std::size_t(1) << 18;
        static constexpr std::size_t direct = std::size_t(-1);  // a block whose sums are its matrix's

        struct block
        {
            std::size_t matrix;
            std::size_t first_row;
            std::size_t end;      // one past its last row
            std::size_t start;    // in the flat range of all blocks: where the thread split places it
            std::size_t partial;  // its column sums in m_partials, or `direct`
        };

        template <bool Square, bool Bf16, class F>
        struct task
        {
            matrix_statistics* self;
            detail::prepared_transform<batch> transform;
            F f;

            // Thread k of n runs the blocks that start in its share of the flat range.
            static void call(void* ctx, std::size_t k, std::size_t n)
            {
                auto& t = *static_cast<task*>(ctx);
                const auto& blocks = t.self->m_blocks;
                const std::size_t total = t.self->m_total;
                const auto cut = [&](std::size_t j) { return j == n ? total + 1 : total / n * j + total % n * j / n; };
                const auto first_at = [&](std::size_t e) {
                    return std::lower_bound(blocks.begin(), blocks.end(), e,
                                            [](const block& b, std::size_t x) { return b.start < x; });
                };
                for (auto b = first_at(cut(k)), last = first_at(cut(k + 1)); b != last; ++b)
                {
                    t.run_block(*b);
                }
            }

            void run_block(const block& b) const
            {
                const matrix_sums_job<T>& m = self->m_matrices[b.matrix];
                double* columns = b.partial == direct ? m.column_sums : self->m_partials.data() + b.partial;
                std::fill(columns, columns + m.cols, 0.0);
                for (std::size_t r = b.first_row; r < b.end; ++r)
                {
                    const matrix_sums_job<T> x = m.from(r * m.cols);
                    if constexpr (Bf16 && std::is_same_v<T, float>)
                    {
                        if (m.bf16_param != nullptr)
                        {
                            run_row(bf16_row{x.bf16_param, x.bf16_low, x.bf16_grad}, m.cols, columns, m.row_sums + 2 * r);
                            continue;
                        }
                    }
                    run_row(plain_row{x.param, x.grad}, m.cols, columns, m.row_sums + 2 * r);
                }
            }

            // One row's p and g, in T.
            struct plain_row
            {
                const T* p;
                const T* g;

                batch param(std::size_t i) const noexcept
                {
                    return batch::load_unaligned(p + i);
                }

                batch grad(std::size_t i) const noexcept
                {
                    return batch::load_unaligned(g + i);
                }

                T param_at(std::size_t i) const noexcept
                {
                    return p[i];
                }

                T grad_at(std::size_t i) const noexcept
                {
                    return g[i];
                }
            };

            // One row's p and g in bf16, decoded (p with its low halves where it has them).
            struct bf16_row
            {
                const std::uint16_t* p;
                const std::uint16_t* low;
                const std::uint16_t* g;

                batch param(std::size_t i) const noexcept
                {
                    using A = typename batch::arch_type;
                    return low != nullptr ? arch::bf16_to_float<A>(p + i) + arch::bf16_to_float<A>(low + i)
                                          : arch::bf16_to_float<A>(p + i);
                }

                batch grad(std::size_t i) const noexcept
                {
                    return arch::bf16_to_float<typename batch::arch_type>(g + i);
                }

                T param_at(std::size_t i) const noexcept
                {
                    return low != nullptr ? bfloat16::to_float(p[i]) + bfloat16::to_float(low[i])
                                          : bfloat16::to_float(p[i]);
                }

                T grad_at(std::size_t i) const noexcept
                {
                    return bfloat16::to_float(g[i]);
                }
            };

            // One row: its two sums into out[0..1], f(g) added to the column sums.
            template <class Row>
            void run_row(const Row row, std::size_t n, double* columns, double* out) const
            {
                using kind = std::conditional_t<Square, reduce_sum_squares, reduce_sum>;
                using positions = std::make_index_sequence<lanes_type::positions>;
                lanes_type param_lanes;
                lanes_type grad_lanes;
                const auto add = [&](auto J, const batch& pb, const batch& x, std::size_t at) {
                    param_lanes.template add<reduce_sum_squares, decltype(J)::value>(pb);
                    grad_lanes.template add<kind, decltype(J)::value>(x);
                    add_columns(x, columns + at);
                };
                std::size_t i = 0;
                for (; i + lanes_type::lanes <= n; i += lanes_type::lanes)
                {
                    detail::for_positions(positions{}, [&](auto J) {
                        const std::size_t at = i + decltype(J)::value * width;
                        add(J, row.param(at), f(transform.apply(row.grad(at))), at);
                    });
                }
                // Fewer than 16 left: whole batches at their positions, then the tail,
                // zero beyond its end in the lanes, its columns added one by one.
                detail::for_positions(positions{}, [&](auto J) {
                    const std::size_t at = i + decltype(J)::value * width;
                    if (at + width <= n)
                    {
                        add(J, row.param(at), f(transform.apply(row.grad(at))), at);
                    }
                    else if (at < n)
                    {
                        const std::size_t rest = n - at;
                        alignas(64) T ps[width] = {};
                        alignas(64) T xs[width] = {};
                        for (std::size_t e = 0; e < rest; ++e)
                        {
                            ps[e] = row.param_at(at + e);
                            xs[e] = row.grad_at(at + e);
                        }
                        f(transform.apply(batch::load_aligned(xs))).store_aligned(xs);
                        std::fill(xs + rest, xs + width, T(0));
                        param_lanes.template add<reduce_sum_squares, decltype(J)::value>(batch::load_aligned(ps));
                        grad_lanes.template add<kind, decltype(J)::value>(batch::load_aligned(xs));
                        for (std::size_t e = 0; e < rest; ++e)
                        {
                            const double v = xs[e];
                            columns[at + e] = Square ? std::fma(v, v, columns[at + e]) : columns[at + e] + v;
                        }
                    }
                });
                out[0] = param_lanes.total();
                out[1] = grad_lanes.total();
            }

            static void add_columns(const batch& x, double* at) noexcept
            {
                const auto put = [](const dbatch& v, double* to) {
                    const dbatch acc = dbatch::load_unaligned(to);
                    (Square ? arch::fma(v, v, acc) : acc + v).store_unaligned(to);
                };
                if constexpr (std::is_same_v<T, double>)
                {
                    put(x, at);
                }
                else
                {
                    const auto halves = arch::widen_halves(x);
                    put(halves[0], at);
                    put(halves[1], at + dbatch::size);
                }
            }
        };

        std::vector<matrix_sums_job<T>> m_matrices;
        std::vector<block> m_blocks;
        std::vector<double> m_partials;
        std::size_t m_total = 0;
    };

    inline grad_stats operator+(const grad_stats& a, const grad_stats& b) noexcept
    {
        return {a.sum_squares + b.sum_squares, a.finite && b.finite};
    }
}

#endif
