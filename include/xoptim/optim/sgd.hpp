// SGD with momentum, dampening, Nesterov and coupled weight decay, as torch.optim.SGD:
//   g' = ±g + wd * p                             (where wd is not 0)
//   b  = momentum * b + (1 - dampening) * g'      (b = g' on the first step)
//   p  = p - lr * (nesterov ? g' + momentum * b : b)
// each sum with a product an fma, as torch's add_(x, alpha) kernels compute it on CPUs
// that have one: g' = fma(wd, p, ±g), b = fma(1 - dampening, g', momentum * b),
// p = fma(-lr, nesterov ? fma(momentum, b, g') : b, p).
// Plain SGD (momentum 0) keeps no state.
#ifndef XOPTIM_OPTIM_SGD_HPP
#define XOPTIM_OPTIM_SGD_HPP

#include <cmath>

#include "optimizer.hpp"
#include "sgd_options.hpp"
#include "validate.hpp"

namespace xoptim
{
    class sgd : public optimizer<sgd, sgd_options>
    {
    public:

        static constexpr const char* name = "sgd";
        static constexpr std::array<const char*, 1> state_names = {"momentum_buffer"};

        explicit sgd(const sgd_options& o)
            : optimizer(o)
        {
        }

        static void check(const sgd_options& o)
        {
            if (std::isnan(o.lr))
            {
                throw std::invalid_argument(
                    "xoptim::sgd: lr is required (sgd_options::lr is NaN: not set, or set to NaN)");
            }
            detail::require_non_negative(o.lr, name, "lr");
            detail::require_non_negative(o.momentum, name, "momentum");
            detail::require(o.dampening >= 0 && o.dampening <= 1, name, "dampening", "in [0, 1]", o.dampening);
            detail::require_non_negative(o.weight_decay, name, "weight_decay");
            if (o.nesterov && (o.momentum <= 0 || o.dampening != 0))
            {
                throw std::invalid_argument("xoptim::sgd: nesterov needs momentum > 0 and dampening = 0");
            }
        }

        static std::size_t num_states(const sgd_options& o) noexcept
        {
            return o.momentum != 0 ? 1 : 0;
        }

        template <class Step>
        void update(const Step& step, const sgd_options& o) const
        {
            using namespace sym;
            const auto& buf = sym::state<0>;
            const auto& d = sym::local<0>;
            const double sign = o.maximize ? -1 : 1;
            const double lr = o.lr;
            const double mu = o.momentum;
            // The buffer starts at +0: on the first step b = fma(1, g', -0 * 0) = g' exactly,
            // -0 included (torch clones g'; a +0 term would turn a -0 into +0).
            const bool first = step.count() == 1;
            const double keep = first ? -0.0 : mu;
            const double take = first ? 1 : 1 - o.dampening;
            const auto run_with = [&](const auto& grad) {
                if (mu == 0)
                {
                    step.run(p = fma(-lr, grad, p));
                }
                else if (o.nesterov)
                {
                    step.run(d = grad, buf = fma(take, d, keep * buf), p = fma(-lr, fma(mu, buf, d), p));
                }
                else
                {
                    step.run(buf = fma(take, grad, keep * buf), p = fma(-lr, buf, p));
                }
            };
            // torch adds weight_decay * p only where weight_decay is not 0 (0 * inf is NaN).
            if (o.weight_decay != 0)
            {
                run_with(fma(o.weight_decay, p, sign * g));
            }
            else
            {
                run_with(sign * g);
            }
        }

    };
}

#endif
