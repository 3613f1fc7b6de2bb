// Causal multi-head self-attention, as in GPT-2:
//   [Q K V] = x W_qkv^T + b_qkv                     (one fused projection, dim -> 3 dim)
//   per sequence and head h (columns h*hd .. h*hd+hd of Q, K and V, hd = dim / heads):
//     S = Q_h K_h^T / sqrt(hd), S[i][j] = -inf for j > i (a position sees only the past)
//     P = softmax of each row of S;  O_h = P V_h
//   y = O W_proj^T + b_proj
// Inputs are (batch * context, dim): `batch` sequences of `context` positions, row-major.
// The products go to BLAS on the calling thread (a head's block is read in place, by
// leading dimension); the softmax rows run on xoptim's threads.
//
// Backward (for each sequence and head): dP = dO V^T, dV = P^T dO,
// dS = P * (dP - rowsum(P * dP)) / sqrt(hd), dQ = dS K, dK = dS^T Q.
// Checked against central differences in tests/test_transformer_layers.cpp.
#ifndef XOPTIM_TRAIN_ATTENTION_HPP
#define XOPTIM_TRAIN_ATTENTION_HPP

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "layers.hpp"
#include "parallel_for.hpp"

namespace xoptim::train
{
    template <class T>
    struct causal_self_attention
    {
        linear<T> qkv, proj;

        causal_self_attention(std::size_t dim, std::size_t heads, std::uint64_t seed)
            : qkv(dim, 3 * dim, seed), proj(dim, dim, seed + 2), m_heads(heads)
        {
            if (heads == 0 || dim % heads != 0)
            {
                throw std::invalid_argument("xoptim::train::causal_self_attention: heads (" + std::to_string(heads)
                                            + ") must divide dim (" + std::to_string(dim) + ")");
            }
        }

        std::size_t dim() const noexcept
        {
            return proj.out();
        }

        std::size_t heads() const noexcept
        {
            return m_heads;
        }

        // x (batch * context, dim) -> y (batch * context, dim). Keeps Q K V, the
        // attention weights and the heads' outputs for backward.
        void forward(const T* x, std::size_t batch, std::size_t context, T* y)
        {
            detail::require_size("train::causal_self_attention", "context", context);
            const std::size_t rows = detail::rows_of("train::causal_self_attention", batch, context), d = dim(),
                              hd = d / m_heads;
            m_batch = batch;
            m_context = context;
            m_qkv.resize(rows * 3 * d);
            m_probs.resize(batch * m_heads * context * context);
            m_out.resize(rows * d);
            qkv.forward(x, rows, m_qkv.data());
            const T scale = T(1) / std::sqrt(T(hd));
            for_each_head(batch, [&](std::size_t b, std::size_t h) {
                const T* q = m_qkv.data() + b * context * 3 * d + h * hd;
                blas::gemm(false, true, int(context), int(context), int(hd), scale, q, int(3 * d), q + d, int(3 * d),
                           T(0), probs(b, h, context), int(context));
            });
            causal_softmax(batch * m_heads, context);
            for_each_head(batch, [&](std::size_t b, std::size_t h) {
                const T* v = m_qkv.data() + b * context * 3 * d + 2 * d + h * hd;
                blas::gemm(false, false, int(context), int(hd), int(context), T(1), probs(b, h, context), int(context), v,
                           int(3 * d), T(0), m_out.data() + b * context * d + h * hd, int(d));
            });
            proj.forward(m_out.data(), rows, y);
        }

