// Storage codecs: how a slot kept in a narrower type than float is turned into floats
// for the fused batch code and back, one block of at most `codec_block` elements at a
// time (see coded.hpp).
//
// bf16: decode is exact (a shift). Encoding rounds to nearest-even, or stochastically
// (x + a uniform random 16-bit value in the bits below bf16's last bit, then truncated:
// unbiased, E[round(x)] = x), or keeps the rounding error in a second bf16 tensor
// (Kahan-style compensation: the value is hi + lo, about 16 significant bits).
//
// 8-bit block-wise (Dettmers et al. 2022, "8-bit optimizers via block-wise
// quantization"): one float absmax per block of 256 and one byte per element, the index
// of the nearest value of x / absmax in a 256-entry dynamic map (bitsandbytes'
// create_dynamic_map: signed for momenta, unsigned for second moments). Decoding is a
// table lookup; encoding is closed-form (see dynamic_map), not a search.
#ifndef XOPTIM_ENGINE_CODECS_HPP
#define XOPTIM_ENGINE_CODECS_HPP

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>

#include <type_traits>

#include <xsimd/xsimd.hpp>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "bfloat16.hpp"

namespace xoptim
{
#if defined(__AVX512F__)
    namespace codec
    {
        // AVX-512 intrinsics are used in their zero-masking forms with every lane on:
        // GCC 12 warns (-Wuninitialized, bug 105593) where the plain forms' undefined
        // pass-through operand gets inlined into constant data.
        inline constexpr __mmask16 all_lanes = 0xFFFF;
    }

    using codec::all_lanes;
#endif

    // Elements per 8-bit block, and per codec call.
    inline constexpr std::size_t codec_block = 256;

    // A 256-entry quantization map in bitsandbytes' dynamic layout, ascending. Signed:
    // codes 0-126 negative, 127 zero, 128-254 positive, 255 is 1. Unsigned: code 0 is
    // zero, 255 is 1. Between them, buckets k = 0..6 of magnitudes [0.1, 1) * 10^(k-6),
    // each split into n_k equal bins (n_k = 2^k signed, 2^(k+1) unsigned) whose centres
    // are the values: a dynamic exponent (which bucket) and a linear fraction (which bin).
    //
    // Both directions are arithmetic, no search: a value is fma(q, width, offset) with
    // q the code's distance from zero and (width, offset) its bucket's, the bucket being
    // the octave of q (a code's value is defined by this float expression; the table
    // holds the same numbers). Encoding finds the bucket of |x| from its binary octave,
    // which holds at most one bucket boundary, then the bin by one floor.
    class dynamic_map
    {
    public:

        static constexpr std::size_t buckets = 7;

        static const dynamic_map& signed_map()
        {
            static const dynamic_map m(true);
            return m;
        }

        static const dynamic_map& unsigned_map()
        {
            static const dynamic_map m(false);
            return m;
        }

        bool is_signed() const noexcept
        {
            return m_signed;
        }

        const std::array<float, 256>& values() const noexcept
        {
            return m_values;
        }

        std::uint8_t zero_code() const noexcept
        {
            return m_signed ? 127 : 0;
        }

        // Code of the map value nearest to x (x in [-1, 1]; the unsigned map encodes |x|:
        // its states must not be negative). Exactly the nearest value, except within 1e-5
        // (relative) of a midpoint between two values, where either neighbour may come
        // (the bucket's offset is a float). Beyond +-1, and +-inf, go to the nearest end;
        // NaN to code 255.
        std::uint8_t encode(float x) const noexcept
        {
            const float a = std::fabs(x);
            std::uint32_t bits;
            std::memcpy(&bits, &a, sizeof bits);
            const std::size_t o = octave_index(std::int32_t(bits >> 23));
            const std::size_t count = std::size_t(m_octave_count[o]) + (a >= m_octave_next[o] ? 1 : 0);
            const auto min = [](float u, float v) { return u < v ? u : v; };
            float code = min(std::floor(std::fma(a, m_inv_width[count], m_code_offset[count])), m_last_code[count]);
            if (m_signed && x < 0)
            {
                code = 254.0f - min(code, 254.0f);
            }
            return std::uint8_t(code);
        }

        // Batch encoding and decoding, with the map's tables loaded once into registers
        // (the byte stores of a code loop may alias anything, so tables read through the
        // map would be read again every batch). Same codes and values as the scalar forms.
        // codes() gives 32-bit codes for narrow(); on AVX-512 a negative x whose mirror
        // is below code 0 gives -1, which narrow()'s saturating packs make 0.
        template <class Arch, bool = std::is_base_of<xsimd::avx512f, Arch>::value>
        class simd
        {
        public:

            using batch = xsimd::batch<float, Arch>;
            using ibatch = xsimd::batch<std::int32_t, Arch>;

            explicit simd(const dynamic_map& m) noexcept
                : m_map(m)
            {
            }

