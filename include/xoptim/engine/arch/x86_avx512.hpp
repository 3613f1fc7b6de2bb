// AVX-512 (xsimd::avx512f and the architectures built on it).
//
// Intrinsics are used in their zero-masking forms with every lane on: GCC 12 warns
// (-Wuninitialized, bug 105593) where the plain forms' undefined pass-through operand
// gets inlined into constant data.
#ifndef XOPTIM_ENGINE_ARCH_X86_AVX512_HPP
#define XOPTIM_ENGINE_ARCH_X86_AVX512_HPP

#include <immintrin.h>

#include "generic.hpp"

namespace xoptim
{
    namespace arch
    {
        namespace kernel
        {
            using xsimd::avx512f;

            inline constexpr __mmask16 all_lanes = 0xFFFF;

            /**************
             * Arithmetic *
             **************/

            // xsimd 8.1 has no AVX-512 fma: its generic fallback is a * b + c, fused or
            // not at the compiler's whim.
            template <class A>
            inline xsimd::batch<float, A> fma(const xsimd::batch<float, A>& a, const xsimd::batch<float, A>& b,
                                              const xsimd::batch<float, A>& c, requires_arch<avx512f>) noexcept
            {
                return _mm512_fmadd_ps(a, b, c);
            }

            template <class A>
            inline xsimd::batch<double, A> fma(const xsimd::batch<double, A>& a, const xsimd::batch<double, A>& b,
                                               const xsimd::batch<double, A>& c, requires_arch<avx512f>) noexcept
            {
                return _mm512_fmadd_pd(a, b, c);
            }

            std::true_type hardware_fma(requires_arch<avx512f>);

            template <class A, class T>
            inline xsimd::batch<T, A> opaque(const xsimd::batch<T, A>& x, requires_arch<avx512f>) noexcept
            {
                typename xsimd::batch<T, A>::register_type r = x;
                asm("" : "+v"(r));
                return r;
            }

            // Rounding-mode products: the compiler never contracts them.
            template <class A>
            inline xsimd::batch<float, A> mul(const xsimd::batch<float, A>& a, const xsimd::batch<float, A>& b,
                                              requires_arch<avx512f>) noexcept
            {
                return _mm512_maskz_mul_round_ps(all_lanes, a, b, _MM_FROUND_CUR_DIRECTION);
            }

            template <class A>
            inline xsimd::batch<double, A> mul(const xsimd::batch<double, A>& a, const xsimd::batch<double, A>& b,
                                               requires_arch<avx512f>) noexcept
            {
                return _mm512_maskz_mul_round_pd(__mmask8(0xFF), a, b, _MM_FROUND_CUR_DIRECTION);
            }

            template <class A, class T, std::enable_if_t<std::is_floating_point<T>::value, int> = 0>
            inline xsimd::batch<T, A> min(const xsimd::batch<T, A>& a, const xsimd::batch<T, A>& b, requires_arch<avx512f>) noexcept
            {
                if constexpr (std::is_same<T, float>::value)
                {
                    return _mm512_maskz_min_ps(all_lanes, a, b);
                }
                else
                {
                    return _mm512_maskz_min_pd(__mmask8(0xFF), a, b);
                }
            }

            template <class A, class T, std::enable_if_t<std::is_floating_point<T>::value, int> = 0>
            inline xsimd::batch<T, A> max(const xsimd::batch<T, A>& a, const xsimd::batch<T, A>& b, requires_arch<avx512f>) noexcept
            {
                if constexpr (std::is_same<T, float>::value)
                {
                    return _mm512_maskz_max_ps(all_lanes, a, b);
                }
                else
                {
                    return _mm512_maskz_max_pd(__mmask8(0xFF), a, b);
                }
            }

            // vmaxps gives its second operand where one is NaN.
            template <class A>
            inline xsimd::batch<float, A> max_abs(const xsimd::batch<float, A>& a, const xsimd::batch<float, A>& x,
                                                  requires_arch<avx512f>) noexcept
            {
                return _mm512_maskz_max_ps(all_lanes, xsimd::abs(x), a);
            }

