// Everything around an optimizer's step (SPEC section 5): gradient accumulation over
// k micro-batches, global-norm clipping, clipping by value and a guard against
// non-finite gradients, for any optimizer or router.
//
//     xoptim::stepper_options o;
//     o.clip_global_norm = 1.0;
//     o.accumulate = 4;
//     xoptim::stepper step(xoptim::adamw(), o);
//     for (auto& batch : micro_batches)
//         if (step(params, grads_of(batch)))   // true on every 4th call: the optimizer stepped
//             log(step.last_norm());
//
// Cost: the accumulation adds one pass per micro-batch (acc = acc + g); clipping and
// the guard share one read of the gradients (sum of squares in double, and finiteness);
// the scaling (clip factor, 1/k) and clipping by value are applied by the optimizer's
// own pass as it loads g, never as a pass of their own.
#ifndef XOPTIM_STEP_STEPPER_HPP
#define XOPTIM_STEP_STEPPER_HPP

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "../engine/reduce.hpp"
#include "../optim/kinds.hpp"
#include "../optim/state.hpp"
#include "../optim/validate.hpp"
#include "../params/flat.hpp"

namespace xoptim
{
    namespace detail
    {
        struct checkpoint_access;

        // torch's clip_grad_norm_ factor: max_norm / (norm + 1e-6), at most 1. A NaN norm
        // gives NaN (torch's clamp keeps it: every gradient becomes NaN).
        inline double clip_factor(double max_norm, double norm) noexcept
        {
            const double coef = max_norm / (norm + 1e-6);
            return coef < 1 || std::isnan(coef) ? coef : 1.0;
        }
    }

    // What a NaN or Inf gradient does to a step.
    enum class non_finite
    {
        skip,   // the step is not taken: parameters, state and schedules unchanged; counted
        raise,  // throws non_finite_error naming the first parameter with one
        ignore  // no check (and no read of the gradients unless clipping needs one)
    };

    struct non_finite_error : std::runtime_error
    {
        using std::runtime_error::runtime_error;
    };

    struct stepper_options
    {
        double clip_global_norm = 0;  // > 0: scale all gradients by min(1, max / (norm + 1e-6))
        double clip_value = 0;        // > 0: clamp every gradient element to [-clip_value, clip_value]
        non_finite on_non_finite = non_finite::skip;
        std::size_t accumulate = 1;   // micro-batches per optimizer step; their mean is used
        // The caller sums the micro-batch gradients into its own buffers (and clears
        // them after each step): no accumulator is kept, the buffers are read on the
        // k-th call only.
        bool caller_accumulates = false;
    };

    template <class Opt>
    class stepper
    {
        static_assert(detail::is_steppable<std::remove_cv_t<std::remove_reference_t<Opt>>>::value,
                      "xoptim::stepper wraps an optimizer, a router or param_groups (not its options, a stepper, "
                      "an ema or compiled<O>)");

    public:

        // Opt may be a reference type: stepper<adamw&> steps an optimizer owned elsewhere.
        explicit stepper(Opt optimizer, const stepper_options& o = {})
            : m_opt(std::forward<Opt>(optimizer)), m_o(o)
        {
            detail::require_non_negative(o.clip_global_norm, "stepper", "clip_global_norm");
            detail::require_non_negative(o.clip_value, "stepper", "clip_value");
            detail::require(o.accumulate >= 1, "stepper", "accumulate", ">= 1", double(o.accumulate));
        }

        // One micro-batch. Returns true when the optimizer stepped, false when the
        // call only accumulated or the step was skipped for a non-finite gradient. With
        // on_non_finite = raise and the stepper's own accumulators, a micro-batch holding
        // NaN or Inf is refused before it is added (nothing changes). On a cycle's k-th
        // call the optimizer checks everything (its schedules' values, a step it refuses,
        // its state against the parameters) before the micro-batch is added: a refusal
        // changes nothing, and the call may be made again. Only a sum that overflowed
        // under raise (or a failure inside the update: threads that cannot start) drops
        // the cycle's micro-batches; the next call then starts a new cycle. A call refused
        // before the stepper's first step, with nothing pending, leaves it as new: the
        // next call may pass another set of parameters.
        template <class P, class G>
        bool operator()(P&& params, G&& grads);

        std::remove_reference_t<Opt>& optimizer() noexcept
        {
            return m_opt;
        }

        const std::remove_reference_t<Opt>& optimizer() const noexcept
        {
            return m_opt;
        }

        const stepper_options& options() const noexcept
        {
            return m_o;
        }

        // Steps not taken because a gradient was NaN or Inf.
        std::size_t skipped_steps() const noexcept
        {
            return m_skipped;
        }

        // Micro-batches accumulated towards the next step (0 right after a step).
        std::size_t pending_micro_batches() const noexcept
        {
            return m_micro;
        }

        // Global norm of the (mean) gradient at the last step, before clipping; NaN if
        // it was not computed (no clipping and the guard off).
        double last_norm() const noexcept
        {
            return m_last_norm;
        }