            ibatch codes(const batch& x) const noexcept
            {
                const dynamic_map& m = m_map;
                const batch a = xsimd::abs(x);
                const ibatch o = octave(a);
                const batch above = xsimd::select(a >= batch::gather(m.m_octave_next.data(), o), batch(1.0f), batch(0.0f));
                const ibatch count = ibatch::gather(m.m_octave_count.data(), o) + xsimd::batch_cast<std::int32_t>(above);
                B code = xsimd::min(xsimd::floor(fused(a, batch::gather(m.m_inv_width.data(), count),
                                                       batch::gather(m.m_code_offset.data(), count))),
                                    batch::gather(m.m_last_code.data(), count));
                if (m.m_signed)
                {
                    code = xsimd::select(x < batch(0.0f), batch(254.0f) - xsimd::min(code, batch(254.0f)), code);
                }
                return xsimd::batch_cast<std::int32_t>(code);
            }

            batch decode(const ibatch& c) const noexcept
            {
                return batch::gather(m_map.m_values.data(), c);
            }

        private:

            using B = batch;
            const dynamic_map& m_map;
        };

#if defined(__AVX512F__)
        // Written for the ops that run two per cycle on AVX-512 cores (permutes,
        // conversions, compares, shifts, float arithmetic) against the integer adds,
        // min/max, logic and blends that run four: 16 codes cost ten of the first kind
        // to encode (twelve signed), seven to decode (widening included).
        template <class Arch>
        class simd<Arch, true>
        {
        public:

            using batch = xsimd::batch<float, Arch>;

            explicit simd(const dynamic_map& m) noexcept
                : m_signed(m.m_signed),
                  m_next(_mm512_load_ps(m.m_window_next.data())),
                  m_inv_width_lo(_mm512_load_ps(m.m_window_inv_width.data())),
                  m_inv_width_hi(_mm512_load_ps(m.m_window_inv_width.data() + 16)),
                  m_code_offset_lo(_mm512_load_ps(m.m_window_code_offset.data())),
                  m_code_offset_hi(_mm512_load_ps(m.m_window_code_offset.data() + 16)),
                  m_last_lo(_mm512_load_si512(m.m_window_last.data())),
                  m_last_hi(_mm512_load_si512(m.m_window_last.data() + 16)),
                  m_width(_mm512_load_ps(m.m_width.data())),
                  m_offset(_mm512_load_ps(m.m_offset.data())),
                  m_centre(_mm512_set1_epi32(m.m_signed ? 127 : 0)),
                  m_bias(_mm512_set1_epi32(m.m_signed ? 0 : 1))
            {
            }

            // |x| clamped to [2^-24, 1.5] as an integer (NaN to 1.5): its top bits are
            // the window, whose boundary picks the bucket's half of the tables. The floor
            // converted directly (unsigned: NaN and inf become the largest value, so the
            // min with the bucket's last code takes them there); the mirror for negative
            // x (signed map) by subtraction and blend.
            [[gnu::always_inline]] __m512i codes(const batch& x) const noexcept
            {
                const __m512i bits = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(0x7fffffff));
                const __m512i t = _mm512_maskz_min_epi32(
                    all_lanes, _mm512_maskz_max_epi32(all_lanes, bits, _mm512_set1_epi32(0x33800000)),  // 2^-24
                    _mm512_set1_epi32(0x3fc00000));                                                      // 1.5
                const __m512i window = _mm512_maskz_srli_epi32(all_lanes, t, 24);
                const __mmask16 above = _mm512_cmp_ps_mask(_mm512_castsi512_ps(t),
                                                           _mm512_maskz_permutexvar_ps(all_lanes, window, m_next), _CMP_GE_OQ);
                const __m512i index = _mm512_mask_blend_epi32(above, window, _mm512_xor_si512(window, _mm512_set1_epi32(16)));
                const __m512 y = _mm512_fmadd_ps(_mm512_castsi512_ps(bits), _mm512_permutex2var_ps(m_inv_width_lo, index, m_inv_width_hi),
                                                 _mm512_permutex2var_ps(m_code_offset_lo, index, m_code_offset_hi));
                const __m512i floor = _mm512_maskz_cvt_roundps_epu32(all_lanes, y, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
                const __m512i code =
                    _mm512_maskz_min_epu32(all_lanes, floor, _mm512_permutex2var_epi32(m_last_lo, index, m_last_hi));
                if (!m_signed)
                {
                    return code;
                }
                const __mmask16 negative = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
                return _mm512_mask_blend_epi32(negative, code, _mm512_sub_epi32(_mm512_set1_epi32(254), code));
            }

