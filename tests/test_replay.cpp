// xoptim-replay, run as a separate process: the recorded cases in tests/replay_cases
// reproduce their expected results, and every malformed case fails with exit code 2 and
// one line on stderr that names the problem.

#include <xoptim/io/npy.hpp>

#include <gtest/gtest.h>

#include "support/temp_dir.hpp"
#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using nlohmann::json;
using xoptim::io::read_npy;

namespace
{

    const fs::path replay_exe = XOPTIM_REPLAY_EXE;
    const fs::path cases_dir = XOPTIM_REPLAY_CASES;

    std::string read_text(const fs::path& p)
    {
        std::ifstream in(p, std::ios::binary);
        return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    }

    void write_text(const fs::path& p, const std::string& text)
    {
        std::ofstream out(p, std::ios::binary);
        out << text;
    }

    struct run_result
    {
        int code = -1;      // exit code, -1 if the process did not exit normally
        std::string error;  // everything written on stderr
    };

    // Runs xoptim-replay with the given arguments (single-quoted for the shell).
    run_result run_replay(const std::vector<std::string>& args, const fs::path& stderr_file)
    {
        std::string command = "'" + replay_exe.string() + "'";
        for (const std::string& a : args)
            command += " '" + a + "'";
        command += " 2>'" + stderr_file.string() + "'";
        const int status = std::system(command.c_str());
        run_result r;
        if (status != -1 && WIFEXITED(status))
            r.code = WEXITSTATUS(status);
        r.error = read_text(stderr_file);
        return r;
    }

    // A scratch directory per test (removed afterwards) and the tool run in it.
    class replay_test : public xoptim_test::temp_dir_test
    {
    protected:

        run_result replay(const fs::path& case_dir, const fs::path& out_dir)
        {
            return run_replay({case_dir.string(), out_dir.string()}, dir_ / "stderr.txt");
        }
    };

    /****************
 * Valid cases *
 ****************/

    std::vector<std::string> case_names()
    {
        std::vector<std::string> names;
        for (const auto& entry : fs::directory_iterator(cases_dir))
            if (fs::exists(entry.path() / "case.json")
                && !json::parse(read_text(entry.path() / "case.json")).contains("ranks"))  // under mpiexec: tests/dist
                names.push_back(entry.path().filename().string());
        std::sort(names.begin(), names.end());
        return names;
    }

    void expect_close(const fs::path& got_file, const fs::path& want_file, double tolerance)
    {
        SCOPED_TRACE(got_file.string());
        const xoptim::io::npy_array got = read_npy(got_file.string());
        const xoptim::io::npy_array want = read_npy(want_file.string());
        ASSERT_EQ(got.dtype, want.dtype);
        ASSERT_EQ(got.shape, want.shape);
        std::vector<double> a, b;
        if (want.dtype == "<f4")
        {
            for (float x : got.values<float>())
                a.push_back(x);
            for (float x : want.values<float>())
                b.push_back(x);
        }
        else
        {
            a = got.values<double>();
            b = want.values<double>();
        }
        std::size_t bad = 0;
        for (std::size_t i = 0; i < b.size(); ++i)
        {
            if (!(std::abs(a[i] - b[i]) <= tolerance * std::max(1.0, std::abs(b[i]))) && ++bad <= 5)
                ADD_FAILURE() << "element " << i << ": got " << a[i] << ", expected " << b[i];
        }
        EXPECT_EQ(bad, 0u) << "elements out of tolerance";
    }

    class replay_case_test : public replay_test, public ::testing::WithParamInterface<std::string>
    {
    };

    TEST_P(replay_case_test, matches_expected)
    {
        const fs::path case_dir = cases_dir / GetParam();
        const json c = json::parse(read_text(case_dir / "case.json"));
        const double tolerance = c.at("dtype") == "float32" ? 1e-6 : 1e-12;
        const fs::path out = dir_ / "not" / "yet" / "there";  // created by the tool

        const run_result r = replay(case_dir, out);
        ASSERT_EQ(r.code, 0) << r.error;
        EXPECT_EQ(r.error, "");

        std::set<std::string> expected, written;
        for (const auto& e : fs::directory_iterator(case_dir / "expected"))
            expected.insert(e.path().filename());
        for (const auto& e : fs::directory_iterator(out))
            written.insert(e.path().filename());
        EXPECT_EQ(written, expected);
        for (const std::string name : c.at("params"))
        {
            const std::string file = name + ".final.npy";
            ASSERT_TRUE(fs::exists(out / file)) << file;
            expect_close(out / file, case_dir / "expected" / file, tolerance);
        }
        // The hybrid also writes its routing table, one `name (shape) -> optimizer` per line.
        if (fs::exists(case_dir / "expected" / "routing.txt"))
        {
            EXPECT_EQ(read_text(out / "routing.txt"), read_text(case_dir / "expected" / "routing.txt"));
        }
    }

