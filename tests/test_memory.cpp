// The memory profiler: the leak test on synthetic RSS series (a leak under noise is
// flagged; noise, spikes and a warm-up rise are not), the bounded step series, RSS
// readings that follow a real 64 MB allocation, and scopes that record their peak.
#include <gtest/gtest.h>

#include "support/message_of.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <xoptim/train/memory.hpp>

namespace
{
    using namespace xoptim::train;

    constexpr double mb = 1024.0 * 1024.0;

    // `steps` values: base + slope * step + uniform noise in [-noise, noise].
    std::vector<double> series(std::size_t steps, double base, double slope, double noise, unsigned seed)
    {
        std::mt19937_64 rng(seed);
        std::uniform_real_distribution<double> jitter(-noise, noise);
        std::vector<double> v(steps);
        for (std::size_t i = 0; i < steps; ++i)
        {
            v[i] = base + slope * double(i) + (noise > 0 ? jitter(rng) : 0.0);
        }
        return v;
    }

    // A page-touched block of `bytes`, so that it is resident, not just reserved. The pages
    // are written through a volatile pointer: nothing reads the block, and an optimizer may
    // remove an allocation whose plain stores nobody reads (clang does), volatile ones never.
    std::vector<char> resident_block(std::size_t bytes)
    {
        std::vector<char> block(bytes);
        volatile char* page = block.data();
        for (std::size_t i = 0; i < bytes; i += 4096)
        {
            page[i] = char(i / 4096 + 1);
        }
        return block;
    }

    using xoptim_test::message_of;
}

TEST(leak_check, flags_a_linear_leak_under_noise)
{
    for (unsigned seed = 1; seed <= 10; ++seed)
    {
        const leak_result r = leak_check(series(200, 1024 * mb, 1 * mb, 5 * mb, seed));
        EXPECT_TRUE(r.leak) << r.explain();
        EXPECT_NEAR(r.slope, 1 * mb, 0.1 * mb);
        EXPECT_EQ(r.first_step, 40u);
        EXPECT_EQ(r.last_step, 199u);
        EXPECT_LT(r.p_value, 1e-6);
        EXPECT_EQ(r.explain().rfind("LEAK: slope +", 0), 0u) << r.explain();
    }
}

TEST(leak_check, flags_a_slow_leak_buried_in_jitter)
{
    // 100 KB/step is 1/50 of the jitter per step, but 80 MB over the window.
    const leak_result r = leak_check(series(1000, 1024 * mb, 0.1 * mb, 5 * mb, 7));
    EXPECT_TRUE(r.leak) << r.explain();
}

TEST(leak_check, does_not_flag_flat_noise_with_spikes)
{
    for (unsigned seed = 1; seed <= 20; ++seed)
    {
        std::vector<double> v = series(500, 1024 * mb, 0, 5 * mb, seed);
        std::mt19937_64 rng(seed + 1000);
        for (int k = 0; k < 15; ++k)
        {
            // Allocator spikes: a few hundred MB for one sample, anywhere.
            v[rng() % v.size()] += double(100 + rng() % 300) * mb;
        }
        const leak_result r = leak_check(v);
        EXPECT_FALSE(r.leak) << "seed " << seed << ": " << r.explain();
        EXPECT_EQ(r.explain().rfind("memory flat: ", 0), 0u) << r.explain();
    }
}

TEST(leak_check, does_not_flag_a_warmup_rise_then_flat)
{
    // The rise lasts 10%, 20% (the default warm-up exactly) and 30% of the run: beyond
    // the warm-up, the flat last half keeps it from being called a leak.
    for (double rise : {0.1, 0.2, 0.3})
    {
        for (unsigned seed = 1; seed <= 5; ++seed)
        {
            std::vector<double> v = series(500, 1024 * mb, 0, 5 * mb, seed);
            const auto rise_steps = std::size_t(rise * 500);
            for (std::size_t i = 0; i < rise_steps; ++i)
            {
                v[i] -= 800 * mb * (1 - double(i) / double(rise_steps));
            }
            const leak_result r = leak_check(v);
            EXPECT_FALSE(r.leak) << "rise " << rise << " seed " << seed << ": " << r.explain();
        }
    }
}

TEST(leak_check, a_significant_rise_below_the_threshold_is_not_a_leak)
{
    // +10 KB/step, no noise: certain, but 4 MB over the window.
    const leak_result r = leak_check(series(500, 1024 * mb, 10 * 1024, 0, 1));
    EXPECT_FALSE(r.leak);
    EXPECT_LT(r.p_value, 1e-6);
    EXPECT_NE(r.explain().find("under the"), std::string::npos) << r.explain();
}

TEST(leak_check, short_series_give_no_verdict)
{
    for (std::size_t n : {0, 1, 5, 11})
    {
        const leak_result r = leak_check(series(n, 1024 * mb, 10 * mb, 0, 1));
        EXPECT_FALSE(r.leak);
        EXPECT_FALSE(r.enough_data);
        EXPECT_EQ(r.explain().rfind("memory trend: too few samples", 0), 0u) << r.explain();
    }
    // 12 samples leave 10 after the 20% warm-up: just enough.
    EXPECT_TRUE(leak_check(series(12, 1024 * mb, 10 * mb, 0, 1)).leak);
}

