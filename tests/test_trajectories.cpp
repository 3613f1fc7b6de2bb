// Every optimizer against trajectories recorded from PyTorch 1.13 (torch.optim.SGD,
// Adam, AdamW) and from the formula references in tests/reference/generate.py
// (Lion, SignSGD, AdamW without bias correction, Muon): 60 steps of changing gradients
// over several shapes, compared at steps 1, 2, 3, 10, 30 and 60.
#include <gtest/gtest.h>

#include <algorithm>
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

namespace
{
    // Infinite parameters and NaN or Inf gradients (tests/reference/generate_non_finite.py):
    // SGD, Adam and AdamW against torch.optim's bits, where weight decay 0 adds no term
    // (0 * inf would make an infinite parameter NaN), and Adafactor against its
    // transcriptions, where the eps1^2 floor keeps a NaN (torch's clamp) and transformers'
    // decay is skipped at 0. Values compare as bits, any NaN equal to any NaN (the sign and
    // payload of a NaN are not promised); Adafactor's finite values within the
    // trajectories' tolerance of its float64 transcription.
    template <class T, class U>
    T value_of_bits(const nlohmann::json& b)
    {
        const U u = b.get<U>();
        T x;
        std::memcpy(&x, &u, sizeof x);
        return x;
    }

    template <class T, class U>
    void expect_same_values(const std::vector<T>& got, const nlohmann::json& want, bool exact, const std::string& what)
    {
        ASSERT_EQ(got.size(), want.size()) << what;
        const double tol = std::is_same_v<T, float> ? 1e-6 : 1e-12;
        for (std::size_t i = 0; i < got.size(); ++i)
        {
            const T w = value_of_bits<T, U>(want[i]);
            U bits;
            std::memcpy(&bits, &got[i], sizeof bits);
            if (std::isnan(w) || std::isnan(got[i]))
            {
                EXPECT_TRUE(std::isnan(w) && std::isnan(got[i]))
                    << what << " element " << i << ": " << got[i] << " vs " << w;
            }
            else if (exact || !std::isfinite(w) || !std::isfinite(got[i]))
            {
                EXPECT_EQ(bits, want[i].get<U>()) << what << " element " << i << ": " << got[i] << " vs " << w;
            }
            else
            {
                EXPECT_LE(std::abs(double(got[i]) - double(w)), tol * std::max(std::abs(double(w)), 1.0))
                    << what << " element " << i << ": " << got[i] << " vs " << w;
            }
        }
    }

    template <class T, class U>
    void replay_non_finite(const nlohmann::json& c)
    {
        const auto values = [](const nlohmann::json& bits) {
            std::vector<T> out;
            for (const auto& b : bits)
            {
                out.push_back(value_of_bits<T, U>(b));
            }
            return out;
        };
        const std::string name = c.at("name").get<std::string>() + " " + c.at("dtype").get<std::string>();
        const std::vector<std::size_t> shape = c.at("shape").get<std::vector<std::size_t>>();
        std::vector<T> p = values(c.at("init"));
        std::vector<T> g(p.size());
        // A list of views, as the trajectories above: the same kernels.
        const std::vector<xoptim::tensor_view<T>> params{xoptim::tensor_view<T>(p.data(), shape)};
        const std::vector<xoptim::tensor_view<T>> grads{xoptim::tensor_view<T>(g.data(), shape)};
        const bool exact = c.at("exact").get<bool>();
        xoptim::tools::with_optimizer(c.at("optimizer").get<std::string>(), c.at("hyper"), [&](auto& opt) {
            for (std::size_t t = 0; t < c.at("grads").size(); ++t)
            {
                const std::vector<T> next = values(c.at("grads")[t]);
                std::copy(next.begin(), next.end(), g.begin());  // the view keeps g's elements
                opt.step(params, grads);
                expect_same_values<T, U>(p, c.at("after")[t], exact, name + " step " + std::to_string(t + 1));
            }
            const auto& names = std::decay_t<decltype(opt)>::state_names;
            for (const auto& item : c.at("states").items())
            {
                const std::string state = item.key();
                const nlohmann::json& want = item.value();
                const auto at = std::find_if(names.begin(), names.end(), [&](const char* n) { return state == n; });
                ASSERT_NE(at, names.end()) << name << " " << state;
                std::vector<T> got;
                for (const double x : opt.state().values(opt.state()[0].name, std::size_t(at - names.begin())))
                {
                    got.push_back(static_cast<T>(x));
                }
                expect_same_values<T, U>(got, want, true, name + " " + state);
            }
        });
    }

    TEST(non_finite, infinite_parameters_and_nan_gradients_as_the_references)
    {
        std::ifstream in(std::string(XOPTIM_TEST_DATA_DIR) + "/non_finite.json");
        ASSERT_TRUE(in.good());
        const nlohmann::json doc = nlohmann::json::parse(in);
        ASSERT_EQ(doc.at("cases").size(), 28u);
        for (const auto& c : doc.at("cases"))
        {
            if (c.at("dtype") == "float32")
            {
                replay_non_finite<float, std::uint32_t>(c);
            }
            else
            {
                replay_non_finite<double, std::uint64_t>(c);
            }
        }
    }
}
