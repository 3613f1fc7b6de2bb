// SSE2 to SSE4.2 (xsimd::sse2 and the architectures built on it): what every x86-64
// has, and what a build without -march flags gets.
#ifndef XOPTIM_ENGINE_ARCH_X86_SSE2_HPP
#define XOPTIM_ENGINE_ARCH_X86_SSE2_HPP

#include <emmintrin.h>

#include <array>
#include <cstring>
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
            inline std::array<xsimd::batch<double, A>, 2> widen_halves(const xsimd::batch<float, A>& x,
                                                                       requires_arch<sse2>) noexcept
            {
                const __m128 v = x;
                return {xsimd::batch<double, A>(_mm_cvtps_pd(v)), xsimd::batch<double, A>(_mm_cvtps_pd(_mm_movehl_ps(v, v)))};
            }

            template <class A, class T, std::enable_if_t<std::is_floating_point<T>::value, int> = 0>
            inline xsimd::batch<T, A> min(const xsimd::batch<T, A>& a, const xsimd::batch<T, A>& b, requires_arch<sse2>) noexcept
            {
                if constexpr (std::is_same<T, float>::value)
                {
                    return _mm_min_ps(a, b);
                }
                else
                {
                    return _mm_min_pd(a, b);
                }
            }

            template <class A, class T, std::enable_if_t<std::is_floating_point<T>::value, int> = 0>
            inline xsimd::batch<T, A> max(const xsimd::batch<T, A>& a, const xsimd::batch<T, A>& b, requires_arch<sse2>) noexcept
            {
                if constexpr (std::is_same<T, float>::value)
                {
                    return _mm_max_ps(a, b);
                }
                else
                {
                    return _mm_max_pd(a, b);
                }
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

            /*********************************
             * 8- and 16-bit storage, 32-bit *
             *********************************/

            template <class A, class U, class S>
            inline xsimd::batch<U, A> widen(const S* p, requires_arch<sse2>) noexcept
            {
                static_assert(sizeof(S) == 1 || sizeof(S) == 2, "xoptim: widen takes 8- or 16-bit storage");
                const __m128i zero = _mm_setzero_si128();
                if constexpr (sizeof(S) == 1)
                {
                    std::int32_t four;
                    std::memcpy(&four, p, sizeof four);
                    return _mm_unpacklo_epi16(_mm_unpacklo_epi8(_mm_cvtsi32_si128(four), zero), zero);
                }
                else
                {
                    return _mm_unpacklo_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)), zero);
                }
            }

            // Saturating packs for bytes (a -1 lane, a code whose mirror is below 0,
            // becomes 0); 16-bit values sign-extended first, so the signed pack keeps their
            // bits (SSE2 has no unsigned 32-to-16 pack).
            template <class A, class S, class U>
            inline void narrow(const xsimd::batch<U, A>& b, S* p, requires_arch<sse2>) noexcept
            {
                static_assert(sizeof(S) == 1 || sizeof(S) == 2, "xoptim: narrow takes 8- or 16-bit storage");
                if constexpr (sizeof(S) == 1)
                {
                    const __m128i words = _mm_packs_epi32(b, b);
                    const std::int32_t four = _mm_cvtsi128_si32(_mm_packus_epi16(words, words));
                    std::memcpy(p, &four, sizeof four);
                }
                else
                {
                    const __m128i extended = _mm_srai_epi32(_mm_slli_epi32(b, 16), 16);
                    _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packs_epi32(extended, extended));
                }
            }

            /***************
             * 8-bit codes *
             ***************/

            // The codes of |x| in cells of 1/128 octave (2^16 floats), from 2^-24 up to
            // 2: each holds one code boundary at most (a cell is narrower than any gap
            // between two: 0.004 against 0.007 near 1 in the unsigned map, the
            // narrowest), found once with the scalar encoder. A cell's entry is the
            // code past its boundary, times 2^17, plus the boundary's place among the
            // cell's floats (2^16: none). SSE2 has no table permute (pshufb is SSSE3):
            // four loads from a 12.5 KB table instead.
            class q8_cells
            {
            public:

                static constexpr std::uint32_t first_octave = 127 - 24;
                static constexpr std::uint32_t count = 25 * 128;

                explicit q8_cells(const q8_tables& t) noexcept
                {
                    for (std::uint32_t k = 0; k < count; ++k)
                    {
                        const std::uint32_t first = ((first_octave << 7) + k) << 16;
                        const std::uint8_t low = t.encode(float_of(first));
                        const std::uint8_t high = t.encode(float_of(first + 0xffff));
                        std::uint32_t below = 0, past = 0x10000;  // the boundary is in (below, past]
                        if (high != low)
                        {
                            past = 0xffff;
                            while (past - below > 1)
                            {
                                const std::uint32_t mid = (below + past) / 2;
                                (t.encode(float_of(first + mid)) == low ? below : past) = mid;
                            }
                        }
                        m_cells[k] = std::uint32_t(low + 1) << 17 | past;
                    }
                }

                const std::uint32_t* data() const noexcept
                {
                    return m_cells.data();
                }

                // The cells of the two dynamic maps, made on first use.
                static const q8_cells& of(const q8_tables& t) noexcept
                {
                    if (t.is_signed)
                    {
                        static const q8_cells s(t);
                        return s;
                    }
                    static const q8_cells u(t);
                    return u;
                }

            private:

                static float float_of(std::uint32_t bits) noexcept
                {
                    float x;
                    std::memcpy(&x, &bits, sizeof x);
                    return x;
                }

                alignas(64) std::array<std::uint32_t, count> m_cells{};
            };

            template <class A>
            class q8_codec_sse2
            {
            public:

                using batch = xsimd::batch<float, A>;

                // Elements per encode_group: one store of 16 codes.
                static constexpr std::size_t group = 16;

                // Slower interleaved on Zen 3 (docs/benchmarks.md, "8-bit states on 16
                // registers").
                static constexpr bool interleaved = false;

                explicit q8_codec_sse2(const q8_tables& t) noexcept
                    : m_signed(t.is_signed), m_values(t.values.data()), m_cells(q8_cells::of(t).data())
                {
                }

                // The cell of |x| (clamped to the table: below 2^-24 is the first cell's
                // code, 2 and up, inf and NaN the last's, 255), then one compare with its
                // boundary; the mirror for negative x (signed map).
                [[gnu::always_inline]] __m128i codes(const batch& x) const noexcept
                {
                    // The cell: |x|'s top 15 bits, less the first cell's (saturating at 0),
                    // at most the last; 16-bit operations do for these 32-bit lanes, whose
                    // high halves are 0.
                    const __m128i top = _mm_srli_epi32(_mm_slli_epi32(_mm_castps_si128(x), 1), 17);
                    const __m128i cell = _mm_min_epi16(_mm_subs_epu16(top, _mm_set1_epi32(q8_cells::first_octave << 7)),
                                                       _mm_set1_epi32(q8_cells::count - 1));
                    alignas(16) std::uint32_t k[4];
                    _mm_store_si128(reinterpret_cast<__m128i*>(k), cell);
                    const __m128i entry = _mm_setr_epi32(std::int32_t(m_cells[k[0]]), std::int32_t(m_cells[k[1]]),
                                                         std::int32_t(m_cells[k[2]]), std::int32_t(m_cells[k[3]]));
                    const __m128i before = _mm_cmpgt_epi32(_mm_and_si128(entry, _mm_set1_epi32(0x1ffff)),
                                                           _mm_and_si128(_mm_castps_si128(x), _mm_set1_epi32(0xffff)));
                    const __m128i code = _mm_add_epi32(_mm_srli_epi32(entry, 17), before);
                    if (!m_signed)
                    {
                        return code;
                    }
                    // 254 - code where x < 0: (code ^ -1) + 255 = 254 - code.
                    const __m128i negative = _mm_castps_si128(_mm_cmplt_ps(x, _mm_setzero_ps()));
                    return _mm_add_epi32(_mm_xor_si128(code, negative), _mm_srli_epi32(negative, 24));
                }

                void encode(const batch& x, std::uint8_t* out) const noexcept
                {
                    arch::narrow(xsimd::batch<std::int32_t, A>(codes(x)), out);
                }

                [[gnu::always_inline]] void encode_group(const float* in, const batch& scale, std::uint8_t* out) const noexcept
                {
                    const __m128i c0 = codes(batch::load_aligned(in) * scale);
                    const __m128i c1 = codes(batch::load_aligned(in + 4) * scale);
                    const __m128i c2 = codes(batch::load_aligned(in + 8) * scale);
                    const __m128i c3 = codes(batch::load_aligned(in + 12) * scale);
                    _mm_storeu_si128(reinterpret_cast<__m128i*>(out),
                                     _mm_packus_epi16(_mm_packs_epi32(c0, c1), _mm_packs_epi32(c2, c3)));
                }

                // Four loads from the map's values.
                batch decode(const std::uint8_t* codes) const noexcept
                {
                    const float* v = m_values;
                    return _mm_setr_ps(v[codes[0]], v[codes[1]], v[codes[2]], v[codes[3]]);
                }

            private:

                bool m_signed;
                const float* m_values;
                const std::uint32_t* m_cells;
            };

            template <class A>
            q8_codec_sse2<A> q8_codec_of(requires_arch<sse2>);
        }
    }
}

#endif
