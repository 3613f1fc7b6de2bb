// Newton-Schulz (quintic) orthogonalization, Muon's inner step (Jordan et al. 2024):
//   X = G (transposed when it has more rows than columns), X /= (||X||_F + eps)
//   repeat: A = X X^T;  B = b A + c A A;  X = a X + B X
// Both products of an iteration are symmetric, so each goes to a symmetric BLAS call
// with the scalar work folded into alpha, beta and a diagonal:
//   A = X X^T                syrk              m^2 n flops  (a general product: 2 m^2 n)
//   B = c A A^T + b A + a I  syrk, beta = b    m^3          (2 m^3)
//   X = B X                  symm              2 m^2 n      (2 m^2 n)
// for an m x n iterate with m <= n. The normalization is folded into the first
// iteration's alphas (s^2 and s), and a tall input is read as the column-major matrix
// it is, so nothing is transposed or copied. Workspace is kept between calls: a steady
// state of same-shaped calls allocates nothing.
#ifndef XOPTIM_LINALG_NEWTON_SCHULZ_HPP
#define XOPTIM_LINALG_NEWTON_SCHULZ_HPP

#include <algorithm>
#include <array>
#include <climits>
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

#include "blas.hpp"
#include "blas_info.hpp"

namespace xoptim
{
    struct newton_schulz_options
    {
        std::size_t steps = 5;
        std::array<double, 3> coefficients = {3.4445, -4.7750, 2.0315};
        double eps = 1e-7;
    };

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

        newton_schulz_options m_o;
        std::vector<T> m_x;  // an iterate, m x n (the other is the output)
        std::vector<T> m_a;  // X X^T, m x m
        std::vector<T> m_b;  // c A A + b A + a I, m x m
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

        double sum = 0;
        for (std::size_t i = 0; i < size; ++i)
        {
            sum += double(g[i]) * double(g[i]);
        }
        const double s = 1 / (std::sqrt(sum) + m_o.eps);
        const auto [a, b, c] = m_o.coefficients;
        if (m_o.steps == 0)
        {
            std::transform(g, g + size, out, [&](T x) { return static_cast<T>(x * (s * scale)); });
            return;
        }
        // The iterates alternate between out and m_x so that the last lands in out.
        const auto target = [&](std::size_t k) { return (m_o.steps - 1 - k) % 2 == 0 ? out : m_x.data(); };
        const T* x = g;
        if (out == g && target(0) == out)
        {
            std::copy(g, g + size, m_x.begin());  // the first iteration must not overwrite its input
            x = m_x.data();
        }
        for (std::size_t k = 0; k < m_o.steps; ++k)
        {
            const bool first = k == 0;
            T* y = target(k);
            blas::syrk(l, im, in, static_cast<T>(first ? s * s : 1), x, ld, T(0), m_a.data());
            detail::mirror_upper(m_a.data(), m);
            m_b = m_a;
            blas::syrk(l, im, im, static_cast<T>(c), m_a.data(), im, static_cast<T>(b), m_b.data());
            for (std::size_t i = 0; i < m; ++i)
            {
                m_b[i * m + i] += static_cast<T>(a);
            }
            const double alpha = (first ? s : 1) * (k + 1 == m_o.steps ? scale : 1);
            blas::symm(l, im, in, static_cast<T>(alpha), m_b.data(), x, T(0), y, ld);
            x = y;
        }
    }
}

#endif