            // q = |c - centre| (centre 127 signed, 0 unsigned) by integer adds, the
            // tables indexed by the leading zeros of q + bias (bias 1 unsigned, so code
            // 0 is zero) mod 16, and the sign of c - centre put on the value.
            batch decode(const __m512i& c) const noexcept
            {
                const __m512i d = _mm512_sub_epi32(c, m_centre);
                const __m512i q = _mm512_maskz_max_epi32(all_lanes, d, _mm512_sub_epi32(_mm512_setzero_si512(), d));
                const __m512i index = leading_zeros(_mm512_add_epi32(q, m_bias));
                const __m512 qf = _mm512_maskz_cvtepi32_ps(all_lanes, q);
                const __m512 v = _mm512_fmadd_ps(qf, _mm512_maskz_permutexvar_ps(all_lanes, index, m_width),
                                                 _mm512_maskz_permutexvar_ps(all_lanes, index, m_offset));
                const __m512i sign = _mm512_and_si512(d, _mm512_set1_epi32(std::int32_t(0x80000000u)));
                return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(v), sign));
            }

        private:

            bool m_signed;
            __m512 m_next;
            __m512 m_inv_width_lo, m_inv_width_hi, m_code_offset_lo, m_code_offset_hi;
            __m512i m_last_lo, m_last_hi;
            __m512 m_width, m_offset;
            __m512i m_centre;
            __m512i m_bias;

            // Leading zeros of each lane (32 for 0), or 32 minus the bit length from
            // the float exponent.
            static __m512i leading_zeros(const __m512i& n) noexcept
            {
#if defined(__AVX512CD__)
                return _mm512_maskz_lzcnt_epi32(all_lanes, n);
#else
                const __m512 lg = _mm512_maskz_getexp_ps(all_lanes, _mm512_maskz_cvtepi32_ps(all_lanes, n));
                const __m512i length = _mm512_maskz_cvttps_epi32(
                    all_lanes, _mm512_maskz_max_ps(all_lanes, _mm512_add_ps(lg, _mm512_set1_ps(1.0f)), _mm512_setzero_ps()));
                return _mm512_sub_epi32(_mm512_set1_epi32(32), length);
#endif
            }
        };