    INSTANTIATE_TEST_SUITE_P(cases, replay_case_test, ::testing::ValuesIn(case_names()),
                             [](const ::testing::TestParamInfo<std::string>& info) {
                                 std::string name = info.param;
                                 for (char& ch : name)
                                     if (!std::isalnum(static_cast<unsigned char>(ch)))
                                         ch = '_';
                                 return name;
                             });

    /**************************************
 * Steps 0, usage and malformed cases *
 **************************************/

    // A copy of a valid case (adamw, float32, three parameters, six steps) to break.
    class replay_broken : public replay_test
    {
    protected:

        void SetUp() override
        {
            replay_test::SetUp();
            case_ = dir_ / "case";
            fs::copy(cases_dir / "adamw_f32", case_, fs::copy_options::recursive);
        }

        json read_case() const
        {
            return json::parse(read_text(case_ / "case.json"));
        }
        void write_case(const json& j) const
        {
            write_text(case_ / "case.json", j.dump(2));
        }
        void edit_case(const std::function<void(json&)>& edit) const
        {
            json j = read_case();
            edit(j);
            write_case(j);
        }

        // Runs the broken case: exit code 2, one line on stderr naming the problem.
        void expect_failure(const std::vector<std::string>& needles)
        {
            const run_result r = replay(case_, dir_ / "out");
            EXPECT_EQ(r.code, 2);
            EXPECT_EQ(r.error.rfind("xoptim-replay: ", 0), 0u) << r.error;
            EXPECT_EQ(std::count(r.error.begin(), r.error.end(), '\n'), 1) << r.error;
            EXPECT_EQ(r.error.back(), '\n');
            for (const std::string& needle : needles)
                EXPECT_NE(r.error.find(needle), std::string::npos) << "'" << needle << "' not in: " << r.error;
            EXPECT_FALSE(fs::exists(dir_ / "out")) << "a failed case wrote output";
        }

        fs::path case_;
    };

    TEST_F(replay_broken, zero_steps_returns_the_initial_values)
    {
        edit_case([](json& j) { j["steps"] = 0; });
        const run_result r = replay(case_, dir_ / "out");
        ASSERT_EQ(r.code, 0) << r.error;
        for (const std::string name : {"layer0.weight", "layer0.bias", "head.weight"})
            EXPECT_EQ(read_text(dir_ / "out" / (name + ".final.npy")), read_text(case_ / (name + ".init.npy")));
    }

    TEST_F(replay_broken, wrong_usage)
    {
        for (const auto& args : std::vector<std::vector<std::string>>{{}, {case_.string()}, {"a", "b", "c"}})
        {
            const run_result r = run_replay(args, dir_ / "stderr.txt");
            EXPECT_EQ(r.code, 2);
            EXPECT_NE(r.error.find("usage: xoptim-replay CASE_DIR OUT_DIR"), std::string::npos) << r.error;
        }
    }

    TEST_F(replay_broken, missing_grad_file)
    {
        fs::remove(case_ / "layer0.bias.grad.4.npy");
        expect_failure({"missing file", "layer0.bias.grad.4.npy"});
    }

    TEST_F(replay_broken, missing_init_file)
    {
        fs::remove(case_ / "head.weight.init.npy");
        expect_failure({"missing file", "head.weight.init.npy"});
    }

    TEST_F(replay_broken, grad_shape_differs_from_init)
    {
        const xoptim::io::npy_array init = read_npy((case_ / "head.weight.init.npy").string());
        ASSERT_GE(init.shape.size(), 2u);
        std::vector<std::size_t> shape = init.shape;  // same size, other shape
        std::swap(shape.front(), shape.back());
        if (shape == init.shape)
            shape = {init.size()};
        const std::vector<float> values(init.size(), 0.5f);
        xoptim::io::write_npy((case_ / "head.weight.grad.3.npy").string(), values.data(), shape);
        const auto str = [](const std::vector<std::size_t>& s) {
            std::string out = "(";
            for (std::size_t d = 0; d < s.size(); ++d)
                out += (d == 0 ? "" : ", ") + std::to_string(s[d]);
            return out + (s.size() == 1 ? ",)" : ")");
        };
        expect_failure({"\"head.weight\"", "step 3", str(shape), str(init.shape)});
    }