TEST(leak_check, a_long_series_is_thinned_and_still_judged)
{
    const leak_result r = leak_check(series(50000, 1024 * mb, 0.01 * mb, 5 * mb, 3));
    EXPECT_TRUE(r.leak) << r.explain();
    EXPECT_EQ(r.samples, 4096u);
    EXPECT_EQ(r.last_step, 49999u);
    EXPECT_NEAR(r.slope, 0.01 * mb, 0.002 * mb);
}

TEST(leak_check, bad_options_and_steps_are_named)
{
    leak_options o;
    o.warmup_fraction = 1.5;
    EXPECT_EQ(message_of([&] { leak_check(std::vector<double>{}, o); }),
              "xoptim::train::leak_check: warmup_fraction must be in [0, 1) (got 1.5)");
    const std::vector<memory_sample> backwards{{0, 1}, {5, 2}, {3, 3}};
    EXPECT_EQ(message_of([&] { leak_check(backwards); }),
              "xoptim::train::leak_check: steps must increase (step 3 follows step 5)");
    // A series of doubles holds byte counts: NaN, inf, negatives and 2^64 are refused
    // (converting inf to size_t was undefined, NaN became 0).
    for (const double bad : {std::nan(""), std::numeric_limits<double>::infinity(), -1.0, 18446744073709551616.0})
    {
        std::vector<double> rss(20, 1e6);
        rss[7] = bad;
        EXPECT_EQ(message_of([&] { leak_check(rss); }).rfind("xoptim::train::leak_check: rss_per_step[7] is ", 0), 0u)
            << bad;
    }
}

TEST(memory_profiler, keeps_a_bounded_evenly_spaced_series)
{
    memory_profiler p(64);
    for (std::size_t step = 0; step < 1000; ++step)
    {
        p.record_step(step, 1000 + step);
    }
    const std::vector<memory_sample> s = p.series();
    EXPECT_EQ(p.steps_recorded(), 1000u);
    EXPECT_GE(s.size(), 32u);
    EXPECT_LT(s.size(), 64u);
    EXPECT_EQ(s.front().step, 0u);
    for (std::size_t i = 1; i < s.size(); ++i)
    {
        EXPECT_EQ(s[i].step - s[i - 1].step, p.stride());
        EXPECT_EQ(s[i].rss, 1000 + s[i].step);
    }
    EXPECT_GT(s.back().step + p.stride(), 999u);
    EXPECT_EQ(message_of([] { memory_profiler bad(1); }),
              "xoptim::train::memory_profiler: series_capacity must be >= 2 (got 1)");
    // A step that does not increase is refused where it is recorded (the report's trend
    // had thrown later, far from the cause), and nothing is recorded.
    EXPECT_EQ(message_of([&] { p.record_step(999, 1); }),
              "xoptim::train::memory_profiler: record_step: steps must increase (step 999 follows step 999)");
    EXPECT_EQ(p.steps_recorded(), 1000u);
}

// A scope name of any length keeps the table's rows whole (a 256-byte line buffer had
// cut them off and run them together).
TEST(memory_profiler, a_long_scope_name_keeps_the_rows_whole)
{
    memory_profiler p;
    const std::string name(300, 'a');
    p.record(name, {100, 200, 300, true});
    p.record("b", {1, 2, 3, true});
    const std::string text = p.report();
    EXPECT_NE(text.find("  scope" + std::string(300 - 5, ' ') + "    count"), std::string::npos) << text;
    EXPECT_NE(text.find("  " + name + "        1 "), std::string::npos) << text;
    EXPECT_NE(text.find("\n  b" + std::string(299, ' ') + "        1 "), std::string::npos) << text;
    EXPECT_NE(text.find("\n  trend: no steps recorded\n"), std::string::npos) << text;
}

TEST(memory, rss_follows_a_touched_allocation)
{
    const std::size_t before = current_rss();
    EXPECT_GT(before, 0u);
    EXPECT_GE(peak_rss(), before);
    std::vector<char> block = resident_block(64 << 20);
    const std::size_t during = current_rss();
    EXPECT_GE(during, before + (60 << 20)) << format_bytes(double(before)) << " -> " << format_bytes(double(during));
    EXPECT_GE(peak_rss(), during);
    block = {};
    block.shrink_to_fit();
    {
        // A scope resets the kernel's mark; peak_rss() still reports the process's peak.
        memory_profiler p;
        memory_scope scope(p, "nothing");
    }
    EXPECT_GE(peak_rss(), during);

    const system_memory_info sys = system_memory();
    EXPECT_GT(sys.total, during);
    EXPECT_GT(sys.available, 0u);
    EXPECT_LE(sys.available, sys.total);
}