#endif

    private:

        // Octaves 2^-24 .. 2^0 of |x|: everything below the first boundary (1.6e-7) is one.
        static constexpr std::size_t octaves = 25;

        // The octave of |x| as an index 0..24 (2^-24 .. 2^0), from its float exponent (the
        // portable batch code; AVX-512 reads windows of two octaves).
        template <class B>
        static xsimd::batch<std::int32_t, typename B::arch_type> octave(const B& a) noexcept
        {
            using ibatch = xsimd::batch<std::int32_t, typename B::arch_type>;
            const ibatch low(127 - std::int32_t(octaves - 1));
            const ibatch high(std::int32_t(octaves - 1));
            const ibatch exponent = xsimd::bitwise_cast<ibatch>(a) >> 23;
            return xsimd::min(xsimd::max(exponent - low, ibatch(0)), high);
        }

        // a * b + c rounded once, as the scalar encode's std::fma, for the portable
        // batch code (xsimd 8's generic fma is a * b + c, fused or not as the compiler
        // contracts, and there is none where the hardware has no FMA).
        template <class B>
        static B fused(const B& a, const B& b, const B& c) noexcept
        {
            alignas(64) float x[B::size], y[B::size], z[B::size];
            a.store_aligned(x);
            b.store_aligned(y);
            c.store_aligned(z);
            for (std::size_t i = 0; i < B::size; ++i)
            {
                x[i] = std::fma(x[i], y[i], z[i]);
            }
            return B::load_aligned(x);
        }

        // The decoding tables' slot for a bit length L of q (+ 1 unsigned): the
        // leading zeros of q, 32 - L, mod 16 (as a 16-entry permute reads its index).
        static constexpr std::size_t decode_index(std::size_t length) noexcept
        {
            return (32 - length) % 16;
        }

        static std::size_t octave_index(std::int32_t biased_exponent) noexcept
        {
            return std::size_t(std::min(std::max(biased_exponent - (127 - std::int32_t(octaves - 1)), 0),
                                        std::int32_t(octaves - 1)));
        }

        explicit dynamic_map(bool is_signed)
            : m_signed(is_signed)
        {
            // Decoding, by bit length: 0 is zero (signed q = 0), t + 1 holds q in
            // [2^t, 2^(t+1)) of q = |c - 127| (signed) or c + 1 (unsigned, so length 1 is
            // zero); each kept at decode_index(length).
            const std::size_t zero_index = is_signed ? 0 : 1;
            const std::size_t one_index = is_signed ? 8 : 9;
            m_offset[decode_index(one_index)] = 1.0f;
            std::array<double, buckets> lo{}, width{};
            std::array<std::size_t, buckets> first{}, n{};
            for (std::size_t k = 0; k < buckets; ++k)
            {
                const double scale = std::pow(10.0, double(k) - 6.0);
                n[k] = std::size_t(1) << (is_signed ? k : k + 1);
                lo[k] = 0.1 * scale;
                width[k] = 0.9 * scale / double(n[k]);
                // q of the bucket's first value: the octave starts there.
                const double q0 = is_signed ? double(n[k]) : double(n[k]) - 1;
                m_width[decode_index(zero_index + 1 + k)] = float(width[k]);
                m_offset[decode_index(zero_index + 1 + k)] = float(lo[k] + (0.5 - q0) * width[k]);
                first[k] = is_signed ? 127 + n[k] : n[k] - 1;
            }
            for (std::size_t c = 0; c < 256; ++c)
            {
                const int q = is_signed ? std::abs(int(c) - 127) : int(c);
                const int lg = is_signed ? (q == 0 ? -1 : std::ilogb(float(q))) : std::ilogb(float(q + 1));
                const std::size_t index = decode_index(std::size_t(std::max(lg + 1, 0)));
                const float v = std::fma(float(q), m_width[index], m_offset[index]);
                m_values[c] = is_signed && c < 127 ? -v : v;
            }
            // Encoding, by the count of boundaries at or below |x| (0: zero; k + 1:
            // bucket k; 8: one): code = min(floor(|x| * inv_width + offset), last).
            const float zero = float(zero_code());
            m_last_code[0] = m_code_offset[0] = zero;
            for (std::size_t k = 0; k < buckets; ++k)
            {
                const double inv = double(n[k]) / (0.9 * std::pow(10.0, double(k) - 6.0));
                m_inv_width[k + 1] = float(inv);
                m_code_offset[k + 1] = float(double(first[k]) - lo[k] * inv);
                m_last_code[k + 1] = float(first[k] + n[k] - 1);
                // Bucket k begins at the midpoint between its first value and the value
                // below it (zero, or the top of bucket k - 1).
                m_threshold[k] = float((double(m_values[first[k] - 1]) + double(m_values[first[k]])) / 2);
            }
            m_last_code[8] = m_code_offset[8] = 255.0f;
            m_threshold[buckets] = float((double(m_values[254]) + 1.0) / 2);
            for (std::size_t o = 0; o < 32; ++o)
            {
                const float low = std::ldexp(1.0f, int(std::min(o, octaves - 1)) - int(octaves - 1));  // octave [low, 2 low)
                // No boundary left above: NaN, which no |x| (not even inf) reaches.
                m_octave_next[o] = std::numeric_limits<float>::quiet_NaN();
                for (std::size_t k = buckets + 1; k-- > 0;)
                {
                    if (m_threshold[k] <= low)
                    {
                        m_octave_count[o] += 1;
                    }
                    else
                    {
                        m_octave_next[o] = m_threshold[k];
                    }
                }
            }
            // The same by windows of two octaves (the thresholds are 6.9x apart or more,
            // so a window also holds one at most), at the window's number mod 32 (as a
            // two-table permute reads its index), that with bit 4 flipped above the
            // boundary: the bucket's encoding values directly.
            for (std::size_t w = window_first; w <= window_last; ++w)
            {
                const float low = std::ldexp(1.0f, 2 * int(w) - 127);  // window [low, 4 low)
                std::size_t count = 0;
                m_window_next[w % 16] = std::numeric_limits<float>::quiet_NaN();
                for (std::size_t k = buckets + 1; k-- > 0;)
                {
                    if (m_threshold[k] <= low)
                    {
                        count += 1;
                    }
                    else
                    {
                        m_window_next[w % 16] = m_threshold[k];
                    }
                }
                for (std::size_t above = 0; above < 2; ++above)
                {
                    const std::size_t slot = (w % 32) ^ (16 * above);
                    const std::size_t bucket = std::min<std::size_t>(count + above, buckets + 1);
                    m_window_inv_width[slot] = m_inv_width[bucket];
                    m_window_code_offset[slot] = m_code_offset[bucket];
                    m_window_last[slot] = std::int32_t(m_last_code[bucket]);
                }
            }
        }

        bool m_signed;
        alignas(64) std::array<float, 256> m_values{};
        // Decoding, at decode_index(bit length of q): value = fma(q, width, offset).
        alignas(64) std::array<float, 16> m_width{};
        alignas(64) std::array<float, 16> m_offset{};
        // Bucket boundaries 0..6 open buckets 0..6; boundary 7 is the midpoint below 1.
        std::array<float, buckets + 1> m_threshold{};
        // Encoding, by the count of boundaries passed.
        alignas(64) std::array<float, 16> m_inv_width{};
        alignas(64) std::array<float, 16> m_code_offset{};
        alignas(64) std::array<float, 16> m_last_code{};
        // By octave of |x|: boundaries below it, the next one above (at most one inside).
        alignas(64) std::array<std::int32_t, 32> m_octave_count{};
        alignas(64) std::array<float, 32> m_octave_next{};
        // By window of two octaves, [4^(w - 64), 4^(w - 63)) for the exponent's top
        // seven bits w (|x| clamped to [2^-24, 1.5]): the next boundary, and the
        // bucket's inverse width, code offset and last code below and above it.
        static constexpr std::size_t window_first = (127 - 24) / 2;
        static constexpr std::size_t window_last = 127 / 2;
        alignas(64) std::array<float, 16> m_window_next{};
        alignas(64) std::array<float, 32> m_window_inv_width{};
        alignas(64) std::array<float, 32> m_window_code_offset{};
        alignas(64) std::array<std::int32_t, 32> m_window_last{};
    };

    namespace codec
    {
        /*******************************
         * Narrow <-> 32-bit batch I/O *
         *******************************/

        // 8- and 16-bit storage as 32-bit lanes and back: AVX-512's widening and
        // narrowing moves where the batch is AVX-512, otherwise small fixed-count loops
        // through an aligned buffer (xsimd 8 names neither).
        template <class Arch>
        inline constexpr bool is_avx512 = std::is_base_of<xsimd::avx512f, Arch>::value;

        template <class U, class Arch, class S>
        inline xsimd::batch<U, Arch> widen(const S* p) noexcept
        {
            using batch = xsimd::batch<U, Arch>;
#if defined(__AVX512F__)
            if constexpr (is_avx512<Arch> && sizeof(S) == 1)
            {
                return batch(_mm512_maskz_cvtepu8_epi32(all_lanes, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
            }
            else if constexpr (is_avx512<Arch> && sizeof(S) == 2)
            {
                return batch(_mm512_maskz_cvtepu16_epi32(all_lanes, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))));
            }
            else
#endif
            {
                alignas(64) U tmp[batch::size];
                for (std::size_t i = 0; i < batch::size; ++i)
                {
                    tmp[i] = U(p[i]);
                }
                return batch::load_aligned(tmp);
            }
        }

        template <class S, class U, class Arch>
        inline void narrow(const xsimd::batch<U, Arch>& b, S* p) noexcept
        {
#if defined(__AVX512F__)
            // Saturating packs and one permute, not vpmovdb/vpmovdw: compilers fold
            // those into their store forms, which some cores run microcoded.
            if constexpr (is_avx512<Arch> && sizeof(S) == 1)
            {
                const __m512i words = _mm512_packus_epi32(b, b);
                const __m512i bytes = _mm512_packus_epi16(words, words);
                const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
                _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                                 _mm512_castsi512_si128(_mm512_maskz_permutexvar_epi32(all_lanes, order, bytes)));
            }
            else if constexpr (is_avx512<Arch> && sizeof(S) == 2)
            {
                const __m512i words = _mm512_packus_epi32(b, b);
                const __m512i order = _mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7);
                _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                                    _mm512_castsi512_si256(_mm512_maskz_permutexvar_epi64(__mmask8(0xFF), order, words)));
            }
            else
