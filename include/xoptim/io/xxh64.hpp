// XXH64 (Yann Collet's xxHash, 64-bit variant, seed 0 by default): the checksum a
// checkpoint keeps per tensor, so a flipped bit in the data is caught on load. Fast
// (32-byte stripes, four independent lanes) and the same value as Python's
// `xxhash.xxh64(data).intdigest()`.
#ifndef XOPTIM_IO_XXH64_HPP
#define XOPTIM_IO_XXH64_HPP

#include <cstdint>
#include <cstring>

namespace xoptim::io
{
    namespace detail
    {
        inline constexpr std::uint64_t xxh_p1 = 0x9E3779B185EBCA87ULL;
        inline constexpr std::uint64_t xxh_p2 = 0xC2B2AE3D27D4EB4FULL;
        inline constexpr std::uint64_t xxh_p3 = 0x165667B19E3779F9ULL;
        inline constexpr std::uint64_t xxh_p4 = 0x85EBCA77C2B2AE63ULL;
        inline constexpr std::uint64_t xxh_p5 = 0x27D4EB2F165667C5ULL;

        inline std::uint64_t rotl(std::uint64_t x, int r) noexcept
        {
            return (x << r) | (x >> (64 - r));
        }

        inline std::uint64_t read64(const unsigned char* p) noexcept
        {
            std::uint64_t v;
            std::memcpy(&v, p, 8);  // little-endian hosts only, as the file formats
            return v;
        }

        inline std::uint32_t read32(const unsigned char* p) noexcept
        {
            std::uint32_t v;
            std::memcpy(&v, p, 4);
            return v;
        }

        inline std::uint64_t xxh_round(std::uint64_t acc, std::uint64_t input) noexcept
        {
            return rotl(acc + input * xxh_p2, 31) * xxh_p1;
        }

        inline std::uint64_t xxh_merge(std::uint64_t acc, std::uint64_t lane) noexcept
        {
            return (acc ^ xxh_round(0, lane)) * xxh_p1 + xxh_p4;
        }
    }

    inline std::uint64_t xxh64(const void* data, std::size_t size, std::uint64_t seed = 0) noexcept
    {
        using namespace detail;
        const auto* p = static_cast<const unsigned char*>(data);
        const unsigned char* const end = p + size;
        std::uint64_t h;
        if (size >= 32)
        {
            std::uint64_t v[4] = {seed + xxh_p1 + xxh_p2, seed + xxh_p2, seed, seed - xxh_p1};
            for (; p + 32 <= end; p += 32)
            {
                for (int k = 0; k < 4; ++k)
                {
                    v[k] = xxh_round(v[k], read64(p + 8 * k));
                }
            }
            h = rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18);
            for (std::uint64_t lane : v)
            {
                h = xxh_merge(h, lane);
            }
        }
        else
        {
            h = seed + xxh_p5;
        }
        h += static_cast<std::uint64_t>(size);
        for (; p + 8 <= end; p += 8)
        {
            h = rotl(h ^ xxh_round(0, read64(p)), 27) * xxh_p1 + xxh_p4;
        }
        if (p + 4 <= end)
        {
            h = rotl(h ^ (std::uint64_t(read32(p)) * xxh_p1), 23) * xxh_p2 + xxh_p3;
            p += 4;
        }
        for (; p < end; ++p)
        {
            h = rotl(h ^ (std::uint64_t(*p) * xxh_p5), 11) * xxh_p1;
        }
        h ^= h >> 33;
        h *= xxh_p2;
        h ^= h >> 29;
        h *= xxh_p3;
        h ^= h >> 32;
        return h;
    }
}

#endif
