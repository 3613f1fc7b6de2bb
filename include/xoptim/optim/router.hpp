// Several optimizers stepping one parameter set, each taking the parameters its
// routing rule picks (see routing.hpp): one `step` for all, atomic across them: every
// optimizer checks its share before any of them changes anything.
//
//     xoptim::routing rules;
//     rules.add("muon", xoptim::hidden_matrix({"*embed*", "*head*"})).fallback("adamw");
//     xoptim::router hybrid(rules, xoptim::muon(), xoptim::adamw());
//     hybrid.step(model, grads);
//     std::cout << hybrid.routing_table();
//
// Routes are decided on the first step and kept: later steps must pass the same
// parameters in the same order.
//
// param_groups<Opt> is the same with any number of optimizers of one type, added at
// run time: PyTorch's parameter groups, each with its own hyperparameters and
// schedules.
//
//     xoptim::param_groups<xoptim::adamw> groups;
//     groups.add("no_decay", xoptim::name_matches({"*.bias", "*norm*"}), xoptim::adamw({1e-3, {0.9, 0.999}, 1e-8, 0}));
//     groups.fallback("decay", xoptim::adamw());
//     groups.step(model, grads);
#ifndef XOPTIM_OPTIM_ROUTER_HPP
#define XOPTIM_OPTIM_ROUTER_HPP

#include <tuple>
#include <vector>

#include "../params/flat.hpp"
#include "optimizer.hpp"
#include "routing.hpp"

namespace xoptim
{
    namespace detail
    {
        template <class Opt>
        struct is_vector_storage : std::false_type
        {
        };

        template <class Opt>
        struct is_vector_storage<std::vector<Opt>> : std::true_type
        {
        };

        // Whether every optimizer in a storage is one, or a router (not options).
        template <class Storage>
        struct holds_optimizers : std::false_type
        {
        };

        template <class... Opts>
        struct holds_optimizers<std::tuple<Opts...>> : std::bool_constant<(is_steppable<Opts>::value && ...)>
        {
        };

        template <class Opt>
        struct holds_optimizers<std::vector<Opt>> : is_steppable<Opt>
        {
        };

        // What router and param_groups share: the routes, the split of the flattened
        // parameter set into one share per optimizer, and the atomic step over all.
        // `Storage` holds the optimizers: a std::tuple or a std::vector.
        template <class Storage>
        class router_base
        {
            // Checked here rather than in router and param_groups: a failed check then
            // stops the compiler before it reads the step's members (one error, not seven).
            static_assert(is_vector_storage<Storage>::value || holds_optimizers<Storage>::value,
                          "xoptim::router takes optimizers (xoptim::adamw()), not their options");
            static_assert(!is_vector_storage<Storage>::value || holds_optimizers<Storage>::value,
                          "xoptim::param_groups takes optimizers (xoptim::adamw()), not their options");

        public:

            // One step for all (see optimizer::step), every gradient seen through `transform`.
            template <class P, class G>
            void step(P&& params, G&& grads, const grad_transform& transform = {});

            // The same over lists a flat_params walk checked (a stepper's): names and
            // routes are checked, each leaf and the aliasing not again.
            template <class P, class G>
            void step(P&& params, G&& grads, const grad_transform& transform, checked_walk checked);

            // The step in two phases, as optimizer::prepare, commit and abandon: prepare
            // routes (on the first walk) and has every optimizer check its share, changing
            // nothing but a first step's routes and state; commit steps them all; abandon
            // takes back what prepare made (a stepper checks everything before it adds a
            // cycle's last micro-batch).
            template <class P, class G>
            void prepare(P&& params, G&& grads, checked_walk checked);
            void commit(const grad_transform& transform = {});
            void abandon() noexcept;

            // Routes the parameters and creates every optimizer's state now instead of on
            // the first step.
            template <class P>
            void init(P&& params);

            // `name (shape) -> optimizer`, one line per parameter (after the first step).
            std::string routing_table() const
            {
                std::string out;
                for (std::size_t k = 0; k < m_routes.size(); ++k)
                {
                    out += m_flat.name(k) + " " + format_shape(m_flat.shape(k)) + " -> "
                           + m_rules.optimizer(m_routes[k]) + "\n";
                }
                return out;
            }

