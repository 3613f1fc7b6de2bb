// Matrix products of bf16 matrices with float sums, for Newton-Schulz's bf16 precision
// (newton_schulz.hpp):
//   C[i][j] = sum_k L[i][k] R[j][k]       L: rows_l x k, R: rows_r x k, row-major bf16
// Every output sums in one order, the same on every machine, so every build gives the
// same bits: k in pairs (2p, 2p + 1), the exact product of element 2p + 1 added to a float
// accumulator, then that of 2p, one rounding each, denormal inputs read as zero and
// denormal sums flushed to zero: AVX-512 BF16's VDPBF16PS ("DAZ in, FTZ out, round to
// nearest even"), one output per float lane, so no lanes are summed across.
// With AVX-512 BF16 (__AVX512BF16__) the pairs run on VDPBF16PS, four rows of L against
// a panel of 64 columns of R (packed as pairs, contiguous) at once; otherwise a portable loop computes the same bits. Rows are padded
// to an even length with zeros (a zero product leaves the sum as it is).
// Debian 12's OpenBLAS exports no cblas_sbgemm, and a BLAS's order is its own: hence a
// kernel of our own.
#ifndef XOPTIM_LINALG_BF16_PRODUCTS_HPP
#define XOPTIM_LINALG_BF16_PRODUCTS_HPP

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX512BF16__) && defined(__AVX512F__)
#include <immintrin.h>
#define XOPTIM_BF16_DOT_HARDWARE 1
#else
#define XOPTIM_BF16_DOT_HARDWARE 0
#endif

namespace xoptim::linalg
{
    // Row lengths a product reads: whole pairs.
    constexpr std::size_t bf16_padded(std::size_t k) noexcept
    {
        return (k + 1) / 2 * 2;
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

        // (A new float, not x written back: with x written back, GCC 12 -O2 warned that
        // x "may be used uninitialized" where this is inlined into a vectorized loop, on
        // targets without AVX-512 BF16, and -Wall -Werror builds of Muon failed.)
        inline float flush_denormal(float x) noexcept
        {
            std::uint32_t u;
            std::memcpy(&u, &x, sizeof u);
            if ((u & 0x7f800000u) != 0)
            {
                return x;
            }
            u &= 0x80000000u;
            float zero;
            std::memcpy(&zero, &u, sizeof zero);
            return zero;
        }

        // sum + a b with one rounding, as VDPBF16PS adds a product: in double the product of
        // two bf16 values is exact and so is the sum but where the two are 2^30 or more apart
        // (then the smaller is below half a float ulp of the larger, and rounding to float
        // gives what one rounding gives). A float a * b + sum would round twice wherever a
        // compiler does not contract it into an fma (SSE2, sanitizer builds): different bits
        // when the product is tiny or huge.
        inline float add_product(float sum, float a, float b) noexcept
        {
            return flush_denormal(static_cast<float>(double(sum) + double(a) * double(b)));
        }

        // One output, portably: the order above, step by step. k is even.
        inline float bf16_dot_portable(const std::uint16_t* l, const std::uint16_t* r, std::size_t k) noexcept
        {
            float sum = 0;
            for (std::size_t e = 0; e < k; e += 2)
            {
                sum = add_product(sum, bf16_value(l[e + 1]), bf16_value(r[e + 1]));
                sum = add_product(sum, bf16_value(l[e]), bf16_value(r[e]));
            }
            return sum;
        }
    }

    // C (rows_l x rows_r, leading dimension ldc) = L R^T in the order above, every output
    // by the portable loop (the reference for the hardware kernel's bits). L and R have
    // leading dimension k (even).
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

    // Workspace of the hardware kernel: R packed as pairs, column by column.
    struct bf16_workspace
    {
        std::vector<std::uint32_t> packed;
    };

    namespace detail
    {
        constexpr std::size_t bf16_columns = 16;         // float lanes of a register
        constexpr std::size_t bf16_panel = 4 * bf16_columns;  // columns of one block

        // R packed panel by panel: panel q holds, for each pair p, the 32-bit pairs
        // (R[j][2p], R[j][2p + 1]) of its 64 columns j, contiguous (zeros past rows_r).
        inline void bf16_pack_pairs(const std::uint16_t* r, std::size_t rows_r, std::size_t k,
                                    std::vector<std::uint32_t>& packed)
        {
            const std::size_t panels = (rows_r + bf16_panel - 1) / bf16_panel, pairs = k / 2;
            packed.assign(panels * pairs * bf16_panel, 0);
            for (std::size_t j = 0; j < rows_r; ++j)
            {
                const std::uint16_t* row = r + j * k;
                std::uint32_t* out = packed.data() + j / bf16_panel * pairs * bf16_panel + j % bf16_panel;
                for (std::size_t p = 0; p < pairs; ++p)
                {
                    out[p * bf16_panel] = std::uint32_t(row[2 * p]) | std::uint32_t(row[2 * p + 1]) << 16;
                }
            }
        }

        // The portable loop over a packed panel: row i of L against 64 columns at once, the
        // same operations per column as bf16_dot_portable, in a form compilers vectorize.
        inline void bf16_panel_portable(const std::uint16_t* l, std::size_t k, const std::uint32_t* panel, float* c,
                                        std::size_t valid) noexcept
        {
            float acc[bf16_panel] = {};
            for (std::size_t p = 0; p < k / 2; ++p)
            {
                const float hi = bf16_value(l[2 * p + 1]), lo = bf16_value(l[2 * p]);
                const std::uint32_t* pairs = panel + p * bf16_panel;
                for (std::size_t j = 0; j < bf16_panel; ++j)
                {
                    const float r_hi = bf16_value(static_cast<std::uint16_t>(pairs[j] >> 16));
                    const float r_lo = bf16_value(static_cast<std::uint16_t>(pairs[j] & 0xffffu));
                    acc[j] = add_product(acc[j], hi, r_hi);
                    acc[j] = add_product(acc[j], lo, r_lo);
                }
            }
            std::copy(acc, acc + valid, c);
        }
    }

