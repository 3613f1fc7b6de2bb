// Host arithmetic rounds where it is written: this program is built twice, as the tests
// are and with -ffp-contract=off, and the ctest contraction.same_bits compares the two
// outputs (tests/support/same_output.cmake). Where a line of host code computes a * b + c
// in double (a hyperparameter, a warmup, a norm) without arch::product, a compiler that
// contracts it into one fma (GCC and clang, wherever the target has an fma: x86-64-v3,
// AVX-512, AArch64) rounds it otherwise than an SSE2 build and the references.
//
// Every optimizer with hyperparameters of many digits, warmups and schedules' positions
// in play, double parameters (their host scalars are not rounded to float first) and float
// ones, 40 steps, every parameter printed as bits.
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "../tools/optimizer_json.hpp"

namespace
{
    template <class T>
    void print_bits(const char* name, const std::vector<T>& x)
    {
        std::printf("%s", name);
        for (const T v : x)
        {
            std::uint64_t b = 0;
            std::memcpy(&b, &v, sizeof v);
            std::printf(" %" PRIx64, b);
        }
        std::printf("\n");
    }

    // Values of both signs and several magnitudes, from integers and powers of two: the
    // program's own arithmetic is exact, contracted or not.
    class values
    {
    public:

        explicit values(std::uint32_t seed)
            : m_state(seed)
        {
        }

        double next()
        {
            m_state = m_state * 1664525u + 1013904223u;
            return (double(m_state >> 8) / double(1u << 24) - 0.5) * std::ldexp(1.0, int(m_state % 5) - 2);
        }

    private:

        std::uint32_t m_state;
    };

    template <class T>
    void run(const std::string& name, const std::string& optimizer, const nlohmann::json& hyper)
    {
        // Muon takes matrices only.
        const std::vector<std::vector<std::size_t>> shapes = optimizer == "muon"
                                                                 ? std::vector<std::vector<std::size_t>>{{5, 9}, {9, 5}}
                                                                 : std::vector<std::vector<std::size_t>>{{33},
                                                                                                         {5, 9},
                                                                                                         {9, 5}};
        values v(7);
        std::vector<std::vector<T>> params, grads;
        std::vector<xoptim::tensor_view<T>> param_views, grad_views;
        for (std::size_t k = 0; k < shapes.size(); ++k)
        {
            const std::size_t n = shapes[k].size() == 1 ? shapes[k][0] : shapes[k][0] * shapes[k][1];
            params.emplace_back(n);
            grads.emplace_back(n);
            for (std::size_t i = 0; i < n; ++i)
            {
                params[k][i] = T(v.next());
            }
        }
        for (std::size_t k = 0; k < shapes.size(); ++k)
        {
            param_views.emplace_back(params[k].data(), shapes[k]);
            grad_views.emplace_back(grads[k].data(), shapes[k]);
        }
        xoptim::tools::with_optimizer(optimizer, hyper, [&](auto& opt) {
            for (int t = 1; t <= 40; ++t)
            {
                for (std::size_t k = 0; k < grads.size(); ++k)
                {
                    for (std::size_t i = 0; i < grads[k].size(); ++i)
                    {
                        grads[k][i] = T(v.next());
                    }
                }
                opt.step(param_views, grad_views);
            }
        });
        for (std::size_t k = 0; k < params.size(); ++k)
        {
            print_bits((name + " " + std::to_string(k)).c_str(), params[k]);
        }
    }
}

int main()
{
    using nlohmann::json;
    // lr, weight decay and betas whose products round differently fused and unfused.
    const std::vector<std::pair<std::string, json>> cases = {
        {"sgd", {{"lr", 0.0423}, {"momentum", 0.873}, {"dampening", 0.137}, {"weight_decay", 0.317}}},
        {"sgd", {{"lr", 0.0631}, {"momentum", 0.91}, {"nesterov", true}, {"weight_decay", 0.2}}},
        {"adam", {{"lr", 0.0126}, {"betas", {0.8713, 0.99731}}, {"weight_decay", 0.137}, {"amsgrad", true}}},
        {"adamw", {{"lr", 0.0126}, {"betas", {0.8713, 0.99731}}, {"weight_decay", 0.317}}},
        {"adamw", {{"lr", 0.042}, {"betas", {0.9, 0.999}}, {"weight_decay", 0.3}, {"bias_correction", false}}},
        {"lion", {{"lr", 0.0063}, {"betas", {0.913, 0.9871}}, {"weight_decay", 0.217}}},
        {"signsgd", {{"lr", 0.0423}, {"weight_decay", 0.317}}},
        {"lamb", {{"lr", 0.0126}, {"betas", {0.8713, 0.99731}}, {"weight_decay", 0.137}, {"max_grad_norm", 0.731}}},
        {"adafactor", {{"lr", 0.126}, {"weight_decay", 0.1}, {"beta2_decay", -0.713}, {"d", 1.137}}},
        {"adafactor", {{"variant", "transformers"}, {"beta1", 0.873}, {"weight_decay", 0.0317}, {"warmup_init", true}}},
        {"ademamix",
         {{"lr", 0.0126},
          {"betas", {0.8713, 0.99731, 0.99971}},
          {"alpha", 5.317},
          {"alpha_warmup", 37u},
          {"beta3_warmup", 100000u},
          {"weight_decay", 0.137}}},
        {"adamw_schedulefree",
         {{"lr", 0.0263},
          {"betas", {0.913, 0.9871}},
          {"warmup_steps", 7u},
          {"r", 0.73},
          {"weight_lr_power", 1.71},
          {"weight_decay", 0.137}}},
        {"sgd_schedulefree",
         {{"lr", 0.263},
          {"momentum", 0.913},
          {"warmup_steps", 7u},
          {"r", 0.73},
          {"weight_lr_power", 1.71},
          {"weight_decay", 0.137}}},
        {"muon", {{"lr", 0.0263}, {"momentum", 0.913}, {"weight_decay", 0.137}}},
        {"muon",
         {{"lr", 0.0263},
          {"ns_coefficient_table", "polar_express"},
          {"ns_norm_scale", 1.01},
          {"normuon", true},
          {"beta2", 0.937},
          {"weight_decay", 0.0317}}},
    };
    for (std::size_t c = 0; c < cases.size(); ++c)
    {
        const std::string name = std::to_string(c) + " " + cases[c].first;
        run<double>(name + " double", cases[c].first, cases[c].second);
        run<float>(name + " float", cases[c].first, cases[c].second);
    }
}
