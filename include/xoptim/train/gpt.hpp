// A small GPT (Radford et al. 2019, as in nanoGPT) with hand-written backward passes:
//
//   x = tok_embed[ids] + pos_embed[position]
//   per layer:  x = x + attn(ln1(x));  x = x + mlp(ln2(x))      (pre-norm residual blocks)
//   logits = ln_f(x) W^T, W = head.weight, or tok_embed.weight when the head is tied
//   loss = mean cross-entropy of every position's logits against the next token
//
// Layers: train/norm.hpp, attention.hpp, mlp.hpp, layers.hpp. Initialization as GPT-2:
// weights and embeddings of standard deviation 0.02 (uniform here), the projections into
// the residual stream 0.02 / sqrt(2 layers), biases 0, norms 1.
//
//     xoptim::train::gpt<float> model(config);
//     double loss = model.loss(ids, targets, batch, context, true);   // and the gradients
//     step(model.params(), model.grads());                             // any xoptim optimizer
//
// Parameters are named as in nanoGPT's layout (`layers.2.attn.qkv.weight`, listed by
// params()), so routing rules and checkpoints see the usual names. Buffers grow to the
// largest (batch, context) seen and are then reused: a step allocates nothing once warm.
#ifndef XOPTIM_TRAIN_GPT_HPP
#define XOPTIM_TRAIN_GPT_HPP

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "../params/param_set.hpp"
#include "attention.hpp"
#include "elementwise.hpp"
#include "layers.hpp"
#include "mlp.hpp"
#include "norm.hpp"
#include "parallel_for.hpp"

namespace xoptim::train
{
    struct gpt_config
    {
        std::size_t vocab = 128;
        std::size_t context = 128;  // the longest sequence; position embeddings for each
        std::size_t layers = 4;
        std::size_t d_model = 128;
        std::size_t heads = 4;
        bool tied_head = false;  // the output head reuses the token embedding
        std::uint64_t seed = 1;

        // Throws std::invalid_argument naming the first field out of range; this config
        // where every field is in range.
        const gpt_config& check() const;
    };

    template <class T>
    class gpt
    {
    public:

        using tensor = host_tensor<T>;
        using param_list = std::vector<named_ref<tensor>>;

        explicit gpt(const gpt_config& c);

        gpt(const gpt&) = delete;  // params() refers into the model
        gpt& operator=(const gpt&) = delete;

        const gpt_config& config() const noexcept
        {
            return m_config;
        }

        // ids and targets: (batch, context) token ids, targets[i] the token after ids[i].
        // Returns the mean cross-entropy over all batch * context positions (nats); with
        // `with_grads`, every parameter's gradient is this batch's (overwritten).
        double loss(const std::int32_t* ids, const std::int32_t* targets, std::size_t batch, std::size_t context,
                    bool with_grads);

        // The logits (batch * context, vocab) of a forward pass over ids.
        const T* forward(const std::int32_t* ids, std::size_t batch, std::size_t context);

        // Every parameter and its gradient, named, in the same order; made once.
        param_list& params() noexcept
        {
            return m_params;
        }

        param_list& grads() noexcept
        {
            return m_grads;
        }

        std::size_t parameter_count() const noexcept;

    private:

        struct block
        {
            layer_norm<T> ln1, ln2;
            causal_self_attention<T> attn;
            mlp<T> ff;
            // From the last forward: the stream after attention, and the norms' outputs.
            std::vector<T> mid, h1, h2;

            block(const gpt_config& c, std::uint64_t seed)
                : ln1(c.d_model), ln2(c.d_model), attn(c.d_model, c.heads, seed), ff(c.d_model, 4 * c.d_model, seed + 4)
            {
            }
        };

        void add(const std::string& name, tensor& value, tensor& grad);

        // A layer's NAME.weight and NAME.bias (a linear or a norm).
        template <class Layer>
        void add_pair(const std::string& name, Layer& layer)
        {
            add(name + ".weight", layer.weight, layer.grad_weight);
            add(name + ".bias", layer.bias, layer.grad_bias);
        }

