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
#include <cstring>

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

            template <class A, class T, std::enable_if_t<std::is_floating_point<T>::value, int> = 0>
            inline xsimd::batch<T, A> min(const xsimd::batch<T, A>& a, const xsimd::batch<T, A>& b, requires_arch<neon64>) noexcept
            {
                if constexpr (std::is_same<T, float>::value)
                {
                    return vbslq_f32(vcltq_f32(a, b), a, b);
                }
                else
                {
                    return vbslq_f64(vcltq_f64(a, b), a, b);
                }
            }

            template <class A, class T, std::enable_if_t<std::is_floating_point<T>::value, int> = 0>
            inline xsimd::batch<T, A> max(const xsimd::batch<T, A>& a, const xsimd::batch<T, A>& b, requires_arch<neon64>) noexcept
            {
                if constexpr (std::is_same<T, float>::value)
                {
                    return vbslq_f32(vcgtq_f32(a, b), a, b);
                }
                else
                {
                    return vbslq_f64(vcgtq_f64(a, b), a, b);
                }
            }

            /*********************************
             * 8- and 16-bit storage, 32-bit *
             *********************************/

            template <class A, class U, class S>
            inline xsimd::batch<U, A> widen(const S* p, requires_arch<neon64>) noexcept
            {
                static_assert(sizeof(S) == 1 || sizeof(S) == 2, "xoptim: widen takes 8- or 16-bit storage");
                uint32x4_t lanes;
                if constexpr (sizeof(S) == 1)
                {
                    std::uint32_t four;
                    std::memcpy(&four, p, sizeof four);
                    lanes = vmovl_u16(vget_low_u16(vmovl_u8(vreinterpret_u8_u32(vdup_n_u32(four)))));
                }
                else
                {
                    lanes = vmovl_u16(vld1_u16(reinterpret_cast<const std::uint16_t*>(p)));
                }
                return arch::bitwise_cast<U>(xsimd::batch<std::uint32_t, A>(lanes));
            }

            // Saturating narrows: a -1 lane (a code whose mirror is below 0) becomes 0.
            template <class A, class S, class U>
            inline void narrow(const xsimd::batch<U, A>& b, S* p, requires_arch<neon64>) noexcept
            {
                static_assert(sizeof(S) == 1 || sizeof(S) == 2, "xoptim: narrow takes 8- or 16-bit storage");
                const uint16x4_t words = vqmovun_s32(arch::bitwise_cast<std::int32_t>(b));
                if constexpr (sizeof(S) == 1)
                {
                    const std::uint32_t four = vget_lane_u32(vreinterpret_u32_u8(vqmovn_u16(vcombine_u16(words, words))), 0);
                    std::memcpy(p, &four, sizeof four);
                }
                else
                {
                    vst1_u16(reinterpret_cast<std::uint16_t*>(p), words);
                }
            }

            template <class A>
            inline float horizontal_max(const xsimd::batch<float, A>& b, requires_arch<neon64>) noexcept
            {
                return vmaxvq_f32(b);
            }

            /***************
             * 8-bit codes *
             ***************/

            // An 8-entry table of 32-bit values in two registers, read by byte lookups
            // (vqtbl2q_u8): entry i of each lane is bytes 4 i .. 4 i + 3.
            class table8
            {
            public:

                template <class T>
                explicit table8(const T* t) noexcept
                    : m_bytes{{vld1q_u8(reinterpret_cast<const std::uint8_t*>(t)),
                               vld1q_u8(reinterpret_cast<const std::uint8_t*>(t + 4))}}
                {
                }

                // The byte lookup of entries i & 7.
                static uint8x16_t entries(uint32x4_t i) noexcept
                {
                    return vreinterpretq_u8_u32(
                        vmlaq_n_u32(vdupq_n_u32(0x03020100u), vandq_u32(i, vdupq_n_u32(7)), 0x04040404u));
                }

                uint32x4_t operator[](uint8x16_t entries) const noexcept
                {
                    return vreinterpretq_u32_u8(vqtbl2q_u8(m_bytes, entries));
                }

                float32x4_t floats(uint8x16_t entries) const noexcept
                {
                    return vreinterpretq_f32_u32((*this)[entries]);
                }

            private:

                uint8x16x2_t m_bytes;
            };

            // The AVX2 codec's tables and steps (x86_avx2.hpp), with byte-table lookups for
            // its permutes.
            template <class A>
            class q8_codec_neon
            {
            public:

                using batch = xsimd::batch<float, A>;

                // Elements per encode_group: one store of 16 codes.
                static constexpr std::size_t group = 16;

                // 32 vector registers, as AVX-512 (not measured on an ARM64 core).
                static constexpr bool interleaved = true;

                explicit q8_codec_neon(const q8_tables& t) noexcept
                    : m_signed(t.is_signed),
                      m_quad_count(t.quad_count.data()),
                      m_quad_next(t.quad_next.data()),
                      m_quad_second(t.quad_second.data()),
                      m_inv_width(t.quad_inv_width.data()),
                      m_code_offset(t.quad_code_offset.data()),
                      m_last_code(t.quad_last_code.data()),
                      m_width(t.exponent_width.data()),
                      m_offset(t.exponent_offset.data())
                {
                }

                [[gnu::always_inline]] int32x4_t codes(const batch& x) const noexcept
                {
                    const float32x4_t a = vabsq_f32(x);
                    const uint32x4_t t = vminq_u32(vmaxq_u32(vreinterpretq_u32_f32(a), vdupq_n_u32(0x33800000u)),  // 2^-24
                                                   vdupq_n_u32(0x3fc00000u));                                       // 1.5
                    const float32x4_t tf = vreinterpretq_f32_u32(t);
                    const uint8x16_t window = table8::entries(vshrq_n_u32(t, 25));
                    // Compares give all ones (-1) where true.
                    const uint32x4_t first = vcgeq_f32(tf, m_quad_next.floats(window));
                    const uint32x4_t second = vcgeq_f32(tf, m_quad_second.floats(window));
                    const uint8x16_t count = table8::entries(vsubq_u32(vsubq_u32(m_quad_count[window], first), second));
                    const float32x4_t y = vfmaq_f32(m_code_offset.floats(count), a, m_inv_width.floats(count));
                    // The scalar encoder's min(floor(y), last) as a truncation of min(y,
                    // last): y is not negative (its floor is a code), last is whole, and
                    // minnm gives last where y is NaN.
                    const int32x4_t code = vcvtq_s32_f32(vminnmq_f32(y, m_last_code.floats(count)));
                    if (!m_signed)
                    {
                        return code;
                    }
                    return vbslq_s32(vcltq_f32(x, vdupq_n_f32(0.0f)), vsubq_s32(vdupq_n_s32(254), code), code);
                }

                void encode(const batch& x, std::uint8_t* out) const noexcept
                {
                    arch::narrow(xsimd::batch<std::int32_t, A>(codes(x)), out);
                }

                [[gnu::always_inline]] void encode_group(const float* in, const batch& scale, std::uint8_t* out) const noexcept
                {
                    const int32x4_t c0 = codes(batch::load_aligned(in) * scale);
                    const int32x4_t c1 = codes(batch::load_aligned(in + 4) * scale);
                    const int32x4_t c2 = codes(batch::load_aligned(in + 8) * scale);
                    const int32x4_t c3 = codes(batch::load_aligned(in + 12) * scale);
                    const uint16x8_t low = vcombine_u16(vqmovun_s32(c0), vqmovun_s32(c1));
                    const uint16x8_t high = vcombine_u16(vqmovun_s32(c2), vqmovun_s32(c3));
                    vst1q_u8(out, vcombine_u8(vqmovn_u16(low), vqmovn_u16(high)));
                }

                batch decode(const std::uint8_t* codes) const noexcept
                {
                    const int32x4_t c = arch::widen<std::int32_t, A>(codes);
                    if (m_signed)
                    {
                        const int32x4_t d = vsubq_s32(c, vdupq_n_s32(127));
                        const float32x4_t q = vcvtq_f32_s32(vabsq_s32(d));
                        const uint8x16_t slot =
                            table8::entries(vshrq_n_u32(vreinterpretq_u32_f32(vmaxq_f32(q, vdupq_n_f32(0.5f))), 23));
                        const float32x4_t v = vfmaq_f32(m_offset.floats(slot), q, m_width.floats(slot));
                        return vreinterpretq_f32_u32(vorrq_u32(vreinterpretq_u32_f32(v),
                                                               vandq_u32(vreinterpretq_u32_s32(d), vdupq_n_u32(0x80000000u))));
                    }
                    const uint8x16_t slot = table8::entries(
                        vshrq_n_u32(vreinterpretq_u32_f32(vcvtq_f32_s32(vaddq_s32(c, vdupq_n_s32(1)))), 23));
                    return vfmaq_f32(m_offset.floats(slot), vcvtq_f32_s32(c), m_width.floats(slot));
                }

            private:

                bool m_signed;
                table8 m_quad_count, m_quad_next, m_quad_second;
                table8 m_inv_width, m_code_offset, m_last_code;
                table8 m_width, m_offset;
            };

            template <class A>
            q8_codec_neon<A> q8_codec_of(requires_arch<neon64>);
        }
    }
}

#endif
