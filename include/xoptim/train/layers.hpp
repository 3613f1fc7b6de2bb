// Small layers with hand-written backward passes, for the examples and for anyone who
// trains a small model in plain C++: linear, ReLU, embedding, softmax cross-entropy.
// Batches are row-major (batch, features). Every backward pass is checked against
// numerical gradients in tests/test_layers.cpp.
//
// Parameters are host_tensor<T>: a std::vector with a shape, which xoptim's optimizers
// take directly (the xtensor container protocol: data(), size(), shape()). A backward
// pass overwrites the gradients of its layer with this batch's (no zero_grad needed;
// accumulation over micro-batches is xoptim::stepper's job).
//
// Needs a CBLAS at link time (the matrix products go to linalg/blas.hpp).
#ifndef XOPTIM_TRAIN_LAYERS_HPP
#define XOPTIM_TRAIN_LAYERS_HPP

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "../linalg/blas.hpp"
#include "../optim/validate.hpp"

namespace xoptim::train
{
    namespace detail
    {
        // A layer's size: at least 1 (a layer of none has no meaning, and linear's
        // initialization bound 1/sqrt(in) would be inf). `layer` is "train::NAME", as in
        // every helper here.
        inline void require_size(const char* layer, const char* what, std::size_t n)
        {
            xoptim::detail::require(n >= 1, layer, what, ">= 1", double(n));
        }

        // a * b, or an error naming both where it overflows std::size_t or passes the int
        // the BLAS calls take.
        inline std::size_t rows_of(const char* layer, std::size_t batch, std::size_t context)
        {
            require_size(layer, "batch", batch);
            if (context > 0 && batch > std::size_t(std::numeric_limits<int>::max()) / context)
            {
                throw std::invalid_argument(std::string("xoptim::") + layer + ": batch " + std::to_string(batch)
                                            + " x context " + std::to_string(context) + " rows do not fit an int");
            }
            return batch * context;
        }

        // A backward reuses what its layer's last forward kept: it must be of that shape,
        // `shape(batch, context)` in words (built only for the message: a step allocates
        // nothing).
        template <class Shape>
        void require_forward_shape(const char* layer, std::size_t batch, std::size_t context, std::size_t forward_batch,
                                   std::size_t forward_context, const Shape& shape)
        {
            if (batch != forward_batch || context != forward_context)
            {
                throw std::invalid_argument(std::string("xoptim::") + layer + ": backward of "
                                            + shape(batch, context) + ", the last forward was of "
                                            + shape(forward_batch, forward_context)
                                            + " (a backward reuses what its forward kept)");
            }
        }

        inline void require_forward_rows(const char* layer, std::size_t rows, std::size_t forward_rows)
        {
            require_forward_shape(layer, rows, 1, forward_rows, 1,
                                  [](std::size_t r, std::size_t) { return std::to_string(r) + " rows"; });
        }

        inline void check_label(const char* who, std::int32_t label, std::size_t row, std::size_t classes)
        {
            if (label < 0 || std::size_t(label) >= classes)
            {
                throw std::out_of_range(std::string("xoptim::") + who + ": label " + std::to_string(label)
                                        + " of row " + std::to_string(row) + " is not one of " + std::to_string(classes)
                                        + " classes");
            }
        }
    }

    template <class T>
    struct host_tensor
    {
        // It owns its elements: a copy passed as a parameter is refused (xoptim::owns_elements).
        using temporary_type = host_tensor;

        std::vector<T> values;
        std::vector<std::size_t> dims;

        host_tensor() = default;

        explicit host_tensor(std::vector<std::size_t> shape)
            : dims(std::move(shape))
        {
            std::size_t n = 1;
            for (std::size_t d : dims)
            {
                n *= d;
            }
            values.assign(n, T(0));
        }

        T* data() noexcept
        {
            return values.data();
        }

        const T* data() const noexcept
        {
            return values.data();
        }