#endif
            {
                using batch = xsimd::batch<U, Arch>;
                alignas(64) U tmp[batch::size];
                b.store_aligned(tmp);
                for (std::size_t i = 0; i < batch::size; ++i)
                {
                    p[i] = S(tmp[i]);
                }
            }
        }

        // Runs simd(i) for the whole batches of [0, n) and scalar(i) for the elements
        // after them: both compute the same bits, so where a tensor ends changes nothing.
        // Always inlined: a loop storing bytes may alias anything, and only an inlined
        // lambda keeps what it captures in registers.
        template <std::size_t W, class S, class F>
        [[gnu::always_inline]] inline void for_elements(std::size_t n, S&& simd, F&& scalar)
        {
            const std::size_t whole = n - n % W;
            for (std::size_t i = 0; i < whole; i += W)
            {
                simd(i);
            }
            for (std::size_t i = whole; i < n; ++i)
            {
                scalar(i);
            }
        }

        /********
         * bf16 *
         ********/

        template <class Arch>
        inline xsimd::batch<float, Arch> bf16_to_float(const std::uint16_t* p) noexcept
        {
#if defined(__AVX512F__)
            if constexpr (is_avx512<Arch>)
            {
                // A named operand: at -O0 the intrinsic is a macro, and a template's
                // comma would split its arguments.
                const __m512i bits = widen<std::uint32_t, Arch>(p);
                return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(all_lanes, bits, 16));
            }
            else
