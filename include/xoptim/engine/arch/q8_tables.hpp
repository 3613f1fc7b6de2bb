// The numbers an 8-bit dynamic map's batch encoder and decoder read (engine/codecs.hpp
// builds them, each instruction set's q8 codec keeps the ones it needs in registers).
//
// A value is fma(q, width, offset) with q the code's distance from zero (|c - 127|
// signed, c unsigned) and (width, offset) its bucket's, found from q's bit length.
// A code is min(floor(fma(|x|, inv_width, code_offset)), last_code) with the three
// found from the count of bucket boundaries at or below |x| (0: zero; k + 1: bucket k;
// 8: one), the count from |x|'s binary octave (which holds one boundary at most).
#ifndef XOPTIM_ENGINE_ARCH_Q8_TABLES_HPP
#define XOPTIM_ENGINE_ARCH_Q8_TABLES_HPP

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace xoptim
{
    struct q8_tables
    {
        // Octaves 2^-24 .. 2^0 of |x|: everything below the first boundary (1.6e-7) is one.
        static constexpr std::size_t octaves = 25;
        // Windows of two octaves, [4^(w - 64), 4^(w - 63)) for the exponent's top seven
        // bits w of |x| clamped to [2^-24, 1.5].
        static constexpr std::size_t first_window = (127 - 24) / 2;
        static constexpr std::size_t last_window = 127 / 2;

        bool is_signed = false;
        alignas(64) std::array<float, 256> values{};
        // Decoding, at decode_index(bit length of q) (codecs.hpp): leading zeros mod 16.
        alignas(64) std::array<float, 16> width{};
        alignas(64) std::array<float, 16> offset{};
        // Encoding, by the count of boundaries passed.
        alignas(64) std::array<float, 16> inv_width{};
        alignas(64) std::array<float, 16> code_offset{};
        alignas(64) std::array<float, 16> last_code{};
        // By octave of |x|: boundaries below it, the next one above (NaN: none).
        alignas(64) std::array<std::int32_t, 32> octave_count{};
        alignas(64) std::array<float, 32> octave_next{};
        // By window, at w mod 16: the next boundary (inf: none); at w mod 32, that with
        // bit 4 flipped above the boundary: the bucket's inverse width, code offset and
        // last code.
        alignas(64) std::array<float, 16> window_next{};
        alignas(64) std::array<float, 32> window_inv_width{};
        alignas(64) std::array<float, 32> window_code_offset{};
        alignas(64) std::array<std::int32_t, 32> window_last{};
        // By window of four octaves, [16^(w - 32), 16^(w - 31)) for the exponent's top six
        // bits w of the same clamped |x|, at w mod 8: the boundaries below it and the
        // first and second inside (NaN: none); and the bucket's numbers by count mod 8,
        // count 0 (zero) and 8 (one) sharing slot 0: inverse width 1024 keeps |x| below
        // the first boundary (1.6e-7) on the zero code and takes |x| past the last
        // (0.998), inf and NaN (min's second operand) to the last code, 255.
        static constexpr std::size_t first_quad = (127 - 24) / 4;
        static constexpr std::size_t last_quad = 127 / 4;
        alignas(64) std::array<std::int32_t, 8> quad_count{};
        alignas(64) std::array<float, 8> quad_next{};
        alignas(64) std::array<float, 8> quad_second{};
        alignas(64) std::array<float, 8> quad_inv_width{};
        alignas(64) std::array<float, 8> quad_code_offset{};
        alignas(64) std::array<float, 8> quad_last_code{};
        // Decoding by the float exponent of q (at least 0.5) signed, of q + 1 unsigned,
        // mod 8: nine exponents in eight slots, the two that share one with a (width,
        // offset) that gives both their values.
        alignas(64) std::array<float, 8> exponent_width{};
        alignas(64) std::array<float, 8> exponent_offset{};

        // The code of x, one at a time: the definition every batch codec gives the bits
        // of (dynamic_map::encode).
        std::uint8_t encode(float x) const noexcept
        {
            const float a = std::fabs(x);
            std::uint32_t bits;
            std::memcpy(&bits, &a, sizeof bits);
            const std::size_t o = octave_index(std::int32_t(bits >> 23));
            const std::size_t count = std::size_t(octave_count[o]) + (a >= octave_next[o] ? 1 : 0);
            const auto min = [](float u, float v) { return u < v ? u : v; };
            float code = min(std::floor(std::fma(a, inv_width[count], code_offset[count])), last_code[count]);
            if (is_signed && x < 0)
            {
                code = 254.0f - min(code, 254.0f);
            }
            return std::uint8_t(code);
        }

        // The octave of |x| as an index 0..24 (2^-24 .. 2^0), from its biased exponent.
        static std::size_t octave_index(std::int32_t biased_exponent) noexcept
        {
            return std::size_t(std::min(std::max(biased_exponent - (127 - std::int32_t(octaves - 1)), 0),
                                        std::int32_t(octaves - 1)));
        }
    };
}

#endif
