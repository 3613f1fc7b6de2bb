// Muon's newer iterations: Polar Express tables, NorMuon and bf16 Newton-Schulz, against
// the trajectories of tests/reference/trajectories_2026.json (ref2026/muon.py), through
// xoptim-replay's JSON keys; then thread counts, checkpoints (NorMuon's second moment
// included), bad options, the hybrid.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include <xoptim/io/checkpoint.hpp>

#include "../tools/optimizer_json.hpp"
#include "support/reference_2026.hpp"
#include "support/temp_dir.hpp"

namespace
{
    using xoptim_test::reference_case_2026;

    // The reference's hyperparameters as xoptim-replay's keys: its one-row tables are
    // ns_coefficients, longer ones ns_coefficient_table; the momentum form is the one its
    // source names.
    nlohmann::json replay_keys(const reference_case_2026& c)
    {
        const nlohmann::json& hyper = c.hyper;
        nlohmann::json h = hyper;
        h["momentum_form"] = c.source.find("momentum lerp form") != std::string::npos ? "lerp" : "ema";
        const auto table = hyper.at("ns_coefficients");
        h.erase("ns_coefficients");
        if (table.size() == 1)
        {
            h["ns_coefficients"] = table[0];
        }
        else
        {
            h["ns_coefficient_table"] = table;
        }
        return h;
    }

    // |ours - ref| <= tol * max(|ref|, 1). Working precision: float 1e-6 (the reference's
    // own float32 spreads, f32_fma_spread and f32_blas_spread, reach 5.6e-7), double 1e-12.
    // bf16 products: 4 bf16 ulps of the update's largest element, lr * adjust * 4 * 2^-8
    // (entries of an orthogonalized matrix are below 1). The reference sums each product
    // exactly, xoptim in float (as torch does): where a float sum lands on the other side
    // of a bf16 rounding boundary an element of one step's O moves by one ulp (3.9e-5 here
    // with another summation order). In xoptim's order none does on these cases: the
    // three match to 1.2e-7, the float rounding of the parameter update.
    template <class T>
    double tolerance(const reference_case_2026& c)
    {
        if (c.hyper.at("ns_precision") == "bf16")
        {
            double adjust = 0;
            for (const auto& shape : c.shapes)
            {
                const auto [rows, cols] = xoptim::muon::matrix_view(shape);
                adjust = std::max(adjust, c.hyper.at("lr_adjust") == "original"
                                              ? std::sqrt(std::max(1.0, double(rows) / double(cols)))
                                              : 0.2 * std::sqrt(double(std::max(rows, cols))));
            }
            return c.hyper.at("lr").get<double>() * adjust * 4 * std::ldexp(1.0, -8);
        }
        return std::is_same_v<T, float> ? 1e-6 : 1e-12;
    }

    double gap(double ours, double want)
    {
        return std::abs(ours - want) / std::max(std::abs(want), 1.0);
    }

    template <class T>
    struct problem
    {
        std::vector<std::vector<T>> params, grads;
        std::vector<xoptim::tensor_view<T>> param_views, grad_views;

        explicit problem(const reference_case_2026& c)
        {
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
            for (std::size_t k = 0; k < c.shapes.size(); ++k)
            {
                param_views.emplace_back(params[k].data(), c.shapes[k]);
                grad_views.emplace_back(grads[k].data(), c.shapes[k]);
            }
        }

        void gradients(const reference_case_2026& c, int t)
        {
            for (std::size_t k = 0; k < grads.size(); ++k)
            {
                for (std::size_t i = 0; i < grads[k].size(); ++i)
                {
                    grads[k][i] = static_cast<T>(xoptim_test::grad_value(c, k, t, i));
                }
            }
        }
    };