        void check_ids(const std::int32_t* ids, std::size_t n, const char* what) const;
        std::size_t rows_of(std::size_t batch, std::size_t context) const;
        void resize(std::size_t rows);
        void embed(const std::int32_t* ids, std::size_t batch, std::size_t context);
        void backward(const std::int32_t* ids, std::size_t batch, std::size_t context);
        double cross_entropy(const std::int32_t* targets, std::size_t rows);

        tensor& head_weight() noexcept
        {
            return m_config.tied_head ? m_tok.weight : m_head;
        }

        gpt_config m_config;
        embedding<T> m_tok;
        tensor m_pos, m_pos_grad;
        std::vector<block> m_blocks;
        layer_norm<T> m_ln_f;
        tensor m_head, m_head_grad;  // empty when tied

        std::vector<std::string> m_names;
        param_list m_params, m_grads;

        // Activations of the last forward: the residual stream before each block and
        // after the last, the final norm's output, the logits; then their gradients.
        std::vector<std::vector<T>> m_stream;
        std::vector<T> m_final, m_logits, m_d_logits, m_d_stream, m_d_branch, m_d_norm;
        std::vector<double> m_partials;  // cross-entropy per block of rows
    };

    /******************
     * Implementation *
     ******************/

    namespace detail
    {
        // out += in over n elements (a residual connection, in place in the stream).
        template <class T>
        void add_to(T* out, const T* in, std::size_t n)
        {
            map(n, out, [](auto a, auto b) { return a + b; }, out, in);
        }
    }

    inline const gpt_config& gpt_config::check() const
    {
        const auto fail = [](const std::string& what) {
            throw std::invalid_argument("xoptim::train::gpt_config: " + what);
        };
        const auto positive = [&](std::size_t v, const char* name) {
            if (v == 0)
            {
                fail(std::string(name) + " must be at least 1 (got 0)");
            }
        };
        positive(vocab, "vocab");
        positive(context, "context");
        positive(layers, "layers");
        positive(d_model, "d_model");
        positive(heads, "heads");
        if (d_model % heads != 0)
        {
            fail("heads (" + std::to_string(heads) + ") must divide d_model (" + std::to_string(d_model) + ")");
        }
        if (vocab > std::size_t(1) << 31)
        {
            fail("vocab must fit in int32 ids (got " + std::to_string(vocab) + ")");
        }
        return *this;
    }

    template <class T>
    gpt<T>::gpt(const gpt_config& c)
        : m_config(c.check()),
          m_tok(c.vocab, c.d_model, c.seed),
          m_pos({c.context, c.d_model}),
          m_pos_grad({c.context, c.d_model}),
          m_ln_f(c.d_model)
    {
        const double std_dev = 0.02, bound = std_dev * std::sqrt(3.0);  // uniform of that deviation
        const double residual_bound = bound / std::sqrt(2.0 * double(c.layers));
        std::uint64_t seed = c.seed;
        const auto init_linear = [&](linear<T>& l, double b) {
            fill_uniform(l.weight, b, ++seed);
            std::fill(l.bias.values.begin(), l.bias.values.end(), T(0));
        };
        fill_uniform(m_tok.weight, bound, ++seed);
        fill_uniform(m_pos, bound, ++seed);
        m_blocks.reserve(c.layers);
        for (std::size_t l = 0; l < c.layers; ++l)
        {
            block& b = m_blocks.emplace_back(c, ++seed);
            init_linear(b.attn.qkv, bound);
            init_linear(b.attn.proj, residual_bound);
            init_linear(b.ff.fc, bound);
            init_linear(b.ff.proj, residual_bound);
        }
        if (!c.tied_head)
        {
            m_head = tensor({c.vocab, c.d_model});
            m_head_grad = tensor({c.vocab, c.d_model});
            fill_uniform(m_head, bound, ++seed);
        }

        // The lists keep views of the names: no reallocation after the first add.
        m_names.reserve(5 + 12 * c.layers);
        add("tok_embed.weight", m_tok.weight, m_tok.grad_weight);
        add("pos_embed.weight", m_pos, m_pos_grad);
        for (std::size_t l = 0; l < c.layers; ++l)
        {
            block& b = m_blocks[l];
            const std::string p = "layers." + std::to_string(l) + ".";
            add_pair(p + "ln1", b.ln1);
            add_pair(p + "attn.qkv", b.attn.qkv);
            add_pair(p + "attn.proj", b.attn.proj);
            add_pair(p + "ln2", b.ln2);
            add_pair(p + "mlp.fc", b.ff.fc);
            add_pair(p + "mlp.proj", b.ff.proj);
        }
        add_pair("ln_f", m_ln_f);
        if (!c.tied_head)
        {
            add("head.weight", m_head, m_head_grad);
        }
        m_stream.resize(c.layers + 1);
    }

