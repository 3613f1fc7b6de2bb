// Reference data of tests/reference/generate_2026.py (Adafactor, LAMB, Schedule-Free AdamW
// and SGD, AdEMAMix, cautious AdamW and Lion, EMA of the weights, Muon with Polar Express
// tables, NorMuon and bf16 Newton-Schulz), read back without torch. The file formats and the
// protocol a test follows are in tests/reference/README.md ("trajectories_2026.json").
#ifndef XOPTIM_TESTS_SUPPORT_REFERENCE_2026_HPP
#define XOPTIM_TESTS_SUPPORT_REFERENCE_2026_HPP

#include <array>
#include <cstddef>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <xoptim/params/tensor_traits.hpp>

#include "reference.hpp"

namespace xoptim_test
{

    // One case of trajectories_2026.json: the fields of reference_case, plus what the new
    // optimizers need.
    struct reference_case_2026 : reference_case
    {
        std::string source;                  // the transcription (tests/reference/ref2026/...)
        std::vector<std::size_t> zero_init;  // parameters that start at 0 instead of u(seed, 0, i)
        // Schedule-Free: the parameters after eval() at each checkpoint step (train() follows).
        std::map<int, std::vector<std::vector<double>>> eval_checkpoints;
        // EMA: the shadow after the update of each checkpoint step; `base` is the optimizer that
        // moves the parameters ({"optimizer": "adamw", "hyper": {...}}).
        std::map<int, std::vector<std::vector<double>>> ema_checkpoints;
        nlohmann::json base;
        // LAMB's parameter groups: [{"params": [indices], "hyper": {overrides of `hyper`}}],
        // stepped as one optimizer (one gradient norm over all groups).
        nlohmann::json groups;
        // The reference's state tensors after the last step, per parameter, by the reference's
        // names (torch Adafactor: row_var (..., R, 1), col_var (..., 1, C), variance; ...).
        struct state_values
        {
            std::vector<std::size_t> shape;
            std::vector<double> values;
        };
        std::vector<std::map<std::string, state_values>> final_states;
        // Measured spreads of float32 cases (scaled errors): f32_fma_spread, f32_blas_spread,
        // f32_vs_f64, bf16_accumulation_spread; see the README.
        std::map<std::string, double> spreads;

        bool starts_at_zero(std::size_t k) const
        {
            for (auto z : zero_init)
                if (z == k)
                    return true;
            return false;
        }
    };

    // Initial value of element i of parameter k (0 for a zero_init parameter). Chosen over
    // init_value(const reference_case&, ...) for these cases.
    inline double init_value(const reference_case_2026& c, std::size_t k, std::size_t i)
    {
        return c.starts_at_zero(k) ? 0.0 : u(param_seed(c, k), 0, i);
    }

    inline std::vector<reference_case_2026> load_reference_cases_2026(const std::string& path)
    {
        return load_cases<reference_case_2026>(path, [](const nlohmann::json& j, reference_case_2026& c) {
            read_case(j, c);
            c.source = j.at("source").get<std::string>();
            if (j.contains("zero_init"))
                c.zero_init = j.at("zero_init").get<std::vector<std::size_t>>();
            if (j.contains("eval_checkpoints"))
                c.eval_checkpoints = read_checkpoints(j.at("eval_checkpoints"));
            if (j.contains("ema_checkpoints"))
                c.ema_checkpoints = read_checkpoints(j.at("ema_checkpoints"));
            if (j.contains("base"))
                c.base = j.at("base");
            if (j.contains("groups"))
                c.groups = j.at("groups");
            if (j.contains("final_states"))
            {
                for (const auto& param : j.at("final_states"))
                {
                    std::map<std::string, reference_case_2026::state_values> states;
                    for (const auto& [name, s] : param.items())
                    {
                        states[name] = {s.at("shape").get<std::vector<std::size_t>>(),
                                        s.at("values").get<std::vector<double>>()};
                    }
                    c.final_states.push_back(std::move(states));
                }
            }
            for (const char* key : {"f32_fma_spread", "f32_blas_spread", "f32_vs_f64", "bf16_accumulation_spread"})
            {
                if (j.contains(key))
                    c.spreads[key] = j.at(key).get<double>();
            }
        });
    }