    template <class T>
    void replay(const reference_case_2026& c)
    {
        problem<T> pr(c);
        const double tol = tolerance<T>(c);
        double worst = 0;
        xoptim::tools::with_optimizer_of<xoptim::muon>("muon", replay_keys(c), [&](auto& opt) {
            for (int t = 1; t <= c.steps; ++t)
            {
                pr.gradients(c, t);
                opt.step(pr.param_views, pr.grad_views);
                const auto expected = c.checkpoints.find(t);
                if (expected == c.checkpoints.end())
                {
                    continue;
                }
                for (std::size_t k = 0; k < pr.params.size(); ++k)
                {
                    ASSERT_EQ(expected->second[k].size(), pr.params[k].size());
                    for (std::size_t i = 0; i < pr.params[k].size(); ++i)
                    {
                        const double e = gap(pr.params[k][i], expected->second[k][i]);
                        worst = std::max(worst, e);
                        ASSERT_LE(e, tol) << c.name << " step " << t << " parameter " << k << " element " << i;
                    }
                }
            }
            // The states after the last step: momentum_buffer, and NorMuon's
            // second_momentum_buffer (rows, 1), one value per row.
            ASSERT_EQ(c.final_states.size(), pr.params.size());
            for (std::size_t k = 0; k < pr.params.size(); ++k)
            {
                const std::string name = std::to_string(k);
                const auto m = opt.state().values(name, 0);
                const auto& want_m = c.final_states[k].at("momentum_buffer").values;
                ASSERT_EQ(m.size(), want_m.size());
                for (std::size_t i = 0; i < m.size(); ++i)
                {
                    ASSERT_LE(gap(m[i], want_m[i]), tol) << c.name << " momentum_buffer " << k;
                }
                if (!c.hyper.at("normuon").get<bool>())
                {
                    EXPECT_EQ(opt.state()[k].count, 2u);
                    continue;
                }
                const auto v = opt.state().values(name, 1);
                const auto& want_v = c.final_states[k].at("second_momentum_buffer");
                const std::size_t rows = c.shapes[k][0];
                ASSERT_EQ(want_v.shape, (std::vector<std::size_t>{rows, 1}));
                ASSERT_EQ(opt.state()[k].state_shape(1), want_v.shape);
                ASSERT_EQ(v.size(), rows);
                for (std::size_t i = 0; i < rows; ++i)
                {
                    ASSERT_LE(gap(v[i], want_v.values[i]), tol)
                        << c.name << " second_momentum_buffer " << k << " row " << i;
                }
            }
        });
        std::printf("%-36s worst %.3g (tolerance %g)\n", c.name.c_str(), worst, tol);
    }

    TEST(muon_2026, trajectories_match_the_references)
    {
        std::size_t cases = 0;
        for (const auto& c : xoptim_test::load_reference_cases_2026())
        {
            if (c.optimizer != "muon")
            {
                continue;
            }
            ++cases;
            SCOPED_TRACE(c.name);
            if (c.dtype == "float32")
            {
                replay<float>(c);
            }
            else
            {
                replay<double>(c);
            }
        }
        EXPECT_EQ(cases, 13u);
    }

    // All three options together, on a tall, a wide and a 4-D parameter.
    xoptim::muon_options everything()
    {
        auto o = xoptim::muon_options::polar_express();
        o.normuon = true;
        o.weight_decay = 0.01;
        return o;
    }

    struct model
    {
        std::vector<std::vector<float>> w;
        std::vector<std::vector<std::size_t>> shapes = {{40, 24}, {24, 72}, {8, 4, 3, 3}};

        explicit model(double shift)
        {
            for (std::size_t k = 0; k < shapes.size(); ++k)
            {
                w.emplace_back(xoptim_test::numel(shapes[k]));
                for (std::size_t i = 0; i < w[k].size(); ++i)
                {
                    w[k][i] = static_cast<float>(std::sin(0.37 * double(i) + shift + double(k)));
                }
            }
        }