    template <class T>
    void gpt<T>::add(const std::string& name, tensor& value, tensor& grad)
    {
        m_names.push_back(name);
        m_params.push_back({m_names.back(), value});
        m_grads.push_back({m_names.back(), grad});
    }

    template <class T>
    std::size_t gpt<T>::parameter_count() const noexcept
    {
        std::size_t n = 0;
        for (const auto& p : m_params)
        {
            n += p.ref.size();
        }
        return n;
    }

    // batch * context rows: context in [1, the model's], batch at least 1, the product an int.
    template <class T>
    std::size_t gpt<T>::rows_of(std::size_t batch, std::size_t context) const
    {
        if (context == 0 || context > m_config.context)
        {
            throw std::invalid_argument("xoptim::train::gpt: context must be in [1, " + std::to_string(m_config.context)
                                        + "] (got " + std::to_string(context) + ")");
        }
        return detail::rows_of("train::gpt", batch, context);
    }

    template <class T>
    void gpt<T>::check_ids(const std::int32_t* ids, std::size_t n, const char* what) const
    {
        for (std::size_t k = 0; k < n; ++k)
        {
            if (ids[k] < 0 || std::size_t(ids[k]) >= m_config.vocab)
            {
                throw std::out_of_range("xoptim::train::gpt: " + std::string(what) + " " + std::to_string(ids[k])
                                        + " at " + std::to_string(k) + " is not in the vocabulary of "
                                        + std::to_string(m_config.vocab));
            }
        }
    }

    template <class T>
    void gpt<T>::resize(std::size_t rows)
    {
        const std::size_t d = m_config.d_model;
        for (auto& s : m_stream)
        {
            s.resize(rows * d);
        }
        for (auto& b : m_blocks)
        {
            b.mid.resize(rows * d);
            b.h1.resize(rows * d);
            b.h2.resize(rows * d);
        }
        m_final.resize(rows * d);
        m_logits.resize(rows * m_config.vocab);
    }

    // stream[0] = tok_embed[ids] + pos_embed[position]
    template <class T>
    void gpt<T>::embed(const std::int32_t* ids, std::size_t batch, std::size_t context)
    {
        const std::size_t d = m_config.d_model;
        T* x = m_stream[0].data();
        m_tok.forward(ids, batch * context, x);
        parallel_for(batch * context, d, [&](std::size_t begin, std::size_t end) {
            for (std::size_t r = begin; r < end; ++r)
            {
                const T* pos = m_pos.data() + (r % context) * d;
                for (std::size_t j = 0; j < d; ++j)
                {
                    x[r * d + j] += pos[j];
                }
            }
        });
    }

    template <class T>
    const T* gpt<T>::forward(const std::int32_t* ids, std::size_t batch, std::size_t context)
    {
        const std::size_t rows = rows_of(batch, context), d = m_config.d_model;
        check_ids(ids, rows, "token id");
        resize(rows);
        embed(ids, batch, context);
        for (std::size_t l = 0; l < m_blocks.size(); ++l)
        {
            block& b = m_blocks[l];
            const T* x = m_stream[l].data();
            b.ln1.forward(x, rows, b.h1.data());
            b.attn.forward(b.h1.data(), batch, context, b.mid.data());
            detail::add_to(b.mid.data(), x, rows * d);
            b.ln2.forward(b.mid.data(), rows, b.h2.data());
            b.ff.forward(b.h2.data(), rows, m_stream[l + 1].data());
            detail::add_to(m_stream[l + 1].data(), b.mid.data(), rows * d);
        }
        m_ln_f.forward(m_stream.back().data(), rows, m_final.data());
        blas::gemm(false, true, int(rows), int(m_config.vocab), int(d), T(1), m_final.data(), head_weight().data(), T(0),
                   m_logits.data());
        return m_logits.data();
    }

