// A checkpoint's resume is bit-identical to a run that never stopped, for any optimizer
// and parameters (optimizer_checks.hpp's expect_resume_bit_identical, tests/test_adafactor.cpp).
#ifndef XOPTIM_TESTS_SUPPORT_RESUME_CHECK_HPP
#define XOPTIM_TESTS_SUPPORT_RESUME_CHECK_HPP

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

#include <xoptim/io/checkpoint.hpp>

namespace xoptim_test
{
    // Stepping 10 times equals stepping 4, saving, loading into a fresh optimizer and
    // stepping 6 more, bit for bit (parameters and states), with storage `s`, for any
    // parameters: `params(seed)` makes them, `names(x)` is what step and the checkpoint
    // take, `step(opt, x, t)` takes step t.
    template <class Make, class Params, class Names, class Step>
    void expect_resume_bit_identical_with(Make&& make, const std::string& file, const xoptim::storage_options& s,
                                          Params params, Names names, Step step)
    {
        // Steps first..last.
        const auto steps = [&](auto& opt, auto& x, int first, int last) {
            for (int t = first; t <= last; ++t)
            {
                step(opt, x, t);
            }
        };
        auto straight = make();
        straight.set_storage(s);
        auto p = params(5);
        steps(straight, p, 1, 10);

        auto first = make();
        first.set_storage(s);
        auto q = params(5);
        steps(first, q, 1, 4);
        xoptim::save_checkpoint(file, names(q), first);
        auto resumed = make();
        resumed.set_storage(s);
        auto r = params(99);  // overwritten by the load
        xoptim::load_checkpoint(file, names(r), resumed);
        EXPECT_EQ(resumed.step_count(), 4u);
        steps(resumed, r, 5, 10);
        EXPECT_EQ(r, p);
        // The states too: both saved, the files are the same bytes.
        const auto bytes = [&](auto& opt, auto& x) {
            xoptim::save_checkpoint(file, names(x), opt);
            std::ifstream in(file, std::ios::binary);
            return std::string(std::istreambuf_iterator<char>(in), {});
        };
        EXPECT_EQ(bytes(resumed, r), bytes(straight, p));
        std::remove(file.c_str());
    }
}

#endif