TEST(memory_scope, records_the_peak_of_memory_freed_inside)
{
    memory_profiler p;
    for (int pass = 0; pass < 2; ++pass)
    {
        memory_scope scope(p, "alloc");
        {
            std::vector<char> block = resident_block(64 << 20);
        }
        const scope_measurement m = scope.stop();
        EXPECT_GE(m.peak_rss, std::max(m.entry_rss, m.exit_rss));
        if (m.peak_exact)
        {
            EXPECT_GE(m.peak_rise(), std::size_t(60 << 20)) << format_bytes(double(m.peak_rise()));
        }
    }
    const std::vector<scope_stats> s = p.scopes();
    ASSERT_EQ(s.size(), 1u);
    EXPECT_EQ(s[0].name, "alloc");
    EXPECT_EQ(s[0].count, 2u);
    if (peak_reset_supported())
    {
        EXPECT_TRUE(s[0].peak_exact);
        EXPECT_GE(s[0].max_peak_rise, std::size_t(60 << 20));
    }
}

TEST(memory_scope, an_inner_scope_does_not_hide_the_outer_peak)
{
    if (!peak_reset_supported())
    {
        GTEST_SKIP() << "this kernel refuses /proc/self/clear_refs: peaks are the process's";
    }
    memory_profiler p;
    {
        memory_scope outer(p, "outer");
        {
            std::vector<char> block = resident_block(64 << 20);
        }
        // Resets the mark after the 64 MB are gone (glibc unmaps a block this size).
        memory_scope inner(p, "inner");
    }
    const std::vector<scope_stats> s = p.scopes();
    ASSERT_EQ(s.size(), 2u);
    EXPECT_EQ(s[0].name, "inner");
    EXPECT_EQ(s[1].name, "outer");
    EXPECT_GE(s[1].max_peak_rise, std::size_t(60 << 20)) << format_bytes(double(s[1].max_peak_rise));
}

TEST(memory_profiler, report_has_every_part)
{
    memory_profiler p;
    {
        memory_scope scope(p, "forward");
    }
    const std::string empty = p.report();
    EXPECT_NE(empty.find("trend: no steps recorded"), std::string::npos) << empty;
    const std::vector<double> leak = series(100, 1024 * mb, 1 * mb, 0, 1);
    for (std::size_t i = 0; i < leak.size(); ++i)
    {
        p.record_step(i, std::size_t(leak[i]));
    }
    const std::string text = p.report();
    for (const char* part : {"memory report\n", "  RSS: current ", ", peak ", "  system: total ", ", available ",
                             "count", "peak rise", "  forward ", "  steps: 100 recorded",
                             "  trend: LEAK: slope +1.00 MB/step"})
    {
        EXPECT_NE(text.find(part), std::string::npos) << "missing '" << part << "' in\n" << text;
    }
}

TEST(memory, format_bytes)
{
    EXPECT_EQ(format_bytes(512), "512 B");
    EXPECT_EQ(format_bytes(12 * 1024, true), "+12.0 KB");
    EXPECT_EQ(format_bytes(-3 * mb), "-3.00 MB");
    EXPECT_EQ(format_bytes(1.5 * 1024 * mb), "1.50 GB");
}

// What the readers of each system add to the raw numbers (memory.hpp, "What the system
// says"): macOS's readers are compiled there only, their conversions here.
TEST(memory_conversions, ru_maxrss_is_kilobytes_on_linux_and_bytes_on_macos)
{
    using xoptim::train::detail::ru_maxrss_bytes;
    EXPECT_EQ(ru_maxrss_bytes(2048, 1024), std::size_t(2) << 20);
    EXPECT_EQ(ru_maxrss_bytes(2048, 1), 2048u);
    EXPECT_EQ(ru_maxrss_bytes(-1, 1024), 0u);
#if defined(__APPLE__)
    EXPECT_EQ(xoptim::train::detail::ru_maxrss_unit, 1u);
#else
    EXPECT_EQ(xoptim::train::detail::ru_maxrss_unit, 1024u);
    // A wrong unit would put the process's peak a thousand times off its current RSS.
    const std::size_t now = current_rss();
    const std::size_t peak = xoptim::train::detail::rusage_peak("test");
    EXPECT_GE(peak, now / 2) << format_bytes(double(peak)) << " vs " << format_bytes(double(now));
    EXPECT_LE(peak, std::max(peak_rss(), now) * 2) << format_bytes(double(peak));
#endif
}

TEST(memory_conversions, task_info_gives_bytes_and_a_mark_never_below_the_rss)
{
    using xoptim::train::detail::marks_from_task_info;
    EXPECT_EQ(marks_from_task_info(100 << 20, 300 << 20).rss, std::size_t(100) << 20);
    EXPECT_EQ(marks_from_task_info(100 << 20, 300 << 20).hwm, std::size_t(300) << 20);
    EXPECT_EQ(marks_from_task_info(300 << 20, 100 << 20).hwm, std::size_t(300) << 20);
}

TEST(memory_conversions, available_memory_on_macos_is_free_less_speculative_plus_inactive)
{
    using xoptim::train::detail::available_from_vm_statistics;
    // 16 KiB pages (Apple silicon): (1000 - 200 + 500) pages.
    EXPECT_EQ(available_from_vm_statistics(1000, 200, 500, 16384), std::size_t(1300) * 16384);
    EXPECT_EQ(available_from_vm_statistics(100, 200, 500, 4096), std::size_t(500) * 4096);
}
