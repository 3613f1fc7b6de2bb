// One read of every gradient: the sum of their squares (accumulated in double) and
// whether all are finite. Global-norm clipping and the non-finite guard both come from
// this one pass (SPEC section 5).
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

    // Column sums: sums[j] += f(x[j]) (Square: f(x[j])^2, squared in double), in double,
    // one rounding each, for a row x of n elements as a pass sees the gradient (through
    // `transform`); f maps batches of T, computed in T. Called row after row, each
    // column's sum runs over the rows in order: the same bits for any thread count and
    // instruction set. (Adafactor's column statistics; not yet a reduction of the fused
    // passes.)
    template <bool Square, class T, class Arch, class F>
    void add_columns(const T* x, std::size_t n, double* sums,
                     const detail::prepared_transform<xsimd::batch<T, Arch>>& transform, F&& f) noexcept
    {
        using batch = xsimd::batch<T, Arch>;
        using dbatch = xsimd::batch<double, Arch>;
        const auto put = [](const dbatch& v, double* at) {
            const dbatch acc = dbatch::load_unaligned(at);
            (Square ? arch::fma(v, v, acc) : acc + v).store_unaligned(at);
        };
        const auto add = [&](const batch& v, std::size_t j) {
            if constexpr (std::is_same_v<T, double>)
            {
                put(v, sums + j);
            }
            else
            {
                const auto halves = arch::widen_halves(v);
                put(halves[0], sums + j);
                put(halves[1], sums + j + dbatch::size);
            }
        };
        std::size_t j = 0;
        for (; j + batch::size <= n; j += batch::size)
        {
            add(f(transform.apply(batch::load_unaligned(x + j))), j);
        }
        if (j < n)
        {
            alignas(64) T rest[batch::size] = {};
            std::copy(x + j, x + n, rest);
            f(transform.apply(batch::load_aligned(rest))).store_aligned(rest);
            for (std::size_t i = 0; i < n - j; ++i)
            {
                const double v = rest[i];
                sums[j + i] = Square ? std::fma(v, v, sums[j + i]) : sums[j + i] + v;
            }
        }
    }

    template <class T, class Arch>
    void add_column_squares(const T* x, std::size_t n, double* sums,
                            const detail::prepared_transform<xsimd::batch<T, Arch>>& transform) noexcept
    {
        add_columns<true>(x, n, sums, transform, [](const auto& v) { return v; });
    }

    inline grad_stats operator+(const grad_stats& a, const grad_stats& b) noexcept
    {
        return {a.sum_squares + b.sum_squares, a.finite && b.finite};
    }
}

#endif