            // Every optimizer's state bytes together, and the CBLAS of the one (Muon)
            // whose report names one.
            state_report report() const
            {
                state_report total;
                each([&](std::size_t, const auto& o) {
                    const state_report r = o.report();
                    total.state_bytes += r.state_bytes;
                    total.param_bytes += r.param_bytes;
                    total.blas = total.blas.empty() ? r.blas : total.blas;
                });
                return total;
            }

            // The rules that route the parameters (distributed steps route by them too).
            const routing& rules() const noexcept
            {
                return m_rules;
            }

            // Calls f(k, optimizer) for every optimizer in rule order.
            template <class F>
            void each(F&& f)
            {
                each_of(m_optimizers, f);
            }

            template <class F>
            void each(F&& f) const
            {
                each_of(m_optimizers, f);
            }

        protected:

            router_base() = default;

            router_base(routing rules, Storage optimizers)
                : m_rules(std::move(rules)), m_optimizers(std::move(optimizers))
            {
            }

            template <class S, class F>
            static void each_of(S& optimizers, F& f)
            {
                if constexpr (is_vector_storage<Storage>::value)
                {
                    for (std::size_t k = 0; k < optimizers.size(); ++k)
                    {
                        f(k, optimizers[k]);
                    }
                }
                else
                {
                    std::size_t k = 0;
                    std::apply([&](auto&... o) { (f(k++, o), ...); }, optimizers);
                }
            }

            routing m_rules;
            Storage m_optimizers;

        private:

            friend struct detail::checkpoint_access;

            // One optimizer's share of a step, for one element type (rebuilt each step;
            // the vectors keep their capacity).
            template <class T>
            struct share
            {
                std::vector<named_ref<tensor_view<T>>> params;
                std::vector<tensor_view<const T>> grads;
            };

            // Walks the set (`checked` ones, if given, without checking each leaf again)
            // and splits it into the shares; routes on the first walk.
            template <class P, class G, class... Checked>
            checked_walk split(P&& params, G&& grads, Checked... checked);

            template <class P, class G, class... Checked>
            void step_walk(P&& params, G&& grads, const grad_transform& transform, Checked... checked);

            template <class P, class G, class... Checked>
            void prepare_walk(P&& params, G&& grads, Checked... checked);

            // phase(k, optimizer) on every optimizer, or on none: if one throws, take_back
            // on those it ran on, and a first call (`first`) routes nothing (groups can
            // still be added; the next step, init or checkpoint load routes afresh).
            template <class Phase, class TakeBack>
            void all_or_none(bool first, Phase&& phase, TakeBack&& take_back);

            template <class T>
            void split_type(std::vector<share<T>>& parts);

            // The k-th optimizer's share as optimizers take it. An empty name adds no
            // piece to the path: state is known by the parameter's name.
            auto share_params(std::size_t k) noexcept
            {
                return std::make_tuple(named("", m_floats[k].params), named("", m_doubles[k].params));
            }

            auto share_grads(std::size_t k) noexcept
            {
                return std::forward_as_tuple(m_floats[k].grads, m_doubles[k].grads);
            }

            flat_params m_flat;
            bool m_prepared_first = false;  // the prepared step routed the parameters
            std::vector<std::size_t> m_routes;
            std::vector<share<float>> m_floats;
            std::vector<share<double>> m_doubles;
        };

    }

    namespace detail
    {
        // Whether an argument is an optimizer the caller keeps (a router would step a copy).
        template <class... A>
        inline constexpr bool copies_optimizer
            = ((std::is_lvalue_reference_v<A> && is_steppable<std::remove_cv_t<std::remove_reference_t<A>>>::value)
               || ...);
    }

    template <class... Opts>
    class router : public detail::router_base<std::tuple<Opts...>>
    {
    public:

        static constexpr std::size_t size = sizeof...(Opts);

        explicit router(routing rules, Opts&&... optimizers)
            : detail::router_base<std::tuple<Opts...>>(std::move(rules), std::tuple<Opts...>(std::move(optimizers)...))
        {
            if (this->m_rules.size() != size)
            {
                throw std::invalid_argument("xoptim::router: " + std::to_string(this->m_rules.size())
                                            + " routing rules for " + std::to_string(size) + " optimizers");
            }
        }

        // An optimizer the caller keeps: refused (a router owns its optimizers, and an
        // optimizer is never copied).
        template <class... A, std::enable_if_t<detail::copies_optimizer<A...>, int> = 0>
        explicit router(routing, A&&...)
        {
            static_assert(!detail::copies_optimizer<A...>,
                          "xoptim::router owns its optimizers: pass a temporary (xoptim::adamw()) or std::move(opt)");
        }

