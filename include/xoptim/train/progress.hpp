// A progress display for training loops.
//
//     xoptim::train::progress_bar bar(steps);
//     for (std::size_t step = 1; step <= steps; ++step)
//     {
//         const double loss = train_step();
//         bar.update(step, {{"loss", loss}, {"lr", lr}});
//     }
//     bar.finish();
//
// On a terminal, one line redrawn in place with '\r', at most every 0.1 s:
//
//     [#########---------------------] 300/1000  30%  41.5 steps/s  ETA 0:16  loss 0.4213  lr 0.001
//
// Elsewhere (a log file, a pipe, CI), one plain line every log interval (10% of the
// total unless set), so logs stay readable:
//
//     step 300/1000 (30%)  41.5 steps/s  ETA 0:16  loss 0.4213  lr 0.001
//
// The rate is the average since the bar was made (or since start_step()); once the
// last step is reached or finish() is called, the ETA becomes the elapsed time.
// Not thread-safe: one thread updates a bar.
#ifndef XOPTIM_TRAIN_PROGRESS_HPP
#define XOPTIM_TRAIN_PROGRESS_HPP

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <initializer_list>
#include <iostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <unistd.h>

#include "../optim/validate.hpp"

namespace xoptim::train
{
    // Whether standard output is a terminal.
    inline bool stdout_is_tty()
    {
        return ::isatty(::fileno(stdout)) == 1;
    }

    class progress_bar
    {
    public:

        // A value shown after the rate: a name and a number ("loss", 0.123).
        using value = std::pair<std::string_view, double>;
        // Seconds on any monotonic scale; the default is std::chrono::steady_clock.
        using clock_type = std::function<double()>;

        explicit progress_bar(std::size_t total_steps, std::ostream& out = std::cout, bool is_tty = stdout_is_tty(),
                              clock_type clock = {});

        // On a terminal, ends a line left open by updates without finish() (an exception
        // leaving the loop), so the next output starts on its own line.
        ~progress_bar();

        progress_bar(const progress_bar&) = delete;
        progress_bar& operator=(const progress_bar&) = delete;

        // Records that `step` steps are done, with values to show. Draws when due: on a
        // terminal at most every min_redraw_seconds() (and at the last step); otherwise
        // when the step reaches the next multiple of the log interval.
        void update(std::size_t step, std::initializer_list<value> values = {});

        // Draws the final line (the elapsed time instead of the ETA) and ends it. Once.
        void finish();

        // Steps between plain lines when not on a terminal; 0 means 10% of the total.
        void set_log_interval(std::size_t steps);

        void set_bar_width(std::size_t chars)
        {
            m_bar_width = chars;
        }

        // At least 0 and finite (NaN had stopped every redraw but the first and the last).
        void set_min_redraw_seconds(double seconds)
        {
            xoptim::detail::require_non_negative(seconds, "train::progress_bar", "min_redraw_seconds");
            m_min_redraw = seconds;
        }

        double min_redraw_seconds() const noexcept
        {
            return m_min_redraw;
        }

        // The rate counts steps from here: for a run resumed at `step`. Restarts the clock.
        void start_step(std::size_t step);

        // Steps per second so far; 0 before any time has passed.
        double rate() const;

        std::size_t log_interval() const noexcept
        {
            return m_interval;
        }

    private:

        double now() const;
        std::string line(bool final) const;
        void draw(bool final);

        std::size_t m_total;
        std::ostream& m_out;
        bool m_tty;
        clock_type m_clock;
        std::size_t m_interval = 0;
        std::size_t m_bar_width = 30;
        double m_min_redraw = 0.1;
        double m_start_time = 0;
        std::size_t m_start_step = 0;
        std::size_t m_step = 0;
        std::vector<std::pair<std::string, double>> m_values;
        double m_last_draw = 0;
        bool m_drawn = false;            // a TTY line is open, or some plain line was printed
        std::size_t m_printed_step = 0;  // the step of the last plain line
        std::size_t m_next_log = 0;      // plain mode: the step at which the next line is due
        std::size_t m_last_width = 0;    // TTY: the width of the last line, to blank its leftovers
        bool m_finished = false;
    };

    namespace detail
    {
        // "0:07", "12:34", "1:02:03"; "--:--" when unknown.
        inline std::string format_duration(double seconds)
        {
            if (!std::isfinite(seconds) || seconds < 0)
            {
                return "--:--";
            }
            const long long s = std::llround(seconds);
            char text[40];
            if (s >= 3600)
            {
                std::snprintf(text, sizeof text, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
            }
            else
            {
                std::snprintf(text, sizeof text, "%lld:%02lld", s / 60, s % 60);
            }
            return text;
        }
    }

