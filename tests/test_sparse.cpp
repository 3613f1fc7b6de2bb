// Sparse embedding rows: untouched rows stay bit-identical, duplicate ids are summed,
// bad ids change nothing.
#include <gtest/gtest.h>

#include <cmath>

#include <xtensor/xtensor.hpp>
#include <xtensor/xview.hpp>

#include <xoptim/optim/sparse.hpp>
#include <xoptim/schedule/schedule.hpp>

#include "support/message_of.hpp"

namespace
{
    using xoptim_test::message_of;

    std::vector<float> table_values(std::size_t n)
    {
        std::vector<float> t(n);
        for (std::size_t i = 0; i < n; ++i)
        {
            t[i] = float(std::sin(0.1 * double(i)));
        }
        return t;
    }

    TEST(sparse_signsgd, only_touched_rows_change_and_duplicates_are_summed)
    {
        const std::size_t rows = 50, dim = 19;
        auto table = table_values(rows * dim);
        const auto before = table;
        auto view = xoptim::view(table.data(), {rows, dim});
        const std::vector<std::int64_t> ids = {7, 3, 7, 42};
        std::vector<float> grads(ids.size() * dim);
        for (std::size_t j = 0; j < dim; ++j)
        {
            grads[0 * dim + j] = 1.0f;                 // row 7, first
            grads[1 * dim + j] = -0.5f;                // row 3
            // row 7 again: the sum's sign differs from either gradient's alone
            grads[2 * dim + j] = j % 2 ? -0.25f : -3.0f;  // sums +0.75 (odd j) and -2 (even j)
            grads[3 * dim + j] = j == 0 ? 0.0f : 3.0f; // row 42; sign(0) = 0
        }
        xoptim::signsgd_options o;
        o.lr = 0.5;
        o.weight_decay = 0.1;
        xoptim::sparse_signsgd opt(o);
        opt.step(view, ids, xoptim::view(grads.data(), {ids.size(), dim}));

        const float decay = float(1 - 0.5 * 0.1);
        for (std::size_t r = 0; r < rows; ++r)
        {
            for (std::size_t j = 0; j < dim; ++j)
            {
                const float p = before[r * dim + j];
                float want = p;  // touched rows: one rounding of p * decay (~0.5) apart at most (fma or not)
                if (r == 7)
                    want = p * decay - 0.5f * (j % 2 ? 1.0f : -1.0f);
                else if (r == 3)
                    want = p * decay + 0.5f;
                else if (r == 42)
                    want = p * decay - 0.5f * (j == 0 ? 0.0f : 1.0f);
                if (r == 7 || r == 3 || r == 42)
                {
                    ASSERT_NEAR(table[r * dim + j], want, 1.2e-7) << "row " << r << ", column " << j;
                }
                else
                {
                    ASSERT_EQ(table[r * dim + j], p) << "untouched row " << r << " changed";
                }
            }
        }
    }

    TEST(sparse_signsgd, bad_ids_and_sizes_change_nothing)
    {
        auto table = table_values(10 * 4);
        const auto before = table;
        auto view = xoptim::view(table.data(), {10, 4});
        std::vector<float> grads(2 * 4, 1.0f);
        xoptim::sparse_signsgd opt;
        try
        {
            opt.step(view, {1, 10}, xoptim::view(grads.data(), {2, 4}));
            FAIL() << "an id past the table was accepted";
        }
        catch (const std::invalid_argument& e)
        {
            EXPECT_STREQ(e.what(), "xoptim::sparse_signsgd: row id 10 at position 1 is outside the table's 10 rows");
        }
        try
        {
            opt.step(view, {1, 2, 3}, xoptim::view(grads.data(), {2, 4}));
            FAIL() << "too few gradient rows were accepted";
        }
        catch (const std::invalid_argument& e)
        {
            EXPECT_STREQ(e.what(), "xoptim::sparse_signsgd: row gradients have 8 elements, expected 3 ids x 4");
        }
        EXPECT_EQ(table, before);
    }

