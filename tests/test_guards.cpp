// What a step refuses before it writes anything: a hyperparameter that is not finite or
// out of range, at construction or when a schedule sets it; memory written twice.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <xoptim/optim/hybrid.hpp>
#include <xoptim/optim/sparse.hpp>
#include <xoptim/step/stepper.hpp>
#include <xoptim/xoptim.hpp>

#include "support/message_of.hpp"

namespace
{
    using xoptim_test::message_of;

    constexpr double nan = std::numeric_limits<double>::quiet_NaN();
    constexpr double inf = std::numeric_limits<double>::infinity();

    template <class F>
    struct is_double_array : std::false_type
    {
    };

    template <std::size_t N>
    struct is_double_array<std::array<double, N>> : std::true_type
    {
    };

    // Calls f(name, field) for every number among the options' fields ("lr", "betas[1]").
    template <class Options, class F>
    void each_number(Options& o, F&& f)
    {
        Options::fields(o, [&](const char* key, auto& field) {
            using T = std::decay_t<decltype(field)>;
            if constexpr (std::is_same_v<T, double>)
            {
                f(std::string(key), field);
            }
            else if constexpr (is_double_array<T>::value)
            {
                for (std::size_t k = 0; k < field.size(); ++k)
                {
                    f(std::string(key) + "[" + std::to_string(k) + "]", field[k]);
                }
            }
        });
    }

    template <class Opt>
    typename Opt::options_type defaults()
    {
        typename Opt::options_type o;
        if constexpr (std::is_same_v<Opt, xoptim::sgd>)
        {
            o.lr = 0.1;
            o.momentum = 0.9;
        }
        return o;
    }

    // A schedule whose value at every step is `bad` (schedules refuse non-finite
    // numbers themselves, so it is made by a product that overflows).
    xoptim::schedule scheduled(double bad)
    {
        const xoptim::schedule overflow = xoptim::constant(1e300) * xoptim::constant(1e300);  // inf
        return std::isnan(bad) ? overflow * xoptim::constant(0) : overflow * xoptim::constant(bad > 0 ? 1 : -1);
    }

    template <class Opt>
    void expect_every_number_checked()
    {
        auto o = defaults<Opt>();
        std::vector<std::string> names;
        each_number(o, [&](const std::string& name, double&) { names.push_back(name); });
        ASSERT_FALSE(names.empty());
        for (const std::string& name : names)
        {
            for (const double bad : {nan, inf, -inf})
            {
                SCOPED_TRACE(std::string(Opt::name) + " " + name + " = " + std::to_string(bad));
                auto wrong = defaults<Opt>();
                each_number(wrong, [&](const std::string& n, double& x) { x = n == name ? bad : x; });
                // "xoptim::muon: ns_coefficients[1] must be finite (got nan)"; SGD's lr: "is required".
                const std::string prefix = std::string("xoptim::") + Opt::name + ": " + name + " ";
                EXPECT_EQ(message_of([&] { Opt opt(wrong); }).rfind(prefix, 0), 0u)
                    << message_of([&] { Opt opt(wrong); });

                // The same value from a schedule: refused by the step, which changes nothing.
                Opt opt(defaults<Opt>());
                opt.schedule(name, scheduled(bad));
                std::vector<float> p(16, 0.5f), g(16, 0.25f);
                const auto pv = xoptim::view(p.data(), {4, 4});
                const std::string error = message_of([&] { opt.step(pv, g); });
                EXPECT_EQ(error.rfind(prefix, 0), 0u) << error;
                EXPECT_NE(error.find("(the schedules' values for step 0)"), std::string::npos) << error;
                EXPECT_EQ(p, std::vector<float>(16, 0.5f));
                EXPECT_TRUE(opt.state().empty());
            }
        }
    }

    TEST(hyperparameters, every_number_of_every_optimizer_must_be_finite_and_in_range)
    {
        expect_every_number_checked<xoptim::sgd>();
        expect_every_number_checked<xoptim::adam>();
        expect_every_number_checked<xoptim::adamw>();
        expect_every_number_checked<xoptim::lion>();
        expect_every_number_checked<xoptim::signsgd>();
        expect_every_number_checked<xoptim::muon>();
    }

    TEST(hyperparameters, muon_newton_schulz_coefficients_name_the_element)
    {
        xoptim::muon_options o;
        o.ns_coefficients[1] = nan;
        EXPECT_EQ(message_of([&] { xoptim::muon m(o); }),
                  "xoptim::muon: ns_coefficients[1] must be finite (got nan)");
    }

    TEST(hyperparameters, around_the_step_too)
    {
        for (const double bad : {nan, inf, -inf})
        {
            xoptim::stepper_options s;
            s.clip_global_norm = bad;
            EXPECT_NE(message_of([&] { xoptim::stepper<xoptim::adamw> st(xoptim::adamw(), s); }),
                      "no std::invalid_argument thrown");
            s = {};
            s.clip_value = bad;
            EXPECT_NE(message_of([&] { xoptim::stepper<xoptim::adamw> st(xoptim::adamw(), s); }),
                      "no std::invalid_argument thrown");
            xoptim::sparse_embedding_options e;
            e.embedding_lr_ratio = bad;
            EXPECT_NE(message_of([&] { xoptim::sparse_embedding_optimizer opt(e); }), "no std::invalid_argument thrown");
            e = {};
            e.embedding_weight_decay = bad;
            EXPECT_NE(message_of([&] { xoptim::sparse_embedding_optimizer opt(e); }), "no std::invalid_argument thrown");
        }
    }
}