        template <std::size_t K>
        auto& optimizer() noexcept
        {
            static_assert(K < size, "xoptim::router::optimizer<K>: K counts the optimizers given, from 0");
            return std::get<(K < size ? K : 0)>(this->m_optimizers);
        }

        template <std::size_t K>
        const auto& optimizer() const noexcept
        {
            static_assert(K < size, "xoptim::router::optimizer<K>: K counts the optimizers given, from 0");
            return std::get<(K < size ? K : 0)>(this->m_optimizers);
        }
    };

    template <class... Opts>
    router(routing, Opts...) -> router<Opts...>;

    // Any number of optimizers of one type, each with the parameters its rule picks.
    template <class Opt>
    class param_groups : public detail::router_base<std::vector<Opt>>
    {
    public:

        param_groups() = default;

        // A group: parameters that `match` (and no earlier group took) are stepped by `opt`.
        param_groups& add(std::string name, param_predicate match, Opt&& opt)
        {
            require_unrouted(name);
            this->m_rules.add(std::move(name), std::move(match));
            this->m_optimizers.push_back(std::move(opt));
            return *this;
        }

        // The last group: every parameter no earlier group took.
        param_groups& fallback(std::string name, Opt&& opt)
        {
            require_unrouted(name);
            this->m_rules.fallback(std::move(name));
            this->m_optimizers.push_back(std::move(opt));
            return *this;
        }

        // An optimizer the caller keeps: refused, as by router.
        template <class O, std::enable_if_t<std::is_same_v<std::remove_const_t<O>, Opt>, int> = 0>
        param_groups& add(std::string, param_predicate, O&)
        {
            static_assert(!std::is_same_v<O, O>, "xoptim::param_groups owns its optimizers: pass a temporary "
                                                 "(xoptim::adamw()) or std::move(opt)");
            return *this;
        }

        template <class O, std::enable_if_t<std::is_same_v<std::remove_const_t<O>, Opt>, int> = 0>
        param_groups& fallback(std::string, O&)
        {
            static_assert(!std::is_same_v<O, O>, "xoptim::param_groups owns its optimizers: pass a temporary "
                                                 "(xoptim::adamw()) or std::move(opt)");
            return *this;
        }

        std::size_t size() const noexcept
        {
            return this->m_optimizers.size();
        }

        // Group k in the order added; throws std::out_of_range naming k if none.
        Opt& group(std::size_t k)
        {
            if (k >= size())
            {
                throw std::out_of_range("xoptim::param_groups: no group " + std::to_string(k) + " (there are "
                                        + std::to_string(size()) + ")");
            }
            return this->m_optimizers[k];
        }

        // The group added under `name`; throws std::out_of_range naming it if none.
        Opt& group(const std::string& name)
        {
            for (std::size_t k = 0; k < size(); ++k)
            {
                if (this->m_rules.optimizer(k) == name)
                {
                    return this->m_optimizers[k];
                }
            }
            throw std::out_of_range("xoptim::param_groups: no group '" + name + "'");
        }

    private:

        void require_unrouted(const std::string& name) const
        {
            if (!this->routing_table().empty())
            {
                throw std::logic_error("xoptim::param_groups: group '" + name + "' added after the first step");
            }
        }
    };

    /******************
     * Implementation *
     ******************/

    template <class Storage>
    template <class P, class G, class... Checked>
    checked_walk detail::router_base<Storage>::split(P&& params, G&& grads, Checked... checked)
    {
        const checked_walk walked = m_flat.collect(std::forward<P>(params), std::forward<G>(grads), "xoptim::router",
                                                   checked...);
        if (m_routes.empty())
        {
            try
            {
                for (std::size_t k = 0; k < m_flat.size(); ++k)
                {
                    m_routes.push_back(m_rules.route(m_flat.name(k), m_flat.shape(k)));
                }
            }
            catch (...)
            {
                m_routes.clear();
                m_flat.reset();
                throw;
            }
        }
        split_type(m_floats);
        split_type(m_doubles);
        return walked;
    }

