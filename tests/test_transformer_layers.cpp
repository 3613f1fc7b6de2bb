// The transformer's layers (train/norm.hpp, mlp.hpp, attention.hpp, gpt.hpp): every
// backward pass against central differences in double, for a loss L = sum(r * f(x))
// with fixed random r (the GPT: its own cross-entropy), and the properties a reader
// relies on: causality, thread-count independence, errors that name the mistake.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>
#include <xoptim/train/gpt.hpp>

#include "support/gpt_problem.hpp"
#include "support/gradient_check.hpp"
#include "support/reference.hpp"

namespace
{
    namespace train = xoptim::train;
    using xoptim_test::dot;
    using xoptim_test::expect_gradient;
    using xoptim_test::random_vector;

    // The message of the E that f() throws.
    template <class E, class F>
    std::string thrown(F&& f)
    {
        try
        {
            f();
        }
        catch (const E& e)
        {
            return e.what();
        }
        return "nothing thrown";
    }

    // The weight and bias gradients of a linear layer or a norm, as `loss` sees them.
    template <class Layer>
    void expect_weight_and_bias_gradients(Layer& layer, const std::function<double()>& loss, const std::string& name)
    {
        const auto dw = layer.grad_weight.values, db = layer.grad_bias.values;
        expect_gradient(layer.weight.values, dw, loss, name + ".weight");
        expect_gradient(layer.bias.values, db, loss, name + ".bias");
    }

    TEST(transformer_layers, layer_norm_gradients_match_central_differences)
    {
        const std::size_t rows = 3, dim = 6;
        train::layer_norm<double> norm(dim);
        train::fill_uniform(norm.weight, 1.0, 1);
        train::fill_uniform(norm.bias, 1.0, 2);
        auto x = random_vector(rows * dim, 3);
        const auto r = random_vector(rows * dim, 4);
        std::vector<double> y(rows * dim), dx(rows * dim);
        const auto loss = [&] {
            norm.forward(x.data(), rows, y.data());
            return dot(r, y);
        };
        loss();
        norm.backward(x.data(), r.data(), rows, dx.data());
        expect_weight_and_bias_gradients(norm, loss, "norm");
        expect_gradient(x, dx, loss, "input");
    }

    TEST(transformer_layers, layer_norm_output_has_zero_mean_and_unit_variance_per_row)
    {
        train::layer_norm<double> norm(4);
        const std::vector<double> x = {1, 2, 3, 4, -10, 0, 0, 10};
        std::vector<double> y(8);
        norm.forward(x.data(), 2, y.data());
        for (std::size_t r = 0; r < 2; ++r)
        {
            double mean = 0, var = 0;
            for (std::size_t j = 0; j < 4; ++j)
            {
                mean += y[r * 4 + j] / 4;
            }
            for (std::size_t j = 0; j < 4; ++j)
            {
                var += (y[r * 4 + j] - mean) * (y[r * 4 + j] - mean) / 4;
            }
            EXPECT_NEAR(mean, 0, 1e-12);
            EXPECT_NEAR(var, 1, 1e-4);  // var / (var + eps)
        }
    }

    TEST(transformer_layers, mlp_gradients_match_central_differences)
    {
        const std::size_t rows = 3, dim = 4, hidden = 10;
        train::mlp<double> ff(dim, hidden, 5);
        auto x = random_vector(rows * dim, 6);
        const auto r = random_vector(rows * dim, 7);
        std::vector<double> y(rows * dim), dx(rows * dim);
        const auto loss = [&] {
            ff.forward(x.data(), rows, y.data());
            return dot(r, y);
        };
        loss();
        ff.backward(x.data(), r.data(), rows, dx.data());
        expect_weight_and_bias_gradients(ff.fc, loss, "fc");
        expect_weight_and_bias_gradients(ff.proj, loss, "proj");
        expect_gradient(x, dx, loss, "input");
    }

    TEST(transformer_layers, relu_squared_is_zero_below_and_square_above)
    {
        const std::vector<double> x = {-2, -0.0, 0, 0.5, 3};
        std::vector<double> y(5), d(5, 1.0);
        train::relu_squared(x.data(), 5, y.data());
        train::relu_squared_backward(x.data(), d.data(), 5);
        EXPECT_EQ(y, (std::vector<double>{0, 0, 0, 0.25, 9}));
        EXPECT_EQ(d, (std::vector<double>{0, 0, 0, 1, 6}));
    }

