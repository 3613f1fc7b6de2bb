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

    // The parameters at x while this object lives: eval() when it is made; train(), and y
    // put back from a copy, when it goes (an exception from the evaluation included).
    template <class Opt, class Params>
    class at_average
    {
    public:

        at_average(Opt& opt, Params& params)
            : m_opt(opt), m_params(params)
        {
            m_flat.collect(params, xoptim::no_grads{}, "evaluation");
            m_floats = copy_of(m_flat.share<float>());
            m_doubles = copy_of(m_flat.share<double>());
            opt.eval(params);
        }

        at_average(const at_average&) = delete;
        at_average& operator=(const at_average&) = delete;

        ~at_average()
        {
            m_opt.train(m_params);
            restore(m_flat.share<float>(), m_floats);
            restore(m_flat.share<double>(), m_doubles);
        }

    private:

        Opt& m_opt;
        Params& m_params;
        xoptim::flat_params m_flat;
        std::vector<std::vector<float>> m_floats;
        std::vector<std::vector<double>> m_doubles;
    };

    // Runs f() with `params` where the stepper's optimizer evaluates them (a stepper around
    // one optimizer; a router's parts are evaluated at their parameters as they are).
    template <class Stepper, class Params, class F>
    void at_evaluation_point(Stepper& step, Params params, F&& f)
    {
        if constexpr (has_optimizer<Stepper>::value)
        {
            auto& opt = step.optimizer();
            if constexpr (evaluates_elsewhere<std::decay_t<decltype(opt)>>::value)
            {
                const at_average<std::decay_t<decltype(opt)>, Params> x(opt, params);
                f();
                return;
            }
        }
        f();
    }
}

#endif
