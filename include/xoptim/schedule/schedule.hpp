// Schedules: a value per optimizer step, for the learning rate, weight decay or momentum.
// The k-th step (k = 0, 1, 2, ...) uses s(k), as MLX's schedules and PyTorch's LambdaLR,
// so a warmup's first step has learning rate 0. With n = steps, w = warmup_steps,
// T = total_steps, r = min_ratio:
//
//   constant(value)                          value
//   linear(from, to, n)                      from + (to - from) * k / n, then to from k = n
//   cosine_decay(base, n, r = 0)             base * (r + (1 - r) * 0.5 * (1 + cos(pi * min(k, n) / n)))
//   warmup_cosine(base, T, w = 2000, r = 0.1)
//                                            base * k / w while k < w, then cosine_decay over
//                                            T - w steps, then base * r from k = T
//   step_decay(base, step_size, gamma)       base * gamma^floor(k / step_size)
//   exponential_decay(base, gamma)           base * gamma^k
//   join(schedules, boundaries)              schedules[i + 1](k - boundaries[i]) from boundaries[i]
//   a * b                                    a(k) * b(k); a number is a constant schedule
//
// A schedule is an immutable value sharing its node: copies are cheap and never dangle.
// describe() gives a canonical description with argument names (numbers that read back
// exactly), e.g. for checkpoint metadata. Factories check their arguments and throw
// std::invalid_argument naming the schedule and the argument. See docs/schedules.md.
#ifndef XOPTIM_SCHEDULE_SCHEDULE_HPP
#define XOPTIM_SCHEDULE_SCHEDULE_HPP

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../engine/arch/product.hpp"
#include "../io/number_text.hpp"
#include "../optim/validate.hpp"

namespace xoptim
{
    namespace detail
    {
        struct schedule_node
        {
            explicit schedule_node(std::string d, bool c)
                : description(std::move(d)), constant(c)
            {
            }

            virtual ~schedule_node() = default;
            virtual double value(std::size_t step) const = 0;

            std::string description;
            bool constant;
        };

        template <class F>
        struct schedule_function final : schedule_node
        {
            schedule_function(F fn, std::string d, bool c)
                : schedule_node(std::move(d), c), f(std::move(fn))
            {
            }

            double value(std::size_t step) const override
            {
                return f(step);
            }

            F f;
        };

        // The shortest of %.15g, %.16g, %.17g that reads back as x: 0.0001, not
        // 0.00010000000000000000479.
        inline std::string schedule_number(double x)
        {
            std::string text;
            for (int precision = 15; precision <= 17; ++precision)
            {
                text = io::general_text(x, precision);
                double back = 0;
                if (io::parse_number(text, back) && back == x)
                {
                    break;
                }
            }
            return text;
        }

        [[noreturn]] inline void schedule_fail(const char* schedule, const std::string& message)
        {
            throw std::invalid_argument(std::string("xoptim::") + schedule + ": " + message);
        }

        inline void schedule_require_finite(double x, const char* schedule, const char* argument)
        {
            require(std::isfinite(x), schedule, argument, "finite", x);
        }

        // Counts are taken signed, so a negative int or double passed by mistake is reported
        // rather than wrapped around to a huge std::size_t.
        inline void schedule_require_count(long long n, long long least, const char* schedule, const char* argument)
        {
            if (n < least)
            {
                schedule_fail(schedule, std::string(argument) + " must be >= " + std::to_string(least) + " (got "
                                            + std::to_string(n) + ")");
            }
        }

        inline void schedule_require_ratio(double r, const char* schedule)
        {
            require(r >= 0 && r <= 1, schedule, "min_ratio", "in [0, 1]", r);
        }

        constexpr double schedule_pi = 3.141592653589793;
    }

    class schedule
    {
    public:

        // A constant. Implicit, so a hyperparameter slot taking a schedule also takes a number.
        schedule(double value)
            : m_node(make(
                  [value](std::size_t) {
                      return value;
                  },
                  "constant(value=" + detail::schedule_number(value) + ")", true))
        {
            detail::schedule_require_finite(value, "constant", "value");
        }