    TEST(transformer_layers, attention_gradients_match_central_differences)
    {
        const std::size_t batch = 2, context = 5, dim = 8, heads = 2, rows = batch * context;
        train::causal_self_attention<double> attn(dim, heads, 8);
        auto x = random_vector(rows * dim, 9);
        for (double& v : x)
        {
            v *= 3;  // attention weights far from uniform
        }
        const auto r = random_vector(rows * dim, 10);
        std::vector<double> y(rows * dim), dx(rows * dim);
        const auto loss = [&] {
            attn.forward(x.data(), batch, context, y.data());
            return dot(r, y);
        };
        loss();
        attn.backward(x.data(), r.data(), batch, context, dx.data());
        expect_weight_and_bias_gradients(attn.qkv, loss, "qkv");
        expect_weight_and_bias_gradients(attn.proj, loss, "proj");
        expect_gradient(x, dx, loss, "input");
    }

    TEST(transformer_layers, attention_is_causal_and_sequences_are_independent)
    {
        const std::size_t batch = 2, context = 6, dim = 8, rows = batch * context;
        train::causal_self_attention<double> attn(dim, 4, 11);
        auto x = random_vector(rows * dim, 12);
        std::vector<double> before(rows * dim), after(rows * dim);
        attn.forward(x.data(), batch, context, before.data());
        // Change position 3 of the first sequence: positions 0-2 of it and all of the
        // second sequence must not move; positions 3-5 of the first must.
        for (std::size_t j = 0; j < dim; ++j)
        {
            x[3 * dim + j] += 1.0;
        }
        attn.forward(x.data(), batch, context, after.data());
        for (std::size_t row = 0; row < rows; ++row)
        {
            const bool may_change = row >= 3 && row < context;
            for (std::size_t j = 0; j < dim; ++j)
            {
                if (may_change)
                {
                    EXPECT_NE(before[row * dim + j], after[row * dim + j]) << "row " << row;
                }
                else
                {
                    EXPECT_EQ(before[row * dim + j], after[row * dim + j]) << "row " << row;
                }
            }
        }
        EXPECT_THROW(train::causal_self_attention<double>(8, 3, 1), std::invalid_argument);
    }

    train::gpt_config tiny_config(bool tied)
    {
        train::gpt_config c;
        c.vocab = 7;
        c.context = 5;
        c.layers = 2;
        c.d_model = 8;
        c.heads = 2;
        c.tied_head = tied;
        c.seed = 21;
        return c;
    }

    void expect_gpt_gradients(bool tied)
    {
        train::gpt<double> model(tiny_config(tied));
        // Larger weights than GPT-2's 0.02, so every path carries a visible gradient.
        std::uint64_t seed = 100;
        for (auto& p : model.params())
        {
            if (p.name.find("ln") == std::string::npos)
            {
                train::fill_uniform(p.ref, 0.5, ++seed);
            }
        }
        const std::size_t batch = 2, context = 4;  // shorter than the model's 5
        const std::vector<std::int32_t> ids = {0, 3, 6, 3, 1, 1, 5, 2}, targets = {3, 6, 3, 2, 1, 5, 2, 0};
        const auto loss = [&] { return model.loss(ids.data(), targets.data(), batch, context, false); };
        const double l = model.loss(ids.data(), targets.data(), batch, context, true);
        EXPECT_EQ(l, loss()) << "the loss does not depend on computing gradients";
        for (std::size_t k = 0; k < model.params().size(); ++k)
        {
            const auto analytic = model.grads()[k].ref.values;
            expect_gradient(model.params()[k].ref.data(), analytic.data(), analytic.size(), loss,
                            std::string(model.params()[k].name));
        }
    }

    TEST(transformer_layers, gpt_gradients_match_central_differences)
    {
        expect_gpt_gradients(false);
    }

    TEST(transformer_layers, gpt_with_tied_head_gradients_match_central_differences)
    {
        expect_gpt_gradients(true);
    }