    // Rows are found at data + id * dim: a strided table (or gradient) is refused, as the
    // dense optimizers refuse strided parameters (it had written other elements, and a
    // reversed view read and wrote outside its buffer).
    TEST(sparse_signsgd, a_strided_table_or_gradient_is_refused)
    {
        xt::xtensor<float, 2> big = xt::zeros<float>({4, 4});
        auto columns = xt::view(big, xt::all(), xt::range(0, 2));
        auto reversed = xt::view(big, xt::range(3, xt::placeholders::_, -1), xt::all());
        xt::xtensor<float, 2> rows = xt::ones<float>({2, 4});
        auto strided_rows = xt::view(rows, xt::range(0, 1), xt::range(0, 4, 2));
        xoptim::sparse_signsgd opt;
        const std::string table_message
            = "xoptim::sparse_signsgd: the table is not contiguous (a strided view cannot be stepped in place)";
        EXPECT_EQ(message_of([&] {
                      opt.step(columns, {1}, xt::xtensor<float, 2>(xt::ones<float>({1, 2})));
                  }),
                  table_message);
        EXPECT_EQ(message_of([&] {
                      opt.step(reversed, {1}, xt::xtensor<float, 2>(xt::ones<float>({1, 4})));
                  }),
                  table_message);
        xt::xtensor<float, 2> narrow = xt::zeros<float>({4, 2});
        EXPECT_EQ(message_of([&] { opt.step(narrow, {1}, strided_rows); }),
                  "xoptim::sparse_signsgd: the row gradients are not contiguous");
        EXPECT_TRUE(xt::all(xt::equal(big, 0.0f)));
        EXPECT_TRUE(xt::all(xt::equal(narrow, 0.0f)));
    }
}

namespace
{
    // The two-optimizer setup is AdamW and sparse SignSGD stepped side by side, with
    // SPEC section 3's defaults, and a bad half changes neither.
    struct setup_fixture
    {
        std::vector<float> table = table_values(8 * 3);
        std::vector<float> weight = table_values(5);
        std::vector<float> bias = table_values(2);
        std::vector<float> weight_grad = std::vector<float>(5, 0.25f);
        std::vector<float> bias_grad = std::vector<float>(2, -1.0f);
        std::vector<std::int64_t> ids = {2, 5, 2};
        std::vector<float> rows = std::vector<float>(3 * 3, 0.5f);
    };

    // Neither half of a refused step moved anything, and AdamW made no state.
    void expect_nothing_stepped(const setup_fixture& f, const setup_fixture& before,
                                xoptim::sparse_embedding_optimizer& opt)
    {
        EXPECT_EQ(f.table, before.table);
        EXPECT_EQ(f.weight, before.weight);
        EXPECT_EQ(f.bias, before.bias);
        EXPECT_EQ(opt.dense().step_count(), 0u);
        EXPECT_TRUE(opt.dense().state().empty());
    }

    TEST(sparse_embedding_optimizer, is_adamw_and_sparse_signsgd_with_the_spec_defaults)
    {
        setup_fixture a, b;
        xoptim::sparse_embedding_optimizer opt;
        EXPECT_EQ(opt.dense().options().lr, 1e-4);
        EXPECT_EQ(opt.dense().options().betas[1], 0.95);
        EXPECT_EQ(opt.dense().options().weight_decay, 0.1);
        EXPECT_EQ(opt.embedding().options().lr, 1e-2);
        EXPECT_EQ(opt.embedding().options().weight_decay, 0.1);

        xoptim::adamw dense({1e-4, {0.9, 0.95}, 1e-8, 0.1});
        xoptim::sparse_signsgd embedding({1e-2, 0.1});
        for (int t = 0; t < 3; ++t)
        {
            auto table_a = xoptim::view(a.table.data(), {8, 3});
            opt.step(table_a, a.ids, xoptim::view(a.rows.data(), {3, 3}), std::tie(a.weight, a.bias),
                     std::tie(a.weight_grad, a.bias_grad));
            auto table_b = xoptim::view(b.table.data(), {8, 3});
            dense.step(std::tie(b.weight, b.bias), std::tie(b.weight_grad, b.bias_grad));
            embedding.step(table_b, b.ids, xoptim::view(b.rows.data(), {3, 3}));
        }
        EXPECT_EQ(a.table, b.table);
        EXPECT_EQ(a.weight, b.weight);
        EXPECT_EQ(a.bias, b.bias);
        EXPECT_NE(a.table, table_values(8 * 3));
        EXPECT_EQ(opt.dense().step_count(), 3u);
    }

