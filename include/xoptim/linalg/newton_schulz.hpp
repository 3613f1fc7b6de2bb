// Newton-Schulz (quintic) orthogonalization, Muon's inner step (Jordan et al. 2024):
//   X = G (transposed when it has more rows than columns)
//   X /= ||X||_F * norm_scale + eps      (norm add_eps: Keller Jordan, Polar Express)
//   X /= max(||X||_F, eps)               (norm clamp_eps: torch.optim.Muon)
//   iteration k: (a, b, c) = row k of the table (the last row repeats; no table: the
//   fixed `coefficients`);  A = X X^T;  B = b A + c A A;  X = a X + B X
// Polar Express (Amsel et al. 2025) is such a table: polar_express_coefficients().
// Both products of an iteration are symmetric, so each goes to a symmetric BLAS call
// with the scalar work folded into alpha, beta and a diagonal:
//   A = X X^T                syrk              m^2 n flops  (a general product: 2 m^2 n)
//   B = c A A^T + b A + a I  syrk, beta = b    m^3          (2 m^3)
//   X = B X                  symm              2 m^2 n      (2 m^2 n)
// for an m x n iterate with m <= n. The normalization is folded into the first
// iteration's alphas (s^2 and s), and a tall input is read as the column-major matrix
// it is, so nothing is transposed or copied. Workspace is kept between calls: a steady
// state of same-shaped calls allocates nothing.
//
// Precision bf16 computes as torch.optim.Muon (PyTorch >= 2.9) and the Keller Jordan
// reference do: G cast to bf16, every tensor operation's float result rounded to bf16
// (nearest even), products of bf16 matrices summed in float (bf16_products.hpp, on the
// CPU's bf16 dot products where it has them):
//   X = bf16(G);  n = bf16(||X||_F)   (summed in double)
//   X = bf16(X / max(n, bf16(eps)))                       clamp_eps
//   X = bf16(X / bf16(bf16(n * norm_scale) + bf16(eps)))  add_eps (n itself when the scale is 1)
//   A = bf16(X X^T);  B = bf16(bf16(b A) + bf16(bf16(c A) A));  X = bf16(bf16(a X) + bf16(B X))
// The output is the last X's bf16 values (times the scale), in the working type.
#ifndef XOPTIM_LINALG_NEWTON_SCHULZ_HPP
#define XOPTIM_LINALG_NEWTON_SCHULZ_HPP

#include <algorithm>
#include <array>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "../engine/arch/product.hpp"
#include "../engine/host_arithmetic.hpp"
#include "bf16_products.hpp"
#include "blas.hpp"
#include "blas_info.hpp"
#include "ns_options.hpp"

namespace xoptim
{
    template <class T>
    class newton_schulz
    {
    public:

        static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                      "xoptim::newton_schulz works on float or double matrices");

        explicit newton_schulz(const newton_schulz_options& o = {})
        {
            set_options(o);
        }

        // New options; the workspace is kept.
        void set_options(const newton_schulz_options& o)
        {
            if (!(o.eps > 0) || !std::isfinite(o.eps))
            {
                throw std::invalid_argument("xoptim::newton_schulz: eps must be > 0 and finite");
            }
            if (!(o.norm_scale > 0) || !std::isfinite(o.norm_scale))
            {
                throw std::invalid_argument("xoptim::newton_schulz: norm_scale must be > 0 and finite");
            }
            // bf16 products divide by bf16(eps): below bf16's smallest value it is 0, and a
            // zero gradient would be 0 / 0.
            if (o.precision == ns_precision::bf16 && o.eps < smallest_bf16)
            {
                throw std::invalid_argument("xoptim::newton_schulz: eps must be >= 2^-133 (9.2e-41, the smallest bf16) "
                                            "under precision bf16");
            }
            for (std::size_t k = 0; k <= o.table.size(); ++k)
            {
                const ns_coefficient_row& r = k < o.table.size() ? o.table[k] : o.coefficients;
                if (!std::isfinite(r[0]) || !std::isfinite(r[1]) || !std::isfinite(r[2]))
                {
                    throw std::invalid_argument(
                        "xoptim::newton_schulz: "
                        + (k < o.table.size() ? "table[" + std::to_string(k) + "]" : std::string("coefficients"))
                        + " must be finite");
                }
            }
            m_o = o;
        }

        // out = scale * NS(g) for a row-major rows x cols matrix; out may be g itself.
        // The scale costs nothing: it is folded into the last product's alpha.
        void operator()(const T* g, T* out, std::size_t rows, std::size_t cols, double scale = 1);

        const newton_schulz_options& options() const noexcept
        {
            return m_o;
        }

    private:

        void run_bf16(const T* g, T* out, std::size_t rows, std::size_t cols, double scale);

