// Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms", Alg. 2):
//   c = b1 * m + (1 - b1) * g
//   p = p * (1 - lr * wd) - lr * sign(c)
//   m = b2 * m + (1 - b2) * g
// caution (C-Optim's c_lion.py; timm's lion.py for "mean"; cautious.hpp): sign(c) becomes
// sign(c) * mask / normalizer, mask = (sign(c) * g > 0), the normalizer counted in a
// first pass.
#ifndef XOPTIM_OPTIM_LION_HPP
#define XOPTIM_OPTIM_LION_HPP

#include <array>

#include "cautious.hpp"
#include "lion_options.hpp"
#include "optimizer.hpp"
#include "validate.hpp"

namespace xoptim
{
    class lion : public optimizer<lion, lion_options>
    {
    public:

        static constexpr const char* name = "lion";
        static constexpr std::array<const char*, 1> state_names = {"exp_avg"};

        explicit lion(const lion_options& o = {})
            : optimizer(o)
        {
        }

        static void check(const lion_options& o)
        {
            detail::require_non_negative(o.lr, name, "lr");
            detail::require_unit_interval(o.betas[0], name, "betas[0]");
            detail::require_unit_interval(o.betas[1], name, "betas[1]");
            detail::require_non_negative(o.weight_decay, name, "weight_decay");
        }

        static std::size_t num_states(const lion_options&) noexcept
        {
            return 1;
        }

        // A cautious step counts its mask per tensor.
        static shard_rule shards(const lion_options& o) noexcept
        {
            return o.caution ? shard_rule::whole_tensors : shard_rule::elements;
        }

        template <class Step>
        void update(const Step& step, const lion_options& o) const
        {
            using namespace sym;
            const auto& m = sym::state<0>;
            const auto& c = sym::local<0>;
            const double b1 = o.betas[0];
            const double b2 = o.betas[1];
            const double lr = o.lr;
            const double decay = 1 - arch::product(lr, o.weight_decay);
            const auto interpolated = c = b1 * m + (1 - b1) * g;
            const auto momentum = m = b2 * m + (1 - b2) * g;
            if (o.caution)
            {
                // Pass 1 counts where sign(c) agrees with g (it writes nothing), by compares
                // alone: sign(c) is not needed there. Pass 2 takes lr * factor as its
                // scalar: lr * (sign(c) * factor) is lr * (±factor), rounded once, which
                // is ±(lr * factor) rounded once; and lr * (sign(c) * 0) is sign(c) * 0
                // (lr >= 0): the same bits, one multiply less per element.
                step.run_in_turn(fuse(interpolated, sym::scalar<0> = count(detail::same_sign(c, g))),
                                 detail::caution_factors{o.caution_normalize, lr},
                                 fuse(interpolated, p = p * decay - sign(c) * detail::cautious_mask(sign(c), g),
                                      momentum));
            }
            else
            {
                step.run(interpolated, p = p * decay - lr * sign(c), momentum);
            }
        }

    };
}

#endif