    inline progress_bar::progress_bar(std::size_t total_steps, std::ostream& out, bool is_tty, clock_type clock)
        : m_total(total_steps), m_out(out), m_tty(is_tty), m_clock(std::move(clock))
    {
        if (total_steps == 0)
        {
            throw std::invalid_argument("xoptim::train::progress_bar: total_steps must be >= 1 (got 0)");
        }
        set_log_interval(0);
        m_start_time = now();
    }

    inline progress_bar::~progress_bar()
    {
        if (m_tty && m_drawn && !m_finished)
        {
            try
            {
                m_out << '\n' << std::flush;
            }
            catch (...)
            {
                // The stream's own failure is not worth terminating for.
            }
        }
    }

    inline void progress_bar::set_log_interval(std::size_t steps)
    {
        m_interval = steps != 0 ? steps : std::max<std::size_t>(1, m_total / 10);
        m_next_log = (m_step / m_interval + 1) * m_interval;
    }

    inline void progress_bar::start_step(std::size_t step)
    {
        m_start_step = step;
        m_step = step;
        m_start_time = now();
        m_next_log = (m_step / m_interval + 1) * m_interval;
    }

    inline double progress_bar::now() const
    {
        if (m_clock)
        {
            return m_clock();
        }
        return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
    }

    inline double progress_bar::rate() const
    {
        const double elapsed = now() - m_start_time;
        if (elapsed <= 0 || m_step < m_start_step)
        {
            return 0;
        }
        return double(m_step - m_start_step) / elapsed;
    }

    inline void progress_bar::update(std::size_t step, std::initializer_list<value> values)
    {
        m_step = step;
        // Reuse the stored strings: a steady loop with the same names allocates nothing.
        m_values.resize(values.size());
        std::size_t k = 0;
        for (const value& v : values)
        {
            m_values[k].first.assign(v.first.data(), v.first.size());
            m_values[k].second = v.second;
            ++k;
        }
        if (m_finished)
        {
            return;
        }
        if (m_tty)
        {
            const double t = now();
            if (!m_drawn || t - m_last_draw >= m_min_redraw || step >= m_total)
            {
                m_last_draw = t;
                draw(false);
            }
        }
        else if (step >= m_next_log)
        {
            m_next_log = (step / m_interval + 1) * m_interval;
            draw(false);
        }
    }

    inline void progress_bar::finish()
    {
        if (m_finished)
        {
            return;
        }
        if (m_tty)
        {
            draw(true);
            m_out << '\n' << std::flush;
        }
        else if (!m_drawn || m_printed_step != m_step)
        {
            draw(true);
        }
        m_finished = true;
    }

    inline std::string progress_bar::line(bool final) const
    {
        const double fraction = std::min(1.0, double(m_step) / double(m_total));
        const double r = rate();
        char text[128];
        std::string s;
        if (m_tty)
        {
            const auto filled = std::size_t(fraction * double(m_bar_width));
            s = "[" + std::string(filled, '#') + std::string(m_bar_width - filled, '-') + "] ";
            std::snprintf(text, sizeof text, "%zu/%zu %3d%%", m_step, m_total, int(fraction * 100));
        }
        else
        {
            std::snprintf(text, sizeof text, "step %zu/%zu (%d%%)", m_step, m_total, int(fraction * 100));
        }
        s += text;
        if (r <= 0)
        {
            s += "  -- steps/s";
        }
        else if (r < 1)
        {
            std::snprintf(text, sizeof text, "  %.2f s/step", 1 / r);
            s += text;
        }
        else
        {
            std::snprintf(text, sizeof text, "  %.1f steps/s", r);
            s += text;
        }
        if (final || m_step >= m_total)
        {
            s += "  elapsed " + detail::format_duration(now() - m_start_time);
        }
        else
        {
            s += "  ETA " + detail::format_duration(r > 0 ? double(m_total - m_step) / r : -1.0);
        }
        for (const auto& v : m_values)
        {
            std::snprintf(text, sizeof text, "%.4g", v.second);
            s += "  " + v.first + " " + text;
        }
        return s;
    }

    inline void progress_bar::draw(bool final)
    {
        const std::string s = line(final);
        if (m_tty)
        {
            // Blank what a longer previous line would leave behind.
            const std::size_t pad = m_last_width > s.size() ? m_last_width - s.size() : 0;
            m_out << '\r' << s << std::string(pad, ' ') << std::flush;
            m_last_width = s.size();
        }
        else
        {
            m_out << s << '\n' << std::flush;
            m_printed_step = m_step;
        }
        m_drawn = true;
    }
}

#endif