    template <class Storage>
    template <class T>
    void detail::router_base<Storage>::split_type(std::vector<share<T>>& parts)
    {
        parts.resize(m_rules.size());
        for (auto& part : parts)
        {
            part.params.clear();
            part.grads.clear();
        }
        auto& all = m_flat.share<T>();
        for (std::size_t i = 0; i < all.named.size(); ++i)
        {
            auto& part = parts[m_routes[all.leaves[i]]];
            part.params.push_back(all.named[i]);
            if (!all.grads.empty())
            {
                part.grads.push_back(all.grads[i]);
            }
        }
    }

    template <class Storage>
    template <class P, class G>
    void detail::router_base<Storage>::step(P&& params, G&& grads, const grad_transform& transform)
    {
        step_walk(std::forward<P>(params), std::forward<G>(grads), transform);
    }

    template <class Storage>
    template <class P, class G>
    void detail::router_base<Storage>::step(P&& params, G&& grads, const grad_transform& transform,
                                            checked_walk checked)
    {
        step_walk(std::forward<P>(params), std::forward<G>(grads), transform, checked);
    }

    template <class Storage>
    template <class P, class G, class... Checked>
    void detail::router_base<Storage>::step_walk(P&& params, G&& grads, const grad_transform& transform,
                                                 Checked... checked)
    {
        prepare_walk(std::forward<P>(params), std::forward<G>(grads), checked...);
        commit(transform);
    }

    template <class Storage>
    template <class P, class G>
    void detail::router_base<Storage>::prepare(P&& params, G&& grads, checked_walk checked)
    {
        prepare_walk(std::forward<P>(params), std::forward<G>(grads), checked);
    }

    template <class Storage>
    template <class P, class G, class... Checked>
    void detail::router_base<Storage>::prepare_walk(P&& params, G&& grads, Checked... checked)
    {
        detail::require_stepped_in_place<P>();
        const bool first = m_routes.empty();
        const checked_walk walked = split(std::forward<P>(params), std::forward<G>(grads), checked...);
        // Every optimizer checks its share against its state (prepare) before any changes
        // anything (commit); the walk above checked each leaf and the aliasing of all.
        all_or_none(
            first, [&](std::size_t k, auto& o) { o.prepare(share_params(k), share_grads(k), walked); },
            [](auto& o) { o.abandon(); });
        m_prepared_first = first;
    }

    template <class Storage>
    void detail::router_base<Storage>::commit(const grad_transform& transform)
    {
        m_prepared_first = false;  // the routes stay, whatever an update does
        if constexpr (is_vector_storage<Storage>::value)
        {
            using Opt = typename Storage::value_type;
            if constexpr (derives_from_optimizer<Opt>::value)
            {
                // param_groups: one optimizer in groups, as torch's. Where a group's step
                // reads a number over all the tensors (LAMB's gradient norm), it is the
                // sum over every group, taken before any group updates.
                bool whole_set = false;
                each([&](std::size_t, const Opt& o) {
                    whole_set = whole_set || shard_rule_of(o) == shard_rule::whole_set;
                });
                if (whole_set)
                {
                    whole_set_round round{whole_set_round::phase::summing, 0};
                    each([&](std::size_t, Opt& o) { o.commit(transform, &round); });
                    round.how = whole_set_round::phase::given;
                    each([&](std::size_t, Opt& o) { o.commit(transform, &round); });
                    return;
                }
            }
        }
        each([&](std::size_t, auto& o) { o.commit(transform); });
    }

    template <class Storage>
    void detail::router_base<Storage>::abandon() noexcept
    {
        each([](std::size_t, auto& o) { o.abandon(); });
        if (m_prepared_first)
        {
            m_routes.clear();
            m_flat.reset();
        }
        m_prepared_first = false;
    }

    template <class Storage>
    template <class P>
    void detail::router_base<Storage>::init(P&& params)
    {
        const bool first = m_routes.empty();
        split(std::forward<P>(params), no_grads{});
        all_or_none(
            first, [&](std::size_t k, auto& o) { o.init(share_params(k)); }, [](auto& o) { o.forget_init(); });
    }

    template <class Storage>
    template <class Phase, class TakeBack>
    void detail::router_base<Storage>::all_or_none(bool first, Phase&& phase, TakeBack&& take_back)
    {
        std::size_t done = 0;
        try
        {
            each([&](std::size_t k, auto& o) {
                phase(k, o);
                ++done;
            });
        }
        catch (...)
        {
            each([&](std::size_t k, auto& o) {
                if (k < done)
                {
                    take_back(o);
                }
            });
            if (first)
            {
                m_routes.clear();
                m_flat.reset();
            }
            throw;
        }
    }
}

#endif
