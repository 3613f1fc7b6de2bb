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
#ifndef XOPTIM_OPTIM_ROUTER_HPP
#define XOPTIM_OPTIM_ROUTER_HPP

#include <array>
#include <tuple>

#include "../params/flat.hpp"
#include "optimizer.hpp"
#include "routing.hpp"

namespace xoptim
{
    template <class... Opts>
    class router
    {
    public:

        static constexpr std::size_t size = sizeof...(Opts);

        explicit router(routing rules, Opts... optimizers)
            : m_rules(std::move(rules)), m_optimizers(std::move(optimizers)...)
        {
            if (m_rules.size() != size)
            {
                throw std::invalid_argument("xoptim::router: " + std::to_string(m_rules.size()) + " routing rules for "
                                            + std::to_string(size) + " optimizers");
            }
        }

        // One step for all (see optimizer::step), every gradient seen through `transform`.
        template <class P, class G>
        void step(P&& params, G&& grads, const grad_transform& transform = {});

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
                out += m_flat.name(k) + " " + format_shape(m_flat.shape(k)) + " -> " + m_rules.optimizer(m_routes[k])
                       + "\n";
            }
            return out;
        }

        template <std::size_t K>
        auto& optimizer() noexcept
        {
            return std::get<K>(m_optimizers);
        }

        template <std::size_t K>
        const auto& optimizer() const noexcept
        {
            return std::get<K>(m_optimizers);
        }

    private:

        friend struct detail::checkpoint_access;

        // One optimizer's share of a step, for one element type (rebuilt each step; the
        // vectors keep their capacity).
        template <class T>
        struct share
        {
            std::vector<named_ref<tensor_view<T>>> params;
            std::vector<tensor_view<const T>> grads;

            void clear() noexcept
            {
                params.clear();
                grads.clear();
            }
        };

        // Walks the set and splits it into the shares; routes on the first walk.
        template <class P, class G>
        void split(P&& params, G&& grads);

        template <class T>
        void split_type();

        template <class T>
        auto& shares() noexcept
        {
            if constexpr (std::is_same_v<T, float>)
            {
                return m_floats;
            }
            else
            {
                return m_doubles;
            }
        }

        template <std::size_t K>
        auto share_params() noexcept
        {
            // An empty name adds no piece to the path: state is known by the parameter's name.
            return std::make_tuple(named("", m_floats[K].params), named("", m_doubles[K].params));
        }

        template <std::size_t... K>
        void run(std::index_sequence<K...>, const grad_transform& transform);

        template <std::size_t... K>
        void init_each(std::index_sequence<K...>)
        {
            (std::get<K>(m_optimizers).init(share_params<K>()), ...);
        }

        routing m_rules;
        std::tuple<Opts...> m_optimizers;
        flat_params m_flat;
        std::vector<std::size_t> m_routes;
        std::array<share<float>, size> m_floats;
        std::array<share<double>, size> m_doubles;
    };

    template <class... Opts>
    router(routing, Opts...) -> router<Opts...>;

    template <class... Opts>
    template <class P, class G>
    void router<Opts...>::split(P&& params, G&& grads)
    {
        m_flat.collect(std::forward<P>(params), std::forward<G>(grads), "xoptim::router");
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
        split_type<float>();
        split_type<double>();
    }

    template <class... Opts>
    template <class T>
    void router<Opts...>::split_type()
    {
        auto& all = m_flat.share<T>();
        auto& parts = shares<T>();
        for (auto& part : parts)
        {
            part.clear();
        }
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

    template <class... Opts>
    template <class P, class G>
    void router<Opts...>::step(P&& params, G&& grads, const grad_transform& transform)
    {
        detail::require_stepped_in_place<P>();
        split(std::forward<P>(params), std::forward<G>(grads));
        run(std::index_sequence_for<Opts...>{}, transform);
    }

    template <class... Opts>
    template <class P>
    void router<Opts...>::init(P&& params)
    {
        split(std::forward<P>(params), no_grads{});
        init_each(std::index_sequence_for<Opts...>{});
    }

    template <class... Opts>
    template <std::size_t... K>
    void router<Opts...>::run(std::index_sequence<K...>, const grad_transform& transform)
    {
        std::size_t prepared = 0;
        try
        {
            ((std::get<K>(m_optimizers)
                  .prepare(share_params<K>(), std::forward_as_tuple(m_floats[K].grads, m_doubles[K].grads)),
              ++prepared),
             ...);
        }
        catch (...)
        {
            std::size_t k = 0;
            ((k++ < prepared ? std::get<K>(m_optimizers).abandon() : void()), ...);
            throw;
        }
        (std::get<K>(m_optimizers).commit(transform), ...);
    }
}

#endif
