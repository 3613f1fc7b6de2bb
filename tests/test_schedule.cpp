// Schedules: values against the formulas of tests/reference/generate_schedules.py, the
// messages for bad arguments, describe(), numbers as constants, products and join.
#include <gtest/gtest.h>

#include "support/message_of.hpp"

#include <cmath>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <xoptim/schedule/schedule.hpp>

namespace
{
    using xoptim::schedule;

    using xoptim_test::message_of;

    // The reference file's schedule objects, built with the factories (every argument is written).
    schedule build(const nlohmann::json& j)
    {
        const auto num = [&](const char* key) { return j.at(key).get<double>(); };
        const auto count = [&](const char* key) { return j.at(key).get<long long>(); };
        const auto kind = j.at("kind").get<std::string>();
        if (kind == "constant")
        {
            return xoptim::constant(num("value"));
        }
        if (kind == "linear")
        {
            return xoptim::linear(num("from"), num("to"), count("steps"));
        }
        if (kind == "cosine_decay")
        {
            return xoptim::cosine_decay(num("base"), count("steps"), num("min_ratio"));
        }
        if (kind == "warmup_cosine")
        {
            return xoptim::warmup_cosine(num("base"), count("total_steps"), count("warmup_steps"), num("min_ratio"));
        }
        if (kind == "step_decay")
        {
            return xoptim::step_decay(num("base"), count("step_size"), num("gamma"));
        }
        if (kind == "exponential_decay")
        {
            return xoptim::exponential_decay(num("base"), num("gamma"));
        }
        std::vector<schedule> parts;
        for (const auto& part : j.at(kind == "join" ? "schedules" : "factors"))
        {
            parts.push_back(build(part));
        }
        if (kind == "join")
        {
            return xoptim::join(parts, j.at("boundaries").get<std::vector<std::size_t>>());
        }
        schedule s = parts.at(0);
        for (std::size_t i = 1; i < parts.size(); ++i)
        {
            s = s * parts[i];
        }
        return s;
    }

    TEST(schedule, matches_reference_formulas)
    {
        std::ifstream in(XOPTIM_TEST_DATA_DIR "/schedules.json");
        ASSERT_TRUE(in) << "cannot open schedules.json";
        const auto doc = nlohmann::json::parse(in);
        std::size_t checked = 0;
        for (const auto& c : doc.at("cases"))
        {
            const schedule s = build(c.at("schedule"));
            for (const auto& kv : c.at("values"))
            {
                const auto k = kv[0].get<std::size_t>();
                const auto want = kv[1].get<double>();
                // Same operations in the same order; 1e-15 leaves room for another libm's
                // cos or pow and for a compiler contracting a * b + c into an fma.
                EXPECT_LE(std::abs(s(k) - want), 1e-15 * std::abs(want))
                    << c.at("name") << " step " << k << ": got " << s(k) << ", want " << want;
                ++checked;
            }
        }
        EXPECT_GT(checked, 400u);
    }

    TEST(schedule, warmup_starts_at_zero_and_ends_held)
    {
        const auto s = xoptim::warmup_cosine(1e-4, 10000);  // warmup_steps 2000, min_ratio 0.1
        EXPECT_EQ(s(0), 0.0);
        EXPECT_DOUBLE_EQ(s(1000), 0.5e-4);
        EXPECT_DOUBLE_EQ(s(2000), 1e-4);
        EXPECT_EQ(s(10000), 1e-4 * 0.1);
        EXPECT_EQ(s(std::numeric_limits<std::size_t>::max()), 1e-4 * 0.1);
        EXPECT_EQ(xoptim::linear(0.1, 0.0, 3)(3), 0.0);  // held at `to` exactly, never -1e-17
    }

