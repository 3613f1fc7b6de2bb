// LAMB against tests/reference/trajectories_2026.json (a float64 transcription of NVIDIA
// apex's FusedLAMB, tests/reference/ref2026/lamb.py; optax.lamb as a configuration): 60
// steps over vectors, matrices, rank-4 and odd sizes, float and double; and what every
// optimizer owes: thread-count invariance, bit-identical resume, named errors, the
// stepper, param_groups, 8-bit states.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include <xoptim/io/checkpoint.hpp>
#include <xoptim/optim/router.hpp>
#include <xoptim/step/stepper.hpp>

#include "support/message_of.hpp"
#include "support/reference_2026.hpp"
#include "support/trajectory_2026.hpp"
#include "support/temp_dir.hpp"

namespace
{
    using xoptim_test::reference_case_2026;

    class lamb_trajectory : public ::testing::TestWithParam<reference_case_2026>
    {
    };

    TEST_P(lamb_trajectory, matches_reference)
    {
        const reference_case_2026& c = GetParam();
        ASSERT_GE(c.steps, 50);
        // A case with groups: a param_groups<lamb>, a group per entry taking the parameters
        // it lists (named by their index), its options the case's with the group's over them.
        const auto with = [&c](const auto& hyper, auto&& f) {
            if (c.groups.is_null())
            {
                xoptim::tools::with_optimizer_of<xoptim::lamb>("lamb", hyper, f);
                return;
            }
            xoptim::param_groups<xoptim::lamb> groups;
            for (std::size_t k = 0; k < c.groups.size(); ++k)
            {
                std::vector<std::string> names;
                for (const auto& index : c.groups[k].at("params"))
                {
                    names.push_back(std::to_string(index.get<std::size_t>()));
                }
                nlohmann::json options = hyper;
                options.update(c.groups[k].at("hyper"));
                xoptim::tools::with_optimizer_of<xoptim::lamb>("lamb", options, [&](xoptim::lamb& opt) {
                    groups.add("group " + std::to_string(k), xoptim::name_matches(names), std::move(opt));
                });
            }
            f(groups);
        };
        const auto nothing_more = [](const auto&) {};
        if (c.dtype == "float32")
        {
            xoptim_test::replay_2026<float>(c, with, nothing_more);
        }
        else
        {
            xoptim_test::replay_2026<double>(c, with, nothing_more);
        }
    }

    INSTANTIATE_TEST_SUITE_P(reference, lamb_trajectory, ::testing::ValuesIn(xoptim_test::cases_2026("lamb")),
                             [](const auto& info) { return info.param.name; });

    // A model big enough to be split across threads, with a tensor in pieces of many
    // reduction units, a tail, and tiny tensors.
    struct model
    {
        std::vector<float> w = std::vector<float>(3 * 65536 + 37);
        std::vector<float> b = std::vector<float>(5);
        std::vector<double> d = std::vector<double>(70001);

        model()
        {
            fill(w, 1.0, 0);
            fill(b, 2.0, 0);
            fill(d, 3.0, 0);
        }

        template <class V>
        static void fill(V& v, double f, int t)
        {
            for (std::size_t i = 0; i < v.size(); ++i)
            {
                v[i] = static_cast<typename V::value_type>(std::sin(f * double(i + 1) + 0.1 * t));
            }
        }

        auto params()
        {
            return std::make_tuple(xoptim::named("w", w), xoptim::named("b", b), xoptim::named("d", d));
        }

        template <class Opt>
        void steps(Opt& opt, int from, int to)
        {
            std::vector<float> gw(w.size()), gb(b.size());
            std::vector<double> gd(d.size());
            for (int t = from; t < to; ++t)
            {
                fill(gw, 0.7, t);
                fill(gb, 0.3, t);
                fill(gd, 0.9, t);
                opt.step(params(), std::tie(gw, gb, gd));
            }
        }
    };

    xoptim::lamb_options nvlamb()
    {
        xoptim::lamb_options o;
        o.lr = 1e-2;
        o.use_nvlamb = true;
        return o;
    }

    TEST(lamb, the_same_bits_for_any_thread_count)
    {
        const std::size_t before = xoptim::num_threads();
        const std::size_t threshold = xoptim::parallel_threshold();
        xoptim::set_parallel_threshold(4096);
        std::vector<model> models(3);
        for (std::size_t n : {1, 2, 3})
        {
            xoptim::set_num_threads(n);
            xoptim::lamb opt(nvlamb());
            models[n - 1].steps(opt, 0, 4);
        }
        xoptim::set_num_threads(before);
        xoptim::set_parallel_threshold(threshold);
        for (std::size_t n : {2, 3})
        {
            EXPECT_EQ(models[n - 1].w, models[0].w) << n << " threads";
            EXPECT_EQ(models[n - 1].b, models[0].b) << n << " threads";
            EXPECT_EQ(models[n - 1].d, models[0].d) << n << " threads";
        }
        EXPECT_NE(models[0].w, model().w);  // the steps did move the parameters
    }