        // From dy and the forward input x: the projections' gradients and dx.
        void backward(const T* x, const T* dy, std::size_t batch, std::size_t context, T* dx)
        {
            detail::require_forward_shape("train::causal_self_attention", batch, context, m_batch, m_context, shape_text);
            const std::size_t rows = batch * context, d = dim(), hd = d / m_heads;
            m_d_out.resize(rows * d);
            m_d_qkv.resize(rows * 3 * d);
            m_d_scores.resize(m_probs.size());
            proj.backward(m_out.data(), dy, rows, m_d_out.data());
            for_each_head(batch, [&](std::size_t b, std::size_t h) {
                const T* v = m_qkv.data() + b * context * 3 * d + 2 * d + h * hd;
                const T* d_o = m_d_out.data() + b * context * d + h * hd;
                T* d_v = m_d_qkv.data() + b * context * 3 * d + 2 * d + h * hd;
                blas::gemm(false, true, int(context), int(context), int(hd), T(1), d_o, int(d), v, int(3 * d), T(0),
                           d_scores(b, h, context), int(context));
                blas::gemm(true, false, int(context), int(hd), int(context), T(1), probs(b, h, context), int(context), d_o,
                           int(d), T(0), d_v, int(3 * d));
            });
            softmax_backward(batch * m_heads, context, T(1) / std::sqrt(T(hd)));
            for_each_head(batch, [&](std::size_t b, std::size_t h) {
                const T* q = m_qkv.data() + b * context * 3 * d + h * hd;
                T* d_q = m_d_qkv.data() + b * context * 3 * d + h * hd;
                const T* ds = d_scores(b, h, context);
                blas::gemm(false, false, int(context), int(hd), int(context), T(1), ds, int(context), q + d, int(3 * d),
                           T(0), d_q, int(3 * d));
                blas::gemm(true, false, int(context), int(hd), int(context), T(1), ds, int(context), q, int(3 * d), T(0),
                           d_q + d, int(3 * d));
            });
            qkv.backward(x, m_d_qkv.data(), rows, dx);
        }

    private:

        static std::string shape_text(std::size_t batch, std::size_t context)
        {
            return "batch " + std::to_string(batch) + " x context " + std::to_string(context);
        }

        template <class F>
        void for_each_head(std::size_t batch, const F& f) const
        {
            for (std::size_t b = 0; b < batch; ++b)
            {
                for (std::size_t h = 0; h < m_heads; ++h)
                {
                    f(b, h);
                }
            }
        }

        T* probs(std::size_t b, std::size_t h, std::size_t context) noexcept
        {
            return m_probs.data() + (b * m_heads + h) * context * context;
        }

        T* d_scores(std::size_t b, std::size_t h, std::size_t context) noexcept
        {
            return m_d_scores.data() + (b * m_heads + h) * context * context;
        }

        // Each of the `matrices` context x context score matrices, row i: softmax over
        // columns 0..i (max subtracted first), zeros after.
        void causal_softmax(std::size_t matrices, std::size_t context)
        {
            parallel_for(matrices * context, context, [&](std::size_t begin, std::size_t end) {
                for (std::size_t r = begin; r < end; ++r)
                {
                    T* s = m_probs.data() + r * context;
                    const std::size_t seen = r % context + 1;
                    T top = s[0];
                    for (std::size_t j = 1; j < seen; ++j)
                    {
                        top = std::max(top, s[j]);
                    }
                    T sum = 0;
                    for (std::size_t j = 0; j < seen; ++j)
                    {
                        s[j] = std::exp(s[j] - top);
                        sum += s[j];
                    }
                    const T inv = T(1) / sum;
                    for (std::size_t j = 0; j < seen; ++j)
                    {
                        s[j] *= inv;
                    }
                    std::fill(s + seen, s + context, T(0));
                }
            });
        }

        // d_scores = P * (dP - rowsum(P * dP)) * scale, in place over dP.
        void softmax_backward(std::size_t matrices, std::size_t context, T scale)
        {
            parallel_for(matrices * context, context, [&](std::size_t begin, std::size_t end) {
                for (std::size_t r = begin; r < end; ++r)
                {
                    const T* p = m_probs.data() + r * context;
                    T* ds = m_d_scores.data() + r * context;
                    const std::size_t seen = r % context + 1;
                    T dot = 0;
                    for (std::size_t j = 0; j < seen; ++j)
                    {
                        dot += p[j] * ds[j];
                    }
                    for (std::size_t j = 0; j < seen; ++j)
                    {
                        ds[j] = p[j] * (ds[j] - dot) * scale;
                    }
                    std::fill(ds + seen, ds + context, T(0));
                }
            });
        }

        std::size_t m_heads;
        std::size_t m_batch = 0, m_context = 0;  // the last forward's, for backward
        // From the last forward: Q K V (rows, 3 dim), softmax weights (batch, heads,
        // context, context), the heads' outputs (rows, dim). Backward's scratch after.
        std::vector<T> m_qkv, m_probs, m_out;
        std::vector<T> m_d_out, m_d_qkv, m_d_scores;
    };
}

#endif