        std::vector<xoptim::tensor_view<float>> views()
        {
            std::vector<xoptim::tensor_view<float>> v;
            for (std::size_t k = 0; k < w.size(); ++k)
            {
                v.emplace_back(w[k].data(), shapes[k]);
            }
            return v;
        }
    };

    // Steps first..last-1 of the test problem on p.
    void advance(xoptim::muon& opt, model& p, int first, int last)
    {
        auto pv = p.views();
        for (int t = first; t < last; ++t)
        {
            model g(1.0 + t);
            opt.step(pv, g.views());
        }
    }

    std::vector<std::vector<float>> run_steps(const xoptim::muon_options& o, int steps)
    {
        model p(0);
        xoptim::muon opt(o);
        advance(opt, p, 0, steps);
        return p.w;
    }

    TEST(muon_2026, any_thread_count_gives_the_same_bits)
    {
        for (const auto precision : {xoptim::ns_precision::working, xoptim::ns_precision::bf16})
        {
            auto o = everything();
            o.ns_precision = precision;
            const std::size_t threads = xoptim::num_threads(), threshold = xoptim::parallel_threshold();
            xoptim::set_num_threads(1);
            xoptim::set_parallel_threshold(1);
            const auto one = run_steps(o, 4);
            xoptim::set_num_threads(2);
            const auto two = run_steps(o, 4);
            xoptim::set_num_threads(7);
            const auto seven = run_steps(o, 4);
            xoptim::set_num_threads(threads);
            xoptim::set_parallel_threshold(threshold);
            EXPECT_EQ(one, two);
            EXPECT_EQ(one, seven);
        }
    }

    class muon_2026_files : public xoptim_test::temp_dir_test
    {
    };

    TEST_F(muon_2026_files, resume_from_a_checkpoint_is_bit_identical)
    {
        const std::string path = (dir_ / "normuon.safetensors").string();
        for (const auto precision : {xoptim::ns_precision::working, xoptim::ns_precision::bf16})
        {
            auto o = everything();
            o.ns_precision = precision;
            const auto straight = run_steps(o, 6);
            model p(0);
            {
                xoptim::muon opt(o);
                advance(opt, p, 0, 3);
                auto pv = p.views();
                xoptim::save_checkpoint(path, pv, opt);
                // The second moment is in the file: one value per row of (40, 24).
                const auto v = opt.state().values("0", 1);
                EXPECT_EQ(v.size(), 40u);
                EXPECT_GT(v[0], 0.0);
            }
            model q(5);  // other weights: the checkpoint brings them back
            xoptim::muon resumed(o);
            auto qv = q.views();
            xoptim::load_checkpoint(path, qv, resumed);
            advance(resumed, q, 3, 6);
            EXPECT_EQ(q.w, straight);
        }
    }

    TEST(muon_2026, the_second_moment_changes_the_trajectory_and_a_lost_one_would_show)
    {
        // Guards the resume test: dropping NorMuon's state makes a different trajectory.
        auto o = everything();
        const auto straight = run_steps(o, 6);
        model p(0);
        xoptim::muon first(o);
        advance(first, p, 0, 3);
        xoptim::muon fresh(o);
        advance(fresh, p, 3, 6);
        EXPECT_NE(p.w, straight);
    }

    std::string message(const xoptim::muon_options& o)
    {
        try
        {
            xoptim::muon opt(o);
        }
        catch (const std::invalid_argument& e)
        {
            return e.what();
        }
        return "no exception";
    }