#endif
            {
                return xsimd::bitwise_cast<xsimd::batch<float, Arch>>(widen<std::uint32_t, Arch>(p) << 16);
            }
        }

        // a * b rounded on its own: never contracted with a following add into an fma,
        // so a decoded value is the same whether it stays in a register (the fused 8-bit
        // loop) or goes through a buffer (the generic block path).
        template <class B>
        inline B rounded_product(const B& a, const B& b) noexcept
        {
#if defined(__AVX512F__)
            if constexpr (is_avx512<typename B::arch_type>)
            {
                return _mm512_maskz_mul_round_ps(all_lanes, a, b, _MM_FROUND_CUR_DIRECTION);
            }
            else
#endif
            {
                alignas(64) float p[B::size];
                (a * b).store_aligned(p);
#if defined(__GNUC__)
                asm volatile("" : : "r"(p) : "memory");  // the compiler cannot see the product through memory
#endif
                return B::load_aligned(p);
            }
        }

        // max(a, |x|) by compare and select (a NaN x leaves a as it is).
        template <class B>
        inline B max_abs(const B& a, const B& x) noexcept
        {
            const B m = xsimd::abs(x);
#if defined(__AVX512F__)
            if constexpr (is_avx512<typename B::arch_type>)
            {
                return _mm512_maskz_max_ps(all_lanes, m, a);  // vmaxps gives its second operand where one is NaN
            }
#endif
            return xsimd::select(m > a, m, a);
        }

        // select on 32-bit unsigned lanes (xsimd 8's AVX-512BW select does not compile
        // for them at -O0).
        template <class Arch>
        inline xsimd::batch<std::uint32_t, Arch> select_bits(const xsimd::batch_bool<std::uint32_t, Arch>& m,
                                                             const xsimd::batch<std::uint32_t, Arch>& a,
                                                             const xsimd::batch<std::uint32_t, Arch>& b) noexcept
        {
#if defined(__AVX512F__)
            if constexpr (is_avx512<Arch>)
            {
                const __mmask16 k = m;
                return _mm512_mask_blend_epi32(k, b, a);
            }
            else
#endif
            {
                return xsimd::select(m, a, b);
            }
        }

        // Float bits rounded to bf16 bits (in the low half), nearest-even; NaN stays NaN.
        template <class Arch>
        inline xsimd::batch<std::uint32_t, Arch> round_nearest_even(const xsimd::batch<float, Arch>& x) noexcept
        {
            using ubatch = xsimd::batch<std::uint32_t, Arch>;
            const ubatch u = xsimd::bitwise_cast<ubatch>(x);
            const ubatch rounded = (u + ubatch(0x7fffu) + ((u >> 16) & ubatch(1u))) >> 16;
            return select_bits<Arch>((u & ubatch(0x7fffffffu)) > ubatch(0x7f800000u), (u >> 16) | ubatch(0x40u), rounded);
        }

        // A 32-bit hash of (key, index): each element of a stochastic rounding gets its
        // own uniform bits, the same for any thread split.
        template <class U>
        inline U hash(std::uint32_t key, const U& index) noexcept
        {
            U h = index * U(0x9e3779b1u) ^ U(key);
            h = h ^ (h >> 16);
            h = h * U(0x7feb352du);
            h = h ^ (h >> 15);
            h = h * U(0x846ca68bu);
            return h ^ (h >> 16);
        }

        // The key of one tensor's stochastic roundings at one step.
        inline std::uint32_t stream_key(std::uint64_t seed, std::uint64_t step, std::uint64_t tensor) noexcept
        {
            std::uint64_t z = seed + 0x9e3779b97f4a7c15ull * (step + 1) + 0xbf58476d1ce4e5b9ull * (tensor + 1);
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
            return std::uint32_t((z ^ (z >> 31)) >> 32);
        }

        // x rounded to bf16 stochastically with 16 random bits r (in the low half).
        inline std::uint16_t round_stochastic(float x, std::uint32_t r) noexcept
        {
            std::uint32_t u;
            std::memcpy(&u, &x, sizeof u);
            return (u & 0x7fffffffu) > 0x7f800000u ? std::uint16_t(u >> 16 | 0x40u) : std::uint16_t((u + r) >> 16);
        }

        template <class Arch>
        void decode_bf16(const std::uint16_t* in, float* out, std::size_t n) noexcept
        {
            for_elements<xsimd::batch<float, Arch>::size>(
                n, [&](std::size_t i) { bf16_to_float<Arch>(in + i).store_aligned(out + i); },
                [&](std::size_t i) { out[i] = bfloat16::to_float(in[i]); });
        }

        // hi + lo: a value kept with its compensation.
        template <class Arch>
        void decode_bf16_pair(const std::uint16_t* hi, const std::uint16_t* lo, float* out, std::size_t n) noexcept
        {
            for_elements<xsimd::batch<float, Arch>::size>(
                n,
                [&](std::size_t i) { (bf16_to_float<Arch>(hi + i) + bf16_to_float<Arch>(lo + i)).store_aligned(out + i); },
                [&](std::size_t i) { out[i] = bfloat16::to_float(hi[i]) + bfloat16::to_float(lo[i]); });
        }

        template <class Arch>
        void encode_bf16(const float* in, std::uint16_t* out, std::size_t n) noexcept
        {
            using batch = xsimd::batch<float, Arch>;
            for_elements<batch::size>(
                n, [&](std::size_t i) { narrow(round_nearest_even<Arch>(batch::load_aligned(in + i)), out + i); },
                [&](std::size_t i) { out[i] = bfloat16::round_nearest_even(in[i]); });
        }

        // hi = bf16(x), lo = bf16(x - hi): the rounding error is kept, not lost.
        template <class Arch>
        void encode_bf16_pair(const float* in, std::uint16_t* hi, std::uint16_t* lo, std::size_t n) noexcept
        {
            using batch = xsimd::batch<float, Arch>;
            using ubatch = xsimd::batch<std::uint32_t, Arch>;
            for_elements<batch::size>(
                n,
                [&](std::size_t i) {
                    const batch x = batch::load_aligned(in + i);
                    const ubatch h = round_nearest_even<Arch>(x);
                    narrow(h, hi + i);
                    narrow(round_nearest_even<Arch>(x - xsimd::bitwise_cast<batch>(h << 16)), lo + i);
                },
                [&](std::size_t i) {
                    hi[i] = bfloat16::round_nearest_even(in[i]);
                    lo[i] = bfloat16::round_nearest_even(in[i] - bfloat16::to_float(hi[i]));
                });
        }

        // Stochastic rounding of elements first_index, first_index + 1, ... of a tensor.
        template <class Arch>
        void encode_bf16_stochastic(const float* in, std::uint16_t* out, std::size_t n, std::uint32_t key,
                                    std::uint32_t first_index) noexcept
        {
            using batch = xsimd::batch<float, Arch>;
            using ubatch = xsimd::batch<std::uint32_t, Arch>;
            alignas(64) std::uint32_t lanes[batch::size];
            for (std::size_t k = 0; k < batch::size; ++k)
            {
                lanes[k] = std::uint32_t(k);
            }
            const ubatch lane = ubatch::load_aligned(lanes);
            for_elements<batch::size>(
                n,
                [&](std::size_t i) {
                    const batch x = batch::load_aligned(in + i);
                    const ubatch u = xsimd::bitwise_cast<ubatch>(x);
                    const ubatch r = hash(key, lane + ubatch(first_index + std::uint32_t(i))) >> 16;
                    const auto nan = (u & ubatch(0x7fffffffu)) > ubatch(0x7f800000u);
                    narrow(select_bits<Arch>(nan, (u >> 16) | ubatch(0x40u), (u + r) >> 16), out + i);
                },
                [&](std::size_t i) {
                    out[i] = round_stochastic(in[i], hash(key, first_index + std::uint32_t(i)) >> 16);
                });
        }

        /**************************
         * 8-bit block-wise codes *
         **************************/

        template <class Arch>
        void decode_q8(const std::uint8_t* codes, float absmax, const dynamic_map& map, float* out,
                       std::size_t n) noexcept
        {
            using batch = xsimd::batch<float, Arch>;
            const batch scale(absmax);
            const float* table = map.values().data();
            const dynamic_map::simd<Arch> simd(map);
            for_elements<batch::size>(
                n,
                [&](std::size_t i) {
                    (simd.decode(widen<std::int32_t, Arch>(codes + i)) * scale).store_aligned(out + i);
                },
                [&](std::size_t i) { out[i] = table[codes[i]] * absmax; });
        }

        // The largest lane, by a tree (xsimd 8 has no max reduction); the lanes are not
        // NaN.
        template <class B>
        inline float horizontal_max(const B& b) noexcept
        {
#if defined(__AVX512F__)
            if constexpr (is_avx512<typename B::arch_type>)
            {
                // Halves by extraction: GCC 12's cast to 256 bits is an extraction with
                // an undefined pass-through (-Wuninitialized, bug 105593).
                const __m512d x = _mm512_castps_pd(b);
                const __m256 h = _mm256_max_ps(_mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xF, x, 0)),
                                               _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xF, x, 1)));
                const __m128 q = _mm_max_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
                const __m128 p = _mm_max_ps(q, _mm_movehl_ps(q, q));
                return _mm_cvtss_f32(_mm_max_ss(p, _mm_shuffle_ps(p, p, 1)));
            }
