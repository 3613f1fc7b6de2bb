// xoptim-replay on the distributed cases of tests/replay_cases (those with "ranks"),
// recorded from PyTorch DDP (gloo) + ZeroRedundancyOptimizer(AdamW) by
// tests/reference/generate_dist.py, each run as `mpiexec -n RANKS xoptim-replay CASE OUT`.
#include <xoptim/io/npy.hpp>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "../support/temp_dir.hpp"

namespace
{
    namespace fs = std::filesystem;
    using nlohmann::json;

    const fs::path cases_dir = XOPTIM_REPLAY_CASES;

    json read_json(const fs::path& p)
    {
        std::ifstream in(p);
        return json::parse(in);
    }

    struct launched
    {
        int code = -1;
        std::string error;
    };

    // mpiexec -n ranks xoptim-replay case out, stderr kept.
    launched launch(int ranks, const fs::path& case_dir, const fs::path& out, const fs::path& scratch)
    {
        const fs::path err = scratch / "stderr.txt";
        const std::string command = std::string(XOPTIM_MPIEXEC) + " " + XOPTIM_MPIEXEC_NUMPROC_FLAG + " "
                                    + std::to_string(ranks) + " " + XOPTIM_MPIEXEC_FLAGS + " '" XOPTIM_REPLAY_EXE "' '"
                                    + case_dir.string() + "' '" + out.string() + "' 2>'" + err.string() + "'";
        const int status = std::system(command.c_str());
        launched r;
        r.code = status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        std::ifstream in(err);
        r.error.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        return r;
    }

    std::vector<std::string> distributed_cases()
    {
        std::vector<std::string> names;
        for (const auto& entry : fs::directory_iterator(cases_dir))
        {
            if (fs::exists(entry.path() / "case.json") && read_json(entry.path() / "case.json").contains("ranks"))
            {
                names.push_back(entry.path().filename().string());
            }
        }
        std::sort(names.begin(), names.end());
        return names;
    }

    // The largest |got - want| / max(1, |want|) over a file's elements.
    double worst_error(const fs::path& got_file, const fs::path& want_file)
    {
        const auto got = xoptim::io::read_npy(got_file.string());
        const auto want = xoptim::io::read_npy(want_file.string());
        if (got.dtype != want.dtype || got.shape != want.shape)
        {
            return INFINITY;
        }
        const auto as_double = [](const xoptim::io::npy_array& a) {
            if (a.dtype == "<f8")
            {
                return a.values<double>();
            }
            const auto f = a.values<float>();
            return std::vector<double>(f.begin(), f.end());
        };
        const std::vector<double> a = as_double(got), b = as_double(want);
        double worst = 0;
        for (std::size_t i = 0; i < b.size(); ++i)
        {
            const double e = std::fabs(a[i] - b[i]) / std::max(1.0, std::fabs(b[i]));
            worst = std::isnan(e) ? INFINITY : std::max(worst, e);
        }
        return worst;
    }

    class dist_replay : public xoptim_test::temp_dir_test, public ::testing::WithParamInterface<std::string>
    {
    };
}

TEST_P(dist_replay, matches_pytorch_ddp_with_zero)
{
    const fs::path case_dir = cases_dir / GetParam();
    const json c = read_json(case_dir / "case.json");
    const double tolerance = c.at("dtype") == "float32" ? 1e-6 : 1e-12;
    const launched r = launch(c.at("ranks").get<int>(), case_dir, dir_ / "out", dir_);
    ASSERT_EQ(r.code, 0) << r.error;
    for (const std::string name : c.at("params"))
    {
        const std::string file = name + ".final.npy";
        EXPECT_LE(worst_error(dir_ / "out" / file, case_dir / "expected" / file), tolerance) << file;
    }
}

INSTANTIATE_TEST_SUITE_P(cases, dist_replay, ::testing::ValuesIn(distributed_cases()));

class dist_replay_errors : public xoptim_test::temp_dir_test
{
protected:
    // The tool's lines on stderr (mpiexec adds its own report after them).
    static std::vector<std::string> tool_lines(const std::string& error)
    {
        std::vector<std::string> lines;
        std::size_t at = 0;
        while (at < error.size())
        {
            const std::size_t end = std::min(error.find('\n', at), error.size());
            if (error.compare(at, 14, "xoptim-replay:") == 0)
            {
                lines.push_back(error.substr(at, end - at));
            }
            at = end + 1;
        }
        return lines;
    }
};

TEST_F(dist_replay_errors, another_rank_count_and_a_missing_rank_file_are_one_line)
{
    const fs::path source = cases_dir / "ddp_zero_adamw_r2_f32";
    const launched wrong = launch(1, source, dir_ / "out", dir_);
    EXPECT_EQ(wrong.code, 2);
    EXPECT_EQ(tool_lines(wrong.error),
              std::vector<std::string>{"xoptim-replay: the case needs 2 ranks, this run has 1 (mpiexec -n 2 xoptim-replay ...)"});
    // Rank 1's gradient of step 3 is missing: rank 1's problem, reported once by rank 0.
    const fs::path broken = dir_ / "case";
    fs::copy(source, broken, fs::copy_options::recursive);
    fs::remove(broken / "layer0.bias.grad.3.r1.npy");
    const launched missing = launch(2, broken, dir_ / "out2", dir_);
    EXPECT_EQ(missing.code, 2);
    EXPECT_EQ(tool_lines(missing.error),
              std::vector<std::string>{"xoptim-replay: xoptim::dist: rank 1 of 2: missing file "
                                       + (broken / "layer0.bias.grad.3.r1.npy").string()});
    EXPECT_FALSE(fs::exists(dir_ / "out2"));
}