    TEST_F(replay_broken, unknown_optimizer)
    {
        edit_case([](json& j) { j["optimizer"] = "adamax"; });
        expect_failure({"unknown optimizer", "adamax"});
    }

    // The optimizers of 2026 by their JSON names and keys (trajectories: their own tests).
    TEST_F(replay_broken, runs_the_2026_optimizers_by_name)
    {
        const std::vector<std::pair<std::string, json>> runs
            = {{"ademamix", {{"betas", {0.9, 0.999, 0.9999}}, {"alpha_warmup", 3}, {"beta3_warmup", nullptr}}},
               {"adamw_schedulefree", {{"warmup_steps", 2}, {"paper", true}}},
               {"sgd_schedulefree", {{"lr", 0.1}, {"momentum", 0.9}}},
               {"adamw", {{"caution", true}, {"caution_normalize", "count_plus_one"}}},
               {"lion", {{"caution", true}}}};
        for (const auto& run : runs)
        {
            SCOPED_TRACE(run.first);
            edit_case([&](json& j) {
                j["optimizer"] = run.first;
                j["hyper"] = run.second;
            });
            fs::remove_all(dir_ / "out");
            const run_result r = replay(case_, dir_ / "out");
            ASSERT_EQ(r.code, 0) << r.error;
            EXPECT_NE(read_text(dir_ / "out" / "head.weight.final.npy"), read_text(case_ / "head.weight.init.npy"));
        }
        edit_case([](json& j) {
            j["optimizer"] = "lion";
            j["hyper"] = {{"caution_normalize", "median"}};
        });
        fs::remove_all(dir_ / "out");
        expect_failure({"hyperparameter \"caution_normalize\" of lion must be \"mean\" or \"count_plus_one\""});
    }

    // An EMA of the weights beside the optimizer: after one step its first update copies the
    // parameters; a bad key is named.
    TEST_F(replay_broken, writes_the_ema_of_the_weights)
    {
        edit_case([](json& j) {
            j["steps"] = 1;
            j["ema"] = {{"decay", 0.99}, {"shadow_dtype", "same"}};
        });
        const run_result r = replay(case_, dir_ / "out");
        ASSERT_EQ(r.code, 0) << r.error;
        for (const std::string name : {"layer0.weight", "layer0.bias", "head.weight"})
            EXPECT_EQ(read_text(dir_ / "out" / (name + ".ema.npy")), read_text(dir_ / "out" / (name + ".final.npy")));
        edit_case([](json& j) { j["ema"] = {{"decay", 2.0}}; });
        fs::remove_all(dir_ / "out");
        expect_failure({"xoptim::ema: decay must be in [0, 1]"});
        edit_case([](json& j) { j["ema"] = {{"beta", 0.9}}; });
        expect_failure({"unknown hyperparameter \"beta\" for ema"});
    }

    TEST_F(replay_broken, hybrid_without_routing)
    {
        edit_case([](json& j) {
            j["optimizer"] = "hybrid";
            j["hyper"] = json::object();
        });
        expect_failure({"missing key \"routing\"", "hybrid"});
    }

    TEST_F(replay_broken, routing_for_a_single_optimizer)
    {
        edit_case([](json& j) { j["routing"] = {{"adamw_patterns", json::array()}}; });
        expect_failure({"\"routing\" is only for the hybrid"});
    }

    TEST_F(replay_broken, hybrid_routing_malformed)
    {
        for (const json& routing :
             {json{{"adamw_patterns", "*embed*"}}, json{{"adamw_patterns", {1}}}, json{{"patterns", json::array()}}})
        {
            edit_case([&](json& j) {
                j["optimizer"] = "hybrid";
                j["hyper"] = json::object();
                j["routing"] = routing;
            });
            expect_failure({"\"routing\" must be {\"adamw_patterns\": [name patterns]}"});
        }
    }

    TEST_F(replay_broken, hybrid_hyperparameters)
    {
        edit_case([](json& j) {
            j["optimizer"] = "hybrid";
            j["hyper"] = {{"lion", json::object()}};
            j["routing"] = {{"adamw_patterns", json::array()}};
        });
        expect_failure({"unknown hyperparameter group \"lion\" for hybrid"});
        edit_case([](json& j) { j["hyper"] = {{"muon", 5}}; });
        expect_failure({"hyperparameter group \"muon\" of hybrid must be an object"});
        edit_case([](json& j) { j["hyper"] = {{"muon", {{"betas", {0.9, 0.99}}}}}; });
        expect_failure({"unknown hyperparameter \"betas\" for muon"});
        edit_case([](json& j) { j["hyper"] = {{"adamw", {{"lr", -1}}}}; });
        expect_failure({"xoptim::adamw: lr must be >= 0"});
    }