    // Parameters and gradients of a case, as views with the case's shapes.
    template <class T>
    struct case_tensors
    {
        std::vector<std::vector<T>> params, grads;
        std::vector<xoptim::tensor_view<T>> param_views, grad_views;

        explicit case_tensors(const reference_case_2026& c)
        {
            for (std::size_t k = 0; k < c.shapes.size(); ++k)
            {
                const std::size_t n = numel(c.shapes[k]);
                params.emplace_back(n);
                grads.emplace_back(n);
                for (std::size_t i = 0; i < n; ++i)
                    params[k][i] = static_cast<T>(init_value(c, k, i));
            }
            for (std::size_t k = 0; k < c.shapes.size(); ++k)
            {
                param_views.emplace_back(params[k].data(), c.shapes[k]);
                grad_views.emplace_back(grads[k].data(), c.shapes[k]);
            }
        }

        void set_grads(const reference_case_2026& c, int t)
        {
            for (std::size_t k = 0; k < grads.size(); ++k)
                for (std::size_t i = 0; i < grads[k].size(); ++i)
                    grads[k][i] = static_cast<T>(grad_value(c, k, t, i));
        }
    };

    // One case of newton_schulz_2026.json: the input is u(seed, 0, i) over `shape`, viewed as
    // (shape[0], rest); `output` is NS of it (bf16 values as floats for ns_precision "bf16").
    struct newton_schulz_case_2026
    {
        std::string name, dtype, ns_norm, ns_precision;
        std::uint64_t seed = 0;
        std::vector<std::size_t> shape;
        std::size_t ns_steps = 0;
        std::vector<std::array<double, 3>> ns_coefficients;  // row i for iteration i, the last repeats
        double ns_norm_scale = 1, eps = 0;
        std::vector<double> output;
        std::map<std::string, double> spreads;  // f32_vs_f64, f32_blas_spread, bf16_accumulation_spread_ulps
    };

    inline std::vector<newton_schulz_case_2026> load_newton_schulz_cases_2026(const std::string& path)
    {
        std::ifstream in(path);
        if (!in)
            throw std::runtime_error("cannot open reference file " + path);
        const nlohmann::json doc = nlohmann::json::parse(in);
        std::vector<newton_schulz_case_2026> out;
        for (const auto& j : doc.at("cases"))
        {
            newton_schulz_case_2026 c;
            c.name = j.at("name").get<std::string>();
            c.dtype = j.at("dtype").get<std::string>();
            c.ns_norm = j.at("ns_norm").get<std::string>();
            c.ns_precision = j.at("ns_precision").get<std::string>();
            c.seed = j.at("seed").get<std::uint64_t>();
            c.shape = j.at("shape").get<std::vector<std::size_t>>();
            c.ns_steps = j.at("ns_steps").get<std::size_t>();
            c.ns_coefficients = j.at("ns_coefficients").get<std::vector<std::array<double, 3>>>();
            c.ns_norm_scale = j.at("ns_norm_scale").get<double>();
            c.eps = j.at("eps").get<double>();
            c.output = j.at("output").get<std::vector<double>>();
            for (const char* key : {"f32_vs_f64", "f32_blas_spread", "bf16_accumulation_spread_ulps"})
            {
                if (j.contains(key))
                    c.spreads[key] = j.at(key).get<double>();
            }
            out.push_back(std::move(c));
        }
        return out;
    }

#ifdef XOPTIM_TEST_DATA_DIR
    inline std::vector<reference_case_2026> load_reference_cases_2026()
    {
        return load_reference_cases_2026(std::string(XOPTIM_TEST_DATA_DIR) + "/trajectories_2026.json");
    }

    inline std::vector<newton_schulz_case_2026> load_newton_schulz_cases_2026()
    {
        return load_newton_schulz_cases_2026(std::string(XOPTIM_TEST_DATA_DIR) + "/newton_schulz_2026.json");
    }

    // The cases of one optimizer (JSON name) in trajectories_2026.json.
    inline std::vector<reference_case_2026> cases_2026(const std::string& optimizer)
    {
        std::vector<reference_case_2026> out;
        for (auto& c : load_reference_cases_2026())
            if (c.optimizer == optimizer)
                out.push_back(std::move(c));
        return out;
    }
#endif

}  // namespace xoptim_test

#endif
