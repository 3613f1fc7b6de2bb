// Cautious updates (Liang, Chen, Liu & Liu 2024, "Cautious Optimizers", arXiv 2411.16085),
// an option of AdamW and Lion: components of the update whose sign disagrees with the
// gradient's are dropped, the rest scaled up by a per-tensor factor,
//   mean:            1 / max(mean(mask), 1e-3)        (timm's adamw.py / lion.py)
//   count_plus_one:  numel / (sum(mask) + 1)          (the paper's Algorithm 1, C-Optim)
// The factor needs the whole tensor's mask before any element is updated, so a cautious
// step is two fused passes: pass 1 reads the state and the gradient and counts the mask
// (a reduction into sym::scalar<0>; it writes nothing); caution_factors (here, on the
// host, per tensor) turns the count into the factor, computed in the parameter's type as
// the references compute it; pass 2 is the optimizer's own fused step, its update
// multiplied by where(agrees, factor, 0). They run in turn (step.run_in_turn): a small
// tensor's pass 2 reads from cache what its pass 1 read, and asks for the next tensor's
// lines as it goes (docs/design.md, "Two passes in turn").
#ifndef XOPTIM_OPTIM_CAUTIOUS_HPP
#define XOPTIM_OPTIM_CAUTIOUS_HPP

#include <algorithm>
#include <cstddef>

#include "../engine/executor.hpp"
#include "caution_options.hpp"

namespace xoptim
{
    namespace detail
    {
        // The factor of a tensor of n elements whose mask has `count` non-zeros, in T.
        template <class T>
        T caution_factor(std::size_t count, std::size_t n, caution_normalization how) noexcept
        {
            if (how == caution_normalization::mean)
            {
                const T mean = n == 0 ? T(0) : static_cast<T>(double(count) / double(n));
                return T(1) / std::max(mean, static_cast<T>(1e-3));
            }
            return static_cast<T>(n) / (static_cast<T>(count) + T(1));
        }

        // Pass 1's reduction: how many components of `update` agree in sign with `grad`
        // (an exact count), for sym::scalar<0>.
        template <class U, class G>
        constexpr auto agreeing(const U& update, const G& grad)
        {
            return count(update * grad > 0);
        }

        // The condition sign(a) * b > 0 without sign(a) or the product: a and b both
        // positive or both negative (neither zero nor NaN). Exactly the same: where a is
        // neither zero nor NaN, sign(a) * b is +b or -b, exactly; elsewhere the product is
        // 0 or NaN. Seven instructions on AVX2 where sign(a), the product and its compare
        // take eleven.
        template <class A, class B>
        constexpr auto same_sign(const A& a, const B& b)
        {
            return (a > 0 && b > 0) || (a < 0 && b < 0);
        }

        // Pass 2's mask: the factor where `update` agrees with `grad`, 0 elsewhere (0 or the
        // factor, so the product with it is the references' mask product, bit for bit).
        template <class U, class G>
        constexpr auto cautious_mask(const U& update, const G& grad)
        {
            return where(update * grad > 0, sym::scalar<0>, 0.0);
        }

        // Between the passes (step.run_in_turn's `between`): a tensor's count in
        // scalar<0> becomes its factor, in the parameter's type, times `times` (rounded
        // once, in that type: Lion folds its lr in).
        struct caution_factors
        {
            caution_normalization how;
            double times = 1;

            template <class Slots>
            void operator()(const Slots& job, job_scalars& scalars) const noexcept
            {
                using T = typename math_type_of<Slots>::type;
                const T factor = caution_factor<T>(static_cast<std::size_t>(scalars[0]), size_of(job), how);
                scalars[0] = double(static_cast<T>(times) * factor);
            }
        };
    }
}

#endif
