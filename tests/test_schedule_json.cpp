// tools/schedule_json.hpp: every reference schedule read from its JSON form, defaults,
// plain numbers, and messages naming the schedule and the key.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <string>

#include "../tools/schedule_json.hpp"

namespace
{
    using nlohmann::json;
    using xoptim::tools::schedule_from_json;

    std::string message_of(const json& j)
    {
        try
        {
            schedule_from_json(j, "lr");
        }
        catch (const std::invalid_argument& e)
        {
            return e.what();
        }
        return "no std::invalid_argument thrown";
    }

    TEST(schedule_json, reads_every_reference_schedule)
    {
        std::ifstream in(XOPTIM_TEST_DATA_DIR "/schedules.json");
        ASSERT_TRUE(in) << "cannot open schedules.json";
        const json doc = json::parse(in);
        for (const auto& c : doc.at("cases"))
        {
            const auto s = schedule_from_json(c.at("schedule"), c.at("name").get<std::string>());
            for (const auto& kv : c.at("values"))
            {
                const auto want = kv[1].get<double>();
                EXPECT_LE(std::abs(s(kv[0].get<std::size_t>()) - want), 1e-15 * std::abs(want)) << c.at("name");
            }
        }
    }

    TEST(schedule_json, defaults_and_numbers)
    {
        const auto w = schedule_from_json(json::parse(R"({"kind": "warmup_cosine", "base": 1e-4, "total_steps": 10000})"),
                                          "lr");
        EXPECT_EQ(w.describe(), xoptim::warmup_cosine(1e-4, 10000, 2000, 0.1).describe());
        EXPECT_EQ(schedule_from_json(json::parse(R"({"kind": "cosine_decay", "base": 1, "steps": 5})"), "lr").describe(),
                  "cosine_decay(base=1, steps=5, min_ratio=0)");
        EXPECT_EQ(schedule_from_json(json(0.01), "weight_decay").describe(), "constant(value=0.01)");
        const auto joined = schedule_from_json(json::parse(R"({"kind": "join", "boundaries": [10],
            "schedules": [{"kind": "linear", "from": 0, "to": 1, "steps": 10}, 1]})"),
                                               "lr");
        EXPECT_EQ(joined.describe(),
                  "join(schedules=[linear(from=0, to=1, steps=10), constant(value=1)], boundaries=[10])");
        const auto product = schedule_from_json(
            json::parse(R"({"kind": "product", "factors": [0.5, {"kind": "exponential_decay", "base": 1, "gamma": 0.9}]})"),
            "lr");
        EXPECT_EQ(product.describe(), "0.5 * exponential_decay(base=1, gamma=0.9)");
    }

    TEST(schedule_json, mistakes_name_the_schedule_and_the_key)
    {
        EXPECT_EQ(message_of(json::parse(R"({"kind": "linear", "from": 0, "to": 1, "steps": 10, "step": 3})")),
                  "schedule \"lr\": unknown key \"step\" for linear");
        EXPECT_EQ(message_of(json::parse(R"({"kind": "linear", "from": 0, "to": 1})")),
                  "schedule \"lr\": linear needs \"steps\"");
        EXPECT_EQ(message_of(json::parse(R"({"kind": "linear", "from": "0", "to": 1, "steps": 10})")),
                  "schedule \"lr\": \"from\" must be a number");
        EXPECT_EQ(message_of(json::parse(R"({"kind": "linear", "from": 0, "to": 1, "steps": 10.5})")),
                  "schedule \"lr\": \"steps\" must be an integer");
        EXPECT_EQ(message_of(json::parse(R"({"kind": "linear", "from": 0, "to": 1, "steps": -2})")),
                  "schedule \"lr\": xoptim::linear: steps must be >= 1 (got -2)");
        EXPECT_EQ(message_of(json::parse(R"({"kind": "warmup_cosine", "base": 1e-4, "total_steps": 100})")),
                  "schedule \"lr\": xoptim::warmup_cosine: total_steps must be > warmup_steps "
                  "(got total_steps 100, warmup_steps 2000)");
        EXPECT_EQ(message_of(json::parse(R"({"kind": "cosine", "base": 1})")),
                  "schedule \"lr\": unknown kind \"cosine\" (expected constant, linear, cosine_decay, warmup_cosine, "
                  "step_decay, exponential_decay, join or product)");
        EXPECT_EQ(message_of(json::parse(R"({"base": 1})")), "schedule \"lr\": \"kind\" must be given, as a string");
        EXPECT_EQ(message_of(json("0.1")), "schedule \"lr\" must be a number or an object with a \"kind\"");
        EXPECT_EQ(message_of(json::parse(R"({"kind": "join", "schedules": [1, {"kind": "constant"}], "boundaries": [5]})")),
                  "schedule \"lr.schedules[1]\": constant needs \"value\"");
        EXPECT_EQ(message_of(json::parse(R"({"kind": "join", "schedules": [1, 2], "boundaries": [-5]})")),
                  "schedule \"lr\": \"boundaries\" must be an array of non-negative integers");
        EXPECT_EQ(message_of(json::parse(R"({"kind": "product", "factors": []})")),
                  "schedule \"lr\": xoptim::product: factors must not be empty");
    }
}
