// Newton-Schulz (quintic) orthogonalization, Muon's inner step (Jordan et al. 2024):
//   X = G (transposed when it has more rows than columns), X /= (||X||_F + eps)
//   repeat: A = X X^T;  B = b A + c A A;  X = a X + B X
// Both products of an iteration are symmetric, so each goes to a symmetric BLAS call
// with the scalar work folded into alpha and beta:
//   A = X X^T            syrk             m^2 n flops  (a general product: 2 m^2 n)
//   B = c A A^T + b A    syrk, beta = b   m^3          (2 m^3)
//   X = B X + a X        symm, beta = a   2 m^2 n      (2 m^2 n)
// for an m x n iterate with m <= n. Workspace is kept between calls: a steady state of
// same-shaped calls allocates nothing.
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
            : m_o(o)
        {
            if (!(o.eps > 0) || !std::isfinite(o.eps))
            {
                throw std::invalid_argument("xoptim::newton_schulz: eps must be > 0 and finite");
            }
        }

        // out = NS(g) for a row-major rows x cols matrix; out may be g itself.
        void operator()(const T* g, T* out, std::size_t rows, std::size_t cols);

        const newton_schulz_options& options() const noexcept
        {
            return m_o;
        }

    private:

        newton_schulz_options m_o;
        std::vector<T> m_x;  // the iterate, m x n
        std::vector<T> m_y;  // the next iterate
        std::vector<T> m_a;  // X X^T, m x m
        std::vector<T> m_b;  // b A + c A A, m x m
    };

    namespace detail
    {
        template <class T>
        void transpose(const T* in, T* out, std::size_t rows, std::size_t cols)
        {
            constexpr std::size_t tile = 32;
            for (std::size_t i0 = 0; i0 < rows; i0 += tile)
            {
                for (std::size_t j0 = 0; j0 < cols; j0 += tile)
                {
                    for (std::size_t i = i0; i < std::min(rows, i0 + tile); ++i)
                    {
                        for (std::size_t j = j0; j < std::min(cols, j0 + tile); ++j)
                        {
                            out[j * rows + i] = in[i * cols + j];
                        }
                    }
                }
            }
        }

        // syrk fills the upper triangle; the next syrk reads A as a full matrix.
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
    void newton_schulz<T>::operator()(const T* g, T* out, std::size_t rows, std::size_t cols)
    {
        if (rows > std::size_t(INT_MAX) || cols > std::size_t(INT_MAX))
        {
            throw std::invalid_argument("xoptim::newton_schulz: " + std::to_string(rows) + " x "
                                        + std::to_string(cols) + " is too large for BLAS (int dimensions)");
        }
        const bool tall = rows > cols;
        const std::size_t m = tall ? cols : rows;
        const std::size_t n = tall ? rows : cols;
        m_x.resize(m * n);
        m_y.resize(m * n);
        m_a.resize(m * m);
        m_b.resize(m * m);
        if (m * n == 0)
        {
            return;
        }
        if (tall)
        {
            detail::transpose(g, m_x.data(), rows, cols);
        }
        else
        {
            std::copy(g, g + m * n, m_x.begin());
        }
        double sum = 0;
        for (const T x : m_x)
        {
            sum += double(x) * double(x);
        }
        const T scale = static_cast<T>(1 / (std::sqrt(sum) + m_o.eps));
        for (T& x : m_x)
        {
            x *= scale;
        }
        const auto [a, b, c] = m_o.coefficients;
        const int im = static_cast<int>(m);
        const int in = static_cast<int>(n);
        for (std::size_t k = 0; k < m_o.steps; ++k)
        {
            blas::syrk(im, in, T(1), m_x.data(), T(0), m_a.data());
            detail::mirror_upper(m_a.data(), m);
            m_b = m_a;
            blas::syrk(im, im, T(c), m_a.data(), T(b), m_b.data());
            m_y = m_x;
            blas::symm(im, in, T(1), m_b.data(), m_x.data(), T(a), m_y.data());
            m_x.swap(m_y);
        }
        if (tall)
        {
            detail::transpose(m_x.data(), out, m, n);
        }
        else
        {
            std::copy(m_x.begin(), m_x.end(), out);
        }
    }
}

#endif