    TEST(muon_2026, bad_options_are_named)
    {
        auto o = xoptim::muon_options::polar_express();
        o.ns_coefficient_table[2][1] = std::numeric_limits<double>::infinity();
        EXPECT_EQ(message(o), "xoptim::muon: ns_coefficient_table[2][1] must be finite (got inf)");
        o = {};
        o.ns_norm_scale = 0;
        EXPECT_EQ(message(o), "xoptim::muon: ns_norm_scale must be > 0 and finite (got 0)");
        o = {};
        o.beta2 = 1;
        EXPECT_EQ(message(o), "xoptim::muon: beta2 must be in [0, 1) (got 1)");
        o = {};
        o.normuon_eps = -1e-10;
        EXPECT_EQ(message(o), "xoptim::muon: normuon_eps must be > 0 and finite (got -1e-10)");
        o = {};
        o.ns_norm = xoptim::ns_norm::clamp_eps;
        o.ns_norm_scale = 1.01;  // would be ignored: only add_eps scales the norm
        EXPECT_EQ(message(o), "xoptim::muon: ns_norm_scale must be 1 under ns_norm clamp_eps (got 1.01)");
        o = {};
        o.ns_precision = xoptim::ns_precision::bf16;
        o.eps = 1e-50;  // 0 in bf16: a zero gradient would be 0 / 0
        EXPECT_EQ(message(o),
                  "xoptim::muon: eps must be >= 2^-133 (the smallest bf16) under ns_precision bf16 (got 1e-50)");
        o.eps = 0x1p-133;
        EXPECT_EQ(message(o), "no exception");

        const auto json_error = [](const nlohmann::json& hyper) {
            try
            {
                xoptim::tools::with_optimizer("muon", hyper, [](auto&) {});
            }
            catch (const std::invalid_argument& e)
            {
                return std::string(e.what());
            }
            return std::string("no exception");
        };
        EXPECT_EQ(json_error({{"ns_precision", "fp8"}}),
                  "hyperparameter \"ns_precision\" of muon must be \"working\" or \"bf16\"");
        EXPECT_EQ(json_error({{"ns_norm", 1}}), "hyperparameter \"ns_norm\" of muon must be \"add_eps\" or \"clamp_eps\"");
        EXPECT_EQ(json_error({{"normuon_scale", "mean"}}),
                  "hyperparameter \"normuon_scale\" of muon must be \"preserve_norm\" or \"rms\"");
        EXPECT_EQ(json_error({{"ns_coefficient_table", {{1, 2}}}}),
                  "hyperparameter \"ns_coefficient_table\" of muon must be \"polar_express\" or an array of [a, b, c] "
                  "rows");
        EXPECT_EQ(json_error({{"ns_coefficient_table", {{1, 2, nullptr}}}}),
                  "hyperparameter \"ns_coefficient_table\" of muon must be \"polar_express\" or an array of [a, b, c] "
                  "rows");
        // A count is a JSON integer, and null only where its reference allows None.
        EXPECT_EQ(json_error({{"ns_steps", 5.0}}),
                  "hyperparameter \"ns_steps\" of muon must be a non-negative integer");
        EXPECT_EQ(json_error({{"ns_steps", nullptr}}),
                  "hyperparameter \"ns_steps\" of muon must be a non-negative integer");
        EXPECT_EQ(json_error({{"ns_steps", 3u}}), "no exception");
    }

    // Under bf16 or 8-bit storage the momentum is narrow and the second moment stays in
    // the working type: after one step (the momentum's first value is used from the pass
    // that computes it, before it is stored) it is the native run's, bit for bit.
    TEST(muon_2026, normuon_keeps_its_second_moment_in_the_working_type)
    {
        for (const auto storage : {xoptim::state_storage::bf16, xoptim::state_storage::blockwise_8bit})
        {
            xoptim::muon native(everything()), narrow(everything());
            xoptim::storage_options so;
            so.states = storage;
            so.min_8bit_size = 1;
            narrow.set_storage(so);
            model p(0), q(0), g(1);
            auto pv = p.views();
            auto qv = q.views();
            native.step(pv, g.views());
            narrow.step(qv, g.views());
            for (std::size_t k = 0; k < p.shapes.size(); ++k)
            {
                const auto& e = narrow.state()[k];
                EXPECT_NE(e.states[0].format, xoptim::slot_format::native);
                EXPECT_EQ(e.states[1].format, xoptim::slot_format::native);
                EXPECT_EQ(e.state_size(1), p.shapes[k][0]);
                const std::string name = std::to_string(k);
                EXPECT_EQ(narrow.state().values(name, 1), native.state().values(name, 1)) << name;
            }
            EXPECT_EQ(q.w, p.w);
        }
    }

