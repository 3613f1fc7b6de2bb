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

#include <array>
#include <cstddef>
#include <cstdint>

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
        // By window, at w mod 16: the next boundary; at w mod 32, that with bit 4 flipped
        // above the boundary: the bucket's inverse width, code offset and last code.
        alignas(64) std::array<float, 16> window_next{};
        alignas(64) std::array<float, 32> window_inv_width{};
        alignas(64) std::array<float, 32> window_code_offset{};
        alignas(64) std::array<std::int32_t, 32> window_last{};
    };
}

#endif
