// Sparse embedding rows: untouched rows stay bit-identical, duplicate ids are summed,
// bad ids change nothing.
#include <gtest/gtest.h>

#include <cmath>

#include <xoptim/optim/sparse.hpp>

namespace
{
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
}
