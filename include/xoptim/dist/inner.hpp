// What distributed steps need from a trainer (an optimizer, a router, param_groups, or a
// stepper around one of them), in one place:
//   - its optimizers, each with its checkpoint key ("optimizer", "optimizer.K"),
//   - the optimizer a parameter goes to (a router's rules),
//   - the around-step options (a stepper's; a bare optimizer has no guard),
//   - how an owned tensor of an optimizer that steps whole tensors is costed,
//   - fresh copies without state (options, storage, schedules, routes), which
//     checkpoints fill with a whole state,
//   - setting a step count (a checkpoint's; through checkpoint.hpp's checkpoint_access,
//     the one friend of the optimizers' private parts that dist uses).
// Everything else is the optimizers' public API: prepare, commit, abandon, init, state().
#ifndef XOPTIM_DIST_INNER_HPP
#define XOPTIM_DIST_INNER_HPP

#include <algorithm>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../io/checkpoint.hpp"

namespace xoptim
{
    class muon;
}

namespace xoptim::dist::detail
{
    using xoptim::detail::for_each_optimizer;
    using xoptim::detail::is_router;
    using xoptim::detail::is_stepper;

    template <class X>
    using bare = std::remove_cv_t<std::remove_reference_t<X>>;

    // Under ZeRO-1, the tensors of an optimizer whose step needs them whole
    // (shard_rule::whole_tensors: Muon, LAMB's trust ratio, Adafactor, cautious updates) are
    // each owned by one rank, the owners balanced by cost: Newton-Schulz flops for Muon's,
    // the element count for the others'.
    template <class O>
    struct costs_newton_schulz : std::false_type
    {
    };

    template <>
    struct costs_newton_schulz<xoptim::muon> : std::true_type
    {
    };

    // The optimizer, router or param_groups a stepper steps; anything else is its own.
    template <class X>
    auto& inner(X& x) noexcept
    {
        if constexpr (is_stepper<bare<X>>::value)
        {
            return x.optimizer();
        }
        else
        {
            return x;
        }
    }

    // A stepper's options; a bare optimizer steps as one process does without a stepper:
    // no guard, no clipping, no accumulation.
    template <class X>
    stepper_options around(const X& x) noexcept
    {
        if constexpr (is_stepper<bare<X>>::value)
        {
            return x.options();
        }
        else
        {
            stepper_options o;
            o.on_non_finite = non_finite::ignore;
            return o;
        }
    }

    // Calls f(k, key, optimizer) for the k-th optimizer of an inner trainer.
    template <class I, class F>
    void for_each_inner(I& inner, F&& f)
    {
        std::size_t k = 0;
        for_each_optimizer(inner, "optimizer", [&](const std::string& key, auto& o) { f(k++, key, o); });
    }

    // The index of the optimizer that steps parameter (name, shape).
    template <class I>
    std::size_t route(const I& inner, std::string_view name, const std::vector<std::size_t>& shape)
    {
        if constexpr (is_router<bare<I>>::value)
        {
            return inner.rules().route(name, shape);
        }
        else
        {
            return 0;
        }
    }

    // The name of optimizer k, as the routing table prints it.
    template <class I>
    std::string optimizer_name(const I& inner, std::size_t k)
    {
        if constexpr (is_router<bare<I>>::value)
        {
            return inner.rules().optimizer(k);
        }
        else
        {
            return bare<I>::name;
        }
    }

    // Work of Newton-Schulz on the (shape[0], rest) view, per iteration: m^2 n + m^3 +
    // 2 m^2 n flops with m <= n (linalg/newton_schulz.hpp).
    inline double newton_schulz_cost(const std::vector<std::size_t>& shape) noexcept
    {
        double rows = shape.empty() ? 1.0 : double(shape[0]);
        double cols = 1.0;
        for (std::size_t d = 1; d < shape.size(); ++d)
        {
            cols *= double(shape[d]);
        }
        const double m = std::min(rows, cols);
        const double n = std::max(rows, cols);
        return 3 * m * m * n + m * m * m;
    }

    template <class O>
    void set_step_count(O& o, std::size_t steps) noexcept
    {
        xoptim::detail::checkpoint_access::steps(o) = steps;
    }

    // Drops the state init created (an init that failed on another rank).
    template <class O>
    void drop_state(O& o)
    {
        xoptim::detail::checkpoint_access::created made;
        made.optimizers = true;
        xoptim::detail::checkpoint_access::forget(o, made);
    }

    /***************
     * Fresh copies *
     ***************/

    // The same optimizer without state: options, storage and schedules.
    template <class O>
    O fresh_optimizer(const O& o)
    {
        O copy(o.options());
        copy.set_storage(o.storage());
        for (const auto& b : o.schedules())
        {
            copy.schedule(b.field, b.value);
        }
        return copy;
    }

    // Parameters called one of `names` (routes decided elsewhere, kept).
    inline param_predicate named_one_of(std::set<std::string> names)
    {
        return [names = std::move(names)](std::string_view name, const std::vector<std::size_t>&) {
            return names.count(std::string(name)) > 0;
        };
    }

    // Rules sending exactly `names[k]` to rule k.
    inline routing routing_by_names(const routing& original, const std::vector<std::set<std::string>>& names)
    {
        routing out;
        for (std::size_t k = 0; k < original.size(); ++k)
        {
            out.add(original.optimizer(k), named_one_of(names[k]));
        }
        return out;
    }

    template <class... Opts, std::size_t... K>
    router<Opts...> fresh_router(const router<Opts...>& r, routing rules, std::index_sequence<K...>)
    {
        return router<Opts...>(std::move(rules), fresh_optimizer(r.template optimizer<K>())...);
    }

    // A fresh inner trainer; `names[k]` are the parameters routed to its optimizer k.
    template <class O>
    O fresh_inner(const O& o, const std::vector<std::set<std::string>>&)
    {
        return fresh_optimizer(o);
    }

    template <class... Opts>
    router<Opts...> fresh_inner(const router<Opts...>& r, const std::vector<std::set<std::string>>& names)
    {
        return fresh_router(r, routing_by_names(r.rules(), names), std::index_sequence_for<Opts...>{});
    }

    template <class Opt>
    param_groups<Opt> fresh_inner(const param_groups<Opt>& g, const std::vector<std::set<std::string>>& names)
    {
        param_groups<Opt> out;
        g.each([&](std::size_t k, const Opt& o) {
            out.add(g.rules().optimizer(k), named_one_of(names[k]), fresh_optimizer(o));
        });
        return out;
    }
}

#endif