    TEST(sparse_embedding_optimizer, a_bad_half_changes_nothing)
    {
        setup_fixture f;
        const setup_fixture before;
        xoptim::sparse_embedding_optimizer opt;
        auto table = xoptim::view(f.table.data(), {8, 3});
        f.ids[1] = 8;  // past the table: the dense half must not step either
        EXPECT_THROW(opt.step(table, f.ids, xoptim::view(f.rows.data(), {3, 3}), std::tie(f.weight, f.bias),
                              std::tie(f.weight_grad, f.bias_grad)),
                     std::invalid_argument);
        f.ids[1] = 5;
        std::vector<float> short_grad(4, 1.0f);  // the dense half is wrong: no row may move
        EXPECT_THROW(opt.step(table, f.ids, xoptim::view(f.rows.data(), {3, 3}), std::tie(f.weight, f.bias),
                              std::tie(short_grad, f.bias_grad)),
                     std::invalid_argument);
        expect_nothing_stepped(f, before, opt);
    }

    // The table among the dense parameters (or their gradients), or the row gradients
    // among the dense parameters, is refused before either half steps: it had been
    // stepped twice, by AdamW and by SignSGD.
    TEST(sparse_embedding_optimizer, a_table_among_the_dense_set_is_refused)
    {
        setup_fixture f;
        const setup_fixture before;
        xoptim::sparse_embedding_optimizer opt;
        auto table = xoptim::view(f.table.data(), {8, 3});
        const auto rows = xoptim::view(f.rows.data(), {3, 3});
        std::vector<float> table_grad(f.table.size(), 0.5f);
        const std::string table_in = "xoptim::sparse_embedding_optimizer: the embedding table shares memory with the ";
        const std::string tail = " (the table and its gradients must not be among the dense set)";
        EXPECT_EQ(message_of([&] {
                      opt.step(table, f.ids, rows,
                               std::make_tuple(xoptim::named("w", f.weight), xoptim::named("emb", f.table)),
                               std::tie(f.weight_grad, table_grad));
                  }),
                  table_in + "dense parameter 'emb'" + tail);
        auto part = xoptim::view(f.table.data() + 3, {2});
        std::vector<float> part_grad(2, 0.5f);
        EXPECT_EQ(message_of([&] {
                      opt.step(table, f.ids, rows, std::tie(f.weight, part), std::tie(f.weight_grad, part_grad));
                  }),
                  table_in + "dense parameter '1'" + tail);
        EXPECT_EQ(message_of([&] {
                      auto grad_in_table = xoptim::view(f.table.data() + 10, {5});
                      opt.step(table, f.ids, rows, std::tie(f.weight), std::tie(grad_in_table));
                  }),
                  table_in + "gradient of dense parameter '0'" + tail);
        auto rows_in_weight = xoptim::view(f.weight.data(), {1, 3});
        EXPECT_EQ(message_of(
                      [&] { opt.step(table, {2}, rows_in_weight, std::tie(f.weight), std::tie(f.weight_grad)); }),
                  "xoptim::sparse_embedding_optimizer: the row gradients share memory with the dense parameter '0'"
                      + tail);
        expect_nothing_stepped(f, before, opt);
    }

    // A refused step leaves the embedding's lr too (it had taken AdamW's scheduled lr
    // for a step that was not taken).
    TEST(sparse_embedding_optimizer, a_refused_step_keeps_the_embeddings_lr)
    {
        setup_fixture f;
        xoptim::sparse_embedding_optimizer opt;
        opt.dense().schedule("lr", xoptim::linear(1e-4, 0.0, 10));
        auto table = xoptim::view(f.table.data(), {8, 3});
        const auto rows = xoptim::view(f.rows.data(), {3, 3});
        opt.step(table, f.ids, rows, std::tie(f.weight, f.bias), std::tie(f.weight_grad, f.bias_grad));
        const double lr = opt.embedding().options().lr;
        f.ids[1] = 99;
        EXPECT_THROW(opt.step(table, f.ids, rows, std::tie(f.weight, f.bias), std::tie(f.weight_grad, f.bias_grad)),
                     std::invalid_argument);
        EXPECT_EQ(opt.embedding().options().lr, lr);
        EXPECT_EQ(opt.dense().step_count(), 1u);
    }
}