    // The report counts the update LAMB carries between its passes for its tensors of
    // more than 2^14 elements: one array of the biggest per element type, beside m and v.
    TEST(lamb, the_report_counts_the_carried_update)
    {
        model mo;
        xoptim::lamb opt(nvlamb());
        mo.steps(opt, 0, 1);
        const std::size_t states = (mo.w.size() + mo.b.size()) * 2 * sizeof(float) + mo.d.size() * 2 * sizeof(double);
        const std::size_t carried = mo.w.size() * sizeof(float) + mo.d.size() * sizeof(double);
        EXPECT_EQ(opt.report().state_bytes, states + carried);
        mo.steps(opt, 1, 3);
        EXPECT_EQ(opt.report().state_bytes, states + carried);  // kept, not grown
    }

    class lamb_checkpoint : public xoptim_test::temp_dir_test
    {
    };

    TEST_F(lamb_checkpoint, resumes_bit_for_bit)
    {
        const std::string file = (dir_ / "lamb.safetensors").string();
        model whole;
        xoptim::lamb a(nvlamb());
        whole.steps(a, 0, 5);

        model first;
        xoptim::lamb b(nvlamb());
        first.steps(b, 0, 3);
        xoptim::save_checkpoint(file, first.params(), b);
        model resumed;
        xoptim::lamb c(nvlamb());
        xoptim::load_checkpoint(file, resumed.params(), c);
        EXPECT_EQ(c.step_count(), 3u);
        resumed.steps(c, 3, 5);
        EXPECT_EQ(resumed.w, whole.w);
        EXPECT_EQ(resumed.b, whole.b);
        EXPECT_EQ(resumed.d, whole.d);
    }

    TEST(lamb, bad_hyperparameters_are_named)
    {
        const auto refused = [](auto change, const char* field) {
            xoptim::lamb_options o;
            change(o);
            const std::string what = xoptim_test::message_of([&] { xoptim::lamb{o}; });
            EXPECT_NE(what.find("lamb"), std::string::npos) << what;
            EXPECT_NE(what.find(field), std::string::npos) << what;
        };
        refused([](auto& o) { o.lr = -1; }, "lr");
        refused([](auto& o) { o.betas[0] = 1.5; }, "betas[0]");
        refused([](auto& o) { o.betas[1] = -0.1; }, "betas[1]");
        refused([](auto& o) { o.eps = 0; }, "eps");
        refused([](auto& o) { o.weight_decay = std::numeric_limits<double>::quiet_NaN(); }, "weight_decay");
        refused([](auto& o) { o.max_grad_norm = 0.0; }, "max_grad_norm");
        xoptim::lamb_options off;
        off.max_grad_norm = std::nullopt;
        EXPECT_NO_THROW(xoptim::lamb{off});
    }

    // The stepper's clipping reaches LAMB's reductions: a step through a stepper that
    // clips by value equals a plain step on the clipped gradients.
    TEST(lamb, through_the_stepper)
    {
        xoptim::stepper_options so;
        so.clip_value = 0.5;
        xoptim::stepper<xoptim::lamb> s(xoptim::lamb(nvlamb()), so);
        model m1, m2;
        std::vector<float> gw(m1.w.size()), gb(m1.b.size());
        std::vector<double> gd(m1.d.size());
        model::fill(gw, 0.7, 0);
        model::fill(gb, 0.3, 0);
        model::fill(gd, 0.9, 0);
        ASSERT_TRUE(s(m1.params(), std::tie(gw, gb, gd)));
        for (auto& x : gw) x = std::min(0.5f, std::max(-0.5f, x));
        for (auto& x : gb) x = std::min(0.5f, std::max(-0.5f, x));
        for (auto& x : gd) x = std::min(0.5, std::max(-0.5, x));
        xoptim::lamb plain(nvlamb());
        plain.step(m2.params(), std::tie(gw, gb, gd));
        EXPECT_EQ(m1.w, m2.w);
        EXPECT_EQ(m1.b, m2.b);
        EXPECT_EQ(m1.d, m2.d);
    }

