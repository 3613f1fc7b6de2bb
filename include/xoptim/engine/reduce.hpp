// One read of every gradient: the sum of their squares (accumulated in double) and
// whether all are finite. Global-norm clipping and the non-finite guard both come from
// this one pass (SPEC section 5).
//
// The flat element range of a job list is cut into fixed blocks; each block's partial
// sum is computed in one fixed order and the partials are added in block order, so
// the result is bit-identical for any number of threads.
#ifndef XOPTIM_ENGINE_REDUCE_HPP
#define XOPTIM_ENGINE_REDUCE_HPP

#include <cmath>
#include <vector>

#include "executor.hpp"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

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

        // Sum of x*x over [x, x + n) in double. A float squared cannot overflow a double
        // (nor can any realistic count of them), so the sum is finite exactly when every
        // element is: `bad` gets sum - sum, 0 or NaN, with no per-element check.
        inline double sum_squares(const float* x, std::size_t n, double& bad) noexcept
        {
            std::size_t i = 0;
            double sum = 0;
#if defined(__AVX512F__)
            // Eight floats at a time widened to double straight from memory.
            // Four accumulators, written out: at -O2 an indexed array of them stays in memory.
            __m512d acc0 = _mm512_setzero_pd(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
            for (; i + 32 <= n; i += 32)
            {
                const __m512d v0 = _mm512_cvtps_pd(_mm256_loadu_ps(x + i));
                const __m512d v1 = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8));
                const __m512d v2 = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 16));
                const __m512d v3 = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 24));
                acc0 = _mm512_fmadd_pd(v0, v0, acc0);
                acc1 = _mm512_fmadd_pd(v1, v1, acc1);
                acc2 = _mm512_fmadd_pd(v2, v2, acc2);
                acc3 = _mm512_fmadd_pd(v3, v3, acc3);
            }
            // Lanes added through memory: GCC 12's _mm512_reduce_add_pd trips its own
            // -Wuninitialized (bug 105593) in every user's build.
            alignas(64) double lanes[8];
            _mm512_store_pd(lanes, _mm512_add_pd(_mm512_add_pd(acc0, acc1), _mm512_add_pd(acc2, acc3)));
            sum = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
#endif
            double part[4] = {0, 0, 0, 0};
            for (; i + 4 <= n; i += 4)
            {
                for (std::size_t k = 0; k < 4; ++k)
                {
                    part[k] += double(x[i + k]) * double(x[i + k]);
                }
            }
            for (; i < n; ++i)
            {
                part[0] += double(x[i]) * double(x[i]);
            }
            sum += (part[0] + part[1]) + (part[2] + part[3]);
            bad += sum - sum;
            return sum;
        }

        // Doubles can overflow when squared: finiteness is checked element by element,
        // x - x being 0 for a finite x and NaN otherwise.
        inline double sum_squares(const double* x, std::size_t n, double& bad) noexcept
        {
            using batch = xsimd::batch<double>;
            constexpr std::size_t w = batch::size;
            batch acc0(0.0), acc1(0.0), nan_lanes(0.0);
            std::size_t i = 0;
            for (; i + 2 * w <= n; i += 2 * w)
            {
                const batch a = batch::load_unaligned(x + i);
                const batch b = batch::load_unaligned(x + i + w);
                nan_lanes += (a - a) + (b - b);
                acc0 = xsimd::fma(a, a, acc0);
                acc1 = xsimd::fma(b, b, acc1);
            }
            double sum = xsimd::hadd(acc0 + acc1);
            bad += xsimd::hadd(nan_lanes);
            for (; i < n; ++i)
            {
                sum += x[i] * x[i];
                bad += x[i] - x[i];
            }
            return sum;
        }

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
                    double sum = 0, bad = 0;
                    for (std::size_t j = jobs.find(lo); j < jobs.size() && lo < hi; ++j)
                    {
                        const std::size_t base = jobs.begin_of(j);
                        const std::size_t end = std::min(hi, base + jobs[j].size);
                        sum += sum_squares(jobs[j].grad + (lo - base), end - lo, bad);
                        lo = end;
                    }
                    (*t.partials)[2 * b] = sum;
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

    inline grad_stats operator+(const grad_stats& a, const grad_stats& b) noexcept
    {
        return {a.sum_squares + b.sum_squares, a.finite && b.finite};
    }
}

#endif
