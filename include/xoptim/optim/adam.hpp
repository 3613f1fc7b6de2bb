// Adam and AdamW (Kingma & Ba 2015; Loshchilov & Hutter 2019), as torch.optim.Adam/AdamW:
//   AdamW: p = p * (1 - lr * wd)            Adam: g' = ±g + wd * p (where wd is not 0)
//   m = b1 * m + (1 - b1) * g'
//   v = b2 * v + (1 - b2) * g'^2             amsgrad: vmax = max(vmax, v), used for v below
//   p = p + (-lr / (1 - b1^t) * m) / (sqrt(v) / sqrt(1 - b2^t) + eps)
// (multiplied before divided, in the order of torch's addcdiv_ kernel). Where torch's
// kernels round once (add_ with alpha, addcmul_: one fma each on CPUs that have one),
// the update writes fma: g' = fma(wd, p, ±g), m = fma(1 - b1, g', b1 * m),
// v = fma((1 - b2) * g', g', b2 * v); every other product is rounded on its own.
// Without bias correction the last line is MLX's p = p - lr * m / (sqrt(v) + eps).
// caution (timm's AdamW, caution=True; cautious.hpp): m in the last line becomes
// m * mask / normalizer, mask = (m * g' > 0), the normalizer counted in a first pass.
#ifndef XOPTIM_OPTIM_ADAM_HPP
#define XOPTIM_OPTIM_ADAM_HPP

#include <array>
#include <cmath>

#include "adam_options.hpp"
#include "cautious.hpp"
#include "optimizer.hpp"
#include "validate.hpp"

namespace xoptim
{
    template <bool Decoupled>
    class adam_base : public optimizer<adam_base<Decoupled>, adam_options_base<Decoupled>>
    {
    public:

        using options_type = adam_options_base<Decoupled>;
        static constexpr const char* name = Decoupled ? "adamw" : "adam";
        static constexpr std::array<const char*, 3> state_names = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
        static constexpr std::array<bool, 3> unsigned_states = {false, true, true};

        explicit adam_base(const options_type& o = {})
            : optimizer<adam_base, options_type>(o)
        {
        }

        static void check(const options_type& o)
        {
            detail::require_non_negative(o.lr, name, "lr");
            detail::require_unit_interval(o.betas[0], name, "betas[0]");
            detail::require_unit_interval(o.betas[1], name, "betas[1]");
            detail::require_positive(o.eps, name, "eps");
            detail::require_non_negative(o.weight_decay, name, "weight_decay");
        }

        static std::size_t num_states(const options_type& o) noexcept
        {
            return o.amsgrad ? 3 : 2;
        }

        // A cautious step counts its mask per tensor.
        static shard_rule shards(const options_type& o) noexcept
        {
            return o.caution ? shard_rule::whole_tensors : shard_rule::elements;
        }

        template <class Step>
        void update(const Step& step, const options_type& o) const
        {
            using namespace sym;
            const auto& m = sym::state<0>;
            const auto& v = sym::state<1>;
            const auto& vmax = sym::state<2>;
            const auto& d = sym::local<0>;
            const double b1 = o.betas[0];
            const double b2 = o.betas[1];
            const double t = static_cast<double>(step.count());
            const double bc1 = o.bias_correction ? 1 - std::pow(b1, t) : 1;
            const double bc2_sqrt = o.bias_correction ? std::sqrt(1 - std::pow(b2, t)) : 1;
            const double step_size = o.lr / bc1;
            const double sign = o.maximize ? -1 : 1;
            const double decay = Decoupled ? 1 - arch::product(o.lr, o.weight_decay) : 1;

            const auto decayed = p = decay * p;
            // The step from the gradient term d = g' (+ weight_decay * p, Adam's coupled decay).
            const auto run_with = [&](const auto& grad) {
                const auto first_moment = m = fma(1 - b1, d, b1 * m);
                const auto second_moment = v = fma((1 - b2) * d, d, b2 * v);
                // One fused pass: the moments, then p moved by -step_size * numerator / denominator,
                // handed to run(pass).
                const auto adam_step = [&](const auto& numerator, const auto& run) {
                    if (o.amsgrad)
                    {
                        run(fuse(decayed, grad, first_moment, second_moment, vmax = max(vmax, v),
                                 p = p + (-step_size * numerator) / (sqrt(vmax) / bc2_sqrt + o.eps)));
                    }
                    else
                    {
                        run(fuse(decayed, grad, first_moment, second_moment,
                                 p = p + (-step_size * numerator) / (sqrt(v) / bc2_sqrt + o.eps)));
                    }
                };
                if (o.caution)
                {
                    // Pass 1 counts where the new m agrees with g' (it writes nothing); the
                    // step then moves p by m masked and scaled by its tensor's factor.
                    const auto& new_m = sym::local<1>;
                    const auto count = fuse(grad, new_m = fma(1 - b1, d, b1 * m),
                                            sym::scalar<0> = detail::agreeing(new_m, d));
                    adam_step(m * detail::cautious_mask(m, d), [&](const auto& pass) {
                        step.run_in_turn(count, detail::caution_factors{o.caution_normalize}, pass);
                    });
                }
                else
                {
                    adam_step(m, [&](const auto& pass) { step.run_fused(pass); });
                }
            };
            // torch's Adam adds weight_decay * p only where weight_decay is not 0 (0 * inf is
            // NaN): without it the step is AdamW's with no decay, the same program.
            if constexpr (!Decoupled)
            {
                if (o.weight_decay != 0)
                {
                    run_with(d = fma(o.weight_decay, p, sign * g));
                    return;
                }
            }
            run_with(d = sign * g);
        }
    };
}

#endif