    TEST_F(replay_broken, around_the_step_keys)
    {
        edit_case([](json& j) { j["accumulate"] = 0; });
        expect_failure({"\"accumulate\" must be an integer >= 1"});
        edit_case([](json& j) {
            j.erase("accumulate");
            j["clip_global_norm"] = -1;
        });
        expect_failure({"\"clip_global_norm\" must be a number > 0"});
        edit_case([](json& j) {
            j.erase("clip_global_norm");
            j["schedule"] = {{"lr", {{"kind", "cosine"}}}};
        });
        expect_failure({"schedule \"lr\"", "cosine"});
        edit_case([](json& j) { j["schedule"] = {{"amsgrad", 0.5}}; });
        expect_failure({"xoptim::adamw: no numeric hyperparameter 'amsgrad' to schedule"});
        // With 2 micro-batches per step, 6 steps need 12 gradient files per parameter.
        edit_case([](json& j) {
            j.erase("schedule");
            j["accumulate"] = 2;
        });
        expect_failure({"missing file", "layer0.weight.grad.7.npy"});
    }

    TEST_F(replay_broken, unknown_hyperparameter)
    {
        edit_case([](json& j) { j["hyper"]["lr_decay"] = 0.1; });
        expect_failure({"unknown hyperparameter", "lr_decay"});
    }

    TEST_F(replay_broken, hyperparameter_of_another_optimizer)
    {
        edit_case([](json& j) { j["hyper"]["momentum"] = 0.9; });
        expect_failure({"unknown hyperparameter", "momentum"});
    }

    TEST_F(replay_broken, negative_lr)
    {
        edit_case([](json& j) { j["hyper"]["lr"] = -0.1; });
        expect_failure({"xoptim::adamw: lr must be >= 0"});
    }

    TEST_F(replay_broken, beta_out_of_range)
    {
        edit_case([](json& j) { j["hyper"]["betas"] = {0.9, 1.0}; });
        expect_failure({"betas[1]"});
    }

    TEST_F(replay_broken, betas_of_length_3)
    {
        edit_case([](json& j) { j["hyper"]["betas"] = {0.9, 0.99, 0.999}; });
        expect_failure({"betas", "two numbers"});
    }

    TEST_F(replay_broken, hyperparameter_of_wrong_type)
    {
        edit_case([](json& j) { j["hyper"]["amsgrad"] = 1; });
        expect_failure({"amsgrad"});
    }

    TEST_F(replay_broken, case_dtype_differs_from_files)
    {
        edit_case([](json& j) { j["dtype"] = "float64"; });
        expect_failure({"layer0.weight.init.npy", "dtype", "float64"});
    }

    TEST_F(replay_broken, grad_file_dtype_differs)
    {
        const std::vector<double> values(8, 0.25);
        xoptim::io::write_npy((case_ / "layer0.bias.grad.2.npy").string(), values.data(), {8});
        expect_failure({"layer0.bias.grad.2.npy", "dtype"});
    }

    TEST_F(replay_broken, unknown_dtype)
    {
        edit_case([](json& j) { j["dtype"] = "float16"; });
        expect_failure({"dtype", "float16"});
    }

    TEST_F(replay_broken, bad_json)
    {
        write_text(case_ / "case.json", "{\"optimizer\": \"adamw\", ");
        expect_failure({"case.json", "not valid JSON"});
    }

    TEST_F(replay_broken, missing_case_json)
    {
        fs::remove(case_ / "case.json");
        expect_failure({"missing file", "case.json"});
    }

    TEST_F(replay_broken, missing_steps)
    {
        edit_case([](json& j) { j.erase("steps"); });
        expect_failure({"missing key", "\"steps\""});
    }

    TEST_F(replay_broken, missing_hyper)
    {
        edit_case([](json& j) { j.erase("hyper"); });
        expect_failure({"missing key", "\"hyper\""});
    }

    TEST_F(replay_broken, steps_not_an_integer)
    {
        edit_case([](json& j) { j["steps"] = 2.5; });
        expect_failure({"\"steps\"", "integer"});
    }