        // A schedule of one's own, as PyTorch's LambdaLR: f(step) -> value, with the text
        // describe() returns.
        template <class F, std::enable_if_t<std::is_invocable_r_v<double, const F&, std::size_t>, int> = 0>
        schedule(F f, std::string description)
            : m_node(make(std::move(f), std::move(description), false))
        {
        }

        // Copies only: a moved-from schedule would be empty, and a copy costs one count.
        schedule(const schedule&) = default;
        schedule& operator=(const schedule&) = default;
        ~schedule() = default;

        double operator()(std::size_t step) const
        {
            return m_node->value(step);
        }

        const std::string& describe() const noexcept
        {
            return m_node->description;
        }

        bool is_constant() const noexcept
        {
            return m_node->constant;
        }

    private:

        template <class F>
        static std::shared_ptr<const detail::schedule_node> make(F f, std::string description, bool constant)
        {
            return std::make_shared<const detail::schedule_function<F>>(std::move(f), std::move(description),
                                                                         constant);
        }

        std::shared_ptr<const detail::schedule_node> m_node;
    };

    inline schedule constant(double value)
    {
        return schedule(value);
    }

    // MLX linear_schedule; PyTorch LinearLR scales a base the same way.
    inline schedule linear(double from, double to, long long steps)
    {
        detail::schedule_require_finite(from, "linear", "from");
        detail::schedule_require_finite(to, "linear", "to");
        detail::schedule_require_count(steps, 1, "linear", "steps");
        const auto n = static_cast<std::size_t>(steps);
        // Held at `to` exactly from k = n: (to - from) * n / n need not round back to to - from.
        return schedule(
            [=](std::size_t k) {
                return k >= n ? to : from + (to - from) * static_cast<double>(k) / static_cast<double>(n);
            },
            "linear(from=" + detail::schedule_number(from) + ", to=" + detail::schedule_number(to)
                + ", steps=" + std::to_string(steps) + ")");
    }

    // MLX cosine_decay (with end = base * min_ratio); PyTorch CosineAnnealingLR's first half-period.
    inline schedule cosine_decay(double base, long long steps, double min_ratio = 0)
    {
        detail::schedule_require_finite(base, "cosine_decay", "base");
        detail::schedule_require_count(steps, 1, "cosine_decay", "steps");
        detail::schedule_require_ratio(min_ratio, "cosine_decay");
        const auto n = static_cast<std::size_t>(steps);
        return schedule(
            [=](std::size_t k) {
                const double t = static_cast<double>(std::min(k, n));
                return base
                       * (min_ratio + arch::product((1 - min_ratio) * 0.5,
                                                    1 + std::cos(detail::schedule_pi * t / static_cast<double>(n))));
            },
            "cosine_decay(base=" + detail::schedule_number(base) + ", steps=" + std::to_string(steps)
                + ", min_ratio=" + detail::schedule_number(min_ratio) + ")");
    }

    // SPEC section 4: linear warmup from 0, then a cosine down to base * min_ratio at total_steps.
    // total_steps comes second (it has no default) and warmup_steps third, so the defaults of
    // warmup_steps and min_ratio can be left out; describe() lists them in the SPEC's order.
    // Swapping the two counts is always caught: total_steps must exceed warmup_steps.
    inline schedule warmup_cosine(double base, long long total_steps, long long warmup_steps = 2000,
                                  double min_ratio = 0.1)
    {
        detail::schedule_require_finite(base, "warmup_cosine", "base");
        detail::schedule_require_count(warmup_steps, 0, "warmup_cosine", "warmup_steps");
        if (total_steps <= warmup_steps)
        {
            detail::schedule_fail("warmup_cosine", "total_steps must be > warmup_steps (got total_steps "
                                                       + std::to_string(total_steps) + ", warmup_steps "
                                                       + std::to_string(warmup_steps) + ")");
        }
        detail::schedule_require_ratio(min_ratio, "warmup_cosine");
        const auto w = static_cast<std::size_t>(warmup_steps);
        const auto total = static_cast<std::size_t>(total_steps);
        return schedule(
            [=](std::size_t k) {
                if (k < w)
                {
                    return base * static_cast<double>(k) / static_cast<double>(w);
                }
                if (k >= total)
                {
                    return base * min_ratio;
                }
                const double progress = static_cast<double>(k - w) / static_cast<double>(total - w);
                return base * (min_ratio + arch::product((1 - min_ratio) * 0.5, 1 + std::cos(detail::schedule_pi * progress)));
            },
            "warmup_cosine(base=" + detail::schedule_number(base) + ", warmup_steps=" + std::to_string(warmup_steps)
                + ", total_steps=" + std::to_string(total_steps) + ", min_ratio=" + detail::schedule_number(min_ratio)
                + ")");
    }

