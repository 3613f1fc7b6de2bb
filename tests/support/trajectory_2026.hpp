// Replays a case of trajectories_2026.json through one builder of xoptim-replay's
// optimizer factory (tools/optimizer_json.hpp) and compares the parameters at every
// checkpoint step, with the protocol of tests/reference/README.md ("Inputs and
// protocol", steps 1-2).
#ifndef XOPTIM_TESTS_SUPPORT_TRAJECTORY_2026_HPP
#define XOPTIM_TESTS_SUPPORT_TRAJECTORY_2026_HPP

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <type_traits>
#include <vector>

#include "../../tools/optimizer_json.hpp"
#include "reference_2026.hpp"

namespace xoptim_test
{
    // |ours - ref| <= tol * max(|ref|, 1), the tolerances of tests/reference/README.md.
    template <class T>
    constexpr double tolerance_2026 = std::is_same_v<T, float> ? 1e-6 : 1e-12;

    // `with(hyper, f)` builds the case's optimizer and calls f(optimizer&): one
    // optimizer's builder (tools/optimizer_json.hpp's with_optimizer_of, with_adafactor),
    // so that a test unit instantiates the replay for its own optimizer only. `after(opt)`
    // runs once the last step is compared (the final states' checks).
    template <class T, class With, class After>
    void replay_2026(const reference_case_2026& c, With&& with, After&& after)
    {
        case_tensors<T> tensors(c);
        auto& params = tensors.params;  // references, not a structured binding: the lambda captures them
        with(c.hyper, [&](auto& opt) {
            double worst = 0;
            for (int t = 1; t <= c.steps; ++t)
            {
                tensors.set_grads(c, t);
                opt.step(tensors.param_views, tensors.grad_views);
                const auto expected = c.checkpoints.find(t);
                if (expected == c.checkpoints.end())
                {
                    continue;
                }
                for (std::size_t k = 0; k < params.size(); ++k)
                {
                    ASSERT_EQ(expected->second[k].size(), params[k].size());
                    for (std::size_t i = 0; i < params[k].size(); ++i)
                    {
                        const double want = expected->second[k][i];
                        const double err = std::abs(double(params[k][i]) - want) / std::max(std::abs(want), 1.0);
                        worst = std::max(worst, err);
                        ASSERT_LE(err, tolerance_2026<T>) << c.name << " step " << t << " param " << k << " element "
                                                          << i << ": got " << params[k][i] << ", reference " << want;
                    }
                }
            }
            std::printf("%-32s worst scaled error %.3g\n", c.name.c_str(), worst);
            after(opt);
        });
    }
}

#endif
