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

#include "arch/arch.hpp"
#include "bfloat16.hpp"

namespace xoptim
{
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

        // The signed map's code of zero (its code 0 is -0.99); the unsigned map's is 0.
        static constexpr std::uint8_t signed_zero = 127;

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
            return m_t.is_signed;
        }

        const std::array<float, 256>& values() const noexcept
        {
            return m_t.values;
        }

        std::uint8_t zero_code() const noexcept
        {
            return m_t.is_signed ? signed_zero : 0;
        }

        // Code of the map value nearest to x (x in [-1, 1]; the unsigned map encodes |x|:
        // its states must not be negative). Exactly the nearest value, except within 1e-5
        // (relative) of a midpoint between two values, where either neighbour may come
        // (the bucket's offset is a float). Beyond +-1, and +-inf, go to the nearest end;
        // NaN to code 255.
        std::uint8_t encode(float x) const noexcept
        {
            return m_t.encode(x);
        }

        // The tables of the batch codecs (arch::q8_codec), which keep them in registers
        // (the byte stores of a code loop may alias anything, so tables read through the
        // map would be read again every batch); same codes and values as the scalar forms.
        const q8_tables& tables() const noexcept
        {
            return m_t;
        }

    private:

        static constexpr std::size_t octaves = q8_tables::octaves;
        static constexpr std::size_t window_first = q8_tables::first_window;
        static constexpr std::size_t window_last = q8_tables::last_window;

        // The decoding tables' slot for a bit length L of q (+ 1 unsigned): the
        // leading zeros of q, 32 - L, mod 16 (as a 16-entry permute reads its index).
        static constexpr std::size_t decode_index(std::size_t length) noexcept
        {
            return (32 - length) % 16;
        }

        explicit dynamic_map(bool is_signed)
        {
            m_t.is_signed = is_signed;
            // Decoding, by bit length: 0 is zero (signed q = 0), t + 1 holds q in
            // [2^t, 2^(t+1)) of q = |c - 127| (signed) or c + 1 (unsigned, so length 1 is
            // zero); each kept at decode_index(length).
            const std::size_t zero_index = is_signed ? 0 : 1;
            const std::size_t one_index = is_signed ? 8 : 9;
            m_t.offset[decode_index(one_index)] = 1.0f;
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
                m_t.width[decode_index(zero_index + 1 + k)] = float(width[k]);
                m_t.offset[decode_index(zero_index + 1 + k)] = float(lo[k] + (0.5 - q0) * width[k]);
                first[k] = is_signed ? 127 + n[k] : n[k] - 1;
            }
            for (std::size_t c = 0; c < 256; ++c)
            {
                const int q = is_signed ? std::abs(int(c) - 127) : int(c);
                const int lg = is_signed ? (q == 0 ? -1 : std::ilogb(float(q))) : std::ilogb(float(q + 1));
                const std::size_t index = decode_index(std::size_t(std::max(lg + 1, 0)));
                const float v = std::fma(float(q), m_t.width[index], m_t.offset[index]);
                m_t.values[c] = is_signed && c < 127 ? -v : v;
            }
            // Encoding, by the count of boundaries at or below |x| (0: zero; k + 1:
            // bucket k; 8: one): code = min(floor(|x| * inv_width + offset), last).
            const float zero = float(zero_code());
            m_t.last_code[0] = m_t.code_offset[0] = zero;
            for (std::size_t k = 0; k < buckets; ++k)
            {
                const double inv = double(n[k]) / (0.9 * std::pow(10.0, double(k) - 6.0));
                m_t.inv_width[k + 1] = float(inv);
                m_t.code_offset[k + 1] = float(double(first[k]) - lo[k] * inv);
                m_t.last_code[k + 1] = float(first[k] + n[k] - 1);
                // Bucket k begins at the midpoint between its first value and the value
                // below it (zero, or the top of bucket k - 1).
                m_threshold[k] = float((double(m_t.values[first[k] - 1]) + double(m_t.values[first[k]])) / 2);
            }
            m_t.last_code[8] = m_t.code_offset[8] = 255.0f;
            m_threshold[buckets] = float((double(m_t.values[254]) + 1.0) / 2);
            for (std::size_t o = 0; o < 32; ++o)
            {
                const float low = std::ldexp(1.0f, int(std::min(o, octaves - 1)) - int(octaves - 1));  // octave [low, 2 low)
                // No boundary left above: NaN, which no |x| (not even inf) reaches.
                m_t.octave_next[o] = std::numeric_limits<float>::quiet_NaN();
                for (std::size_t k = buckets + 1; k-- > 0;)
                {
                    if (m_threshold[k] <= low)
                    {
                        m_t.octave_count[o] += 1;
                    }
                    else
                    {
                        m_t.octave_next[o] = m_threshold[k];
                    }
                }
            }
            // The same by windows of two octaves (the thresholds are 6.9x apart or more,
            // so a window also holds one at most; none: inf, above every finite |x| and
            // below a NaN in an unordered compare), at the window's number mod 32 (as a
            // two-table permute reads its index), that with bit 4 flipped above the
            // boundary: the bucket's encoding values directly.
            for (std::size_t w = window_first; w <= window_last; ++w)
            {
                const float low = std::ldexp(1.0f, 2 * int(w) - 127);  // window [low, 4 low)
                std::size_t count = 0;
                m_t.window_next[w % 16] = std::numeric_limits<float>::infinity();
                for (std::size_t k = buckets + 1; k-- > 0;)
                {
                    if (m_threshold[k] <= low)
                    {
                        count += 1;
                    }
                    else
                    {
                        m_t.window_next[w % 16] = m_threshold[k];
                    }
                }
                for (std::size_t above = 0; above < 2; ++above)
                {
                    const std::size_t slot = (w % 32) ^ (16 * above);
                    const std::size_t bucket = std::min<std::size_t>(count + above, buckets + 1);
                    m_t.window_inv_width[slot] = m_t.inv_width[bucket];
                    m_t.window_code_offset[slot] = m_t.code_offset[bucket];
                    m_t.window_last[slot] = std::int32_t(m_t.last_code[bucket]);
                }
            }
            // The same by windows of four octaves (two boundaries at most each).
            for (std::size_t w = q8_tables::first_quad; w <= q8_tables::last_quad; ++w)
            {
                const float low = std::ldexp(1.0f, 4 * int(w) - 127);  // window [low, 16 low)
                m_t.quad_next[w % 8] = m_t.quad_second[w % 8] = std::numeric_limits<float>::quiet_NaN();
                for (std::size_t k = 0; k <= buckets; ++k)
                {
                    if (m_threshold[k] <= low)
                    {
                        m_t.quad_count[w % 8] += 1;
                    }
                    else if (m_threshold[k] < 16 * low)
                    {
                        (std::isnan(m_t.quad_next[w % 8]) ? m_t.quad_next[w % 8] : m_t.quad_second[w % 8]) = m_threshold[k];
                    }
                }
            }
            for (std::size_t k = 1; k < 8; ++k)
            {
                m_t.quad_inv_width[k] = m_t.inv_width[k];
                m_t.quad_code_offset[k] = m_t.code_offset[k];
                m_t.quad_last_code[k] = m_t.last_code[k];
            }
            m_t.quad_inv_width[0] = 1024.0f;
            m_t.quad_code_offset[0] = zero;
            m_t.quad_last_code[0] = 255.0f;
            // Decoding by exponent slot: each code's bucket (width, offset), but for the
            // two codes that share a slot with zero: signed q = 128 (value 1: width 1/128
            // gives it, and 0 for q = 0), unsigned q = 255 (1/255: 255 times its float
            // rounds to 1).
            for (std::size_t c = 0; c < 256; ++c)
            {
                const int q = is_signed ? std::abs(int(c) - 127) : int(c);
                const float key = is_signed ? std::max(float(q), 0.5f) : float(q + 1);
                std::uint32_t bits;
                std::memcpy(&bits, &key, sizeof bits);
                const std::size_t slot = (bits >> 23) % 8;
                const bool shares = q == 0 || c == 255;
                const std::size_t length = std::size_t(is_signed ? std::ilogb(std::max(float(q), 0.5f)) + 1
                                                                 : std::ilogb(float(q + 1)) + 1);
                m_t.exponent_width[slot] = shares ? (is_signed ? 1.0f / 128 : 1.0f / 255) : m_t.width[decode_index(length)];
                m_t.exponent_offset[slot] = shares ? 0.0f : m_t.offset[decode_index(length)];
            }
        }

        // Bucket boundaries 0..6 open buckets 0..6; boundary 7 is the midpoint below 1.
        std::array<float, buckets + 1> m_threshold{};
        q8_tables m_t;
    };

    namespace codec
    {
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

        // A rounding's bf16 bits (in the low half), except where x is NaN: x's high half,
        // made quiet, so NaN stays NaN. NaN is found by xsimd::isnan, an unordered float
        // compare (xsimd 8's x != x is an ordered one, false for NaN); the compare of the
        // bits, unsigned, xsimd 8 splits into two halves on AVX2.
        template <class Arch>
        inline xsimd::batch<std::uint32_t, Arch> quiet_where_nan(const xsimd::batch<float, Arch>& x,
                                                                 const xsimd::batch<std::uint32_t, Arch>& bits) noexcept
        {
            using ubatch = xsimd::batch<std::uint32_t, Arch>;
            const ubatch quiet = (arch::bitwise_cast<std::uint32_t>(x) >> 16) | ubatch(0x40u);
            return arch::bitwise_cast<std::uint32_t>(
                xsimd::select(xsimd::isnan(x), arch::bitwise_cast<float>(quiet), arch::bitwise_cast<float>(bits)));
        }

        // Float bits rounded to bf16 bits (in the low half), nearest-even; NaN stays NaN.
        template <class Arch>
        inline xsimd::batch<std::uint32_t, Arch> round_nearest_even(const xsimd::batch<float, Arch>& x) noexcept
        {
            using ubatch = xsimd::batch<std::uint32_t, Arch>;
            const ubatch u = arch::bitwise_cast<std::uint32_t>(x);
            const ubatch rounded = (u + ubatch(0x7fffu) + ((u >> 16) & ubatch(1u))) >> 16;
            return quiet_where_nan<Arch>(x, rounded);
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
                n, [&](std::size_t i) { arch::bf16_to_float<Arch>(in + i).store_aligned(out + i); },
                [&](std::size_t i) { out[i] = bfloat16::to_float(in[i]); });
        }

        // hi + lo: a value kept with its compensation.
        template <class Arch>
        void decode_bf16_pair(const std::uint16_t* hi, const std::uint16_t* lo, float* out, std::size_t n) noexcept
        {
            for_elements<xsimd::batch<float, Arch>::size>(
                n,
                [&](std::size_t i) { (arch::bf16_to_float<Arch>(hi + i) + arch::bf16_to_float<Arch>(lo + i)).store_aligned(out + i); },
                [&](std::size_t i) { out[i] = bfloat16::to_float(hi[i]) + bfloat16::to_float(lo[i]); });
        }

        template <class Arch>
        void encode_bf16(const float* in, std::uint16_t* out, std::size_t n) noexcept
        {
            using batch = xsimd::batch<float, Arch>;
            for_elements<batch::size>(
                n, [&](std::size_t i) { arch::narrow(round_nearest_even<Arch>(batch::load_aligned(in + i)), out + i); },
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
                    arch::narrow(h, hi + i);
                    arch::narrow(round_nearest_even<Arch>(x - arch::bitwise_cast<float>(h << 16)), lo + i);
                },
                [&](std::size_t i) {
                    hi[i] = bfloat16::round_nearest_even(in[i]);
                    lo[i] = bfloat16::round_nearest_even(in[i] - bfloat16::to_float(hi[i]));
                });
        }

        // The key of elements [h * 2^32, (h + 1) * 2^32) of a tensor whose stream has key
        // `key`: the hash takes the index's low 32 bits, so elements 2^32 apart would
        // otherwise draw the same bits. The first 2^32 keep the tensor's key.
        inline std::uint32_t segment_key(std::uint32_t key, std::uint32_t h) noexcept
        {
            return h == 0 ? key : hash(key ^ 0x85ebca6bu, h);
        }

        // Stochastic rounding of elements first_index, first_index + 1, ... of a tensor.
        template <class Arch>
        void encode_bf16_stochastic(const float* in, std::uint16_t* out, std::size_t n, std::uint32_t key,
                                    std::uint64_t first_index) noexcept
        {
            using batch = xsimd::batch<float, Arch>;
            using ubatch = xsimd::batch<std::uint32_t, Arch>;
            alignas(64) std::uint32_t lanes[batch::size];
            for (std::size_t k = 0; k < batch::size; ++k)
            {
                lanes[k] = std::uint32_t(k);
            }
            const ubatch lane = ubatch::load_aligned(lanes);
            const auto one = [&](std::size_t i) {
                const std::uint64_t at = first_index + i;
                out[i] = round_stochastic(in[i],
                                          hash(segment_key(key, std::uint32_t(at >> 32)), std::uint32_t(at)) >> 16);
            };
            for_elements<batch::size>(
                n,
                [&](std::size_t i) {
                    const std::uint64_t at = first_index + i;
                    if ((at >> 32) != ((at + batch::size - 1) >> 32))
                    {
                        for (std::size_t k = 0; k < batch::size; ++k)  // a batch across two segments
                        {
                            one(i + k);
                        }
                        return;
                    }
                    const batch x = batch::load_aligned(in + i);
                    const ubatch u = arch::bitwise_cast<std::uint32_t>(x);
                    const ubatch r = hash(segment_key(key, std::uint32_t(at >> 32)), lane + ubatch(std::uint32_t(at)))
                                     >> 16;
                    arch::narrow(quiet_where_nan<Arch>(x, (u + r) >> 16), out + i);
                },
                one);
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
            const arch::q8_codec<Arch> codec(map.tables());
            for_elements<batch::size>(
                n, [&](std::size_t i) { arch::mul(codec.decode(codes + i), scale).store_aligned(out + i); },
                [&](std::size_t i) { out[i] = table[codes[i]] * absmax; });
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
                t0 = arch::max_abs(t0, batch::load_aligned(in + i));
                t1 = arch::max_abs(t1, batch::load_aligned(in + i + W));
                t2 = arch::max_abs(t2, batch::load_aligned(in + i + 2 * W));
                t3 = arch::max_abs(t3, batch::load_aligned(in + i + 3 * W));
            }
            for (; i + W <= n; i += W)
            {
                t0 = arch::max_abs(t0, batch::load_aligned(in + i));
            }
            float top = arch::horizontal_max(arch::max_abs(arch::max_abs(t0, t1), arch::max_abs(t2, t3)));
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
        // with the map's tables already in registers (`codec`, made from `map`). Returns
        // the scale stored: an inf in the block does not become the scale (it would turn
        // every other value into zero and the block into NaN on decoding); the finite
        // maximum does, and inf encodes to the map's end. A subnormal scale, whose
        // reciprocal overflows, is divided by instead.
        template <class Arch>
        float encode_q8(const float* in, float absmax, const dynamic_map& map, const arch::q8_codec<Arch>& codec,
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
            constexpr std::size_t group = arch::q8_codec<Arch>::group;
            for (; i + group <= n; i += group)
            {
                codec.encode_group(in + i, scale, codes + i);
            }
            for (; i + batch::size <= n; i += batch::size)
            {
                codec.encode(batch::load_aligned(in + i) * scale, codes + i);
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
            return encode_q8<Arch>(in, abs_max<Arch>(in, n), map, arch::q8_codec<Arch>(map.tables()), codes, n);
        }
    }
}

#endif