    // Parameter groups are one LAMB in groups, as apex's: the gradient norm that
    // max_grad_norm clips by is over every group's tensors, so two groups with the same
    // options step as one LAMB over all the tensors, bit for bit (the groups' sums added
    // in the order the single optimizer adds them: w and b, then d). Groups of other
    // options: the reference case lamb_groups.
    TEST(lamb, in_parameter_groups_one_gradient_norm_over_all_groups)
    {
        const auto run = [](auto& trainer) {
            model m;
            m.steps(trainer, 0, 3);
            return m;
        };
        xoptim::param_groups<xoptim::lamb> groups;
        groups.add("floats", xoptim::name_matches({"w", "b"}), xoptim::lamb(nvlamb()));
        groups.fallback("doubles", xoptim::lamb(nvlamb()));
        xoptim::lamb one(nvlamb());
        const model grouped = run(groups), single = run(one);
        EXPECT_EQ(grouped.w, single.w);
        EXPECT_EQ(grouped.b, single.b);
        EXPECT_EQ(grouped.d, single.d);

        // Each group alone, its own norm, steps otherwise (what the groups do not do).
        xoptim::lamb floats(nvlamb()), doubles(nvlamb());
        model apart;
        std::vector<float> gw(apart.w.size()), gb(apart.b.size());
        std::vector<double> gd(apart.d.size());
        for (int t = 0; t < 3; ++t)
        {
            model::fill(gw, 0.7, t);
            model::fill(gb, 0.3, t);
            model::fill(gd, 0.9, t);
            floats.step(std::make_tuple(xoptim::named("w", apart.w), xoptim::named("b", apart.b)), std::tie(gw, gb));
            doubles.step(std::make_tuple(xoptim::named("d", apart.d)), std::tie(gd));
        }
        EXPECT_NE(grouped.w, apart.w);
        EXPECT_NE(grouped.d, apart.d);
    }

    // The same with 8-bit states (their step compiled apart, set_storage): each group's
    // share of the norm is summed by that step too, before any group updates.
    TEST(lamb, in_parameter_groups_with_8bit_states_one_gradient_norm)
    {
        const auto coded = [] {
            xoptim::lamb opt(nvlamb());
            xoptim::storage_options s;
            s.states = xoptim::state_storage::blockwise_8bit;
            opt.set_storage(s);
            return opt;
        };
        xoptim::param_groups<xoptim::lamb> groups;
        groups.add("floats", xoptim::name_matches({"w", "b"}), coded());
        groups.fallback("doubles", coded());
        xoptim::lamb one = coded();
        model grouped, single;
        grouped.steps(groups, 0, 3);
        single.steps(one, 0, 3);
        EXPECT_EQ(grouped.w, single.w);
        EXPECT_EQ(grouped.b, single.b);
        EXPECT_EQ(grouped.d, single.d);
    }

    // 8-bit moments: the reductions see the pass's values; the run stays finite and
    // close to the float-state run.
    TEST(lamb, with_8bit_states)
    {
        model native, coded;
        xoptim::lamb a(nvlamb());
        xoptim::lamb b(nvlamb());
        xoptim::storage_options s;
        s.states = xoptim::state_storage::blockwise_8bit;
        b.set_storage(s);
        native.steps(a, 0, 5);
        coded.steps(b, 0, 5);
        double worst = 0;
        for (std::size_t i = 0; i < native.w.size(); ++i)
        {
            ASSERT_TRUE(std::isfinite(coded.w[i]));
            worst = std::max(worst, double(std::abs(coded.w[i] - native.w[i])));
        }
        EXPECT_LT(worst, 5e-3);
        EXPECT_GT(worst, 0.0);  // the states were coded
        EXPECT_EQ(b.report().state_bytes < a.report().state_bytes, true);
    }

    // An element whose new v is tiny beside its block's largest stores 8-bit's zero code.
    // The update must still be the one whose norm the trust ratio took, computed before
    // the states are stored: its step is lr * ratio * (about 1), as with float states, not
    // m / eps (88 times the float step here when the second pass read v back from its code).
    TEST(lamb, an_8bit_state_stored_as_zero_moves_its_element_as_float_states_do)
    {
        const std::size_t n = 4096;  // min_8bit_size: 8-bit
        std::vector<float> g(n, 1.0f);
        g[0] = 1e-4f;
        for (const bool clip : {false, true})
        {
            xoptim::lamb_options o;  // apex's defaults (lr 1e-3, wd 0.01, eps 1e-6)
            if (!clip)
            {
                o.max_grad_norm = std::nullopt;
            }
            std::vector<float> native(n, 1.0f), coded(n, 1.0f);
            xoptim::lamb a(o), b(o);
            xoptim::storage_options s;
            s.states = xoptim::state_storage::blockwise_8bit;
            b.set_storage(s);
            a.step(native, g);
            b.step(coded, g);
            ASSERT_EQ(b.state()[0].states[1].format, xoptim::slot_format::q8_unsigned);
            for (std::size_t i : {std::size_t(0), std::size_t(1), n - 1})
            {
                const double step_native = 1.0 - double(native[i]);
                const double step_coded = 1.0 - double(coded[i]);
                EXPECT_NEAR(step_coded, step_native, 0.01 * std::abs(step_native)) << "element " << i << " clip " << clip;
            }
        }
    }
}
