// bfloat16: the upper half of an IEEE float (8 exponent bits, 7 fraction bits), a
// storage type only. The library computes in float and stores bf16 by one of the
// roundings of codecs.hpp; this type is what a user's bf16 tensors hold.
#ifndef XOPTIM_ENGINE_BFLOAT16_HPP
#define XOPTIM_ENGINE_BFLOAT16_HPP

#include <cstdint>
#include <cstring>

namespace xoptim
{
    struct bfloat16
    {
        std::uint16_t bits = 0;

        bfloat16() = default;

        // Rounds to nearest, ties to even; a NaN stays a (quiet) NaN.
        explicit bfloat16(float x) noexcept
            : bits(round_nearest_even(x))
        {
        }

        explicit operator float() const noexcept
        {
            return to_float(bits);
        }

        static float to_float(std::uint16_t b) noexcept
        {
            const std::uint32_t u = std::uint32_t(b) << 16;
            float x;
            std::memcpy(&x, &u, sizeof x);
            return x;
        }

        static std::uint16_t round_nearest_even(float x) noexcept
        {
            std::uint32_t u;
            std::memcpy(&u, &x, sizeof u);
            if ((u & 0x7fffffffu) > 0x7f800000u)
            {
                return std::uint16_t(u >> 16 | 0x40u);
            }
            return std::uint16_t((u + 0x7fffu + (u >> 16 & 1u)) >> 16);
        }

        friend bool operator==(bfloat16 a, bfloat16 b) noexcept
        {
            return a.bits == b.bits;
        }

        friend bool operator!=(bfloat16 a, bfloat16 b) noexcept
        {
            return a.bits != b.bits;
        }
    };

    static_assert(sizeof(bfloat16) == 2, "xoptim: bfloat16 must be two bytes");
}

#endif