        std::size_t size() const noexcept
        {
            return values.size();
        }

        const std::vector<std::size_t>& shape() const noexcept
        {
            return dims;
        }
    };

    // Deterministic value in [-1, 1) for (seed, i): splitmix64 of the pair.
    inline double hash_uniform(std::uint64_t seed, std::uint64_t i) noexcept
    {
        std::uint64_t x = seed * 0x9E3779B97F4A7C15ULL + i * 0xBF58476D1CE4E5B9ULL + 0x94D049BB133111EBULL;
        x ^= x >> 30;
        x *= 0xBF58476D1CE4E5B9ULL;
        x ^= x >> 27;
        x *= 0x94D049BB133111EBULL;
        x ^= x >> 31;
        return double(x >> 11) * (2.0 / 9007199254740992.0) - 1.0;
    }

    template <class T>
    void fill_uniform(host_tensor<T>& t, double bound, std::uint64_t seed)
    {
        for (std::size_t i = 0; i < t.size(); ++i)
        {
            t.values[i] = T(bound * hash_uniform(seed, i));
        }
    }

    // y = x W^T + b, W (out, in), as torch.nn.Linear (and its default initialization:
    // uniform in +-1/sqrt(in) for W and b).
    template <class T>
    struct linear
    {
        host_tensor<T> weight, bias, grad_weight, grad_bias;

        linear(std::size_t in, std::size_t out, std::uint64_t seed)
            : weight({out, in}), bias({out}), grad_weight({out, in}), grad_bias({out})
        {
            detail::require_size("train::linear", "in", in);
            detail::require_size("train::linear", "out", out);
            const double bound = 1.0 / std::sqrt(double(in));
            fill_uniform(weight, bound, seed);
            fill_uniform(bias, bound, seed + 1);
        }

        std::size_t in() const noexcept
        {
            return weight.dims[1];
        }

        std::size_t out() const noexcept
        {
            return weight.dims[0];
        }

        // x (batch, in) -> y (batch, out)
        void forward(const T* x, std::size_t batch, T* y) const
        {
            for (std::size_t r = 0; r < batch; ++r)
            {
                std::copy(bias.values.begin(), bias.values.end(), y + r * out());
            }
            blas::gemm(false, true, int(batch), int(out()), int(in()), T(1), x, weight.data(), T(1), y);
        }

        // From dy (batch, out) and the forward input x: dW = dy^T x, db = column sums of
        // dy, and dx = dy W unless dx is null.
        void backward(const T* x, const T* dy, std::size_t batch, T* dx)
        {
            blas::gemm(true, false, int(out()), int(in()), int(batch), T(1), dy, x, T(0), grad_weight.data());
            std::fill(grad_bias.values.begin(), grad_bias.values.end(), T(0));
            for (std::size_t r = 0; r < batch; ++r)
            {
                for (std::size_t j = 0; j < out(); ++j)
                {
                    grad_bias.values[j] += dy[r * out() + j];
                }
            }
            if (dx != nullptr)
            {
                blas::gemm(false, false, int(batch), int(in()), int(out()), T(1), dy, weight.data(), T(0), dx);
            }
        }
    };

    // Rows of a table picked by id, as torch.nn.Embedding (initialized uniform in
    // +-sqrt(3), the variance of torch's N(0, 1)).
    template <class T>
    struct embedding
    {
        host_tensor<T> weight, grad_weight;

        embedding(std::size_t vocab, std::size_t dim, std::uint64_t seed)
            : weight({vocab, dim}), grad_weight({vocab, dim})
        {
            detail::require_size("train::embedding", "vocab", vocab);
            detail::require_size("train::embedding", "dim", dim);
            fill_uniform(weight, std::sqrt(3.0), seed);
        }

        std::size_t vocab() const noexcept
        {
            return weight.dims[0];
        }

        std::size_t dim() const noexcept
        {
            return weight.dims[1];
        }