    template <class T>
    double gpt<T>::loss(const std::int32_t* ids, const std::int32_t* targets, std::size_t batch, std::size_t context,
                        bool with_grads)
    {
        const std::size_t rows = rows_of(batch, context);
        check_ids(targets, rows, "target");
        forward(ids, batch, context);
        const double l = cross_entropy(targets, rows);
        if (with_grads)
        {
            backward(ids, batch, context);
        }
        return l;
    }

    // Mean over the rows; d_logits = (softmax - onehot) / rows. Partial sums per block of
    // 64 rows, added in order: the same value for any thread count.
    template <class T>
    double gpt<T>::cross_entropy(const std::int32_t* targets, std::size_t rows)
    {
        const std::size_t v = m_config.vocab, block_rows = 64, blocks = (rows + block_rows - 1) / block_rows;
        m_d_logits.resize(rows * v);
        m_partials.resize(blocks);
        parallel_for(blocks, block_rows * v * 4, [&](std::size_t begin, std::size_t end) {
            for (std::size_t k = begin; k < end; ++k)
            {
                const std::size_t r = k * block_rows, n = std::min(block_rows, rows - r);
                m_partials[k] = softmax_cross_entropy(m_logits.data() + r * v, targets + r, n, v,
                                                      m_d_logits.data() + r * v, rows);
            }
        });
        double total = 0;
        for (double p : m_partials)
        {
            total += p;
        }
        return total;
    }

    template <class T>
    void gpt<T>::backward(const std::int32_t* ids, std::size_t batch, std::size_t context)
    {
        const std::size_t rows = batch * context, d = m_config.d_model, v = m_config.vocab;
        m_d_stream.resize(rows * d);
        m_d_branch.resize(rows * d);
        m_d_norm.resize(rows * d);
        // logits = final W^T: dW = d_logits^T final (into the embedding's gradient when
        // tied, which the embedding's own backward then adds to), d_final = d_logits W.
        tensor& head_grad = m_config.tied_head ? m_tok.grad_weight : m_head_grad;
        blas::gemm(true, false, int(v), int(d), int(rows), T(1), m_d_logits.data(), m_final.data(), T(0),
                   head_grad.data());
        blas::gemm(false, false, int(rows), int(d), int(v), T(1), m_d_logits.data(), head_weight().data(), T(0),
                   m_d_norm.data());
        m_ln_f.backward(m_stream.back().data(), m_d_norm.data(), rows, m_d_stream.data());
        for (std::size_t l = m_blocks.size(); l-- > 0;)
        {
            block& b = m_blocks[l];
            // stream[l+1] = mid + mlp(ln2(mid))
            b.ff.backward(b.h2.data(), m_d_stream.data(), rows, m_d_norm.data());
            b.ln2.backward(b.mid.data(), m_d_norm.data(), rows, m_d_branch.data());
            detail::add_to(m_d_stream.data(), m_d_branch.data(), rows * d);
            // mid = stream[l] + attn(ln1(stream[l]))
            b.attn.backward(b.h1.data(), m_d_stream.data(), batch, context, m_d_norm.data());
            b.ln1.backward(m_stream[l].data(), m_d_norm.data(), rows, m_d_branch.data());
            detail::add_to(m_d_stream.data(), m_d_branch.data(), rows * d);
        }
        m_tok.backward(ids, m_d_stream.data(), rows, m_config.tied_head);
        // Each position's gradient summed over the sequences, in sequence order.
        std::fill(m_pos_grad.values.begin(), m_pos_grad.values.end(), T(0));
        parallel_for(context, batch * d, [&](std::size_t begin, std::size_t end) {
            for (std::size_t t = begin; t < end; ++t)
            {
                T* g = m_pos_grad.data() + t * d;
                for (std::size_t b = 0; b < batch; ++b)
                {
                    const T* src = m_d_stream.data() + (b * context + t) * d;
                    for (std::size_t j = 0; j < d; ++j)
                    {
                        g[j] += src[j];
                    }
                }
            }
        });
    }
}

#endif