    // Loss and every gradient against PyTorch's (tests/reference/generate_gpt.py: the
    // same model written with torch.nn modules, float64).
    TEST(transformer_layers, gpt_matches_pytorch)
    {
        std::ifstream in(std::string(XOPTIM_TEST_DATA_DIR) + "/gpt.json");
        ASSERT_TRUE(in) << "tests/reference/gpt.json";
        const auto cases = nlohmann::json::parse(in).at("cases");
        ASSERT_EQ(cases.size(), 2u);
        for (const auto& c : cases)
        {
            train::gpt_config config;
            config.vocab = c.at("vocab");
            config.context = c.at("context");
            config.layers = c.at("layers");
            config.d_model = c.at("d_model");
            config.heads = c.at("heads");
            config.tied_head = c.at("tied");
            train::gpt<double> model(config);
            const std::uint64_t seed = c.at("seed");
            const auto& ref = c.at("params");
            ASSERT_EQ(ref.size(), model.params().size());
            for (std::size_t k = 0; k < ref.size(); ++k)
            {
                auto& p = model.params()[k];
                ASSERT_EQ(std::string(p.name), ref[k].at("name").get<std::string>());
                ASSERT_EQ(p.ref.shape(), ref[k].at("shape").get<std::vector<std::size_t>>()) << p.name;
                const bool norm_weight = p.name.find("ln") != std::string::npos && p.name.find("weight") != std::string::npos;
                for (std::size_t i = 0; i < p.ref.size(); ++i)
                {
                    p.ref.values[i] = (norm_weight ? 1 : 0) + 0.5 * xoptim_test::u(seed * 1000 + k, 0, i);
                }
            }
            const auto ids = c.at("ids").get<std::vector<std::int32_t>>();
            const auto targets = c.at("targets").get<std::vector<std::int32_t>>();
            const double loss = model.loss(ids.data(), targets.data(), c.at("batch"), c.at("length"), true);
            EXPECT_NEAR(loss, c.at("loss").get<double>(), 1e-13) << c.at("name");
            for (std::size_t k = 0; k < ref.size(); ++k)
            {
                const auto grad = ref[k].at("grad").get<std::vector<double>>();
                const auto& mine = model.grads()[k].ref.values;
                ASSERT_EQ(mine.size(), grad.size());
                for (std::size_t i = 0; i < grad.size(); ++i)
                {
                    EXPECT_NEAR(mine[i], grad[i], 1e-12 * std::max(1.0, std::abs(grad[i])))
                        << c.at("name") << " " << model.params()[k].name << " element " << i;
                }
            }
        }
    }

    TEST(transformer_layers, gpt_names_its_parameters_as_nanogpt)
    {
        train::gpt<float> untied(tiny_config(false)), tied(tiny_config(true));
        std::vector<std::string> names;
        for (const auto& p : untied.params())
        {
            names.push_back(std::string(p.name));
        }
        ASSERT_EQ(names.size(), 4 + 2 * 12 + 1u);
        EXPECT_EQ(names[0], "tok_embed.weight");
        EXPECT_EQ(names[1], "pos_embed.weight");
        EXPECT_EQ(names[4], "layers.0.attn.qkv.weight");
        EXPECT_EQ(names[25], "layers.1.mlp.proj.bias");
        EXPECT_EQ(names.back(), "head.weight");
        EXPECT_EQ(tied.params().size(), names.size() - 1);
        EXPECT_EQ(untied.params()[4].ref.shape(), (std::vector<std::size_t>{24, 8}));
        // tok 7x8, pos 5x8, per layer 2x(8+8) + 24x8+24 + 8x8+8 + 32x8+32 + 8x32+8, ln_f 16, head 7x8
        EXPECT_EQ(untied.parameter_count(), 56u + 40 + 2 * (32 + 216 + 72 + 288 + 264) + 16 + 56);
    }

    TEST(transformer_layers, gpt_gives_the_same_bits_for_any_thread_count)
    {
        const auto p = xoptim_test::small_gpt_problem(64, 8);  // enough rows for two threads
        const auto run = [&](std::size_t threads) {
            xoptim::set_num_threads(threads);
            train::gpt<float> model(p.config);
            const double l = model.loss(p.ids.data(), p.targets.data(), p.batch, p.config.context, true);
            std::vector<float> all;
            for (const auto& g : model.grads())
            {
                all.insert(all.end(), g.ref.values.begin(), g.ref.values.end());
            }
            return std::make_pair(l, all);
        };
        const auto one = run(1), two = run(2);
        xoptim::set_num_threads(std::max<std::size_t>(1, std::thread::hardware_concurrency()));
        EXPECT_EQ(one.first, two.first);
        EXPECT_TRUE(one.second == two.second);
    }

