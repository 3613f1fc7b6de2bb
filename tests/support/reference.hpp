// Reference trajectories produced by tests/reference/generate.py (PyTorch), read back
// without torch. See tests/reference/README.md for the file format.
#ifndef XOPTIM_TESTS_SUPPORT_REFERENCE_HPP
#define XOPTIM_TESTS_SUPPORT_REFERENCE_HPP

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace xoptim_test
{

    // Deterministic value in [-1, 1), a multiple of 2^-23 (exact in float32).
    // Bit-for-bit the same as u() in tests/reference/generate.py (all arithmetic mod 2^64).
    inline double u(std::uint64_t seed, std::uint64_t t, std::uint64_t i)
    {
        std::uint64_t x = seed * 0x9E3779B97F4A7C15ULL + t * 0xBF58476D1CE4E5B9ULL + i * 0x94D049BB133111EBULL;
        x ^= x >> 30;
        x *= 0xBF58476D1CE4E5B9ULL;
        x ^= x >> 27;
        x *= 0x94D049BB133111EBULL;
        x ^= x >> 31;
        return (static_cast<double>(x >> 40) - 8388608.0) / 8388608.0;
    }

    struct reference_case
    {
        std::string name, optimizer, dtype;  // optimizer: sgd|adam|adamw|lion|signsgd
        nlohmann::json hyper;                // PyTorch-named keys, every key written
        std::uint64_t seed = 0;              // case seed; parameter k uses seed*1000 + k
        double gscale = 1.0;                 // power of two
        int zero_every = 0;                  // >0: gradient element i is 0 when i % zero_every == 0
        std::vector<std::vector<std::size_t>> shapes;
        int steps = 0;
        // step -> one flat (row-major) vector per parameter
        std::map<int, std::vector<std::vector<double>>> checkpoints;
    };

    inline std::size_t numel(const std::vector<std::size_t>& shape)
    {
        std::size_t n = 1;
        for (auto d : shape)
            n *= d;
        return n;
    }

    inline std::uint64_t param_seed(const reference_case& c, std::size_t k)
    {
        return c.seed * 1000u + k;
    }

    // Initial value of element i of parameter k.
    inline double init_value(const reference_case& c, std::size_t k, std::size_t i)
    {
        return u(param_seed(c, k), 0, i);
    }

    // Gradient of element i of parameter k at step t (t = 1..steps). Exact in float32.
    inline double grad_value(const reference_case& c, std::size_t k, int t, std::size_t i)
    {
        if (c.zero_every > 0 && i % static_cast<std::size_t>(c.zero_every) == 0)
            return 0.0;
        return u(param_seed(c, k), static_cast<std::uint64_t>(t), i) * c.gscale;
    }

    // A map of step -> per-parameter values ("checkpoints" and the like).
    inline std::map<int, std::vector<std::vector<double>>> read_checkpoints(const nlohmann::json& j)
    {
        std::map<int, std::vector<std::vector<double>>> out;
        for (const auto& [step, params] : j.items())
        {
            out[std::stoi(step)] = params.get<std::vector<std::vector<double>>>();
        }
        return out;
    }

    // The fields every reference case has.
    inline void read_case(const nlohmann::json& j, reference_case& c)
    {
        c.name = j.at("name").get<std::string>();
        c.optimizer = j.at("optimizer").get<std::string>();
        c.dtype = j.at("dtype").get<std::string>();
        c.hyper = j.at("hyper");
        c.seed = j.at("seed").get<std::uint64_t>();
        c.gscale = j.at("gscale").get<double>();
        c.zero_every = j.value("zero_every", 0);
        c.shapes = j.at("shapes").get<std::vector<std::vector<std::size_t>>>();
        c.steps = j.at("steps").get<int>();
        c.checkpoints = read_checkpoints(j.at("checkpoints"));
    }

    // The "cases" of a reference file, each read by read(json, Case&).
    template <class Case, class Read>
    std::vector<Case> load_cases(const std::string& path, Read&& read)
    {
        std::ifstream in(path);
        if (!in)
            throw std::runtime_error("cannot open reference file " + path);
        const nlohmann::json doc = nlohmann::json::parse(in);
        std::vector<Case> out;
        for (const auto& j : doc.at("cases"))
        {
            Case c;
            read(j, c);
            out.push_back(std::move(c));
        }
        return out;
    }

    inline std::vector<reference_case> load_reference_cases(const std::string& path)
    {
        return load_cases<reference_case>(path, [](const nlohmann::json& j, reference_case& c) { read_case(j, c); });
    }

#ifdef XOPTIM_TEST_DATA_DIR
    // tests/reference/trajectories.json, located through the CMake definition.
    inline std::vector<reference_case> load_reference_cases()
    {
        return load_reference_cases(std::string(XOPTIM_TEST_DATA_DIR) + "/trajectories.json");
    }
#endif

}  // namespace xoptim_test

#endif