    TEST_F(replay_broken, negative_steps)
    {
        edit_case([](json& j) { j["steps"] = -1; });
        expect_failure({"\"steps\"", "integer"});
    }

    // steps x accumulate gradient files: a product that wraps around (to 0 here) is refused,
    // not replayed as no step.
    TEST_F(replay_broken, steps_times_accumulate_past_64_bits)
    {
        edit_case([](json& j) {
            j["steps"] = std::uint64_t(1) << 62;
            j["accumulate"] = 4;
        });
        expect_failure({"case.json: \"steps\" must be an integer whose product with \"accumulate\" fits in 64 bits"});
    }

    TEST_F(replay_broken, adafactor_variant_of_another_type)
    {
        for (const json& variant : {json(true), json(nullptr), json(3)})
        {
            edit_case([&](json& j) {
                j["optimizer"] = "adafactor";
                j["hyper"] = {{"variant", variant}};
            });
            fs::remove_all(dir_ / "out");
            expect_failure({"hyperparameter \"variant\" of adafactor must be \"torch\" or \"transformers\""});
        }
    }

    TEST_F(replay_broken, unknown_top_level_key)
    {
        edit_case([](json& j) { j["step"] = 3; });
        expect_failure({"unknown key", "\"step\""});
    }

    TEST_F(replay_broken, duplicate_param)
    {
        edit_case([](json& j) { j["params"].push_back("layer0.bias"); });
        expect_failure({"duplicate", "layer0.bias"});
    }

    TEST_F(replay_broken, empty_params)
    {
        edit_case([](json& j) { j["params"] = json::array(); });
        expect_failure({"\"params\"", "non-empty array"});
    }

    TEST_F(replay_broken, params_not_a_list)
    {
        edit_case([](json& j) { j["params"] = "layer0.weight"; });
        expect_failure({"\"params\"", "non-empty array"});
    }

    TEST_F(replay_broken, param_name_with_a_path)
    {
        edit_case([](json& j) { j["params"] = {"../layer0.weight"}; });
        expect_failure({"../layer0.weight", "plain file name"});
    }

}  // namespace

// Muon's newer keys: at their defaults the case's expected output; Polar Express,
// NorMuon, bf16 products and the lerp form another one; a bad value named.
class replay_muon_keys : public replay_test
{
protected:

    void SetUp() override
    {
        replay_test::SetUp();
        case_ = dir_ / "case";
        fs::copy(cases_dir / "muon_f32", case_, fs::copy_options::recursive);
    }

    run_result run_with(const json& extra, const fs::path& out)
    {
        json j = json::parse(read_text(case_ / "case.json"));
        for (const auto& [key, value] : extra.items())
            j["hyper"][key] = value;
        write_text(case_ / "case.json", j.dump(2));
        return replay(case_, out);
    }

    fs::path case_;
};

TEST_F(replay_muon_keys, new_keys)
{
    const json defaults = {{"ns_coefficient_table", json::array()},
                           {"ns_norm", "add_eps"},
                           {"ns_norm_scale", 1.0},
                           {"ns_precision", "working"},
                           {"normuon", false},
                           {"beta2", 0.95},
                           {"normuon_eps", 1e-10},
                           {"normuon_scale", "preserve_norm"},
                           {"momentum_form", "ema"}};
    const run_result same = run_with(defaults, dir_ / "defaults");
    ASSERT_EQ(same.code, 0) << same.error;
    for (const char* file : {"layer0.weight.final.npy", "conv.weight.final.npy"})
        expect_close(dir_ / "defaults" / file, case_ / "expected" / file, 1e-6);

    const json newer = {{"ns_coefficient_table", "polar_express"},
                        {"ns_norm_scale", 1.01},
                        {"ns_precision", "bf16"},
                        {"normuon", true},
                        {"normuon_scale", "rms"},
                        {"momentum_form", "lerp"}};
    const run_result other = run_with(newer, dir_ / "newer");
    ASSERT_EQ(other.code, 0) << other.error;
    const auto got = read_npy((dir_ / "newer" / "layer0.weight.final.npy").string()).values<float>();
    const auto want = read_npy((case_ / "expected" / "layer0.weight.final.npy").string()).values<float>();
    EXPECT_NE(got, want);

    const run_result bad = run_with({{"ns_precision", "fp8"}}, dir_ / "bad");
    EXPECT_EQ(bad.code, 2);
    EXPECT_NE(bad.error.find("hyperparameter \"ns_precision\" of muon must be \"working\" or \"bf16\""),
              std::string::npos)
        << bad.error;
}
