// Schedule-Free AdamW and SGD (Defazio et al. 2024, "The Road Less Scheduled"), as
// facebookresearch/schedule_free's memory-efficient classes (release 1.3; the parameters
// hold y, the state holds z):
//   k = steps taken; sched = (k + 1) / warmup_steps while k < warmup_steps, else 1
//   lr_t = lr * sched                     (paper: lr * sched * sqrt(1 - b2^(k+1)))
//   lr_max = max(lr_max, lr_t);  weight = (k + 1)^r * lr_max^weight_lr_power
//   weight_sum += weight;  c = weight / weight_sum
//   AdamW: v = b2 * v + (1 - b2) * g^2;  gn = g / (sqrt(v / (1 - b2^(k+1))) + eps) + wd * y
//          (paper: sqrt(v) + eps)
//   SGD:   gn = g + wd * y                (momentum in the place of b1 below)
//   y = lerp(y, z, c) + lr_t * (b1 * (1 - c) - 1) * gn
//   z = z - lr_t * gn
// z starts as a copy of the parameters. The parameters hold y while training; eval(params)
// turns them into x = lerp(y, z, 1 - 1 / b1), the point to evaluate and to keep, and
// train(params) back into y = lerp(x, z, 1 - b1): call them around evaluation, as the
// reference's optimizer.eval() / optimizer.train(). k, lr_max, weight_sum and the mode
// live on the host and are saved in checkpoints (host_fields).
// Every product and sum is rounded on its own, as the reference's kernels round them;
// lerp(a, b, w) is a + w * (b - a) (ATen switches to b - (b - a) * (1 - w) for w >= 0.5:
// one rounding apart).
#ifndef XOPTIM_OPTIM_SCHEDULEFREE_HPP
#define XOPTIM_OPTIM_SCHEDULEFREE_HPP

#include <algorithm>
#include <array>
#include <cmath>
#include <string>

#include "optimizer.hpp"
#include "validate.hpp"

namespace xoptim
{
    struct adamw_schedulefree_options
    {
        double lr = 0.0025;
        std::array<double, 2> betas = {0.9, 0.999};
        double eps = 1e-8;
        double weight_decay = 0;
        std::size_t warmup_steps = 0;
        double r = 0;
        double weight_lr_power = 2;
        bool paper = false;  // AdamWScheduleFreePaper: the bias correction in lr_t, not in the denominator

        template <class O, class F>
        static void fields(O& o, F&& f)
        {
            f("lr", o.lr);
            f("betas", o.betas);
            f("eps", o.eps);
            f("weight_decay", o.weight_decay);
            f("warmup_steps", o.warmup_steps);
            f("r", o.r);
            f("weight_lr_power", o.weight_lr_power);
            f("paper", o.paper);
        }
    };

    struct sgd_schedulefree_options
    {
        double lr = 1.0;
        double momentum = 0.9;
        double weight_decay = 0;
        std::size_t warmup_steps = 0;
        double r = 0;
        double weight_lr_power = 2;

        template <class O, class F>
        static void fields(O& o, F&& f)
        {
            f("lr", o.lr);
            f("momentum", o.momentum);
            f("weight_decay", o.weight_decay);
            f("warmup_steps", o.warmup_steps);
            f("r", o.r);
            f("weight_lr_power", o.weight_lr_power);
        }
    };

