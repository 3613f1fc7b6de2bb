// Checks every optimizer of trajectories_2026.json gets (tests/test_ademamix.cpp, ...):
// the reference trajectory, bits independent of the thread count, a bit-identical
// resume from a checkpoint, and the same steps through param_groups and the stepper.
// `make` builds the optimizer under test (a fresh one per call).
#ifndef XOPTIM_TESTS_SUPPORT_OPTIMIZER_CHECKS_HPP
#define XOPTIM_TESTS_SUPPORT_OPTIMIZER_CHECKS_HPP

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include <xoptim/io/checkpoint.hpp>
#include <xoptim/optim/router.hpp>
#include <xoptim/step/stepper.hpp>

#include "reference_2026.hpp"
#include "resume_check.hpp"

namespace xoptim_test
{

    // |ours - ref| / max(|ref|, 1) over every element; fails the test above `tol`.
    template <class T>
    double expect_close_scaled(const std::vector<std::vector<T>>& ours, const std::vector<std::vector<double>>& ref,
                               double tol, const std::string& what)
    {
        double worst = 0;
        EXPECT_EQ(ours.size(), ref.size()) << what;
        for (std::size_t k = 0; k < ours.size() && k < ref.size(); ++k)
        {
            EXPECT_EQ(ours[k].size(), ref[k].size()) << what;
            for (std::size_t i = 0; i < ours[k].size() && i < ref[k].size(); ++i)
            {
                const double err = std::abs(double(ours[k][i]) - ref[k][i]) / std::max(std::abs(ref[k][i]), 1.0);
                worst = std::max(worst, err);
                if (!(err <= tol))
                {
                    ADD_FAILURE() << what << " param " << k << " element " << i << ": got " << ours[k][i]
                                  << ", reference " << ref[k][i] << " (scaled error " << err << ")";
                    return worst;
                }
            }
        }
        return worst;
    }

    // The README's tolerances for the element-wise optimizers.
    inline double tolerance_2026(const reference_case_2026& c)
    {
        return c.dtype == "float32" ? 1e-6 : 1e-12;
    }

    // Steps a case from t = 1 to c.steps with `opt`, calling at_checkpoint(t, tensors) after
    // comparing the parameters at each checkpoint step.
    template <class T, class Opt, class Hook>
    void replay_case(const reference_case_2026& c, Opt& opt, Hook&& at_checkpoint)
    {
        case_tensors<T> x(c);
        double worst = 0;
        for (int t = 1; t <= c.steps; ++t)
        {
            x.set_grads(c, t);
            opt.step(x.param_views, x.grad_views);
            const auto expected = c.checkpoints.find(t);
            if (expected == c.checkpoints.end())
                continue;
            worst = std::max(worst, expect_close_scaled(x.params, expected->second, tolerance_2026(c),
                                                        c.name + " step " + std::to_string(t)));
            at_checkpoint(t, x);
        }
        std::printf("%-40s worst scaled error %.3g\n", c.name.c_str(), worst);
    }

    template <class T, class Opt>
    void replay_case(const reference_case_2026& c, Opt& opt)
    {
        replay_case<T>(c, opt, [](int, case_tensors<T>&) {});
    }

    // Deterministic inputs for the property checks below: sizes with odd tails, one large
    // enough to be split across threads at a low threshold.
    inline std::vector<std::size_t> check_sizes()
    {
        return {1, 7, 64, 1000, 4099};
    }

    template <class T>
    std::vector<std::vector<T>> check_tensors(std::uint64_t seed, int t)
    {
        std::vector<std::vector<T>> out;
        const auto sizes = check_sizes();
        for (std::size_t k = 0; k < sizes.size(); ++k)
        {
            std::vector<T> x(sizes[k]);
            for (std::size_t i = 0; i < x.size(); ++i)
                x[i] = static_cast<T>(u(seed * 1000 + k, std::uint64_t(t), i));
            out.push_back(std::move(x));
        }
        return out;
    }

    // The five tensors of check_tensors as a tuple (a tuple of named parameters takes one).
    template <class T>
    auto tied(std::vector<std::vector<T>>& g)
    {
        return std::tie(g[0], g[1], g[2], g[3], g[4]);
    }

    // Bits of `steps` steps with 1, 2 and 3 threads (threshold 64: every tensor of more
    // than 64 elements is split) are identical.
    template <class Make>
    void expect_thread_invariant(Make&& make, int steps = 12)
    {
        std::vector<std::vector<std::vector<float>>> results;
        for (std::size_t threads : {1, 2, 3})
        {
            xoptim::set_num_threads(threads);
            xoptim::set_parallel_threshold(64);
            auto opt = make();
            auto p = check_tensors<float>(11, 0);
            for (int t = 1; t <= steps; ++t)
                opt.step(p, check_tensors<float>(11, t));
            results.push_back(p);
        }
        xoptim::set_num_threads(std::max(1u, std::thread::hardware_concurrency()));
        xoptim::set_parallel_threshold(std::size_t(1) << 16);
        EXPECT_EQ(results[0], results[1]);
        EXPECT_EQ(results[0], results[2]);
    }

