// Matrix products of bf16 matrices with float accumulation, for Newton-Schulz's bf16
// precision (newton_schulz.hpp):
//   C[i][j] = sum_k L[i][k] R[j][k]       L: rows_l x k, R: rows_r x k, both row-major bf16
// The sum has one order, the same on every machine, so every build gives the same bits:
//   lane l (0..15) of each 32-element chunk adds the exact product of elements 2l+1,
//   then of 2l, to its float accumulator (one rounding each, denormals flushed to zero:
//   AVX-512 BF16's VDPBF16PS, an FMA with "DAZ in, FTZ out, round to nearest even");
//   the 16 lanes are then summed as a tree: l + (l + 8), then + 4, + 2, + 1.
// With AVX-512 BF16 (__AVX512BF16__) the chunks run on VDPBF16PS, four rows of L against
// four of R at once; otherwise a portable loop computes the same bits. k must be a
// multiple of 32 (rows padded with zeros: a zero product leaves the sum as it is).
// Debian 12's OpenBLAS exports no cblas_sbgemm, and a BLAS's order is its own: hence a
// kernel of our own.
#ifndef XOPTIM_LINALG_BF16_PRODUCTS_HPP
#define XOPTIM_LINALG_BF16_PRODUCTS_HPP

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>

#if defined(__AVX512BF16__) && defined(__AVX512F__)
#include <immintrin.h>
#define XOPTIM_BF16_DOT_HARDWARE 1
#else
#define XOPTIM_BF16_DOT_HARDWARE 0
#endif

namespace xoptim::linalg
{
    // Elements per chunk (a 512-bit register of bf16) and float lanes.
    inline constexpr std::size_t bf16_chunk = 32;

    constexpr std::size_t bf16_padded(std::size_t k) noexcept
    {
        return (k + bf16_chunk - 1) / bf16_chunk * bf16_chunk;
    }

    // True where the products run on the CPU's bf16 dot-product instruction.
    constexpr bool bf16_dot_in_hardware() noexcept
    {
        return XOPTIM_BF16_DOT_HARDWARE != 0;
    }

    namespace detail
    {
        inline float bf16_value(std::uint16_t b) noexcept
        {
            const std::uint32_t u = (b & 0x7f80u) == 0 ? std::uint32_t(b & 0x8000u) << 16 : std::uint32_t(b) << 16;
            float x;
            std::memcpy(&x, &u, sizeof x);
            return x;  // a denormal reads as a zero of its sign (DAZ)
        }

        inline float flush_denormal(float x) noexcept
        {
            std::uint32_t u;
            std::memcpy(&u, &x, sizeof u);
            if ((u & 0x7f800000u) == 0)
            {
                u &= 0x80000000u;
                std::memcpy(&x, &u, sizeof x);
            }
            return x;
        }

        // The lane tree: l + (l + 8), then + 4, + 2, + 1.
        inline float sum_lanes(const float* lane) noexcept
        {
            float s[8];
            for (int l = 0; l < 8; ++l)
            {
                s[l] = lane[l] + lane[l + 8];
            }
            for (int l = 0; l < 4; ++l)
            {
                s[l] = s[l] + s[l + 4];
            }
            for (int l = 0; l < 2; ++l)
            {
                s[l] = s[l] + s[l + 2];
            }
            return s[0] + s[1];
        }

        // One output, portably: the order above, step by step.
        inline float bf16_dot_portable(const std::uint16_t* l, const std::uint16_t* r, std::size_t k) noexcept
        {
            float lane[16] = {};
            for (std::size_t c = 0; c < k; c += bf16_chunk)
            {
                for (std::size_t j = 0; j < 16; ++j)
                {
                    for (std::size_t e : {2 * j + 1, 2 * j})
                    {
                        const float p = bf16_value(l[c + e]) * bf16_value(r[c + e]);  // exact
                        lane[j] = flush_denormal(lane[j] + p);
                    }
                }
            }
            return sum_lanes(lane);
        }
    }

    // C (rows_l x rows_r, leading dimension ldc) = L R^T as described above, every output
    // computed in the portable order (the reference for the hardware kernel's bits).
    inline void bf16_products_portable(const std::uint16_t* l, std::size_t rows_l, const std::uint16_t* r,
                                       std::size_t rows_r, std::size_t k, float* c, std::size_t ldc) noexcept
    {
        for (std::size_t i = 0; i < rows_l; ++i)
        {
            for (std::size_t j = 0; j < rows_r; ++j)
            {
                c[i * ldc + j] = detail::bf16_dot_portable(l + i * k, r + j * k, k);
            }
        }
    }

#if XOPTIM_BF16_DOT_HARDWARE
    namespace detail
    {
        // A block of I x J outputs: I rows of L against J rows of R, VDPBF16PS per chunk.
        template <int I, int J>
        void bf16_block(const std::uint16_t* l, const std::uint16_t* r, std::size_t k, float* c,
                        std::size_t ldc) noexcept
        {
            __m512 acc[I][J];
            for (int i = 0; i < I; ++i)
            {
                for (int j = 0; j < J; ++j)
                {
                    acc[i][j] = _mm512_setzero_ps();
                }
            }
            for (std::size_t e = 0; e < k; e += bf16_chunk)
            {
                __m512bh rv[J];
                for (int j = 0; j < J; ++j)
                {
                    rv[j] = (__m512bh)_mm512_loadu_si512(r + j * k + e);
                }
                for (int i = 0; i < I; ++i)
                {
                    const __m512bh lv = (__m512bh)_mm512_loadu_si512(l + i * k + e);
                    for (int j = 0; j < J; ++j)
                    {
                        acc[i][j] = _mm512_dpbf16_ps(acc[i][j], lv, rv[j]);
                    }
                }
            }
            alignas(64) float lane[16];
            for (int i = 0; i < I; ++i)
            {
                for (int j = 0; j < J; ++j)
                {
                    _mm512_store_ps(lane, acc[i][j]);
                    c[i * ldc + j] = sum_lanes(lane);
                }
            }
        }
    }
#endif

    // C (rows_l x rows_r, leading dimension ldc) = L R^T: the hardware kernel where there is
    // one, else the portable loop; the same bits either way.
    inline void bf16_products(const std::uint16_t* l, std::size_t rows_l, const std::uint16_t* r, std::size_t rows_r,
                              std::size_t k, float* c, std::size_t ldc) noexcept
    {
#if XOPTIM_BF16_DOT_HARDWARE
        constexpr std::size_t B = 4;
        std::size_t i = 0;
        for (; i + B <= rows_l; i += B)
        {
            std::size_t j = 0;
            for (; j + B <= rows_r; j += B)
            {
                detail::bf16_block<B, B>(l + i * k, r + j * k, k, c + i * ldc + j, ldc);
            }
            for (; j < rows_r; ++j)
            {
                detail::bf16_block<B, 1>(l + i * k, r + j * k, k, c + i * ldc + j, ldc);
            }
        }
        for (; i < rows_l; ++i)
        {
            for (std::size_t j = 0; j < rows_r; ++j)
            {
                detail::bf16_block<1, 1>(l + i * k, r + j * k, k, c + i * ldc + j, ldc);
            }
        }
#else
        bf16_products_portable(l, rows_l, r, rows_r, k, c, ldc);
#endif
    }
}

#endif