    // Switching NorMuon off after the first step would make its per-row second moment the
    // parameter-sized scratch: refused, the options and the state unchanged.
    TEST(muon_2026, normuon_cannot_be_switched_once_the_state_exists)
    {
        xoptim::muon opt(everything());
        model p(0), g(1);
        auto pv = p.views();
        opt.step(pv, g.views());
        const auto v = opt.state().values("0", 1);
        auto off = everything();
        off.normuon = false;
        try
        {
            opt.set_options(off);
            FAIL() << "normuon was switched off";
        }
        catch (const std::invalid_argument& e)
        {
            EXPECT_STREQ(e.what(), "xoptim::muon: these options shape the state of parameter '0' otherwise than it "
                                   "was made on the first step (options that shape a state, such as normuon, must "
                                   "hold from the first step)");
        }
        EXPECT_TRUE(opt.options().normuon);
        EXPECT_EQ(opt.state().values("0", 1), v);
    }

    TEST(muon_2026, replay_keys_and_the_named_table)
    {
        const nlohmann::json hyper = {{"ns_coefficient_table", "polar_express"}, {"ns_norm_scale", 1.01},
                                      {"ns_precision", "bf16"}, {"ns_norm", "clamp_eps"}, {"normuon", true},
                                      {"beta2", 0.9}, {"normuon_eps", 1e-9}, {"normuon_scale", "rms"}};
        {
            const auto o = xoptim::tools::detail::read_options<xoptim::muon_options>("muon", hyper);
            EXPECT_EQ(o.ns_coefficient_table, xoptim::polar_express_coefficients());
            EXPECT_EQ(o.ns_norm_scale, 1.01);
            EXPECT_EQ(o.ns_precision, xoptim::ns_precision::bf16);
            EXPECT_EQ(o.ns_norm, xoptim::ns_norm::clamp_eps);
            EXPECT_TRUE(o.normuon);
            EXPECT_EQ(o.beta2, 0.9);
            EXPECT_EQ(o.normuon_eps, 1e-9);
            EXPECT_EQ(o.normuon_scale, xoptim::normuon_scale::rms);
        }
    }

    // The hybrid's Muon share moves as a Muon alone would, with every new option on.
    TEST(muon_2026, works_in_the_hybrid)
    {
        xoptim::hybrid_options ho;
        ho.muon = everything();
        ho.muon.ns_precision = xoptim::ns_precision::bf16;
        auto hybrid = xoptim::make_hybrid(ho);
        xoptim::muon alone(ho.muon);
        std::vector<float> w(24 * 40), bias(24), w_alone;
        for (std::size_t i = 0; i < w.size(); ++i)
        {
            w[i] = static_cast<float>(std::cos(0.11 * double(i)));
        }
        w_alone = w;
        for (int t = 0; t < 3; ++t)
        {
            std::vector<float> gw(w.size()), gb(bias.size(), 0.5f);
            for (std::size_t i = 0; i < gw.size(); ++i)
            {
                gw[i] = static_cast<float>(std::sin(0.3 * double(i) + t));
            }
            auto wv = xoptim::view(w.data(), {24, 40});
            auto av = xoptim::view(w_alone.data(), {24, 40});
            hybrid.step(std::make_tuple(xoptim::named("layer.weight", wv), xoptim::named("layer.bias", bias)),
                        std::make_tuple(xoptim::view(gw.data(), {24, 40}), gb));
            alone.step(av, xoptim::view(gw.data(), {24, 40}));
        }
        EXPECT_EQ(w, w_alone);
        EXPECT_EQ(hybrid.optimizer<0>().state()[0].count, 3u);  // NorMuon's second moment
    }
}
