// Muon beyond the reference trajectories: zero gradients, refused shapes, the scalings.
#include <gtest/gtest.h>

#include <cmath>

#include <xoptim/optim/muon.hpp>

namespace
{
    TEST(muon, zero_gradient_leaves_the_update_finite)
    {
        std::vector<float> w(6 * 9, 0.25f), g(6 * 9, 0.0f);
        xoptim::muon_options o;
        o.weight_decay = 0.1;
        xoptim::muon opt(o);
        for (int t = 0; t < 3; ++t)
        {
            opt.step(xoptim::view(w.data(), {6, 9}), xoptim::view(g.data(), {6, 9}));
        }
        // NS(0) = 0 (no 0/0): only the decay moves the weights.
        const float decayed = 0.25f * float(std::pow(1 - 0.02 * 0.1, 3));
        for (float x : w)
        {
            ASSERT_TRUE(std::isfinite(x));
            ASSERT_FLOAT_EQ(x, decayed);
        }
    }

    TEST(muon, vectors_are_refused_by_name)
    {
        std::vector<float> w(12, 1), b(4, 1), gw(12, 1), gb(4, 1);
        auto matrix = xoptim::view(w.data(), {3, 4});
        xoptim::muon opt;
        try
        {
            opt.step(std::make_tuple(xoptim::named("w", matrix), xoptim::named("bias", b)),
                     std::make_tuple(xoptim::view(gw.data(), {3, 4}), gb));
            FAIL() << "a 1-D parameter was accepted";
        }
        catch (const std::invalid_argument& e)
        {
            EXPECT_STREQ(e.what(), "xoptim::muon: parameter 'bias': Muon orthogonalizes matrices; this parameter "
                                   "is 1-D (4,) (give it to AdamW)");
        }
        EXPECT_TRUE(opt.state().empty());
        EXPECT_EQ(w, std::vector<float>(12, 1));
    }

    TEST(muon, bad_options_name_the_field)
    {
        const auto message = [](const xoptim::muon_options& o) {
            try
            {
                xoptim::muon opt(o);
            }
            catch (const std::invalid_argument& e)
            {
                return std::string(e.what());
            }
            return std::string("no exception");
        };
        xoptim::muon_options o;
        o.eps = 0;
        EXPECT_EQ(message(o), "xoptim::muon: eps must be > 0 and finite (got 0)");
        o = {};
        o.momentum = 1;
        EXPECT_EQ(message(o), "xoptim::muon: momentum must be in [0, 1) (got 1)");
        o = {};
        o.ns_steps = 0;
        EXPECT_EQ(message(o), "xoptim::muon: ns_steps must be >= 1 (got 0)");
    }

    TEST(muon, lr_adjustments)
    {
        xoptim::muon original;
        EXPECT_DOUBLE_EQ(original.scale(1024, 256), 2.0);  // sqrt(max(1, rows / cols))
        EXPECT_DOUBLE_EQ(original.scale(256, 1024), 1.0);
        xoptim::muon_options o;
        o.lr_adjust = xoptim::muon_lr_adjust::match_rms_adamw;
        xoptim::muon matched(o);
        EXPECT_DOUBLE_EQ(matched.scale(256, 1024), 0.2 * 32);  // 0.2 sqrt(max(rows, cols))
        // A 4-D tensor is viewed as (shape[0], rest), not by its last two dimensions.
        const auto [rows, cols] = xoptim::muon::matrix_view({64, 32, 3, 3});
        EXPECT_EQ(rows, 64u);
        EXPECT_EQ(cols, 288u);
    }
}
