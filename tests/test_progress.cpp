// The progress display: the redrawn terminal line and its throttle, plain log lines at
// the interval, and the final line, on an ostringstream with a clock the test sets.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

#include <xoptim/train/progress.hpp>

namespace
{
    using xoptim::train::progress_bar;

    std::size_t count(const std::string& s, char c)
    {
        return std::size_t(std::count(s.begin(), s.end(), c));
    }
}

TEST(progress_bar, terminal_line_is_redrawn_in_place)
{
    double t = 0;
    std::ostringstream out;
    progress_bar bar(100, out, true, [&] { return t; });
    bar.set_bar_width(10);
    t = 1;
    bar.update(10, {{"loss", 0.5}, {"acc", 0.25}});
    EXPECT_EQ(out.str(), "\r[#---------] 10/100  10%  10.0 steps/s  ETA 0:09  loss 0.5  acc 0.25");

    out.str("");
    t = 1.05;
    bar.update(11, {{"loss", 0.4}});  // within 0.1 s of the last draw: not drawn
    EXPECT_EQ(out.str(), "");
    t = 2;
    bar.update(20, {{"loss", 0.123456}});
    // Shorter than the last line: blanked to its width.
    EXPECT_EQ(out.str(), "\r[##--------] 20/100  20%  10.0 steps/s  ETA 0:08  loss 0.1235       ");

    out.str("");
    t = 10;
    bar.update(100, {{"loss", 0.01}});  // the last step is drawn however soon
    t = 10.01;
    bar.finish();
    EXPECT_EQ(out.str(), "\r[##########] 100/100 100%  10.0 steps/s  elapsed 0:10  loss 0.01"
                         "\r[##########] 100/100 100%  10.0 steps/s  elapsed 0:10  loss 0.01\n");
    bar.finish();  // once
    EXPECT_EQ(count(out.str(), '\n'), 1u);
}

TEST(progress_bar, terminal_redraws_at_most_ten_times_a_second)
{
    double t = 0;
    std::ostringstream out;
    progress_bar bar(10000, out, true, [&] { return t; });
    for (std::size_t step = 1; step <= 2000; ++step)
    {
        t = double(step) * 0.001;  // 1000 steps/s for 2 s
        bar.update(step);
    }
    EXPECT_GE(count(out.str(), '\r'), 19u);
    EXPECT_LE(count(out.str(), '\r'), 21u);
    EXPECT_EQ(count(out.str(), '\n'), 0u);
}

TEST(progress_bar, plain_lines_every_tenth_of_the_run)
{
    double t = 0;
    std::ostringstream out;
    progress_bar bar(50, out, false, [&] { return t; });
    EXPECT_EQ(bar.log_interval(), 5u);
    for (std::size_t step = 1; step <= 50; ++step)
    {
        t = double(step) * 0.5;
        bar.update(step, {{"loss", 1.0 / double(step)}});
    }
    bar.finish();  // the last step was printed: nothing more
    const std::string s = out.str();
    EXPECT_EQ(count(s, '\n'), 10u);
    EXPECT_EQ(count(s, '\r'), 0u);
    EXPECT_EQ(s.substr(0, s.find('\n') + 1), "step 5/50 (10%)  2.0 steps/s  ETA 0:23  loss 0.2\n");
    EXPECT_NE(s.find("step 50/50 (100%)  2.0 steps/s  elapsed 0:25  loss 0.02\n"), std::string::npos) << s;
}

TEST(progress_bar, plain_lines_at_a_set_interval_and_a_final_line)
{
    double t = 0;
    std::ostringstream out;
    progress_bar bar(100, out, false, [&] { return t; });
    bar.set_log_interval(20);
    for (std::size_t step = 1; step <= 47; ++step)
    {
        t = double(step) * 2;  // slow: seconds per step
        bar.update(step);
    }
    bar.finish();
    EXPECT_EQ(out.str(), "step 20/100 (20%)  2.00 s/step  ETA 2:40\n"
                         "step 40/100 (40%)  2.00 s/step  ETA 2:00\n"
                         "step 47/100 (47%)  2.00 s/step  elapsed 1:34\n");
}

TEST(progress_bar, a_resumed_run_counts_its_rate_from_the_start_step)
{
    double t = 100;
    std::ostringstream out;
    progress_bar bar(10000, out, false, [&] { return t; });
    bar.set_log_interval(1000);
    bar.start_step(5000);
    t = 110;
    bar.update(6000);
    EXPECT_EQ(out.str(), "step 6000/10000 (60%)  100.0 steps/s  ETA 0:40\n");
}

TEST(progress_bar, unknown_rate_and_bad_total)
{
    std::ostringstream out;
    progress_bar bar(10, out, false, [] { return 0.0; });
    bar.update(1);
    EXPECT_EQ(out.str(), "step 1/10 (10%)  -- steps/s  ETA --:--\n");

    std::ostringstream early;
    progress_bar stopped(100, early, false, [] { return 0.0; });
    stopped.update(3);  // before the first interval: nothing yet
    stopped.finish();
    EXPECT_EQ(early.str(), "step 3/100 (3%)  -- steps/s  elapsed 0:00\n");
    EXPECT_THROW(progress_bar(0, out, false), std::invalid_argument);
    // A redraw interval of NaN, inf or below 0 is refused, the old one kept.
    for (const double bad : {std::nan(""), std::numeric_limits<double>::infinity(), -0.5})
    {
        EXPECT_THROW(bar.set_min_redraw_seconds(bad), std::invalid_argument) << bad;
        EXPECT_EQ(bar.min_redraw_seconds(), 0.1);
    }
}