            // Halves by extraction: GCC 12's cast to 256 bits is an extraction with an
            // undefined pass-through (-Wuninitialized, bug 105593).
            template <class A>
            inline std::array<xsimd::batch<double, A>, 2> widen_halves(const xsimd::batch<float, A>& x,
                                                                       requires_arch<avx512f>) noexcept
            {
                const __m512 v = x;
                const __m256 high = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
                return {xsimd::batch<double, A>(_mm512_cvtps_pd(_mm512_castps512_ps256(v))),
                        xsimd::batch<double, A>(_mm512_cvtps_pd(high))};
            }

            template <class A>
            inline float horizontal_max(const xsimd::batch<float, A>& b, requires_arch<avx512f>) noexcept
            {
                const __m512d x = _mm512_castps_pd(b);
                const __m256 h = _mm256_max_ps(_mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xF, x, 0)),
                                               _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xF, x, 1)));
                const __m128 q = _mm_max_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
                const __m128 p = _mm_max_ps(q, _mm_movehl_ps(q, q));
                return _mm_cvtss_f32(_mm_max_ss(p, _mm_shuffle_ps(p, p, 1)));
            }

            /*********************************
             * 8- and 16-bit storage, 32-bit *
             *********************************/

            template <class A, class U, class S>
            inline xsimd::batch<U, A> widen(const S* p, requires_arch<avx512f>) noexcept
            {
                static_assert(sizeof(S) == 1 || sizeof(S) == 2, "xoptim: widen takes 8- or 16-bit storage");
                if constexpr (sizeof(S) == 1)
                {
                    return _mm512_maskz_cvtepu8_epi32(all_lanes, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
                }
                else
                {
                    return _mm512_maskz_cvtepu16_epi32(all_lanes, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
                }
            }

            // Saturating packs and one permute, not vpmovdb/vpmovdw: compilers fold those
            // into their store forms, which some cores run microcoded. The packs are AVX-512
            // BW's (an AVX-512F build narrows as the generic kernels do).
            template <class A, class S, class U>
            inline void narrow(const xsimd::batch<U, A>& b, S* p, requires_arch<xsimd::avx512bw>) noexcept
            {
                static_assert(sizeof(S) == 1 || sizeof(S) == 2, "xoptim: narrow takes 8- or 16-bit storage");
                const __m512i words = _mm512_packus_epi32(b, b);
                if constexpr (sizeof(S) == 1)
                {
                    const __m512i bytes = _mm512_packus_epi16(words, words);
                    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
                    _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                                     _mm512_castsi512_si128(_mm512_maskz_permutexvar_epi32(all_lanes, order, bytes)));
                }
                else
                {
                    const __m512i order = _mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7);
                    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                                        _mm512_castsi512_si256(_mm512_maskz_permutexvar_epi64(__mmask8(0xFF), order, words)));
                }
            }

            // A named operand: at -O0 the intrinsic is a macro, and a template's comma
            // would split its arguments.
            template <class A>
            inline xsimd::batch<float, A> bf16_to_float(const std::uint16_t* p, requires_arch<avx512f>) noexcept
            {
                const __m512i bits = arch::widen<std::uint32_t, A>(p);
                return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(all_lanes, bits, 16));
            }

            /***************
             * 8-bit codes *
             ***************/

            // Its byte packs need AVX-512 BW, which xsimd's avx512bw architecture
            // only has with DQ (vrangeps) and CD (vplzcntd).
            //
            // Written for few instructions (on Zen 4 the fused 8-bit loop's time went
            // down with their count): 16 codes cost 12 to encode (14 signed), 8 to decode
            // (10 signed, widening included), against 14 (17) and 12 before vrangeps, the
            // masked forms and a decode for each map (docs/benchmarks.md, "Fewer
            // instructions in the AVX-512 codec").
            template <class A>
            class q8_codec_avx512
            {
            public:

                using batch = xsimd::batch<float, A>;

                // Elements per encode_group: one store of 64 codes.
                static constexpr std::size_t group = 64;

                // 32 registers hold both states' tables beside AdamW's (docs/benchmarks.md,
                // "Low-memory states": measured on Zen 5 as part of 12.7 -> 10.3 ns per
                // batch of 16).
                static constexpr bool interleaved = true;

                explicit q8_codec_avx512(const q8_tables& t) noexcept
                    : m_signed(t.is_signed),
                      m_next(_mm512_load_ps(t.window_next.data())),
                      m_inv_width_lo(_mm512_load_ps(t.window_inv_width.data())),
                      m_inv_width_hi(_mm512_load_ps(t.window_inv_width.data() + 16)),
                      m_code_offset_lo(_mm512_load_ps(t.window_code_offset.data())),
                      m_code_offset_hi(_mm512_load_ps(t.window_code_offset.data() + 16)),
                      m_last_lo(_mm512_load_si512(t.window_last.data())),
                      m_last_hi(_mm512_load_si512(t.window_last.data() + 16)),
                      m_width(_mm512_load_ps(t.width.data())),
                      m_offset(_mm512_load_ps(t.offset.data()))
                {
                }

                // |x| clamped to [2^-24, 1.5] as an integer (NaN to 1.5): its top bits
                // are the window, whose boundary picks the bucket's half of the tables.
                // The floor converted directly (unsigned: NaN and inf become the largest
                // value, so the min with the bucket's last code takes them there); the
                // mirror for negative x (signed map) by a masked subtraction. A negative
                // x whose mirror is below code 0 gives -1, which the saturating packs
                // make 0.
                [[gnu::always_inline]] __m512i codes(const batch& x) const noexcept
                {
                    const __m512i t = clamped_magnitude(x);
                    const __m512i window = _mm512_maskz_srli_epi32(all_lanes, t, 24);
                    // Not below the boundary: a NaN is above every one (to the last code).
                    const __mmask16 above = _mm512_cmp_ps_mask(_mm512_castsi512_ps(t),
                                                               _mm512_maskz_permutexvar_ps(all_lanes, window, m_next), _CMP_NLT_UQ);
                    const __m512i index = _mm512_mask_xor_epi32(window, above, window, _mm512_set1_epi32(16));
                    const __m512 y = _mm512_fmadd_ps(_mm512_castsi512_ps(t), _mm512_permutex2var_ps(m_inv_width_lo, index, m_inv_width_hi),
                                                     _mm512_permutex2var_ps(m_code_offset_lo, index, m_code_offset_hi));
                    const __m512i floor = _mm512_maskz_cvt_roundps_epu32(all_lanes, y, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
                    const __m512i code =
                        _mm512_maskz_min_epu32(all_lanes, floor, _mm512_permutex2var_epi32(m_last_lo, index, m_last_hi));
                    if (!m_signed)
                    {
                        return code;
                    }
                    const __mmask16 negative = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
                    return _mm512_mask_sub_epi32(code, negative, _mm512_set1_epi32(254), code);
                }

                void encode(const batch& x, std::uint8_t* out) const noexcept
                {
                    arch::narrow(xsimd::batch<std::int32_t, A>(codes(x)), out);
                }

                // Written out: a loop here is not unrolled, and its codes go through
                // memory. Two word packs, one byte pack (saturating: -1 becomes 0), one
                // permute, one store.
                [[gnu::always_inline]] void encode_group(const float* in, const batch& scale, std::uint8_t* out) const noexcept
                {
                    const __m512i c0 = codes(batch::load_aligned(in) * scale);
                    const __m512i c1 = codes(batch::load_aligned(in + 16) * scale);
                    const __m512i c2 = codes(batch::load_aligned(in + 32) * scale);
                    const __m512i c3 = codes(batch::load_aligned(in + 48) * scale);
                    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
                    const __m512i low = _mm512_packus_epi32(c0, c1);
                    const __m512i high = _mm512_packus_epi32(c2, c3);
                    _mm512_storeu_si512(out, _mm512_maskz_permutexvar_epi32(all_lanes, order, _mm512_packus_epi16(low, high)));
                }

                // Signed: d = c - 127, q = |d|, the tables indexed by the leading zeros
                // of q mod 16, and the sign of d put on the value. Unsigned: q = c, indexed
                // by the leading zeros of c + 1 (so code 0 is zero).
                batch decode(const std::uint8_t* codes) const noexcept
                {
                    const __m512i c = arch::widen<std::int32_t, A>(codes);
                    if (m_signed)
                    {
                        const __m512i d = _mm512_sub_epi32(c, _mm512_set1_epi32(127));
                        const __m512i q = _mm512_abs_epi32(d);
                        const __m512i index = leading_zeros(q);
                        const __m512 v = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(all_lanes, q),
                                                         _mm512_maskz_permutexvar_ps(all_lanes, index, m_width),
                                                         _mm512_maskz_permutexvar_ps(all_lanes, index, m_offset));
                        // v | (d & sign bit), one ternary-logic op.
                        return _mm512_castsi512_ps(_mm512_ternarylogic_epi32(_mm512_castps_si512(v), d,
                                                                             _mm512_set1_epi32(std::int32_t(0x80000000u)), 0xf8));
                    }
                    const __m512i index = leading_zeros(_mm512_add_epi32(c, _mm512_set1_epi32(1)));
                    return _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(all_lanes, c), _mm512_maskz_permutexvar_ps(all_lanes, index, m_width),
                                           _mm512_maskz_permutexvar_ps(all_lanes, index, m_offset));
                }

            private:

                bool m_signed;
                __m512 m_next;
                __m512 m_inv_width_lo, m_inv_width_hi, m_code_offset_lo, m_code_offset_hi;
                __m512i m_last_lo, m_last_hi;
                __m512 m_width, m_offset;

                // |x| clamped to [2^-24, 1.5] (NaN to 1.5), as an integer. Where the
                // clamp changes |x| the bucket's inverse width is 0 (zero below, one
                // above), so the clamped value gives the same code as |x| itself.
                // vrangeps: the smaller magnitude, sign cleared, the other operand where
                // one is a quiet NaN (a signalling one gives a NaN, which the unsigned
                // max keeps: above every boundary, and the floor of NaN is the last code).
                static __m512i clamped_magnitude(const batch& x) noexcept
                {
                    const __m512i magnitude = _mm512_castps_si512(_mm512_maskz_range_ps(all_lanes, x, _mm512_set1_ps(1.5f), 0x0A));
                    return _mm512_maskz_max_epu32(all_lanes, magnitude, _mm512_set1_epi32(0x33800000));  // 2^-24
                }

                // Leading zeros of each lane (32 for 0).
                static __m512i leading_zeros(const __m512i& n) noexcept
                {
                    return _mm512_maskz_lzcnt_epi32(all_lanes, n);
                }
            };

            // AVX-512 BW (with DQ and CD) only: an AVX-512F build takes the generic codec.
            template <class A>
            q8_codec_avx512<A> q8_codec_of(requires_arch<xsimd::avx512bw>);

            /*******************
             * Sums of squares *
             *******************/

            // Eight floats at a time widened to double straight from memory; four
            // accumulators as named members (an indexed array stays in memory at -O2).
            template <class A>
            class square_lanes_avx512
            {
            public:

                void add(const float* x) noexcept
                {
                    const __m512d v0 = _mm512_cvtps_pd(_mm256_loadu_ps(x));
                    const __m512d v1 = _mm512_cvtps_pd(_mm256_loadu_ps(x + 8));
                    const __m512d v2 = _mm512_cvtps_pd(_mm256_loadu_ps(x + 16));
                    const __m512d v3 = _mm512_cvtps_pd(_mm256_loadu_ps(x + 24));
                    m_acc0 = _mm512_fmadd_pd(v0, v0, m_acc0);
                    m_acc1 = _mm512_fmadd_pd(v1, v1, m_acc1);
                    m_acc2 = _mm512_fmadd_pd(v2, v2, m_acc2);
                    m_acc3 = _mm512_fmadd_pd(v3, v3, m_acc3);
                }

                // Lanes added through memory: GCC 12's _mm512_reduce_add_pd trips its own
                // -Wuninitialized (bug 105593) in every user's build.
                double total() const noexcept
                {
                    alignas(64) double l[8];
                    _mm512_store_pd(l, _mm512_add_pd(_mm512_add_pd(m_acc0, m_acc1), _mm512_add_pd(m_acc2, m_acc3)));
                    return arch::sum_of_eight(l);
                }

            private:

                __m512d m_acc0 = _mm512_setzero_pd();
                __m512d m_acc1 = _mm512_setzero_pd();
                __m512d m_acc2 = _mm512_setzero_pd();
                __m512d m_acc3 = _mm512_setzero_pd();
            };

            template <class A>
            square_lanes_avx512<A> square_lanes_of(requires_arch<avx512f>);
        }
    }
}

#endif
