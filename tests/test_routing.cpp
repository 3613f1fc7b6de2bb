// Routing rules: first match wins, the fallback takes the rest, no match is an error
// naming the parameter; the hybrid's default split and its table.
#include <gtest/gtest.h>

#include <xoptim/optim/routing.hpp>

#include "support/message_of.hpp"

namespace
{
    using shapes_t = std::vector<std::vector<std::size_t>>;

    TEST(routing, glob_patterns)
    {
        EXPECT_TRUE(xoptim::glob_match("*embed*", "tok_embedding.weight"));
        EXPECT_TRUE(xoptim::glob_match("layers.?.weight", "layers.3.weight"));
        EXPECT_FALSE(xoptim::glob_match("layers.?.weight", "layers.12.weight"));
        EXPECT_TRUE(xoptim::glob_match("*", ""));
        EXPECT_FALSE(xoptim::glob_match("head", "head.weight"));
        EXPECT_TRUE(xoptim::glob_match("a*b*c", "axxbyyc"));
        EXPECT_FALSE(xoptim::glob_match("a*b*c", "axxbyy"));
    }

    // SPEC section 3's example, exactly.
    // Names with a '*' or '?' of their own: a pattern's '*' still matches a run there.
    // Expected values: Python's fnmatch.fnmatchcase(name, pattern), as replay's routing
    // documents (docs/replay.md).
    TEST(routing, glob_stars_match_names_holding_stars)
    {
        EXPECT_TRUE(xoptim::glob_match("*", "*x"));
        EXPECT_TRUE(xoptim::glob_match("a*", "a*b"));
        EXPECT_TRUE(xoptim::glob_match("*b", "**b"));
        EXPECT_TRUE(xoptim::glob_match("a*c", "a*bc"));
        EXPECT_TRUE(xoptim::glob_match("a?c", "a*c"));
        EXPECT_FALSE(xoptim::glob_match("a*c", "a*b"));
        EXPECT_FALSE(xoptim::glob_match("?", "**"));
    }

    TEST(routing, the_hybrid_example_routes_as_listed)
    {
        xoptim::routing r;
        r.add("muon", xoptim::hidden_matrix({"*embed*", "output*"})).fallback("adamw");
        const std::vector<std::string> names = {"embedding.weight", "linear1.weight", "linear2.weight",
                                                "output.weight"};
        const shapes_t shapes = {{100, 64}, {128, 64}, {64, 128}, {10, 64}};
        EXPECT_EQ(r.table(names, shapes), "embedding.weight (100, 64) -> adamw\n"
                                          "linear1.weight (128, 64) -> muon\n"
                                          "linear2.weight (64, 128) -> muon\n"
                                          "output.weight (10, 64) -> adamw\n");
    }

    TEST(routing, first_match_wins_and_the_fallback_takes_the_rest)
    {
        xoptim::routing r;
        r.add("signsgd", xoptim::name_matches({"puzzle_emb*"}))
            .add("muon", xoptim::hidden_matrix({"*embed*", "layers.0.*"}))
            .fallback("adamw");
        EXPECT_EQ(r.optimizer(r.route("puzzle_emb.weight", {1000, 16})), "signsgd");
        EXPECT_EQ(r.optimizer(r.route("layers.0.weight", {64, 64})), "adamw");  // first layer kept off Muon
        EXPECT_EQ(r.optimizer(r.route("layers.1.weight", {64, 64})), "muon");
        EXPECT_EQ(r.optimizer(r.route("layers.1.bias", {64})), "adamw");
        EXPECT_EQ(r.optimizer(r.route("norm.scale", {})), "adamw");
    }

    TEST(routing, no_match_without_fallback_names_the_parameter)
    {
        xoptim::routing r;
        r.add("muon", xoptim::min_ndim(2));
        try
        {
            r.route("blocks.3.bias", {64});
            FAIL() << "an unmatched parameter was routed";
        }
        catch (const std::invalid_argument& e)
        {
            EXPECT_STREQ(e.what(),
                         "xoptim::routing: parameter 'blocks.3.bias' (64,) matches no rule and there is no fallback");
        }
        r.fallback("adamw");
        EXPECT_THROW(r.add("lion", xoptim::min_ndim(1)), std::logic_error);  // nothing after the fallback
    }

    // An empty predicate is refused where it is given, naming the rule (it threw
    // bad_function_call, naming nothing, at the first step).
    TEST(routing, an_empty_predicate_is_refused_naming_the_rule)
    {
        xoptim::routing r;
        EXPECT_EQ(xoptim_test::message_of<std::invalid_argument>([&] { r.add("muon", xoptim::param_predicate{}); }),
                  "xoptim::routing: the rule for 'muon' is an empty param_predicate");
        EXPECT_EQ(xoptim_test::message_of<std::invalid_argument>(
                      [&] { xoptim::all_of(xoptim::min_ndim(2), xoptim::param_predicate{}); }),
                  "xoptim::routing: all_of's second predicate is an empty param_predicate");
        EXPECT_EQ(xoptim_test::message_of<std::invalid_argument>([&] { xoptim::none_of(xoptim::param_predicate{}); }),
                  "xoptim::routing: none_of's predicate is an empty param_predicate");
        r.fallback("adamw");  // the refused rule left nothing behind
        EXPECT_EQ(r.optimizer(r.route("w", {4, 4})), "adamw");
    }
}
