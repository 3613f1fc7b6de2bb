// ARM NEON (xsimd::neon; neon64 on AArch64: Apple silicon, Graviton, Ampere).
//
// xsimd 8 divides and takes square roots of floats on NEON by an estimate refined by
// Newton steps, and its min and max follow NEON's NaN rule: here they are IEEE
// division and square root (vdivq, vsqrtq on AArch64), and min/max by compare and
// select, so results are the bits x86 gives.
#ifndef XOPTIM_ENGINE_ARCH_NEON_HPP
#define XOPTIM_ENGINE_ARCH_NEON_HPP

#include <arm_neon.h>

#include <cmath>

#include "generic.hpp"

namespace xoptim
{
    namespace arch
    {
        namespace kernel
        {
            using xsimd::neon;
            using xsimd::neon64;

            // The value is the register's, unknown to the optimizer: a product passed
            // through here is never contracted into an fma.
            template <class A, class T>
            inline xsimd::batch<T, A> opaque(const xsimd::batch<T, A>& x, requires_arch<neon>) noexcept
            {
                typename xsimd::batch<T, A>::register_type r = x;
                asm("" : "+w"(r));
                return r;
            }

            // 32-bit ARM has neither instruction: lane by lane.
            template <class A, class T>
            inline xsimd::batch<T, A> div(const xsimd::batch<T, A>& a, const xsimd::batch<T, A>& b,
                                          requires_arch<neon>) noexcept
            {
                alignas(16) T x[xsimd::batch<T, A>::size], y[xsimd::batch<T, A>::size];
                a.store_aligned(x);
                b.store_aligned(y);
                for (std::size_t i = 0; i < xsimd::batch<T, A>::size; ++i)
                {
                    x[i] /= y[i];
                }
                return xsimd::batch<T, A>::load_aligned(x);
            }

            template <class A, class T>
            inline xsimd::batch<T, A> sqrt(const xsimd::batch<T, A>& a, requires_arch<neon>) noexcept
            {
                alignas(16) T x[xsimd::batch<T, A>::size];
                a.store_aligned(x);
                for (std::size_t i = 0; i < xsimd::batch<T, A>::size; ++i)
                {
                    x[i] = std::sqrt(x[i]);
                }
                return xsimd::batch<T, A>::load_aligned(x);
            }

            template <class A>
            inline xsimd::batch<float, A> div(const xsimd::batch<float, A>& a, const xsimd::batch<float, A>& b,
                                              requires_arch<neon64>) noexcept
            {
                return vdivq_f32(a, b);
            }

            template <class A>
            inline xsimd::batch<double, A> div(const xsimd::batch<double, A>& a, const xsimd::batch<double, A>& b,
                                               requires_arch<neon64>) noexcept
            {
                return vdivq_f64(a, b);
            }

            template <class A>
            inline xsimd::batch<float, A> sqrt(const xsimd::batch<float, A>& a, requires_arch<neon64>) noexcept
            {
                return vsqrtq_f32(a);
            }

            template <class A>
            inline xsimd::batch<double, A> sqrt(const xsimd::batch<double, A>& a, requires_arch<neon64>) noexcept
            {
                return vsqrtq_f64(a);
            }

            template <class A>
            inline xsimd::batch<float, A> fma(const xsimd::batch<float, A>& a, const xsimd::batch<float, A>& b,
                                              const xsimd::batch<float, A>& c, requires_arch<neon64>) noexcept
            {
                return vfmaq_f32(c, a, b);
            }

            template <class A>
            inline xsimd::batch<double, A> fma(const xsimd::batch<double, A>& a, const xsimd::batch<double, A>& b,
                                               const xsimd::batch<double, A>& c, requires_arch<neon64>) noexcept
            {
                return vfmaq_f64(c, a, b);
            }

            std::true_type hardware_fma(requires_arch<neon64>);

            template <class A>
            inline xsimd::batch<float, A> min(const xsimd::batch<float, A>& a, const xsimd::batch<float, A>& b,
                                              requires_arch<neon64>) noexcept
            {
                return vbslq_f32(vcltq_f32(a, b), a, b);
            }

            template <class A>
            inline xsimd::batch<double, A> min(const xsimd::batch<double, A>& a, const xsimd::batch<double, A>& b,
                                               requires_arch<neon64>) noexcept
            {
                return vbslq_f64(vcltq_f64(a, b), a, b);
            }

            template <class A>
            inline xsimd::batch<float, A> max(const xsimd::batch<float, A>& a, const xsimd::batch<float, A>& b,
                                              requires_arch<neon64>) noexcept
            {
                return vbslq_f32(vcgtq_f32(a, b), a, b);
            }

            template <class A>
            inline xsimd::batch<double, A> max(const xsimd::batch<double, A>& a, const xsimd::batch<double, A>& b,
                                               requires_arch<neon64>) noexcept
            {
                return vbslq_f64(vcgtq_f64(a, b), a, b);
            }
        }
    }
}

#endif
