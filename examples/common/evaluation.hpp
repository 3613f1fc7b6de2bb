// Where a model is evaluated. Schedule-Free optimizers take their gradients at y and
// evaluate at x, the average their eval() moves the parameters to (train() moves them
// back); every other optimizer evaluates the parameters it trains. eval() and train() are
// each a lerp, not exact inverses, so the examples put y back from a copy: a run's
// training does not depend on how often it is evaluated, and a resumed run matches a
// straight one bit for bit.
#ifndef XOPTIM_EXAMPLES_COMMON_EVALUATION_HPP
#define XOPTIM_EXAMPLES_COMMON_EVALUATION_HPP

#include <algorithm>
#include <type_traits>
#include <utility>
#include <vector>

#include <xoptim/params/flat.hpp>

namespace examples
{
    template <class T, class = void>
    struct has_optimizer : std::false_type
    {
    };

    template <class T>
    struct has_optimizer<T, std::void_t<decltype(std::declval<T&>().optimizer())>> : std::true_type
    {
    };

    template <class Opt, class = void>
    struct evaluates_elsewhere : std::false_type
    {
    };

    template <class Opt>
    struct evaluates_elsewhere<Opt, std::void_t<decltype(std::declval<const Opt&>().in_eval_mode())>> : std::true_type
    {
    };

    template <class T>
    std::vector<std::vector<T>> copy_of(const xoptim::flat_share<T>& share)
    {
        std::vector<std::vector<T>> out;
        for (const auto& v : share.params)
        {
            out.emplace_back(v.data(), v.data() + v.size());
        }
        return out;
    }

    template <class T>
    void restore(xoptim::flat_share<T>& share, const std::vector<std::vector<T>>& saved)
    {
        for (std::size_t k = 0; k < saved.size(); ++k)
        {
            std::copy(saved[k].begin(), saved[k].end(), share.params[k].data());
        }
    }

    // Runs f() with `params` where the stepper's optimizer evaluates them.
    template <class Stepper, class Params, class F>
    void at_evaluation_point(Stepper& step, Params params, F&& f)
    {
        if constexpr (has_optimizer<Stepper>::value)
        {
            auto& opt = step.optimizer();
            if constexpr (evaluates_elsewhere<std::decay_t<decltype(opt)>>::value)
            {
                xoptim::flat_params flat;
                flat.collect(params, xoptim::no_grads{}, "evaluation");
                const auto floats = copy_of(flat.share<float>());
                const auto doubles = copy_of(flat.share<double>());
                opt.eval(params);
                f();
                opt.train(params);
                restore(flat.share<float>(), floats);
                restore(flat.share<double>(), doubles);
                return;
            }
        }
        f();
    }
}

#endif