    template <bool Adaptive>
    class schedulefree_base
        : public optimizer<schedulefree_base<Adaptive>,
                           std::conditional_t<Adaptive, adamw_schedulefree_options, sgd_schedulefree_options>>
    {
    public:

        using options_type = std::conditional_t<Adaptive, adamw_schedulefree_options, sgd_schedulefree_options>;
        static constexpr const char* name = Adaptive ? "adamw_schedulefree" : "sgd_schedulefree";
        static constexpr std::array<const char*, 2> state_names = {"z", "exp_avg_sq"};
        static constexpr std::array<bool, 2> unsigned_states = {false, true};
        static constexpr std::size_t full_precision_states = 1;  // z: never 8-bit or bf16

        explicit schedulefree_base(const options_type& o = {})
            : optimizer<schedulefree_base, options_type>(o)
        {
        }

        static void check(const options_type& o)
        {
            detail::require_non_negative(o.lr, name, "lr");
            const double b1 = beta(o);
            detail::require(b1 > 0 && b1 < 1, name, Adaptive ? "betas[0]" : "momentum",
                            "in (0, 1) (eval() divides by it)", b1);
            if constexpr (Adaptive)
            {
                detail::require_unit_interval(o.betas[1], name, "betas[1]");
                detail::require_positive(o.eps, name, "eps");
            }
            detail::require_non_negative(o.weight_decay, name, "weight_decay");
            detail::require_finite(o.r, name, "r");
            detail::require_finite(o.weight_lr_power, name, "weight_lr_power");
        }

        static std::size_t num_states(const options_type&) noexcept
        {
            return Adaptive ? 2 : 1;
        }

        // The parameters become x, the averaged point (for evaluation and saving the model).
        // Nothing moves in eval mode already, or before the first step (the reference has
        // no z before it).
        template <class P>
        void eval(P&& params)
        {
            if (m_eval == 0)
            {
                const double b = beta(this->options());
                move_toward_z(std::forward<P>(params), 1 - 1 / b);
                m_eval = b;
            }
        }

        // The parameters become y again, where the gradients are taken: the inverse of
        // eval's move, with the beta eval used (options changed in eval mode take effect
        // from the next step on).
        template <class P>
        void train(P&& params)
        {
            if (m_eval != 0)
            {
                move_toward_z(std::forward<P>(params), 1 - eval_beta());
                m_eval = 0;
            }
        }

        bool in_eval_mode() const noexcept
        {
            return m_eval != 0;
        }

        template <class O, class F>
        static void host_fields(O& o, F&& f)
        {
            f("lr_max", o.m_lr_max);
            f("weight_sum", o.m_weight_sum);
            f("eval", o.m_eval);
        }

        // Asked before a step changes anything (a router's other optimizers included),
        // with the step's scheduled options in force. A weight the reference cannot
        // compute either (0 to a negative power, an overflow: Python raises) is refused.
        std::string refuses_step() const
        {
            if (m_eval != 0)
            {
                return "step in eval mode (call train(params) before stepping)";
            }
            const averaging a = averaging_at(this->options(), this->step_count());
            if (!std::isfinite(a.weight))
            {
                return "the averaging weight (k + 1)^r * lr_max^weight_lr_power is not finite at step "
                       + std::to_string(this->step_count() + 1) + " (r = " + detail::format_value(this->options().r)
                       + ", weight_lr_power = " + detail::format_value(this->options().weight_lr_power)
                       + ", lr_max = " + detail::format_value(a.lr_max) + ")";
            }
            return "";
        }

        template <class Step>
        void update(const Step& step, const options_type& o)
        {
            using namespace sym;
            const auto& z = sym::state<0>;
            const auto& v = sym::state<1>;
            const auto& gn = sym::local<0>;
            const averaging a = averaging_at(o, step.count() - 1);
            const double lr = a.lr;
            const double bc2 = a.bc2;
            const double weight = a.weight;
            m_lr_max = a.lr_max;
            m_weight_sum += weight;
            const double c = m_weight_sum != 0 ? weight / m_weight_sum : 0;
            const double y_rate = lr * (arch::product(beta(o), 1 - c) - 1);  // never fused into one rounding
            const double wd = o.weight_decay;

            if (step.count() == 1)
            {
                step.run(z = p);
            }
            const auto y = p = lerp_to_z(c) + y_rate * gn;
            if constexpr (Adaptive)
            {
                const double b2 = o.betas[1];
                const double denom_bc = o.paper ? 1 : bc2;
                step.run(v = v * b2 + (1 - b2) * g * g, gn = g / (sqrt(v / denom_bc) + o.eps) + wd * p, y,
                         z = z - lr * gn);
            }
            else
            {
                step.run(gn = g + wd * p, y, z = z - lr * gn);
            }
        }

    private:

        // The reference's numbers for step k + 1 (k steps taken): lr_t, the bias
        // correction 1 - b2^(k+1) (AdamW), lr_max and weight after it.
        struct averaging
        {
            double lr;
            double bc2;
            double lr_max;
            double weight;
        };

        averaging averaging_at(const options_type& o, std::size_t steps) const noexcept
        {
            const double k = static_cast<double>(steps);
            const double warmup = static_cast<double>(o.warmup_steps);
            const double sched = k < warmup ? (k + 1) / warmup : 1.0;
            averaging a{o.lr * sched, 1, 0, 0};
            if constexpr (Adaptive)
            {
                a.bc2 = 1 - std::pow(o.betas[1], k + 1);
                a.lr = o.paper ? a.lr * std::sqrt(a.bc2) : a.lr;
            }
            a.lr_max = std::max(a.lr, m_lr_max);
            a.weight = std::pow(k + 1, o.r) * std::pow(a.lr_max, o.weight_lr_power);
            return a;
        }

        static double beta(const options_type& o) noexcept
        {
            if constexpr (Adaptive)
            {
                return o.betas[0];
            }
            else
            {
                return o.momentum;
            }
        }

        // lerp(p, z, w)
        static auto lerp_to_z(double w)
        {
            using namespace sym;
            return p + w * (sym::state<0> - p);
        }

        // The parameters become lerp(p, z, w): eval() and train(). Nothing moves before the
        // first step, which makes z a copy of the parameters (init() leaves it zero).
        template <class P>
        void move_toward_z(P&& params, double w)
        {
            if (this->step_count() > 0)
            {
                this->run_without_grads(std::forward<P>(params), sym::p = lerp_to_z(w));
            }
        }

        double m_lr_max = -1;
        double m_weight_sum = 0;
        // 0 in train mode; in eval mode the beta eval() moved the parameters by (a
        // double: saved with the host fields).
        double m_eval = 0;

        // 1 is what a checkpoint saved in eval mode held before the beta was kept: the
        // options' beta then.
        double eval_beta() const noexcept
        {
            return m_eval < 1 ? m_eval : beta(this->options());
        }
    };

    using adamw_schedulefree = schedulefree_base<true>;
    using sgd_schedulefree = schedulefree_base<false>;
}

#endif