        newton_schulz_options m_o;
        std::vector<T> m_x;  // an iterate, m x n (the other is the output)
        std::vector<T> m_a;  // X X^T, m x m
        std::vector<T> m_b;  // c A A + b A + a I, m x m
        // bf16 precision: X (m x n), its transpose, A, c A and B as bf16 (rows padded to
        // whole pairs with zeros), a product's float results and the kernel's workspace.
        std::vector<std::uint16_t> m_hx, m_hxt, m_ha, m_hca, m_hb;
        std::vector<float> m_product;
        linalg::bf16_workspace m_bf16;
    };

    namespace detail
    {
        // syrk writes the row-major upper triangle; the next syrk reads A as a full matrix.
        template <class T>
        void mirror_upper(T* a, std::size_t n)
        {
            for (std::size_t i = 1; i < n; ++i)
            {
                for (std::size_t j = 0; j < i; ++j)
                {
                    a[i * n + j] = a[j * n + i];
                }
            }
        }
    }

    template <class T>
    void newton_schulz<T>::operator()(const T* g, T* out, std::size_t rows, std::size_t cols, double scale)
    {
        if (rows > std::size_t(INT_MAX) || cols > std::size_t(INT_MAX))
        {
            throw std::invalid_argument("xoptim::newton_schulz: " + std::to_string(rows) + " x "
                                        + std::to_string(cols) + " is too large for BLAS (int dimensions)");
        }
        const std::size_t size = rows * cols;
        if (size == 0)
        {
            return;
        }
        if (m_o.precision == ns_precision::bf16)
        {
            run_bf16(g, out, rows, cols, scale);
            return;
        }
        blas::warn_once_about_kernels();
        // A tall rows x cols row-major matrix is its cols x rows transpose, column-major.
        const auto l = rows > cols ? blas::layout::col_major : blas::layout::row_major;
        const std::size_t m = std::min(rows, cols);
        const int im = static_cast<int>(m);
        const int in = static_cast<int>(std::max(rows, cols));
        const int ld = l == blas::layout::row_major ? in : im;
        m_x.resize(size);
        m_a.resize(m * m);
        m_b.resize(m * m);

        // |G|_F from squares summed in double; for doubles whose squares leave its normal
        // range (above 1e154, below 1e-146), through the largest magnitude (G is then
        // scaled by s below, not folded).
        const double sum = detail::rounded_square_sum(g, size);
        const double tiny = std::numeric_limits<double>::min() / std::numeric_limits<double>::epsilon();
        const double norm = std::isinf(sum) || sum < tiny ? detail::scaled_norm(g, size) : std::sqrt(sum);
        const double s = m_o.norm == ns_norm::add_eps ? 1 / (arch::product(norm, m_o.norm_scale) + m_o.eps)
                                                      : 1 / std::max(norm, m_o.eps);
        if (m_o.steps == 0)
        {
            std::transform(g, g + size, out, [&](T x) { return static_cast<T>(double(x) * (s * scale)); });
            return;
        }
        // The iterates alternate between out and m_x so that the last lands in out.
        const auto target = [&](std::size_t k) { return (m_o.steps - 1 - k) % 2 == 0 ? out : m_x.data(); };
        const T* x = g;
        // The normalization is folded into the first iteration's alphas (s^2 on G G^T, s
        // on its last product) where G G^T and s^2 are normal numbers of T with room to
        // spare. Otherwise (|G| near T's largest or smallest squares, or a zero G with a
        // tiny eps) G is scaled by s first, as the references divide it by its norm, so
        // that the update is finite and does not depend on G's scale.
        const double largest = double(std::numeric_limits<T>::max());
        const double smallest = double(std::numeric_limits<T>::min()) / double(std::numeric_limits<T>::epsilon());
        const bool folded = sum <= largest / 4 && sum >= smallest && s * s <= largest;
        if (!folded)
        {
            T* scaled = target(0) == out ? m_x.data() : out;  // in place where out == g
            std::transform(g, g + size, scaled, [&](T v) { return static_cast<T>(double(v) * s); });
            x = scaled;
        }
        else if (out == g && target(0) == out)
        {
            std::copy(g, g + size, m_x.begin());  // the first iteration must not overwrite its input
            x = m_x.data();
        }
        const double s1 = folded ? s : 1;
        for (std::size_t k = 0; k < m_o.steps; ++k)
        {
            const bool first = k == 0;
            const auto [a, b, c] = m_o.row(k);
            T* y = target(k);
            blas::syrk(l, im, in, static_cast<T>(first ? s1 * s1 : 1), x, ld, T(0), m_a.data());
            detail::mirror_upper(m_a.data(), m);
            m_b = m_a;
            blas::syrk(l, im, im, static_cast<T>(c), m_a.data(), im, static_cast<T>(b), m_b.data());
            for (std::size_t i = 0; i < m; ++i)
            {
                m_b[i * m + i] += static_cast<T>(a);
            }
            const double alpha = (first ? s1 : 1) * (k + 1 == m_o.steps ? scale : 1);
            blas::symm(l, im, in, static_cast<T>(alpha), m_b.data(), x, T(0), y, ld);
            x = y;
        }
    }

    namespace detail
    {
        // bf16 rounding (nearest even, a NaN kept quiet: xoptim::bfloat16's) without a
        // branch, so that loops of it vectorize.
        inline std::uint16_t bf16_bits(float x) noexcept
        {
            std::uint32_t u;
            std::memcpy(&u, &x, sizeof u);
            const std::uint32_t rounded = (u + 0x7fffu + (u >> 16 & 1u)) >> 16;
            const std::uint32_t quiet = u >> 16 | 0x40u;  // a NaN stays a NaN
            return static_cast<std::uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? quiet : rounded);
        }

        inline float bf16_float(std::uint16_t b) noexcept
        {
            const std::uint32_t u = std::uint32_t(b) << 16;
            float x;
            std::memcpy(&x, &u, sizeof x);
            return x;
        }

        inline float to_bf16(float x) noexcept
        {
            return bf16_float(bf16_bits(x));
        }
    }

    template <class T>
    void newton_schulz<T>::run_bf16(const T* g, T* out, std::size_t rows, std::size_t cols, double scale)
    {
        using detail::bf16_bits;
        using detail::to_bf16;
        const auto value = detail::bf16_float;
        const bool tall = rows > cols;
        const std::size_t m = std::min(rows, cols), n = std::max(rows, cols);
        const std::size_t np = linalg::bf16_padded(n), mp = linalg::bf16_padded(m);
        m_hx.assign(m * np, 0);
        m_hxt.assign(n * mp, 0);
        m_ha.assign(m * mp, 0);
        m_hca.assign(m * mp, 0);
        m_hb.assign(m * mp, 0);
        m_product.resize(m * n);
        // X = bf16(G), m x n (a tall G transposed), and its norm summed in double.
        double sum = 0;
        for (std::size_t i = 0; i < m; ++i)
        {
            for (std::size_t j = 0; j < n; ++j)
            {
                const std::uint16_t x = bf16_bits(static_cast<float>(tall ? g[j * cols + i] : g[i * cols + j]));
                m_hx[i * np + j] = x;
                sum += double(value(x)) * double(value(x));
            }
        }
        const float norm = to_bf16(static_cast<float>(std::sqrt(sum)));
        const float eps = to_bf16(static_cast<float>(m_o.eps));
        const float divisor =
            m_o.norm == ns_norm::clamp_eps
                ? std::max(norm, eps)
                : to_bf16((m_o.norm_scale == 1 ? norm : to_bf16(norm * static_cast<float>(m_o.norm_scale))) + eps);
        for (std::size_t i = 0; i < m; ++i)
        {
            for (std::size_t j = 0; j < n; ++j)
            {
                m_hx[i * np + j] = bf16_bits(value(m_hx[i * np + j]) / divisor);
            }
        }
        for (std::size_t k = 0; k < m_o.steps; ++k)
        {
            const auto [a64, b64, c64] = m_o.row(k);
            const float a = static_cast<float>(a64), b = static_cast<float>(b64), c = static_cast<float>(c64);
            // A = bf16(X X^T), c A
            linalg::bf16_products(m_hx.data(), m, m_hx.data(), m, np, m_product.data(), m, m_bf16, true);
            for (std::size_t i = 0; i < m; ++i)
            {
                for (std::size_t j = 0; j < m; ++j)
                {
                    const std::uint16_t x = bf16_bits(m_product[i * m + j]);
                    m_ha[i * mp + j] = x;
                    m_hca[i * mp + j] = bf16_bits(c * value(x));
                }
            }
            // B = bf16(bf16(b A) + bf16((c A) A)): A is symmetric, its rows are its columns.
            linalg::bf16_products(m_hca.data(), m, m_ha.data(), m, mp, m_product.data(), m, m_bf16);
            for (std::size_t i = 0; i < m; ++i)
            {
                for (std::size_t j = 0; j < m; ++j)
                {
                    m_hb[i * mp + j] =
                        bf16_bits(to_bf16(b * value(m_ha[i * mp + j])) + to_bf16(m_product[i * m + j]));
                }
            }
            // X = bf16(bf16(a X) + bf16(B X)): B X against the rows of X^T.
            for (std::size_t i = 0; i < m; ++i)
            {
                for (std::size_t j = 0; j < n; ++j)
                {
                    m_hxt[j * mp + i] = m_hx[i * np + j];
                }
            }
            linalg::bf16_products(m_hb.data(), m, m_hxt.data(), n, mp, m_product.data(), n, m_bf16);
            for (std::size_t i = 0; i < m; ++i)
            {
                for (std::size_t j = 0; j < n; ++j)
                {
                    m_hx[i * np + j] =
                        bf16_bits(to_bf16(a * value(m_hx[i * np + j])) + to_bf16(m_product[i * n + j]));
                }
            }
        }
        for (std::size_t i = 0; i < m; ++i)
        {
            for (std::size_t j = 0; j < n; ++j)
            {
                const T x = static_cast<T>(value(m_hx[i * np + j]));
                (tall ? out[j * cols + i] : out[i * cols + j]) = scale == 1 ? x : static_cast<T>(double(x) * scale);
            }
        }
    }
}

#endif
