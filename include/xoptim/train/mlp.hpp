// A transformer's feed-forward block: y = proj(relu(fc(x))^2), fc widening dim to
// hidden (4 dim in GPT), proj back. ReLU² (So et al. 2021, "Primer") as in the Muon
// speedrun's GPT: as good as GELU there, and cheap (no tanh per element).
// Checked against central differences in tests/test_transformer_layers.cpp.
#ifndef XOPTIM_TRAIN_MLP_HPP
#define XOPTIM_TRAIN_MLP_HPP

#include <algorithm>
#include <vector>

#include "layers.hpp"
#include "elementwise.hpp"

namespace xoptim::train
{
    // y = max(x, 0)^2 over n elements.
    template <class T>
    void relu_squared(const T* x, std::size_t n, T* y)
    {
        map(n, y, [](auto v) {
            const auto r = xsimd::max(v, decltype(v)(0));
            return r * r;
        }, x);
    }

    // d *= 2 max(x, 0): the gradient through relu_squared, in place, from its input x.
    template <class T>
    void relu_squared_backward(const T* x, T* d, std::size_t n)
    {
        map(n, d, [](auto v, auto g) { return g * (T(2) * xsimd::max(v, decltype(v)(0))); }, x, d);
    }

    template <class T>
    struct mlp
    {
        linear<T> fc, proj;

        mlp(std::size_t dim, std::size_t hidden, std::uint64_t seed)
            : fc(dim, hidden, seed), proj(hidden, dim, seed + 2)
        {
        }

        // x (rows, dim) -> y (rows, dim); keeps fc's output and the activation.
        void forward(const T* x, std::size_t rows, T* y)
        {
            m_pre.resize(rows * fc.out());
            m_act.resize(rows * fc.out());
            m_rows = rows;
            fc.forward(x, rows, m_pre.data());
            relu_squared(m_pre.data(), m_pre.size(), m_act.data());
            proj.forward(m_act.data(), rows, y);
        }

        // From dy and the forward input x: both layers' gradients and dx.
        void backward(const T* x, const T* dy, std::size_t rows, T* dx)
        {
            detail::require_forward_rows("train::mlp", rows, m_rows);
            m_grad.resize(m_act.size());
            proj.backward(m_act.data(), dy, rows, m_grad.data());
            relu_squared_backward(m_pre.data(), m_grad.data(), m_grad.size());
            fc.backward(x, m_grad.data(), rows, dx);
        }

    private:

        std::vector<T> m_pre, m_act, m_grad;  // fc's output, the activation, its gradient
        std::size_t m_rows = 0;               // the last forward's
    };
}

#endif
