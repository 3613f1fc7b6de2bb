// Batch size from memory pressure (SPEC section 6): the 50% and 80% boundaries, exact
// for even and odd budgets, the max and base/2 limits, and the argument messages.
#include <gtest/gtest.h>

#include "support/message_of.hpp"

#include <stdexcept>
#include <string>

#include <xoptim/train/batch_size.hpp>

namespace
{
    using xoptim::train::batch_size_policy;

    using xoptim_test::message_of;
}

TEST(batch_size_policy, defaults_follow_the_spec)
{
    const batch_size_policy p{};
    EXPECT_EQ(p.base, 32u);
    EXPECT_EQ(p.max, 64u);
    EXPECT_EQ(p.floor(), 16u);
}

TEST(batch_size_policy, doubles_below_half_halves_above_four_fifths)
{
    const batch_size_policy p{32, 64, 1000};
    EXPECT_EQ(p.next(32, 0), 64u);
    EXPECT_EQ(p.next(32, 499), 64u);
    EXPECT_EQ(p.next(32, 500), 32u);  // exactly 50%: not below
    EXPECT_EQ(p.next(32, 800), 32u);  // exactly 80%: not above
    EXPECT_EQ(p.next(32, 801), 16u);
    EXPECT_EQ(p.next(32, 5000), 16u);
}

TEST(batch_size_policy, boundaries_of_an_odd_budget_are_exact)
{
    const batch_size_policy p{32, 64, 1001};  // 50% = 500.5, 80% = 800.8
    EXPECT_EQ(p.next(32, 500), 64u);
    EXPECT_EQ(p.next(32, 501), 32u);
    EXPECT_EQ(p.next(32, 800), 32u);
    EXPECT_EQ(p.next(32, 801), 16u);
    const batch_size_policy huge{32, 64, ~std::size_t(0)};  // no overflow in 2x or 5x
    EXPECT_EQ(huge.next(32, huge.budget_bytes / 2), 64u);      // 2^63 - 1 < 2^63 - 0.5
    EXPECT_EQ(huge.next(32, huge.budget_bytes / 2 + 1), 32u);
    EXPECT_EQ(huge.next(32, huge.budget_bytes), 16u);
}

TEST(batch_size_policy, stays_within_max_and_half_base)
{
    const batch_size_policy p{32, 64, 1000};
    EXPECT_EQ(p.next(40, 0), 64u);     // capped at max
    EXPECT_EQ(p.next(64, 0), 64u);
    EXPECT_EQ(p.next(20, 900), 16u);   // floored at base/2
    EXPECT_EQ(p.next(16, 900), 16u);
    // Only in the direction the pressure asks: never raised under pressure, never cut
    // while memory is plentiful.
    EXPECT_EQ(p.next(10, 900), 10u);
    EXPECT_EQ(p.next(100, 0), 100u);
    EXPECT_EQ((batch_size_policy{1, 4, 10}.next(1, 9)), 1u);  // floor is at least 1
}

TEST(batch_size_policy, bad_arguments_are_named)
{
    EXPECT_EQ(message_of([] { batch_size_policy{}.next(32, 0); }),
              "xoptim::train::batch_size_policy: budget_bytes must be > 0 (got 0)");
    EXPECT_EQ(message_of([] { batch_size_policy{32, 64, 100}.next(0, 0); }),
              "xoptim::train::batch_size_policy: current_batch must be >= 1 (got 0)");
    EXPECT_EQ(message_of([] { batch_size_policy{32, 16, 100}.next(32, 0); }),
              "xoptim::train::batch_size_policy: max must be >= base (32) (got 16)");
    EXPECT_EQ(message_of([] { batch_size_policy{0, 16, 100}.next(32, 0); }),
              "xoptim::train::batch_size_policy: base must be >= 1 (got 0)");
}