#endif
            alignas(64) float lanes[B::size];
            b.store_aligned(lanes);
            for (std::size_t half = B::size / 2; half > 0; half /= 2)
            {
                for (std::size_t k = 0; k < half; ++k)
                {
                    lanes[k] = std::max(lanes[k], lanes[k + half]);
                }
            }
            return lanes[0];
        }

        // max |in[i]| over [0, n): four independent accumulators, then a tree over the
        // lanes (a single running max would be one long chain of dependent maxima).
        template <class Arch>
        float abs_max(const float* in, std::size_t n) noexcept
        {
            using batch = xsimd::batch<float, Arch>;
            constexpr std::size_t W = batch::size;
            batch t0(0.0f), t1(0.0f), t2(0.0f), t3(0.0f);
            std::size_t i = 0;
            for (; i + 4 * W <= n; i += 4 * W)
            {
                t0 = max_abs(t0, batch::load_aligned(in + i));
                t1 = max_abs(t1, batch::load_aligned(in + i + W));
                t2 = max_abs(t2, batch::load_aligned(in + i + 2 * W));
                t3 = max_abs(t3, batch::load_aligned(in + i + 3 * W));
            }
            for (; i + W <= n; i += W)
            {
                t0 = max_abs(t0, batch::load_aligned(in + i));
            }
            float top = horizontal_max(max_abs(max_abs(t0, t1), max_abs(t2, t3)));
            for (; i < n; ++i)
            {
                top = std::max(top, std::fabs(in[i]));
            }
            return top;
        }

        // max |x| over the finite values of [0, n) (the rare path of a block holding an inf).
        inline float finite_abs_max(const float* in, std::size_t n) noexcept
        {
            float top = 0;
            for (std::size_t i = 0; i < n; ++i)
            {
                const float a = std::fabs(in[i]);
                top = a > top && a <= std::numeric_limits<float>::max() ? a : top;
            }
            return top;
        }

        // Elements encode_group takes: 64 on AVX-512 (one store of 64 codes), a batch
        // elsewhere.
        template <class Arch>
        inline constexpr std::size_t encode_group_size = is_avx512<Arch> ? 64 : xsimd::batch<float, Arch>::size;

        // Codes of in[0 .. encode_group_size) times `scale` (1 / the block's absmax).
        template <class Arch>
        [[gnu::always_inline]] inline void encode_group(const float* in, const xsimd::batch<float, Arch>& scale,
                                 const dynamic_map::simd<Arch>& simd, std::uint8_t* codes) noexcept
        {
            using batch = xsimd::batch<float, Arch>;
#if defined(__AVX512F__)
            if constexpr (is_avx512<Arch>)
            {
                // Written out: a loop here is not unrolled, and its codes go through memory.
                const __m512i c0 = simd.codes(batch::load_aligned(in) * scale);
                const __m512i c1 = simd.codes(batch::load_aligned(in + 16) * scale);
                const __m512i c2 = simd.codes(batch::load_aligned(in + 32) * scale);
                const __m512i c3 = simd.codes(batch::load_aligned(in + 48) * scale);
                // Two word packs, one byte pack (saturating: -1 becomes 0), one permute,
                // one store.
                const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
                const __m512i low = _mm512_packus_epi32(c0, c1);
                const __m512i high = _mm512_packus_epi32(c2, c3);
                _mm512_storeu_si512(codes, _mm512_maskz_permutexvar_epi32(all_lanes, order, _mm512_packus_epi16(low, high)));
            }
            else
#endif
            {
                narrow(xsimd::batch<std::int32_t, Arch>(simd.codes(batch::load_aligned(in) * scale)), codes);
            }
        }

        // The reciprocal of a block's scale, or 0 where encode_q8's rare paths are needed
        // (an inf, a NaN or a subnormal scale).
        inline float regular_inverse(float absmax) noexcept
        {
            const float inverse = absmax > 0 ? 1.0f / absmax : 0.0f;
            return absmax <= std::numeric_limits<float>::max() && inverse <= std::numeric_limits<float>::max()
                       ? inverse
                       : 0.0f;
        }

        // Encodes n values (a block) on the scale `absmax`, their max |x| (NaN ignored),
        // with the map's tables already in registers (`simd`, made from `map`). Returns
        // the scale stored: an inf in the block does not become the scale (it would turn
        // every other value into zero and the block into NaN on decoding); the finite
        // maximum does, and inf encodes to the map's end. A subnormal scale, whose
        // reciprocal overflows, is divided by instead.
        template <class Arch>
        float encode_q8(const float* in, float absmax, const dynamic_map& map, const dynamic_map::simd<Arch>& simd,
                        std::uint8_t* codes, std::size_t n) noexcept
        {
            using batch = xsimd::batch<float, Arch>;
            if (!(absmax <= std::numeric_limits<float>::max()))
            {
                absmax = finite_abs_max(in, n);
            }
            const float inverse = absmax > 0 ? 1.0f / absmax : 0.0f;
            if (!(inverse <= std::numeric_limits<float>::max()))
            {
                for (std::size_t i = 0; i < n; ++i)
                {
                    codes[i] = map.encode(in[i] / absmax);
                }
                return absmax;
            }
            const batch scale(inverse);
            std::size_t i = 0;
            for (; i + encode_group_size<Arch> <= n; i += encode_group_size<Arch>)
            {
                encode_group<Arch>(in + i, scale, simd, codes + i);
            }
            for (; i + batch::size <= n; i += batch::size)
            {
                narrow(xsimd::batch<std::int32_t, Arch>(simd.codes(batch::load_aligned(in + i) * scale)), codes + i);
            }
            for (; i < n; ++i)
            {
                codes[i] = map.encode(in[i] * inverse);
            }
            return absmax;
        }

        // Encodes n values (a block) and returns their absmax, the block's new scale.
        template <class Arch>
        float encode_q8(const float* in, const dynamic_map& map, std::uint8_t* codes, std::size_t n) noexcept
        {
            return encode_q8<Arch>(in, abs_max<Arch>(in, n), map, dynamic_map::simd<Arch>(map), codes, n);
        }
    }
}

#endif
