// SSE2 to SSE4.2 (xsimd::sse2 and the architectures built on it): what every x86-64
// has, and what a build without -march flags gets.
#ifndef XOPTIM_ENGINE_ARCH_X86_SSE2_HPP
#define XOPTIM_ENGINE_ARCH_X86_SSE2_HPP

#include <emmintrin.h>

#include <limits>

#include "generic.hpp"

namespace xoptim
{
    namespace arch
    {
        namespace kernel
        {
            using xsimd::sse2;

            // The value is the register's, unknown to the optimizer: a product passed
            // through here is never contracted into an fma.
            template <class A, class T>
            inline xsimd::batch<T, A> opaque(const xsimd::batch<T, A>& x, requires_arch<sse2>) noexcept
            {
                typename xsimd::batch<T, A>::register_type r = x;
                asm("" : "+v"(r));
                return r;
            }

            template <class A>
            inline xsimd::batch<float, A> min(const xsimd::batch<float, A>& a, const xsimd::batch<float, A>& b,
                                              requires_arch<sse2>) noexcept
            {
                return _mm_min_ps(a, b);
            }

            template <class A>
            inline xsimd::batch<double, A> min(const xsimd::batch<double, A>& a, const xsimd::batch<double, A>& b,
                                               requires_arch<sse2>) noexcept
            {
                return _mm_min_pd(a, b);
            }

            template <class A>
            inline xsimd::batch<float, A> max(const xsimd::batch<float, A>& a, const xsimd::batch<float, A>& b,
                                              requires_arch<sse2>) noexcept
            {
                return _mm_max_ps(a, b);
            }

            template <class A>
            inline xsimd::batch<double, A> max(const xsimd::batch<double, A>& a, const xsimd::batch<double, A>& b,
                                               requires_arch<sse2>) noexcept
            {
                return _mm_max_pd(a, b);
            }

            template <class A>
            inline xsimd::batch<float, A> max_abs(const xsimd::batch<float, A>& a, const xsimd::batch<float, A>& x,
                                                  requires_arch<sse2>) noexcept
            {
                return _mm_max_ps(xsimd::abs(x), a);  // a where x is NaN
            }

            /*******************************
             * fma without the instruction *
             *******************************/

            // a * b + c rounded once, for two floats given in double: a * b is exact in
            // double, the sum s = a * b + c rounded to double and its error e found
            // exactly (TwoSum); where e is not 0, s is rounded to odd instead (moved one
            // unit toward e unless its last bit is already 1), so that its rounding to
            // float, 29 bits further up, sees whether the exact sum lies above, at or
            // below a float midpoint as one rounding would: round-to-odd then
            // round-to-nearest at 2 or more bits less is one correct rounding (Boldo and
            // Melquiond, "Emulation of FMA and correctly rounded sums: proved algorithms
            // using rounding to odd", IEEE Trans. Computers 57(4), 2008). Products of
            // floats neither overflow nor underflow in double; inf and NaN pass through
            // (e is then NaN and s is kept).
            inline __m128 fma_odd_half(__m128d a, __m128d b, __m128d c) noexcept
            {
                const __m128d p = _mm_mul_pd(a, b);
                const __m128d s = _mm_add_pd(p, c);
                const __m128d bp = _mm_sub_pd(s, p);
                const __m128d e = _mm_add_pd(_mm_sub_pd(p, _mm_sub_pd(s, bp)), _mm_sub_pd(c, bp));
                const __m128d sign = _mm_set1_pd(-0.0);
                const __m128d inexact = _mm_cmpgt_pd(_mm_andnot_pd(sign, e), _mm_setzero_pd());
                // One unit less in magnitude where e points toward zero, then the last bit
                // set: the odd one of the two neighbours of the exact sum.
                const __m128i bits = _mm_castpd_si128(s);
                const __m128i toward_zero = _mm_srli_epi64(_mm_castpd_si128(_mm_xor_pd(s, e)), 63);
                const __m128i odd = _mm_or_si128(_mm_sub_epi64(bits, toward_zero), _mm_set_epi32(0, 1, 0, 1));
                const __m128d r = _mm_or_pd(_mm_and_pd(inexact, _mm_castsi128_pd(odd)), _mm_andnot_pd(inexact, s));
                return _mm_cvtpd_ps(r);
            }

            // a * b + c rounded once, for four floats. In double, a * b is exact and the
            // sum s is rounded once; s rounded to float is then the fma, except where s
            // is exactly halfway between two floats (the exact sum may lie just off that
            // midpoint, on either side) or where the result is below the normal floats
            // (whose midpoints lie lower; zero included, to keep the test short): such a
            // batch, rare, is computed again rounding to odd.
            inline __m128 fma_sse2(__m128 a, __m128 b, __m128 c) noexcept
            {
                const __m128d al = _mm_cvtps_pd(a), bl = _mm_cvtps_pd(b), cl = _mm_cvtps_pd(c);
                const __m128d ah = _mm_cvtps_pd(_mm_movehl_ps(a, a)), bh = _mm_cvtps_pd(_mm_movehl_ps(b, b)),
                              ch = _mm_cvtps_pd(_mm_movehl_ps(c, c));
                const __m128d sl = _mm_add_pd(_mm_mul_pd(al, bl), cl);
                const __m128d sh = _mm_add_pd(_mm_mul_pd(ah, bh), ch);
                const __m128 r = _mm_movelh_ps(_mm_cvtpd_ps(sl), _mm_cvtpd_ps(sh));
                // The low 32 bits of each double: the 29 below float precision, and 3 more.
                const __m128i low = _mm_castps_si128(_mm_shuffle_ps(_mm_castpd_ps(sl), _mm_castpd_ps(sh), _MM_SHUFFLE(2, 0, 2, 0)));
                const __m128 halfway =
                    _mm_castsi128_ps(_mm_cmpeq_epi32(_mm_and_si128(low, _mm_set1_epi32(0x1fffffff)), _mm_set1_epi32(0x10000000)));
                const __m128 tiny = _mm_cmplt_ps(_mm_andnot_ps(_mm_set1_ps(-0.0f), r), _mm_set1_ps(std::numeric_limits<float>::min()));
                if (__builtin_expect(_mm_movemask_ps(_mm_or_ps(halfway, tiny)) != 0, 0))
                {
                    return _mm_movelh_ps(fma_odd_half(al, bl, cl), fma_odd_half(ah, bh, ch));
                }
                return r;
            }

            template <class A>
            inline xsimd::batch<float, A> fma(const xsimd::batch<float, A>& a, const xsimd::batch<float, A>& b,
                                              const xsimd::batch<float, A>& c, requires_arch<sse2>) noexcept
            {
                return fma_sse2(a, b, c);
            }
        }
    }
}

#endif