    // What bf16_products runs without AVX-512 BF16 (callable anywhere, for the tests):
    // the portable operations over packed panels, vectorized by the compiler; only the
    // upper triangle when symmetric (mirrored by bf16_products).
    inline void bf16_products_without_hardware(const std::uint16_t* l, std::size_t rows_l, const std::uint16_t* r,
                                               std::size_t rows_r, std::size_t k, float* c, std::size_t ldc,
                                               bf16_workspace& w, bool symmetric = false)
    {
        using detail::bf16_panel;
        detail::bf16_pack_pairs(r, rows_r, k, w.packed);
        for (std::size_t q = 0; q * bf16_panel < rows_r; ++q)
        {
            const std::uint32_t* panel = w.packed.data() + q * (k / 2) * bf16_panel;
            const std::size_t j = q * bf16_panel, valid = std::min(bf16_panel, rows_r - j);
            const std::size_t rows = symmetric ? std::min(rows_l, j + valid) : rows_l;
            for (std::size_t i = 0; i < rows; ++i)
            {
                detail::bf16_panel_portable(l + i * k, k, panel, c + i * ldc + j, valid);
            }
        }
    }

#if XOPTIM_BF16_DOT_HARDWARE
    namespace detail
    {
        // I rows of L against one panel; its first `valid` columns are stored.
        template <int I>
        void bf16_block(const std::uint16_t* l, std::size_t k, const std::uint32_t* panel, float* c,
                        std::size_t ldc, std::size_t valid) noexcept
        {
            constexpr int J = int(bf16_panel / bf16_columns);
            __m512 acc[I][J];
            // Unrolled, so that the accumulators stay in registers.
#define XOPTIM_UNROLL _Pragma("GCC unroll 4")
            XOPTIM_UNROLL for (int i = 0; i < I; ++i)
            {
                XOPTIM_UNROLL for (int j = 0; j < J; ++j)
                {
                    acc[i][j] = _mm512_setzero_ps();
                }
            }
            for (std::size_t p = 0; p < k / 2; ++p)
            {
                __m512bh rv[J];
                XOPTIM_UNROLL for (int j = 0; j < J; ++j)
                {
                    rv[j] = reinterpret_cast<__m512bh>(
                        _mm512_loadu_si512(panel + p * bf16_panel + std::size_t(j) * bf16_columns));
                }
                XOPTIM_UNROLL for (int i = 0; i < I; ++i)
                {
                    std::uint32_t pair;
                    std::memcpy(&pair, l + std::size_t(i) * k + 2 * p, sizeof pair);
                    const __m512bh lv = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(pair)));
                    XOPTIM_UNROLL for (int j = 0; j < J; ++j)
                    {
                        acc[i][j] = _mm512_dpbf16_ps(acc[i][j], lv, rv[j]);
                    }
                }
            }
            for (int i = 0; i < I; ++i)
            {
                for (int j = 0; j < J; ++j)
                {
                    const std::size_t first = std::size_t(j) * bf16_columns;
                    if (first >= valid)
                    {
                        break;
                    }
                    const std::size_t n = std::min(bf16_columns, valid - first);
                    const __mmask16 mask = static_cast<__mmask16>((1u << n) - 1u);
                    _mm512_mask_storeu_ps(c + std::size_t(i) * ldc + first, mask, acc[i][j]);
                }
            }
#undef XOPTIM_UNROLL
        }
    }
#endif

    // C (rows_l x rows_r, leading dimension ldc) = L R^T: the hardware kernel where there is
    // one, else the portable loop; the same bits either way. L and R have leading
    // dimension k (even). `symmetric` (L = R): only the upper triangle is computed, then
    // mirrored (both halves are the same sums).
    inline void bf16_products(const std::uint16_t* l, std::size_t rows_l, const std::uint16_t* r, std::size_t rows_r,
                              std::size_t k, float* c, std::size_t ldc, bf16_workspace& w, bool symmetric = false)
    {
#if XOPTIM_BF16_DOT_HARDWARE
        using detail::bf16_panel;
        detail::bf16_pack_pairs(r, rows_r, k, w.packed);
        // Panel by panel (it stays in cache), every block of four rows of L against it;
        // symmetric: the rows up to the panel's last column only.
        for (std::size_t q = 0; q * bf16_panel < rows_r; ++q)
        {
            const std::uint32_t* panel = w.packed.data() + q * (k / 2) * bf16_panel;
            const std::size_t j = q * bf16_panel, valid = std::min(bf16_panel, rows_r - j);
            const std::size_t rows = symmetric ? std::min(rows_l, j + valid) : rows_l;
            std::size_t i = 0;
            for (; i + 4 <= rows; i += 4)
            {
                detail::bf16_block<4>(l + i * k, k, panel, c + i * ldc + j, ldc, valid);
            }
            for (; i < rows; ++i)
            {
                detail::bf16_block<1>(l + i * k, k, panel, c + i * ldc + j, ldc, valid);
            }
        }
#else
        bf16_products_without_hardware(l, rows_l, r, rows_r, k, c, ldc, w, symmetric);
#endif
        if (symmetric)
        {
            for (std::size_t i = 1; i < rows_l; ++i)
            {
                for (std::size_t j = 0; j < i; ++j)
                {
                    c[i * ldc + j] = c[j * ldc + i];
                }
            }
        }
    }
}

#endif