    TEST(schedule, describe_names_every_argument)
    {
        EXPECT_EQ(xoptim::constant(1e-3).describe(), "constant(value=0.001)");
        EXPECT_EQ(xoptim::linear(0, 1e-3, 100).describe(), "linear(from=0, to=0.001, steps=100)");
        EXPECT_EQ(xoptim::cosine_decay(1e-3, 1000).describe(), "cosine_decay(base=0.001, steps=1000, min_ratio=0)");
        EXPECT_EQ(xoptim::warmup_cosine(1e-4, 10000).describe(),
                  "warmup_cosine(base=0.0001, warmup_steps=2000, total_steps=10000, min_ratio=0.1)");
        EXPECT_EQ(xoptim::step_decay(0.05, 30, 0.1).describe(), "step_decay(base=0.05, step_size=30, gamma=0.1)");
        EXPECT_EQ(xoptim::exponential_decay(0.1, 0.99).describe(), "exponential_decay(base=0.1, gamma=0.99)");
        EXPECT_EQ(xoptim::join({xoptim::linear(0, 1e-3, 100), 1e-3}, {100}).describe(),
                  "join(schedules=[linear(from=0, to=0.001, steps=100), constant(value=0.001)], boundaries=[100])");
    }

    TEST(schedule, describe_numbers_read_back_exactly)
    {
        const double x = 0.1 + 0.2;
        const std::string d = xoptim::constant(x).describe();
        EXPECT_EQ(d, "constant(value=0.30000000000000004)");
        EXPECT_EQ(std::stod(d.substr(15)), x);
        EXPECT_EQ(xoptim::constant(1.0 / 3).describe(), "constant(value=0.3333333333333333)");
        EXPECT_EQ(xoptim::constant(-2.5e-300).describe(), "constant(value=-2.5e-300)");
    }

    TEST(schedule, a_number_is_a_constant)
    {
        const auto at = [](const schedule& s, std::size_t k) { return s(k); };
        EXPECT_EQ(at(1e-3, 12345), 1e-3);
        const schedule two = 2;
        EXPECT_TRUE(two.is_constant());
        EXPECT_EQ(two(0), 2.0);
        EXPECT_EQ(two.describe(), "constant(value=2)");
        EXPECT_FALSE(xoptim::linear(0, 1, 10).is_constant());
    }

    TEST(schedule, products_multiply_and_describe_numbers_bare)
    {
        const auto cosine = xoptim::cosine_decay(1.0, 10);
        const schedule half = 0.5 * cosine;
        const schedule twice = cosine * 2;
        const schedule both = half * xoptim::exponential_decay(1.0, 0.9);
        for (std::size_t k : {0u, 3u, 10u, 11u})
        {
            EXPECT_EQ(half(k), 0.5 * cosine(k));
            EXPECT_EQ(twice(k), cosine(k) * 2);
            EXPECT_EQ(both(k), 0.5 * cosine(k) * std::pow(0.9, double(k)));
        }
        EXPECT_EQ(half.describe(), "0.5 * cosine_decay(base=1, steps=10, min_ratio=0)");
        EXPECT_EQ(twice.describe(), "cosine_decay(base=1, steps=10, min_ratio=0) * 2");
        EXPECT_EQ(both.describe(),
                  "0.5 * cosine_decay(base=1, steps=10, min_ratio=0) * exponential_decay(base=1, gamma=0.9)");
        EXPECT_FALSE(half.is_constant());
    }

    TEST(schedule, join_restarts_the_count_at_each_boundary)
    {
        const auto s = xoptim::join({1.0, xoptim::linear(0, 1, 10), 5.0}, {5, 10});
        EXPECT_EQ(s(4), 1.0);
        EXPECT_EQ(s(5), 0.0);  // linear's step 0
        EXPECT_EQ(s(6), 0.1);
        EXPECT_EQ(s(9), 0.4);
        EXPECT_EQ(s(10), 5.0);
        EXPECT_EQ(s(1000), 5.0);
        EXPECT_EQ(xoptim::join({3.0}, {})(7), 3.0);
    }

    TEST(schedule, copies_share_and_outlive_their_sources)
    {
        const schedule s = [] {
            const auto warm = xoptim::linear(0, 1, 4);
            return xoptim::join({warm, 0.5 * warm}, {4});
        }();
        EXPECT_EQ(s(2), 0.5);
        EXPECT_EQ(s(6), 0.25);
        schedule t = 1.0;
        t = s;
        EXPECT_EQ(&t.describe(), &s.describe());
    }

    TEST(schedule, a_callable_of_ones_own)
    {
        const schedule s([](std::size_t k) { return 1.0 / double(k + 1); }, "inverse(k + 1)");
        EXPECT_EQ(s(3), 0.25);
        EXPECT_EQ((2 * s).describe(), "2 * inverse(k + 1)");
    }