        // The accumulated gradient sums, one per parameter (empty unless accumulating
        // into own buffers).
        const state_store& accumulators() const noexcept
        {
            return m_acc;
        }

    private:

        friend struct detail::checkpoint_access;

        // operator()'s work after the walk.
        bool step_collected(const checked_walk& checked);

        // One zeroed buffer per parameter (float parameters' first, then double), made
        // once, known by the parameter's name.
        void make_accumulators();

        template <class T>
        void check_accumulators(const flat_share<T>& s) const;

        // The sums += `grads` (= on a cycle's first micro-batch).
        template <class T>
        void accumulate(const std::vector<tensor_view<const T>>& grads);

        template <class T>
        void use_accumulators(flat_share<T>& s);

        template <class T>
        job_list<T>& jobs() noexcept
        {
            return detail::by_type<T>(m_float_jobs, m_double_jobs);
        }

        // A cycle's last micro-batch, held while the step reads the sums.
        template <class T>
        std::vector<tensor_view<const T>>& last_micro_batch() noexcept
        {
            return detail::by_type<T>(m_last_floats, m_last_doubles);
        }

        template <class T>
        grad_stats reduce(const flat_share<T>& s);

        std::string first_non_finite();

        Opt m_opt;
        stepper_options m_o;
        flat_params m_flat;
        state_store m_acc;
        job_list<float> m_float_jobs;
        job_list<double> m_double_jobs;
        std::vector<tensor_view<const float>> m_last_floats;
        std::vector<tensor_view<const double>> m_last_doubles;
        std::vector<double> m_partials;
        std::size_t m_micro = 0;
        std::size_t m_skipped = 0;
        bool m_stepped = false;  // the optimizer has stepped through this stepper
        double m_last_norm = std::numeric_limits<double>::quiet_NaN();
    };

    // stepper(adamw(), o) owns its optimizer; stepper(opt, o) with an lvalue steps that
    // very optimizer (a stepper<adamw&>), which must then outlive the stepper.
    template <class Opt>
    stepper(Opt&&, const stepper_options&) -> stepper<Opt>;

    template <class Opt>
    stepper(Opt&&) -> stepper<Opt>;

    template <class Opt>
    template <class P, class G>
    bool stepper<Opt>::operator()(P&& params, G&& grads)
    {
        detail::require_gradients<G>();
        detail::require_stepped_in_place<P>();
        const checked_walk checked = m_flat.collect(std::forward<P>(params), std::forward<G>(grads), "xoptim::stepper");
        try
        {
            return step_collected(checked);
        }
        catch (...)
        {
            if (m_micro == 0 && !m_stepped)
            {
                m_flat.reset();
                m_acc = state_store();
            }
            throw;
        }
    }

    template <class Opt>
    bool stepper<Opt>::step_collected(const checked_walk& checked)
    {
        const bool own_buffers = m_o.accumulate > 1 && !m_o.caller_accumulates;
        auto& floats = m_flat.share<float>();
        auto& doubles = m_flat.share<double>();
        if (own_buffers)
        {
            make_accumulators();
            check_accumulators(floats);  // both before either sum moves
            check_accumulators(doubles);
            // raise: a micro-batch with NaN or Inf is refused before it enters the sums,
            // so the call changes nothing and the cycle goes on with the next one.
            if (m_o.on_non_finite == non_finite::raise && !(reduce(floats) + reduce(doubles)).finite)
            {
                throw non_finite_error("xoptim::stepper: parameter '" + first_non_finite()
                                       + "': gradient holds NaN or Inf; micro-batch not added ("
                                       + std::to_string(m_micro) + " of " + std::to_string(m_o.accumulate)
                                       + " pending)");
            }
        }
        if (m_micro + 1 < m_o.accumulate)
        {
            if (own_buffers)
            {
                accumulate(floats.grads);
                accumulate(doubles.grads);
            }
            ++m_micro;
            return false;
        }

        // The cycle's last call. The optimizer checks everything before anything here
        // changes (it reads the sums, where the stepper keeps them); then the last
        // micro-batch is added, and the cycle is used.
        if (own_buffers)
        {
            last_micro_batch<float>() = floats.grads;
            last_micro_batch<double>() = doubles.grads;
            use_accumulators(floats);
            use_accumulators(doubles);
        }
        m_opt.prepare(m_flat.params(), m_flat.grads(), checked);  // checks no leaf again
        try
        {
            if (own_buffers)
            {
                accumulate(last_micro_batch<float>());
                accumulate(last_micro_batch<double>());
            }
            m_micro = 0;
            const double mean = 1.0 / double(m_o.accumulate);
            grad_transform t;
            t.clip = m_o.clip_value > 0 ? m_o.clip_value : std::numeric_limits<double>::infinity();
            double norm = m_last_norm;  // last_norm() changes with a step taken or skipped only
            if (m_o.clip_global_norm > 0 || m_o.on_non_finite != non_finite::ignore)
            {
                const grad_stats s = reduce(floats) + reduce(doubles);
                norm = s.norm() * mean;
                if (!s.finite)
                {
                    if (m_o.on_non_finite == non_finite::raise)
                    {
                        throw non_finite_error("xoptim::stepper: parameter '" + first_non_finite()
                                               + "': gradient holds NaN or Inf; step not taken");
                    }
                    if (m_o.on_non_finite == non_finite::skip)
                    {
                        m_opt.abandon();
                        m_last_norm = norm;
                        ++m_skipped;
                        return false;
                    }
                }
                if (m_o.clip_global_norm > 0)
                {
                    t.scale = detail::clip_factor(m_o.clip_global_norm, norm);
                }
            }
            t.scale *= mean;
            m_opt.commit(t);
            m_last_norm = norm;
            m_stepped = true;
            return true;
        }
        catch (...)
        {
            m_opt.abandon();
            throw;
        }
    }

