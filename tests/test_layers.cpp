// The example layers' backward passes against central differences, in double: for a
// loss L = sum(r * f(x)) with fixed random r, every analytic gradient (of the weights,
// the bias and the input) matches (L(x + h) - L(x - h)) / 2h.
#include <gtest/gtest.h>

#include <xoptim/train/layers.hpp>

#include "support/gradient_check.hpp"

namespace
{
    using xoptim_test::dot;
    using xoptim_test::expect_gradient;
    using xoptim_test::random_vector;

    TEST(layers, linear_gradients_match_central_differences)
    {
        const std::size_t batch = 3, in = 5, out = 4;
        xoptim::train::linear<double> layer(in, out, 11);
        auto x = random_vector(batch * in, 12);
        const auto r = random_vector(batch * out, 13);
        std::vector<double> y(batch * out);
        const auto loss = [&] {
            layer.forward(x.data(), batch, y.data());
            return dot(r, y);
        };
        loss();
        std::vector<double> dx(batch * in);
        layer.backward(x.data(), r.data(), batch, dx.data());  // dL/dy = r
        const auto dw = layer.grad_weight.values, db = layer.grad_bias.values;
        expect_gradient(layer.weight.values, dw, loss, "weight");
        expect_gradient(layer.bias.values, db, loss, "bias");
        expect_gradient(x, dx, loss, "input");
    }

    TEST(layers, relu_and_softmax_cross_entropy_gradients_match_central_differences)
    {
        const std::size_t batch = 4, classes = 6;
        auto z = random_vector(batch * classes, 21);
        const std::vector<std::int32_t> labels = {0, 5, 2, 2};
        std::vector<double> d(batch * classes), scratch(batch * classes);
        const auto loss = [&] {
            std::vector<double> a = z;
            xoptim::train::relu(a.data(), a.size());
            return xoptim::train::softmax_cross_entropy(a.data(), labels.data(), batch, classes, scratch.data());
        };
        for (double& v : z)
        {
            v = std::abs(v) < 1e-3 ? 0.5 : v;  // away from ReLU's kink, where the difference quotient lies
        }
        std::vector<double> a = z;
        xoptim::train::relu(a.data(), a.size());
        xoptim::train::softmax_cross_entropy(a.data(), labels.data(), batch, classes, d.data());
        xoptim::train::relu_backward(a.data(), d.data(), d.size());
        expect_gradient(z, d, loss, "logits");
    }

    TEST(layers, embedding_gradient_sums_repeated_ids)
    {
        const std::size_t dim = 3;
        xoptim::train::embedding<double> table(7, dim, 31);
        const std::vector<std::int32_t> ids = {4, 1, 4, 6};
        const auto r = random_vector(ids.size() * dim, 32);
        std::vector<double> out(ids.size() * dim);
        const auto loss = [&] {
            table.forward(ids.data(), ids.size(), out.data());
            return dot(r, out);
        };
        table.backward(ids.data(), r.data(), ids.size());
        expect_gradient(table.weight.values, table.grad_weight.values, loss, "table");
        EXPECT_THROW(table.forward(std::vector<std::int32_t>{7}.data(), 1, out.data()), std::out_of_range);
    }

    TEST(layers, softmax_cross_entropy_is_log_classes_for_equal_logits_and_counts_correct_rows)
    {
        const std::vector<float> z = {0, 0, 0, 0, 1, 3, 2, 0};
        const std::vector<std::int32_t> labels = {2, 1};
        std::vector<float> d(z.size());
        const double l = xoptim::train::softmax_cross_entropy(z.data(), labels.data(), 1, 4, d.data());
        EXPECT_NEAR(l, std::log(4.0), 1e-12);
        EXPECT_EQ(xoptim::train::count_correct(z.data() + 4, labels.data() + 1, 1, 4), 1u);
        EXPECT_EQ(xoptim::train::count_correct(z.data() + 4, labels.data(), 1, 4), 0u);
        // A label that is no class is an error for both (count_correct had counted it wrong).
        const std::vector<std::int32_t> bad = {-1, 4};
        for (const std::int32_t* label : {bad.data(), bad.data() + 1})
        {
            EXPECT_THROW(xoptim::train::count_correct(z.data(), label, 1, 4), std::out_of_range);
            EXPECT_THROW(xoptim::train::softmax_cross_entropy(z.data(), label, 1, 4, d.data()), std::out_of_range);
        }
    }
}