    TEST(bad_schedule_arguments, name_the_schedule_and_the_argument)
    {
        const double nan = std::numeric_limits<double>::quiet_NaN();
        const double inf = std::numeric_limits<double>::infinity();
        const int minus_one = -1;
        using namespace xoptim;
        EXPECT_EQ(message_of([&] { constant(nan); }), "xoptim::constant: value must be finite (got nan)");
        EXPECT_EQ(message_of([&] { schedule s = inf; }), "xoptim::constant: value must be finite (got inf)");
        EXPECT_EQ(message_of([&] { linear(inf, 0, 1); }), "xoptim::linear: from must be finite (got inf)");
        EXPECT_EQ(message_of([&] { linear(0, nan, 1); }), "xoptim::linear: to must be finite (got nan)");
        EXPECT_EQ(message_of([&] { linear(0, 1, 0); }), "xoptim::linear: steps must be >= 1 (got 0)");
        EXPECT_EQ(message_of([&] { linear(0, 1, minus_one); }), "xoptim::linear: steps must be >= 1 (got -1)");
        EXPECT_EQ(message_of([&] { cosine_decay(nan, 10); }), "xoptim::cosine_decay: base must be finite (got nan)");
        EXPECT_EQ(message_of([&] { cosine_decay(1, -5); }), "xoptim::cosine_decay: steps must be >= 1 (got -5)");
        EXPECT_EQ(message_of([&] { cosine_decay(1, 10, 1.5); }),
                  "xoptim::cosine_decay: min_ratio must be in [0, 1] (got 1.5)");
        EXPECT_EQ(message_of([&] { cosine_decay(1, 10, nan); }),
                  "xoptim::cosine_decay: min_ratio must be in [0, 1] (got nan)");
        EXPECT_EQ(message_of([&] { warmup_cosine(inf, 10000); }),
                  "xoptim::warmup_cosine: base must be finite (got inf)");
        EXPECT_EQ(message_of([&] { warmup_cosine(1e-4, 100); }),
                  "xoptim::warmup_cosine: total_steps must be > warmup_steps (got total_steps 100, warmup_steps 2000)");
        EXPECT_EQ(message_of([&] { warmup_cosine(1e-4, 50, 50); }),
                  "xoptim::warmup_cosine: total_steps must be > warmup_steps (got total_steps 50, warmup_steps 50)");
        EXPECT_EQ(message_of([&] { warmup_cosine(1e-4, 100, minus_one); }),
                  "xoptim::warmup_cosine: warmup_steps must be >= 0 (got -1)");
        EXPECT_EQ(message_of([&] { warmup_cosine(1e-4, 10000, 2000, -0.5); }),
                  "xoptim::warmup_cosine: min_ratio must be in [0, 1] (got -0.5)");
        EXPECT_EQ(message_of([&] { step_decay(nan, 10, 0.5); }), "xoptim::step_decay: base must be finite (got nan)");
        EXPECT_EQ(message_of([&] { step_decay(1, 0, 0.5); }), "xoptim::step_decay: step_size must be >= 1 (got 0)");
        EXPECT_EQ(message_of([&] { step_decay(1, 10, 0); }), "xoptim::step_decay: gamma must be > 0 and finite (got 0)");
        EXPECT_EQ(message_of([&] { step_decay(1, 10, inf); }),
                  "xoptim::step_decay: gamma must be > 0 and finite (got inf)");
        EXPECT_EQ(message_of([&] { exponential_decay(inf, 0.5); }),
                  "xoptim::exponential_decay: base must be finite (got inf)");
        EXPECT_EQ(message_of([&] { exponential_decay(1, -0.5); }),
                  "xoptim::exponential_decay: gamma must be > 0 and finite (got -0.5)");
        EXPECT_EQ(message_of([&] { join({}, {}); }), "xoptim::join: schedules must not be empty");
        EXPECT_EQ(message_of([&] { join({1.0, 2.0}, {}); }),
                  "xoptim::join: boundaries must have one entry fewer than schedules (got 0 boundaries for 2 schedules)");
        EXPECT_EQ(message_of([&] { join({1.0, 2.0, 3.0}, {10, 10}); }),
                  "xoptim::join: boundaries must be strictly increasing (got boundaries[1] = 10 after boundaries[0] = 10)");
    }
}