    template <class Opt>
    void stepper<Opt>::make_accumulators()
    {
        if (m_acc.empty())
        {
            const auto add = [&](const auto& s) {
                for (std::size_t i = 0; i < s.params.size(); ++i)
                {
                    m_acc.add(m_flat.name(s.leaves[i]), s.params[i], 1);
                }
            };
            add(m_flat.share<float>());
            add(m_flat.share<double>());
        }
    }

    template <class Opt>
    template <class T>
    void stepper<Opt>::check_accumulators(const flat_share<T>& s) const
    {
        // base + i is in range: every call passes as many parameters as the first. The
        // optimizer reads the sums as the gradients without checking them again: they must
        // have the parameter's shape.
        const std::size_t base = std::is_same_v<T, float> ? 0 : m_flat.share<float>().params.size();
        for (std::size_t i = 0; i < s.params.size(); ++i)
        {
            const state_store::entry& e = m_acc[base + i];
            if (e.type != dtype_of<T>() || e.size != s.params[i].size() || !detail::same_shape(s.params[i], e.shape))
            {
                throw std::invalid_argument("xoptim::stepper: parameter '" + m_flat.name(s.leaves[i]) + "' ("
                                            + dtype_name(dtype_of<T>()) + " " + format_shape(tensor::shape(s.params[i]))
                                            + ") does not fit its gradient accumulator (made for '" + e.name + "': "
                                            + dtype_name(e.type) + " " + format_shape(e.shape) + ")");
            }
        }
    }

    // acc = g on a cycle's first micro-batch, acc = acc + g after: one pass each.
    template <class Opt>
    template <class T>
    void stepper<Opt>::accumulate(const std::vector<tensor_view<const T>>& grads)
    {
        const std::size_t base = std::is_same_v<T, float> ? 0 : m_flat.share<float>().params.size();
        job_list<T>& list = jobs<T>();
        list.clear();
        for (std::size_t i = 0; i < grads.size(); ++i)
        {
            const state_store::entry& e = m_acc[base + i];
            tensor_slots<T> slots;
            slots.param = e.template state<T>(0);
            slots.grad = grads[i].data();
            slots.size = e.size;
            list.push_back(slots);
        }
        using sym::g;
        using sym::p;
        if (m_micro == 0)
        {
            run_program(fuse(p = g), list);
        }
        else
        {
            run_program(fuse(p = p + g), list);
        }
    }

    // The step reads the sums instead of the last micro-batch's gradients.
    template <class Opt>
    template <class T>
    void stepper<Opt>::use_accumulators(flat_share<T>& s)
    {
        const std::size_t base = std::is_same_v<T, float> ? 0 : m_flat.share<float>().params.size();
        for (std::size_t i = 0; i < s.grads.size(); ++i)
        {
            const state_store::entry& e = m_acc[base + i];
            s.grads[i] = tensor_view<const T>(e.template state<T>(0), e.shape);
        }
    }

    template <class Opt>
    template <class T>
    grad_stats stepper<Opt>::reduce(const flat_share<T>& s)
    {
        job_list<T>& list = jobs<T>();
        list.clear();
        for (const auto& g : s.grads)
        {
            tensor_slots<T> slots;
            slots.grad = g.data();
            slots.size = g.size();
            list.push_back(slots);
        }
        return reduce_gradients(list, m_partials);
    }

    // Only on the error path: a plain scan, parameter by parameter in walk order.
    template <class Opt>
    std::string stepper<Opt>::first_non_finite()
    {
        std::size_t first = m_flat.size();
        const auto scan = [&](const auto& s) {
            for (std::size_t i = 0; i < s.grads.size(); ++i)
            {
                const auto* g = s.grads[i].data();
                for (std::size_t j = 0; j < s.grads[i].size() && s.leaves[i] < first; ++j)
                {
                    first = std::isfinite(g[j]) ? first : s.leaves[i];
                }
            }
        };
        scan(m_flat.share<float>());
        scan(m_flat.share<double>());
        return first < m_flat.size() ? m_flat.name(first) : std::string("?");
    }
}

#endif
