// AVX and AVX2 (xsimd::avx, avx2 and the fma3 architectures built on them): 256-bit
// batches, the build of most laptops and servers (-march=x86-64-v3 and newer).
#ifndef XOPTIM_ENGINE_ARCH_X86_AVX2_HPP
#define XOPTIM_ENGINE_ARCH_X86_AVX2_HPP

#include <immintrin.h>

#include "generic.hpp"

namespace xoptim
{
    namespace arch
    {
        namespace kernel
        {
            using xsimd::avx;
            using xsimd::avx2;

            // The value is the register's, unknown to the optimizer: a product passed
            // through here is never contracted into an fma.
            template <class A, class T>
            inline xsimd::batch<T, A> opaque(const xsimd::batch<T, A>& x, requires_arch<avx>) noexcept
            {
                typename xsimd::batch<T, A>::register_type r = x;
                asm("" : "+v"(r));
                return r;
            }

            template <class A>
            inline xsimd::batch<float, A> min(const xsimd::batch<float, A>& a, const xsimd::batch<float, A>& b,
                                              requires_arch<avx>) noexcept
            {
                return _mm256_min_ps(a, b);
            }

            template <class A>
            inline xsimd::batch<double, A> min(const xsimd::batch<double, A>& a, const xsimd::batch<double, A>& b,
                                               requires_arch<avx>) noexcept
            {
                return _mm256_min_pd(a, b);
            }

            template <class A>
            inline xsimd::batch<float, A> max(const xsimd::batch<float, A>& a, const xsimd::batch<float, A>& b,
                                              requires_arch<avx>) noexcept
            {
                return _mm256_max_ps(a, b);
            }

            template <class A>
            inline xsimd::batch<double, A> max(const xsimd::batch<double, A>& a, const xsimd::batch<double, A>& b,
                                               requires_arch<avx>) noexcept
            {
                return _mm256_max_pd(a, b);
            }

            template <class A>
            inline xsimd::batch<float, A> max_abs(const xsimd::batch<float, A>& a, const xsimd::batch<float, A>& x,
                                                  requires_arch<avx>) noexcept
            {
                return _mm256_max_ps(xsimd::abs(x), a);  // a where x is NaN
            }
        }
    }
}

#endif
