// Layer normalization over the last axis, as torch.nn.LayerNorm(dim, eps=1e-5):
// y = (x - mean) / sqrt(var + eps) * weight + bias, var the biased variance of the row.
// Rows are normalized on xoptim's threads. Checked against central differences in
// tests/test_transformer_layers.cpp.
#ifndef XOPTIM_TRAIN_NORM_HPP
#define XOPTIM_TRAIN_NORM_HPP

#include <cmath>
#include <vector>

#include "layers.hpp"
#include "parallel_for.hpp"

namespace xoptim::train
{
    template <class T>
    struct layer_norm
    {
        host_tensor<T> weight, bias, grad_weight, grad_bias;
        double eps = 1e-5;

        explicit layer_norm(std::size_t dim)
            : weight({dim}), bias({dim}), grad_weight({dim}), grad_bias({dim})
        {
            detail::require_size("train::layer_norm", "dim", dim);
            std::fill(weight.values.begin(), weight.values.end(), T(1));
        }

        std::size_t dim() const noexcept
        {
            return weight.size();
        }

        // x (rows, dim) -> y (rows, dim)
        void forward(const T* x, std::size_t rows, T* y)
        {
            m_stats.resize(2 * rows);
            m_rows = rows;
            parallel_for(rows, 4 * dim(), [&](std::size_t begin, std::size_t end) {
                for (std::size_t r = begin; r < end; ++r)
                {
                    const T* xr = x + r * dim();
                    row_stats(xr, m_stats[2 * r], m_stats[2 * r + 1]);
                    const T mean = m_stats[2 * r], rstd = m_stats[2 * r + 1];
                    const T* __restrict w = weight.data();
                    const T* __restrict b = bias.data();
                    T* __restrict yr = y + r * dim();
                    for (std::size_t j = 0; j < dim(); ++j)
                    {
                        yr[j] = (xr[j] - mean) * rstd * w[j] + b[j];
                    }
                }
            });
        }

        // From dy and the forward input x (the row statistics of the last forward):
        // the weight and bias gradients, and dx = rstd (dxh - mean(dxh) - xh mean(dxh xh))
        // with xh the normalized row and dxh = dy * weight.
        void backward(const T* x, const T* dy, std::size_t rows, T* dx)
        {
            detail::require_forward_rows("train::layer_norm", rows, m_rows);
            parallel_for(rows, 6 * dim(), [&](std::size_t begin, std::size_t end) {
                for (std::size_t r = begin; r < end; ++r)
                {
                    const T* xr = x + r * dim();
                    const T* dyr = dy + r * dim();
                    const T mean = m_stats[2 * r], rstd = m_stats[2 * r + 1];
                    T sum_d = 0, sum_dx = 0;
                    for (std::size_t j = 0; j < dim(); ++j)
                    {
                        const T d = dyr[j] * weight.values[j];
                        sum_d += d;
                        sum_dx += d * (xr[j] - mean) * rstd;
                    }
                    const T mean_d = sum_d / T(dim()), mean_dx = sum_dx / T(dim());
                    T* dxr = dx + r * dim();
                    for (std::size_t j = 0; j < dim(); ++j)
                    {
                        const T xh = (xr[j] - mean) * rstd;
                        dxr[j] = rstd * (dyr[j] * weight.values[j] - mean_d - xh * mean_dx);
                    }
                }
            });
            // Column sums over the rows, each column's in row order.
            parallel_for(dim(), 3 * rows, [&](std::size_t begin, std::size_t end) {
                for (std::size_t j = begin; j < end; ++j)
                {
                    T gw = 0, gb = 0;
                    for (std::size_t r = 0; r < rows; ++r)
                    {
                        const T dyr = dy[r * dim() + j];
                        gw += dyr * (x[r * dim() + j] - m_stats[2 * r]) * m_stats[2 * r + 1];
                        gb += dyr;
                    }
                    grad_weight.values[j] = gw;
                    grad_bias.values[j] = gb;
                }
            });
        }

    private:

        void row_stats(const T* xr, T& mean, T& rstd) const
        {
            T sum = 0;
            for (std::size_t j = 0; j < dim(); ++j)
            {
                sum += xr[j];
            }
            mean = sum / T(dim());
            T sq = 0;
            for (std::size_t j = 0; j < dim(); ++j)
            {
                sq += (xr[j] - mean) * (xr[j] - mean);
            }
            rstd = T(1) / std::sqrt(sq / T(dim()) + T(eps));
        }

        std::vector<T> m_stats;  // per row of the last forward: mean, 1 / sqrt(var + eps)
        std::size_t m_rows = 0;  // the last forward's
    };
}

#endif