    TEST(transformer_layers, gpt_bad_input_names_the_mistake)
    {
        train::gpt_config c = tiny_config(false);
        c.heads = 3;
        EXPECT_EQ(thrown<std::invalid_argument>([&] { train::gpt<float> m(c); }),
                  "xoptim::train::gpt_config: heads (3) must divide d_model (8)");
        c = tiny_config(false);
        c.layers = 0;
        EXPECT_EQ(thrown<std::invalid_argument>([&] { train::gpt<float> m(c); }),
                  "xoptim::train::gpt_config: layers must be at least 1 (got 0)");
        train::gpt<float> model(tiny_config(false));
        const std::vector<std::int32_t> ids = {0, 1, 7, 2, 3, 4}, ok = {0, 1, 2, 3, 4, 5};
        EXPECT_EQ(thrown<std::out_of_range>([&] { model.loss(ids.data(), ok.data(), 1, 3, false); }),
                  "xoptim::train::gpt: token id 7 at 2 is not in the vocabulary of 7");
        EXPECT_EQ(thrown<std::out_of_range>([&] { model.loss(ok.data(), ids.data(), 2, 3, true); }),
                  "xoptim::train::gpt: target 7 at 2 is not in the vocabulary of 7");
        EXPECT_EQ(thrown<std::invalid_argument>([&] { model.forward(ok.data(), 1, 6); }),
                  "xoptim::train::gpt: context must be in [1, 5] (got 6)");
        // No batch, and batch x context past an int (it wrapped, and the BLAS wrote
        // through a null buffer).
        EXPECT_EQ(thrown<std::invalid_argument>([&] { model.loss(ok.data(), ok.data(), 0, 5, true); }),
                  "xoptim::train::gpt: batch must be >= 1 (got 0)");
        EXPECT_EQ(thrown<std::invalid_argument>(
                      [&] { model.loss(ok.data(), ok.data(), std::size_t(1) << 63, 2, true); }),
                  "xoptim::train::gpt: batch 9223372036854775808 x context 2 rows do not fit an int");
    }

    // Layers of size 0 are refused (linear's bound 1/sqrt(0) made inf weights), and a
    // backward of another shape than its layer's last forward (it read and wrote past
    // what the forward kept).
    TEST(transformer_layers, layers_refuse_no_size_and_a_backward_of_another_shape)
    {
        EXPECT_EQ(thrown<std::invalid_argument>([] { train::linear<float> l(0, 3, 1); }),
                  "xoptim::train::linear: in must be >= 1 (got 0)");
        EXPECT_EQ(thrown<std::invalid_argument>([] { train::layer_norm<float> n(0); }),
                  "xoptim::train::layer_norm: dim must be >= 1 (got 0)");
        EXPECT_EQ(thrown<std::invalid_argument>([] { train::embedding<float> e(5, 0, 1); }),
                  "xoptim::train::embedding: dim must be >= 1 (got 0)");
        const std::vector<float> x(4 * 8, 0.5f), dy(4 * 8, 1.0f);
        std::vector<float> y(4 * 8), dx(4 * 8);
        train::layer_norm<float> norm(8);
        norm.forward(x.data(), 1, y.data());
        EXPECT_EQ(thrown<std::invalid_argument>([&] { norm.backward(x.data(), dy.data(), 2, dx.data()); }),
                  "xoptim::train::layer_norm: backward of 2 rows, the last forward was of 1 rows (a backward reuses "
                  "what its forward kept)");
        train::mlp<float> ff(8, 16, 1);
        EXPECT_EQ(thrown<std::invalid_argument>([&] { ff.backward(x.data(), dy.data(), 1, dx.data()); }),
                  "xoptim::train::mlp: backward of 1 rows, the last forward was of 0 rows (a backward reuses what "
                  "its forward kept)");
        train::causal_self_attention<float> attention(8, 2, 1);
        attention.forward(x.data(), 1, 2, y.data());
        EXPECT_EQ(thrown<std::invalid_argument>([&] { attention.backward(x.data(), dy.data(), 2, 2, dx.data()); }),
                  "xoptim::train::causal_self_attention: backward of batch 2 x context 2, the last forward was of "
                  "batch 1 x context 2 (a backward reuses what its forward kept)");
        attention.backward(x.data(), dy.data(), 1, 2, dx.data());  // the forward's shape
    }
}
