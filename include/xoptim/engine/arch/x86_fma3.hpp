// FMA3 (xsimd::fma3<sse4_2>, fma3<avx>, fma3<avx2>): the fused multiply-add in hardware.
#ifndef XOPTIM_ENGINE_ARCH_X86_FMA3_HPP
#define XOPTIM_ENGINE_ARCH_X86_FMA3_HPP

#include <immintrin.h>

#include "generic.hpp"

namespace xoptim
{
    namespace arch
    {
        namespace kernel
        {
            template <class A>
            inline xsimd::batch<float, A> fma(const xsimd::batch<float, A>& a, const xsimd::batch<float, A>& b,
                                              const xsimd::batch<float, A>& c, requires_arch<xsimd::fma3<xsimd::sse4_2>>) noexcept
            {
                return _mm_fmadd_ps(a, b, c);
            }

            template <class A>
            inline xsimd::batch<double, A> fma(const xsimd::batch<double, A>& a, const xsimd::batch<double, A>& b,
                                               const xsimd::batch<double, A>& c, requires_arch<xsimd::fma3<xsimd::sse4_2>>) noexcept
            {
                return _mm_fmadd_pd(a, b, c);
            }

            std::true_type hardware_fma(requires_arch<xsimd::fma3<xsimd::sse4_2>>);

            // fma3<avx2> is built on avx2, not on fma3<avx>: one overload each.
            template <class A, class T>
            inline xsimd::batch<T, A> fma256(const xsimd::batch<T, A>& a, const xsimd::batch<T, A>& b,
                                             const xsimd::batch<T, A>& c) noexcept
            {
                if constexpr (std::is_same<T, float>::value)
                {
                    return _mm256_fmadd_ps(a, b, c);
                }
                else
                {
                    return _mm256_fmadd_pd(a, b, c);
                }
            }

            template <class A, class T, class = std::enable_if_t<std::is_floating_point<T>::value>>
            inline xsimd::batch<T, A> fma(const xsimd::batch<T, A>& a, const xsimd::batch<T, A>& b,
                                          const xsimd::batch<T, A>& c, requires_arch<xsimd::fma3<xsimd::avx>>) noexcept
            {
                return fma256(a, b, c);
            }

            template <class A, class T, class = std::enable_if_t<std::is_floating_point<T>::value>>
            inline xsimd::batch<T, A> fma(const xsimd::batch<T, A>& a, const xsimd::batch<T, A>& b,
                                          const xsimd::batch<T, A>& c, requires_arch<xsimd::fma3<xsimd::avx2>>) noexcept
            {
                return fma256(a, b, c);
            }

            std::true_type hardware_fma(requires_arch<xsimd::fma3<xsimd::avx>>);
            std::true_type hardware_fma(requires_arch<xsimd::fma3<xsimd::avx2>>);
        }
    }
}

#endif
