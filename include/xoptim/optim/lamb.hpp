// LAMB (You et al. 2019, "Large Batch Optimization for Deep Learning"), as NVIDIA apex's
// FusedLAMB computes it (apex/optimizers/fused_lamb.py, csrc/multi_tensor_lamb.cu):
//   clipped = ||g||_global > max_grad_norm ? ||g||_global / max_grad_norm : 1
//             (||g||_global over all the tensors: a param_groups<lamb>'s over all its groups)
//   sg = g / clipped                        (L2 mode: sg = sg + wd * p)
//   m = b1 * m + beta3 * sg                 beta3 = grad_averaging ? 1 - b1 : 1
//   v = b2 * v + (1 - b2) * sg * sg
//   u = (m / bc1) / (sqrt(v / bc2) + eps)   (AdamW mode: u = u + wd * p)
//   ratio = lr * ||p|| / ||u||, per tensor  (lr where either norm is 0, or without
//                                            use_nvlamb and weight decay)
//   p = p - ratio * u
// optax.lamb is max_grad_norm = none, use_nvlamb = true. Passes over memory: g (only with
// max_grad_norm), p g m v -> m v u with the two norms, p u -> p (u carried between them:
// in the thread's cache for a tensor of up to 2^14 elements, otherwise in one array the
// size of the biggest tensor, kept by the optimizer and counted in its report();
// engine/executor.hpp run_carrying); one pass, Adam's, where no trust ratio applies. A
// step that can meet 8-bit or bf16 states (set_storage) runs p g m v with the norms, m
// and v not stored, then p g m v -> p m v, as bitsandbytes' 8-bit LAMB: its update is
// computed from the states its norms were, not from their rounded copies.
#ifndef XOPTIM_OPTIM_LAMB_HPP
#define XOPTIM_OPTIM_LAMB_HPP

#include <array>
#include <cmath>
#include <optional>

#include "optimizer.hpp"
#include "validate.hpp"

namespace xoptim
{
    struct lamb_options
    {
        double lr = 1e-3;
        bool bias_correction = true;
        std::array<double, 2> betas = {0.9, 0.999};
        double eps = 1e-6;
        double weight_decay = 0.01;
        bool adam_w_mode = true;
        bool grad_averaging = true;
        std::optional<double> max_grad_norm = 1.0;  // none: no built-in clipping (optax)
        bool use_nvlamb = false;

        // Every hyperparameter with apex's name.
        template <class O, class F>
        static void fields(O& o, F&& f)
        {
            f("lr", o.lr);
            f("bias_correction", o.bias_correction);
            f("betas", o.betas);
            f("eps", o.eps);
            f("weight_decay", o.weight_decay);
            f("adam_w_mode", o.adam_w_mode);
            f("grad_averaging", o.grad_averaging);
            f("max_grad_norm", o.max_grad_norm);
            f("use_nvlamb", o.use_nvlamb);
        }
    };

    class lamb : public optimizer<lamb, lamb_options>
    {
    public:

        static constexpr const char* name = "lamb";
        static constexpr std::array<const char*, 2> state_names = {"exp_avg", "exp_avg_sq"};
        static constexpr std::array<bool, 2> unsigned_states = {false, true};

        explicit lamb(const lamb_options& o = {})
            : optimizer(o)
        {
        }

        static void check(const lamb_options& o)
        {
            detail::require_non_negative(o.lr, name, "lr");
            detail::require_unit_interval(o.betas[0], name, "betas[0]");
            detail::require_unit_interval(o.betas[1], name, "betas[1]");
            detail::require_positive(o.eps, name, "eps");
            detail::require_non_negative(o.weight_decay, name, "weight_decay");
            if (o.max_grad_norm)
            {
                detail::require_positive(*o.max_grad_norm, name, "max_grad_norm");
            }
        }

        static std::size_t num_states(const lamb_options&) noexcept
        {
            return 2;
        }

