// AdEMAMix (Pagliardini, Ablin & Grangier 2024, "The AdEMAMix Optimizer: Better, Faster,
// Older"), as apple/ml-ademamix pytorch/ademamix.py (commit e7327151):
//   m1 = b1 * m1 + (1 - b1) * g              (b1 = 0: m1 is g itself, no state)
//   m2 = b3 * m2 + (1 - b3) * g              the slow EMA
//   v  = b2 * v + (1 - b2) * g^2
//   u  = (m1 / (1 - b1^t) + alpha * m2) / (sqrt(v) / sqrt(1 - b2^t) + eps) + wd * p
//   p  = p - lr * u
// Optional warmups count the step t = 1, 2, ...: alpha rises linearly from 0 over
// alpha_warmup steps; b3 rises from b1 over beta3_warmup steps linearly in half-life
// (f(b) = ln(1/2) / ln(b + 1e-8) - 1, b3 = 2^(-1 / (f + 1))). A schedule on "alpha" or
// "betas[2]" works as well (evaluated at k = t - 1).
// Every product and sum is rounded on its own, as the reference's kernels round them.
#ifndef XOPTIM_OPTIM_ADEMAMIX_HPP
#define XOPTIM_OPTIM_ADEMAMIX_HPP

#include <array>
#include <cmath>

#include "../engine/arch/product.hpp"
#include "optimizer.hpp"
#include "validate.hpp"

namespace xoptim
{
    struct ademamix_options
    {
        double lr = 1e-3;
        std::array<double, 3> betas = {0.9, 0.999, 0.9999};
        double alpha = 2.0;
        std::size_t beta3_warmup = 0;  // steps; 0: none (the reference's None)
        std::size_t alpha_warmup = 0;  // steps; 0: none
        double eps = 1e-8;
        double weight_decay = 0;

        template <class O, class F>
        static void fields(O& o, F&& f)
        {
            f("lr", o.lr);
            f("betas", o.betas);
            f("alpha", o.alpha);
            f("beta3_warmup", o.beta3_warmup);
            f("alpha_warmup", o.alpha_warmup);
            f("eps", o.eps);
            f("weight_decay", o.weight_decay);
        }
    };

    namespace detail
    {
        // The reference's linear_warmup_scheduler (from 0) and linear_hl_warmup_scheduler.
        inline double ademamix_alpha(const ademamix_options& o, double t)
        {
            if (t >= static_cast<double>(o.alpha_warmup))
            {
                return o.alpha;
            }
            const double a = t / static_cast<double>(o.alpha_warmup);
            return (1 - a) * 0 + a * o.alpha;
        }

        inline double ademamix_beta3(const ademamix_options& o, double t)
        {
            if (t >= static_cast<double>(o.beta3_warmup))
            {
                return o.betas[2];
            }
            const auto half_life = [](double beta) { return std::log(0.5) / std::log(beta + 1e-8) - 1; };
            const double a = t / static_cast<double>(o.beta3_warmup);
            return std::pow(0.5, 1
                                     / (arch::product(1 - a, half_life(o.betas[0]))
                                        + arch::product(a, half_life(o.betas[2])) + 1));
        }
    }

    class ademamix : public optimizer<ademamix, ademamix_options>
    {
    public:

        static constexpr const char* name = "ademamix";
        // exp_avg_fast last: it exists only when betas[0] != 0.
        static constexpr std::array<const char*, 3> state_names = {"exp_avg_slow", "exp_avg_sq", "exp_avg_fast"};
        static constexpr std::array<bool, 3> unsigned_states = {false, true, false};

        explicit ademamix(const ademamix_options& o = {})
            : optimizer(o)
        {
        }

        static void check(const ademamix_options& o)
        {
            detail::require_non_negative(o.lr, name, "lr");
            detail::require_unit_interval(o.betas[0], name, "betas[0]");
            detail::require_unit_interval(o.betas[1], name, "betas[1]");
            detail::require_unit_interval(o.betas[2], name, "betas[2]");
            detail::require_non_negative(o.alpha, name, "alpha");
            detail::require_positive(o.eps, name, "eps");
            detail::require_non_negative(o.weight_decay, name, "weight_decay");
        }

        static std::size_t num_states(const ademamix_options& o) noexcept
        {
            return o.betas[0] != 0 ? 3 : 2;
        }

        template <class Step>
        void update(const Step& step, const ademamix_options& o) const
        {
            using namespace sym;
            const auto& m2 = sym::state<0>;
            const auto& v = sym::state<1>;
            const auto& m1 = sym::state<2>;
            const double b1 = o.betas[0];
            const double b2 = o.betas[1];
            const double t = static_cast<double>(step.count());
            const double b3 = detail::ademamix_beta3(o, t);
            const double alpha = detail::ademamix_alpha(o, t);
            const double bc1 = 1 - std::pow(b1, t);
            const double bc2_sqrt = std::sqrt(1 - std::pow(b2, t));
            const double wd = o.weight_decay;
            const double lr = o.lr;

            const auto slow = m2 = m2 * b3 + (1 - b3) * g;
            const auto second = v = v * b2 + (1 - b2) * g * g;
            const auto denom = sqrt(v) / bc2_sqrt + o.eps;
            if (b1 != 0)
            {
                step.run(m1 = m1 * b1 + (1 - b1) * g, slow, second,
                         p = p + (-lr) * ((m1 / bc1 + alpha * m2) / denom + wd * p));
            }
            else
            {
                step.run(slow, second, p = p + (-lr) * ((g / bc1 + alpha * m2) / denom + wd * p));
            }
        }
    };
}

#endif