    // PyTorch StepLR(step_size, gamma); MLX step_decay(init, decay_rate, step_size).
    inline schedule step_decay(double base, long long step_size, double gamma)
    {
        detail::schedule_require_finite(base, "step_decay", "base");
        detail::schedule_require_count(step_size, 1, "step_decay", "step_size");
        detail::require(std::isfinite(gamma) && gamma > 0, "step_decay", "gamma", "> 0 and finite", gamma);
        const auto n = static_cast<std::size_t>(step_size);
        return schedule(
            [=](std::size_t k) {
                return base * std::pow(gamma, static_cast<double>(k / n));
            },
            "step_decay(base=" + detail::schedule_number(base) + ", step_size=" + std::to_string(step_size)
                + ", gamma=" + detail::schedule_number(gamma) + ")");
    }

    // PyTorch ExponentialLR(gamma); MLX exponential_decay(init, decay_rate).
    inline schedule exponential_decay(double base, double gamma)
    {
        detail::schedule_require_finite(base, "exponential_decay", "base");
        detail::require(std::isfinite(gamma) && gamma > 0, "exponential_decay", "gamma", "> 0 and finite",
                                 gamma);
        return schedule(
            [=](std::size_t k) {
                return base * std::pow(gamma, static_cast<double>(k));
            },
            "exponential_decay(base=" + detail::schedule_number(base) + ", gamma=" + detail::schedule_number(gamma)
                + ")");
    }

    // MLX join_schedules: schedules[0] until boundaries[0]; from boundaries[i] on,
    // schedules[i + 1] runs on a count restarted there, seeing k - boundaries[i].
    inline schedule join(std::vector<schedule> schedules, std::vector<std::size_t> boundaries)
    {
        if (schedules.empty())
        {
            detail::schedule_fail("join", "schedules must not be empty");
        }
        if (boundaries.size() != schedules.size() - 1)
        {
            detail::schedule_fail("join", "boundaries must have one entry fewer than schedules (got "
                                              + std::to_string(boundaries.size()) + " boundaries for "
                                              + std::to_string(schedules.size()) + " schedules)");
        }
        for (std::size_t i = 1; i < boundaries.size(); ++i)
        {
            if (boundaries[i] <= boundaries[i - 1])
            {
                detail::schedule_fail("join", "boundaries must be strictly increasing (got boundaries["
                                                  + std::to_string(i) + "] = " + std::to_string(boundaries[i])
                                                  + " after boundaries[" + std::to_string(i - 1)
                                                  + "] = " + std::to_string(boundaries[i - 1]) + ")");
            }
        }
        std::string description = "join(schedules=[";
        for (std::size_t i = 0; i < schedules.size(); ++i)
        {
            description += (i ? ", " : "") + schedules[i].describe();
        }
        description += "], boundaries=[";
        for (std::size_t i = 0; i < boundaries.size(); ++i)
        {
            description += (i ? ", " : "") + std::to_string(boundaries[i]);
        }
        description += "])";
        return schedule(
            [schedules = std::move(schedules), boundaries = std::move(boundaries)](std::size_t k) {
                std::size_t i = 0;
                while (i < boundaries.size() && k >= boundaries[i])
                {
                    ++i;
                }
                return i == 0 ? schedules[0](k) : schedules[i](k - boundaries[i - 1]);
            },
            std::move(description));
    }

    // (a * b)(k) = a(k) * b(k). A number on either side is a constant schedule, and is
    // described as the bare number: "0.5 * cosine_decay(...)".
    inline schedule operator*(const schedule& a, const schedule& b)
    {
        const auto factor = [](const schedule& s) {
            return s.is_constant() ? detail::schedule_number(s(0)) : s.describe();
        };
        return schedule(
            [a, b](std::size_t k) {
                return a(k) * b(k);
            },
            factor(a) + " * " + factor(b));
    }
}

#endif