        // max_grad_norm: a norm over all the tensors; the trust ratio: norms per tensor.
        static shard_rule shards(const lamb_options& o) noexcept
        {
            if (o.max_grad_norm)
            {
                return shard_rule::whole_set;
            }
            return o.use_nvlamb || o.weight_decay != 0 ? shard_rule::whole_tensors : shard_rule::elements;
        }

        // The squared norm of the gradients over all the tensors (of every group of a
        // param_groups<lamb>, as apex's one norm over its groups), before any update.
        template <class Step>
        static double whole_set_total(const Step& step, const lamb_options&)
        {
            return step.total(sum_squares(sym::g));
        }

        template <class Step>
        void update(const Step& step, const lamb_options& o) const
        {
            using namespace sym;
            const auto& m = sym::state<0>;
            const auto& v = sym::state<1>;
            const auto& sg = sym::local<0>;
            const auto& u = sym::local<1>;
            const auto& param_norm = sym::scalar<0>;
            const auto& update_norm = sym::scalar<1>;
            const auto& ratio = sym::scalar<2>;
            const double b1 = o.betas[0];
            const double b2 = o.betas[1];
            const double beta3 = o.grad_averaging ? 1 - b1 : 1;
            const double t = static_cast<double>(step.count());
            const double bc1 = o.bias_correction ? 1 - std::pow(b1, t) : 1;
            const double bc2 = o.bias_correction ? 1 - std::pow(b2, t) : 1;
            const double wd = o.weight_decay;
            const double lr = o.lr;

            double clipped = 1;
            if (o.max_grad_norm)
            {
                const double norm = std::sqrt(step.whole_set_total());
                clipped = norm > *o.max_grad_norm ? norm / *o.max_grad_norm : 1;
            }
            const auto first_moment = b1 * m + beta3 * sg;
            const auto second_moment = (1 - b2) * sg * sg + b2 * v;
            const auto adam_direction = [&](const auto& mm, const auto& vv) {
                return (mm / bc1) / (sqrt(vv / bc2) + o.eps);
            };
            const auto passes = [&](const auto& grad, const auto& direction) {
                if (o.use_nvlamb || wd != 0)
                {
                    const auto norm_of_p = param_norm = sqrt(sum_squares(p));
                    const auto norm_of_u = update_norm = sqrt(sum_squares(u));
                    const auto trust_ratio =
                        ratio = where(param_norm != 0 && update_norm != 0, lr * (param_norm / update_norm), lr);
                    if constexpr (Step::runs_coded)
                    {
                        // Both passes compute m and v from the states as the step found them:
                        // the first into locals, for the norms, the second into the states,
                        // with the update. The update is then the one whose norm the ratio
                        // took, whatever the storage rounds the states to (an 8-bit v stored
                        // as its zero code and read back would divide m by eps alone).
                        const auto& m_next = sym::local<2>;
                        const auto& v_next = sym::local<3>;
                        step.run_in_turn(fuse(grad, m_next = first_moment, v_next = second_moment,
                                              u = direction(m_next, v_next), norm_of_p, norm_of_u, trust_ratio),
                                         detail::nothing_between{},
                                         fuse(grad, m = first_moment, v = second_moment,
                                              p = p - ratio * direction(m, v)));
                    }
                    else
                    {
                        // Float and double states hold what the first pass computed, exactly:
                        // the first pass carries u to the second, which reads p and u only.
                        step.run_carrying(fuse(grad, m = first_moment, v = second_moment, u = direction(m, v),
                                               carried = u, norm_of_p, norm_of_u, trust_ratio),
                                          detail::nothing_between{}, fuse(p = p - ratio * carried));
                    }
                }
                else
                {
                    step.run(grad, m = first_moment, v = second_moment, p = p - lr * direction(m, v));
                }
            };
            if (o.adam_w_mode)
            {
                passes(sg = g / clipped,
                       [&](const auto& mm, const auto& vv) { return adam_direction(mm, vv) + wd * p; });
            }
            else
            {
                passes(sg = g / clipped + wd * p, adam_direction);
            }
        }
    };
}

#endif
