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
            inline std::array<xsimd::batch<double, A>, 2> widen_halves(const xsimd::batch<float, A>& x,
                                                                       requires_arch<avx>) noexcept
            {
                const __m256 v = x;
                return {xsimd::batch<double, A>(_mm256_cvtps_pd(_mm256_castps256_ps128(v))),
                        xsimd::batch<double, A>(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)))};
            }

            template <class A, class T, std::enable_if_t<std::is_floating_point<T>::value, int> = 0>
            inline xsimd::batch<T, A> min(const xsimd::batch<T, A>& a, const xsimd::batch<T, A>& b, requires_arch<avx>) noexcept
            {
                if constexpr (std::is_same<T, float>::value)
                {
                    return _mm256_min_ps(a, b);
                }
                else
                {
                    return _mm256_min_pd(a, b);
                }
            }

            template <class A, class T, std::enable_if_t<std::is_floating_point<T>::value, int> = 0>
            inline xsimd::batch<T, A> max(const xsimd::batch<T, A>& a, const xsimd::batch<T, A>& b, requires_arch<avx>) noexcept
            {
                if constexpr (std::is_same<T, float>::value)
                {
                    return _mm256_max_ps(a, b);
                }
                else
                {
                    return _mm256_max_pd(a, b);
                }
            }

            template <class A>
            inline xsimd::batch<float, A> max_abs(const xsimd::batch<float, A>& a, const xsimd::batch<float, A>& x,
                                                  requires_arch<avx>) noexcept
            {
                return _mm256_max_ps(xsimd::abs(x), a);  // a where x is NaN
            }

            /*********************************
             * 8- and 16-bit storage, 32-bit *
             *********************************/

            template <class A, class U, class S>
            inline xsimd::batch<U, A> widen(const S* p, requires_arch<avx2>) noexcept
            {
                static_assert(sizeof(S) == 1 || sizeof(S) == 2, "xoptim: widen takes 8- or 16-bit storage");
                if constexpr (sizeof(S) == 1)
                {
                    return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
                }
                else
                {
                    return _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
                }
            }

            // Saturating packs (they work within each 128-bit half), then the halves'
            // first quarters together.
            template <class A, class S, class U>
            inline void narrow(const xsimd::batch<U, A>& b, S* p, requires_arch<avx2>) noexcept
            {
                static_assert(sizeof(S) == 1 || sizeof(S) == 2, "xoptim: narrow takes 8- or 16-bit storage");
                if constexpr (sizeof(S) == 1)
                {
                    const __m256i words = _mm256_packs_epi32(b, b);
                    const __m256i bytes = _mm256_packus_epi16(words, words);
                    const __m128i both = _mm_unpacklo_epi32(_mm256_castsi256_si128(bytes), _mm256_extracti128_si256(bytes, 1));
                    _mm_storel_epi64(reinterpret_cast<__m128i*>(p), both);
                }
                else
                {
                    const __m256i words = _mm256_packus_epi32(b, b);
                    _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                                     _mm256_castsi256_si128(_mm256_permute4x64_epi64(words, 0x08)));
                }
            }

            /***************
             * 8-bit codes *
             ***************/

            // Table lookups as one-register permutes (vpermps reads 8 entries): |x| by
            // windows of four octaves, each holding two bucket boundaries at most, the
            // bucket's numbers by its count of boundaries passed (0..8, zero and one
            // sharing a slot); decoding by the float exponent of q (+ 1 unsigned), whose
            // 9 values share 8 slots where one (width, offset) serves both.
            template <class A>
            class q8_codec_avx2
            {
            public:

                using batch = xsimd::batch<float, A>;

                // Elements per encode_group: one store of 32 codes.
                static constexpr std::size_t group = 32;

                // Interleaved, two states' eight tables each fill the 16 registers: a
                // fifth of the AdamW loop's instructions then move registers to and from
                // the stack, and it is slower on Zen 3 (docs/benchmarks.md, "8-bit
                // states on 16 registers").
                static constexpr bool interleaved = false;

                explicit q8_codec_avx2(const q8_tables& t) noexcept
                    : m_signed(t.is_signed),
                      m_quad_count(_mm256_load_si256(reinterpret_cast<const __m256i*>(t.quad_count.data()))),
                      m_quad_next(_mm256_load_ps(t.quad_next.data())),
                      m_quad_second(_mm256_load_ps(t.quad_second.data())),
                      m_inv_width(_mm256_load_ps(t.quad_inv_width.data())),
                      m_code_offset(_mm256_load_ps(t.quad_code_offset.data())),
                      m_last_code(_mm256_load_ps(t.quad_last_code.data())),
                      m_width(_mm256_load_ps(t.exponent_width.data())),
                      m_offset(_mm256_load_ps(t.exponent_offset.data()))
                {
                }

                // Codes as 32-bit lanes: |x| clamped to [2^-24, 1.5] as an integer (NaN to
                // 1.5) for the window and the compares, |x| itself in the fma.
                [[gnu::always_inline]] __m256i codes(const batch& x) const noexcept
                {
                    const __m256i bits = _mm256_and_si256(_mm256_castps_si256(x), _mm256_set1_epi32(0x7fffffff));
                    const __m256i t = _mm256_min_epi32(_mm256_max_epi32(bits, _mm256_set1_epi32(0x33800000)),  // 2^-24
                                                       _mm256_set1_epi32(0x3fc00000));                          // 1.5
                    const __m256 tf = _mm256_castsi256_ps(t);
                    const __m256i window = _mm256_srli_epi32(t, 25);
                    // Compares give -1 where true: the count of boundaries passed by subtraction.
                    const __m256i base = _mm256_permutevar8x32_epi32(m_quad_count, window);
                    const __m256 first = _mm256_cmp_ps(tf, _mm256_permutevar8x32_ps(m_quad_next, window), _CMP_GE_OQ);
                    const __m256 second = _mm256_cmp_ps(tf, _mm256_permutevar8x32_ps(m_quad_second, window), _CMP_GE_OQ);
                    const __m256i count =
                        _mm256_sub_epi32(_mm256_sub_epi32(base, _mm256_castps_si256(first)), _mm256_castps_si256(second));
                    const __m256 y = _mm256_fmadd_ps(_mm256_castsi256_ps(bits), _mm256_permutevar8x32_ps(m_inv_width, count),
                                                     _mm256_permutevar8x32_ps(m_code_offset, count));
                    // The scalar encoder's min(floor(y), last) as a truncation of min(y,
                    // last): y is not negative (its floor is a code), last is whole, and
                    // min gives last where y is NaN.
                    const __m256i c = _mm256_cvttps_epi32(_mm256_min_ps(y, _mm256_permutevar8x32_ps(m_last_code, count)));
                    if (!m_signed)
                    {
                        return c;
                    }
                    const __m256 negative = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
                    return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(c),
                                                                _mm256_castsi256_ps(_mm256_sub_epi32(_mm256_set1_epi32(254), c)), negative));
                }

                void encode(const batch& x, std::uint8_t* out) const noexcept
                {
                    arch::narrow(xsimd::batch<std::int32_t, A>(codes(x)), out);
                }

                // Two word packs, one byte pack (saturating: -1 becomes 0), one permute
                // for the order the in-lane packs leave, one store.
                [[gnu::always_inline]] void encode_group(const float* in, const batch& scale, std::uint8_t* out) const noexcept
                {
                    const __m256i c0 = codes(batch::load_aligned(in) * scale);
                    const __m256i c1 = codes(batch::load_aligned(in + 8) * scale);
                    const __m256i c2 = codes(batch::load_aligned(in + 16) * scale);
                    const __m256i c3 = codes(batch::load_aligned(in + 24) * scale);
                    const __m256i bytes = _mm256_packus_epi16(_mm256_packs_epi32(c0, c1), _mm256_packs_epi32(c2, c3));
                    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out),
                                        _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
                }

                // q = |c - centre| (signed) or c (unsigned); the slot is the float exponent
                // of q (at least 0.5, so q = 0 shares the slot of q = 128, whose offset is
                // 0) or of q + 1 (unsigned: q = 0 and q = 255 share one); the sign of
                // c - centre put on the value.
                batch decode(const std::uint8_t* codes) const noexcept
                {
                    const __m256i c = arch::widen<std::int32_t, A>(codes);
                    if (m_signed)
                    {
                        const __m256i d = _mm256_sub_epi32(c, _mm256_set1_epi32(127));
                        const __m256 q = _mm256_cvtepi32_ps(_mm256_abs_epi32(d));
                        const __m256i slot = _mm256_srli_epi32(_mm256_castps_si256(_mm256_max_ps(q, _mm256_set1_ps(0.5f))), 23);
                        const __m256 v = _mm256_fmadd_ps(q, _mm256_permutevar8x32_ps(m_width, slot),
                                                         _mm256_permutevar8x32_ps(m_offset, slot));
                        return _mm256_or_ps(v, _mm256_castsi256_ps(_mm256_and_si256(d, _mm256_set1_epi32(std::int32_t(0x80000000u)))));
                    }
                    const __m256i slot =
                        _mm256_srli_epi32(_mm256_castps_si256(_mm256_cvtepi32_ps(_mm256_add_epi32(c, _mm256_set1_epi32(1)))), 23);
                    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(c), _mm256_permutevar8x32_ps(m_width, slot),
                                           _mm256_permutevar8x32_ps(m_offset, slot));
                }

            private:

                bool m_signed;
                __m256i m_quad_count;
                __m256 m_quad_next, m_quad_second;
                __m256 m_inv_width, m_code_offset, m_last_code;
                __m256 m_width, m_offset;
            };

            // Its encode and decode are fused multiply-adds: AVX2 with FMA only (an AVX or
            // AVX2 build without FMA takes the generic codec).
            template <class A>
            q8_codec_avx2<A> q8_codec_of(requires_arch<xsimd::fma3<avx2>>);
        }
    }
}

#endif