        // ids (n) -> out (n, dim)
        void forward(const std::int32_t* ids, std::size_t n, T* out) const
        {
            for (std::size_t k = 0; k < n; ++k)
            {
                check_id(ids[k], k);
                const T* row = weight.data() + std::size_t(ids[k]) * dim();
                std::copy(row, row + dim(), out + k * dim());
            }
        }

        void check_id(std::int32_t id, std::size_t k) const
        {
            if (id < 0 || std::size_t(id) >= vocab())
            {
                throw std::out_of_range("xoptim::train::embedding: id " + std::to_string(id) + " at "
                                        + std::to_string(k) + " is outside the " + std::to_string(vocab())
                                        + "-row table");
            }
        }

        // The table's gradient: dout's rows added into the rows of their ids (into the
        // gradient already there with `accumulate`, as a tied output head needs).
        void backward(const std::int32_t* ids, const T* dout, std::size_t n, bool accumulate = false)
        {
            if (!accumulate)
            {
                std::fill(grad_weight.values.begin(), grad_weight.values.end(), T(0));
            }
            for (std::size_t k = 0; k < n; ++k)
            {
                check_id(ids[k], k);
                T* row = grad_weight.data() + std::size_t(ids[k]) * dim();
                for (std::size_t j = 0; j < dim(); ++j)
                {
                    row[j] += dout[k * dim() + j];
                }
            }
        }
    };

    template <class T>
    void relu(T* x, std::size_t n) noexcept
    {
        for (std::size_t i = 0; i < n; ++i)
        {
            x[i] = std::max(x[i], T(0));
        }
    }

    // dy *= (y > 0), from ReLU's output y.
    template <class T>
    void relu_backward(const T* y, T* dy, std::size_t n) noexcept
    {
        for (std::size_t i = 0; i < n; ++i)
        {
            dy[i] = y[i] > T(0) ? dy[i] : T(0);
        }
    }

    // Mean softmax cross-entropy of logits (batch, classes) against labels, as
    // torch.nn.functional.cross_entropy; dlogits = (softmax - onehot) / batch. Computed
    // in double per row, with the maximum subtracted first. With `mean_over` > 0 the sum
    // is divided by it instead of by batch (a slice of a larger batch: its rows' share
    // of the mean and of the gradient).
    template <class T>
    double softmax_cross_entropy(const T* logits, const std::int32_t* labels, std::size_t batch, std::size_t classes,
                                 T* dlogits, std::size_t mean_over = 0)
    {
        if (batch == 0)
        {
            return 0;  // no rows, no loss
        }
        const double divisor = double(mean_over > 0 ? mean_over : batch);
        double total = 0;
        for (std::size_t r = 0; r < batch; ++r)
        {
            const T* z = logits + r * classes;
            detail::check_label("train::softmax_cross_entropy", labels[r], r, classes);
            const double top = double(*std::max_element(z, z + classes));
            double sum = 0;
            for (std::size_t j = 0; j < classes; ++j)
            {
                sum += std::exp(double(z[j]) - top);
            }
            const double log_sum = std::log(sum) + top;
            total += log_sum - double(z[labels[r]]);
            for (std::size_t j = 0; j < classes; ++j)
            {
                const double p = std::exp(double(z[j]) - log_sum);
                dlogits[r * classes + j] = T((p - (std::size_t(labels[r]) == j ? 1.0 : 0.0)) / divisor);
            }
        }
        return total / divisor;
    }

    // Rows whose largest logit is at their label.
    template <class T>
    std::size_t count_correct(const T* logits, const std::int32_t* labels, std::size_t batch, std::size_t classes)
    {
        std::size_t correct = 0;
        for (std::size_t r = 0; r < batch; ++r)
        {
            const T* z = logits + r * classes;
            detail::check_label("train::count_correct", labels[r], r, classes);
            correct += std::size_t(std::max_element(z, z + classes) - z) == std::size_t(labels[r]);
        }
        return correct;
    }
}

#endif
