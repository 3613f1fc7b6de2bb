// Every optimizer against trajectories recorded from PyTorch 1.13 (torch.optim.SGD,
// Adam, AdamW) and from the formula references in tests/reference/generate.py
// (Lion, SignSGD, AdamW without bias correction, Muon): 60 steps of changing gradients
// over several shapes, compared at steps 1, 2, 3, 10, 30 and 60.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>

#include "../tools/optimizer_json.hpp"
#include "support/reference.hpp"
#include <xoptim/engine/host_arithmetic.hpp>

namespace
{
    using xoptim_test::reference_case;

    // |ours - torch| <= tol * max(|torch|, 1): relative for the O(1) parameters here,
    // absolute near zero where a relative bound means nothing.
    // SGD, Adam and AdamW are torch.optim's bits, Lion and SignSGD their formula
    // references' (every product and sum rounded as the reference rounds it: engine/arch
    // and the fma() in the optimizers' updates), on every instruction set and compiler:
    // tolerance 0. AdamW without bias correction keeps torch's fused moments against an
    // unfused formula reference: 1e-6 and 1e-12. Muon goes through Newton-Schulz on BLAS,
    // whose products sum in another order than torch's: 1e-4 and 1e-10, as for
    // Newton-Schulz itself.
    template <class T>
    double tolerance(const reference_case& c)
    {
        const bool muon = c.optimizer == "muon";
        const bool unfused_reference = c.hyper.contains("bias_correction") && !c.hyper.at("bias_correction").get<bool>();
        if (!muon && !unfused_reference)
        {
            return 0;
        }
        return std::is_same_v<T, float> ? (muon ? 1e-4 : 1e-6) : (muon ? 1e-10 : 1e-12);
    }

    template <class T>
    void replay(const reference_case& c)
    {
        std::vector<std::vector<T>> params, grads;
        for (std::size_t k = 0; k < c.shapes.size(); ++k)
        {
            const std::size_t n = xoptim_test::numel(c.shapes[k]);
            params.emplace_back(n);
            grads.emplace_back(n);
            for (std::size_t i = 0; i < n; ++i)
            {
                params[k][i] = static_cast<T>(xoptim_test::init_value(c, k, i));
            }
        }
        // Views carry the shapes (Muon needs them); the vectors own the elements.
        std::vector<xoptim::tensor_view<T>> param_views, grad_views;
        for (std::size_t k = 0; k < c.shapes.size(); ++k)
        {
            param_views.emplace_back(params[k].data(), c.shapes[k]);
            grad_views.emplace_back(grads[k].data(), c.shapes[k]);
        }
        xoptim::tools::with_optimizer(c.optimizer, c.hyper, [&](auto& opt) {
            for (int t = 1; t <= c.steps; ++t)
            {
                for (std::size_t k = 0; k < grads.size(); ++k)
                {
                    for (std::size_t i = 0; i < grads[k].size(); ++i)
                    {
                        grads[k][i] = static_cast<T>(xoptim_test::grad_value(c, k, t, i));
                    }
                }
                opt.step(param_views, grad_views);
                const auto expected = c.checkpoints.find(t);
                if (expected == c.checkpoints.end())
                {
                    continue;
                }
                double worst = 0;
                for (std::size_t k = 0; k < params.size(); ++k)
                {
                    ASSERT_EQ(expected->second[k].size(), params[k].size());
                    for (std::size_t i = 0; i < params[k].size(); ++i)
                    {
                        const double want = expected->second[k][i];
                        const double err = std::abs(double(params[k][i]) - want) / std::max(std::abs(want), 1.0);
                        worst = std::max(worst, err);
                        ASSERT_LE(err, tolerance<T>(c)) << c.name << " step " << t << " param " << k << " element " << i
                                                     << ": got " << params[k][i] << ", torch " << want;
                    }
                }
                if (t == c.steps)
                {
                    ::testing::Test::RecordProperty("worst_error", std::to_string(worst));
                    std::printf("%-32s worst scaled error %.3g\n", c.name.c_str(), worst);
                }
            }
        });
    }

    class trajectory : public ::testing::TestWithParam<reference_case>
    {
    };

    TEST_P(trajectory, matches_reference)
    {
        const reference_case& c = GetParam();
        if (c.dtype == "float32")
        {
            replay<float>(c);
        }
        else
        {
            replay<double>(c);
        }
    }

    INSTANTIATE_TEST_SUITE_P(reference, trajectory, ::testing::ValuesIn(xoptim_test::load_reference_cases()),
                             [](const auto& info) { return info.param.name; });
}

namespace
{
    // The sign of a zero through SGD, against torch.optim.SGD's bits
    // (tests/reference/generate_signed_zeros.py): +0 and -0 parameters and gradients in
    // every pairing, every momentum, nesterov, dampening, weight decay and maximize
    // combination, three steps. The trajectories above compare values, where -0 == +0.
    TEST(signed_zeros, sgd_keeps_torchs_sign_of_zero)
    {
        std::ifstream in(std::string(XOPTIM_TEST_DATA_DIR) + "/signed_zeros.json");
        ASSERT_TRUE(in.good());
        const nlohmann::json doc = nlohmann::json::parse(in);
        const auto floats = [](const nlohmann::json& bits) {
            std::vector<float> out;
            for (const auto& b : bits)
            {
                const std::uint32_t u = b.get<std::uint32_t>();
                float x;
                std::memcpy(&x, &u, sizeof x);
                out.push_back(x);
            }
            return out;
        };
        const auto bits_of = [](const std::vector<float>& x) {
            std::vector<std::uint32_t> out(x.size());
            std::memcpy(out.data(), x.data(), x.size() * sizeof(float));
            return out;
        };
        ASSERT_EQ(doc.at("cases").size(), 20u);
        for (const auto& c : doc.at("cases"))
        {
            std::vector<float> p = floats(doc.at("params"));
            std::vector<float> g = floats(doc.at("grads"));
            xoptim::tools::with_optimizer("sgd", c.at("hyper"), [&](auto& opt) {
                for (std::size_t t = 0; t < c.at("bits").size(); ++t)
                {
                    opt.step(p, g);
                    EXPECT_EQ(bits_of(p), c.at("bits")[t].get<std::vector<std::uint32_t>>())
                        << c.at("hyper").dump() << " step " << t + 1;
                }
            });
        }
    }

    // ATen's lerp on the host, against numpy's float32 and float64 arithmetic
    // (tests/reference/generate_lerp.py): cases where a fused multiply-add rounds
    // differently, so that a build contracting the host's a * b + c fails.
    template <class T, class U>
    void expect_aten_lerp(const nlohmann::json& cases)
    {
        const auto value = [](const nlohmann::json& b) {
            const U u = b.get<U>();
            T x;
            std::memcpy(&x, &u, sizeof x);
            return x;
        };
        ASSERT_EQ(cases.size(), 24u);
        for (const auto& c : cases)
        {
            const T out = xoptim::detail::aten_lerp<T>(value(c[0]), value(c[1]), value(c[2]));
            U bits;
            std::memcpy(&bits, &out, sizeof bits);
            EXPECT_EQ(bits, c[3].get<U>()) << c.dump();
        }
    }

    TEST(host_lerp, rounds_each_operation_as_aten_does)
    {
        std::ifstream in(std::string(XOPTIM_TEST_DATA_DIR) + "/lerp.json");
        ASSERT_TRUE(in.good());
        const nlohmann::json doc = nlohmann::json::parse(in);
        expect_aten_lerp<float, std::uint32_t>(doc.at("float32"));
        expect_aten_lerp<double, std::uint64_t>(doc.at("float64"));
    }
}