    // expect_resume_bit_identical_with (resume_check.hpp) on the five tensors of
    // check_tensors, with `storage` (native, bf16 or 8-bit).
    template <class Make>
    void expect_resume_bit_identical(Make&& make, const std::string& file,
                                     xoptim::state_storage storage = xoptim::state_storage::native)
    {
        xoptim::storage_options s;
        s.states = storage;
        s.min_8bit_size = 64;
        const auto names = [](std::vector<std::vector<float>>& p) {
            return std::make_tuple(xoptim::named("a", p[0]), xoptim::named("b", p[1]), xoptim::named("c", p[2]),
                                   xoptim::named("d", p[3]), xoptim::named("e", p[4]));
        };
        expect_resume_bit_identical_with(
            std::forward<Make>(make), file, s, [](int seed) { return check_tensors<float>(seed, 0); }, names,
            [&](auto& opt, std::vector<std::vector<float>>& x, int t) {
                auto g = check_tensors<float>(5, t);
                opt.step(names(x), tied(g));
            });
    }

    // Two param_groups step each parameter as the group's optimizer alone would, and a
    // stepper (global-norm clipping, 2 micro-batches, a NaN batch skipped) runs it and
    // keeps everything finite and unchanged on the skipped step.
    template <class Make>
    void expect_groups_and_stepper(Make&& make)
    {
        auto p = check_tensors<float>(3, 0);
        auto alone_p = p;
        xoptim::param_groups<decltype(make())> groups;
        groups.add("small", xoptim::name_matches({"s*"}), make());
        groups.fallback("large", make());
        auto alone_small = make();
        auto alone_large = make();
        for (int t = 1; t <= 5; ++t)
        {
            auto g = check_tensors<float>(3, t);
            groups.step(std::make_tuple(xoptim::named("s0", p[0]), xoptim::named("l1", p[1]), xoptim::named("s2", p[2]),
                                        xoptim::named("l3", p[3]), xoptim::named("l4", p[4])),
                        tied(g));
            alone_small.step(std::make_tuple(xoptim::named("s0", alone_p[0]), xoptim::named("s2", alone_p[2])),
                             std::tie(g[0], g[2]));
            alone_large.step(std::make_tuple(xoptim::named("l1", alone_p[1]), xoptim::named("l3", alone_p[3]),
                                             xoptim::named("l4", alone_p[4])),
                             std::tie(g[1], g[3], g[4]));
        }
        EXPECT_EQ(p, alone_p);
        EXPECT_EQ(groups.group("large").step_count(), 5u);

        xoptim::stepper_options o;
        o.clip_global_norm = 0.5;
        o.accumulate = 2;
        o.on_non_finite = xoptim::non_finite::skip;
        xoptim::stepper step(make(), o);
        auto w = check_tensors<float>(4, 0);
        int stepped = 0;
        for (int t = 1; t <= 8; ++t)
            stepped += step(w, check_tensors<float>(4, t)) ? 1 : 0;
        EXPECT_EQ(stepped, 4);
        EXPECT_EQ(step.optimizer().step_count(), 4u);
        const auto before = w;
        auto bad = check_tensors<float>(4, 9);
        bad[3][5] = std::nanf("");
        step(w, bad);
        EXPECT_FALSE(step(w, check_tensors<float>(4, 10)));
        EXPECT_EQ(step.skipped_steps(), 1u);
        EXPECT_EQ(w, before);
        for (const auto& x : w)
            for (float v : x)
                EXPECT_TRUE(std::isfinite(v));
    }

    // bf16 and 8-bit states track native states closely over 20 steps (max |difference| of
    // the parameters below `tol`; the update sizes here are about lr).
    template <class Make>
    void expect_low_memory_tracks_native(Make&& make, double tol)
    {
        auto run = [&](xoptim::state_storage storage) {
            xoptim::storage_options s;
            s.states = storage;
            s.min_8bit_size = 64;
            auto opt = make();
            opt.set_storage(s);
            auto p = check_tensors<float>(8, 0);
            for (int t = 1; t <= 20; ++t)
                opt.step(p, check_tensors<float>(8, t));
            return p;
        };
        const auto native = run(xoptim::state_storage::native);
        for (auto storage : {xoptim::state_storage::bf16, xoptim::state_storage::blockwise_8bit})
        {
            const auto low = run(storage);
            double worst = 0;
            for (std::size_t k = 0; k < native.size(); ++k)
                for (std::size_t i = 0; i < native[k].size(); ++i)
                    worst = std::max(worst, std::abs(double(low[k][i]) - double(native[k][i])));
            EXPECT_LE(worst, tol) << xoptim::to_string(storage);
            EXPECT_GT(worst, 0.0) << xoptim::to_string(storage) << " states should round somewhere";
        }
    }

    // The constructor refuses `o` with std::invalid_argument naming `field`.
    template <class Opt, class Options>
    void expect_refused(const Options& o, const std::string& field)
    {
        try
        {
            Opt opt(o);
            ADD_FAILURE() << "accepted a bad " << field;
        }
        catch (const std::invalid_argument& e)
        {
            EXPECT_NE(std::string(e.what()).find(std::string(Opt::name) + ": " + field + " must be"), std::string::npos)
                << e.what();
        }
    }

}  // namespace xoptim_test

#endif
