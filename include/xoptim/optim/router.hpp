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

        // `name (shape) -> optimizer`, one line per parameter (after the first step).
        std::string routing_table() const
        {
            return m_rules.table(m_names, m_shapes);
        }

        template <std::size_t K>
        auto& optimizer() noexcept
        {
            return std::get<K>(m_optimizers);
        }

    private:

        // One optimizer's share of a step, for one element type: views of the tensors
        // (rebuilt each step; the vectors keep their capacity).
        template <class T>
        struct share
        {
            std::vector<tensor_view<T>> params;
            std::vector<tensor_view<const T>> grads;
            std::vector<std::size_t> leaves;
            std::vector<named_ref<tensor_view<T>>> named;

            void clear() noexcept
            {
                params.clear();
                grads.clear();
                leaves.clear();
                named.clear();
            }
        };

        class visitor;

        template <std::size_t... K>
        void run(std::index_sequence<K...>, const grad_transform& transform);

        routing m_rules;
        std::tuple<Opts...> m_optimizers;
        std::vector<std::string> m_names;
        std::vector<std::vector<std::size_t>> m_shapes;
        std::vector<std::size_t> m_routes;
        std::array<share<float>, size> m_floats;
        std::array<share<double>, size> m_doubles;
    };

    template <class... Opts>
    router(routing, Opts...) -> router<Opts...>;

    template <class... Opts>
    class router<Opts...>::visitor
    {
    public:

        explicit visitor(router& r) noexcept
            : m_router(r), m_first(r.m_routes.empty())
        {
        }

        [[noreturn]] void mismatch(const name_path& path, const std::string& what) const
        {
            throw std::invalid_argument("xoptim::router: parameter '" + path.name() + "': " + what);
        }

        template <class P, class G>
        void leaf(const name_path& path, P& param, G& grad)
        {
            using T = tensor::value_type<P>;
            static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                          "xoptim: parameters must be float or double tensors");
            if (!tensor::contiguous(param) || !tensor::contiguous(grad))
            {
                mismatch(path, "parameter or gradient is not contiguous");
            }
            if (m_first)
            {
                std::string name = path.name();
                auto shape = tensor::shape(param);
                m_router.m_routes.push_back(m_router.m_rules.route(name, shape));
                m_router.m_names.push_back(std::move(name));
                m_router.m_shapes.push_back(std::move(shape));
            }
            else if (m_count >= m_router.m_routes.size())
            {
                mismatch(path, "the first step passed only " + std::to_string(m_router.m_routes.size())
                                   + " parameters");
            }
            auto& s = shares<T>()[m_router.m_routes[m_count]];
            s.params.push_back(tensor_view<T>::of(param));
            s.grads.push_back(tensor_view<const T>::of(grad));
            s.leaves.push_back(m_count);
            ++m_count;
        }

        std::size_t count() const noexcept
        {
            return m_count;
        }

    private:

        template <class T>
        auto& shares() noexcept
        {
            if constexpr (std::is_same_v<T, float>)
            {
                return m_router.m_floats;
            }
            else
            {
                return m_router.m_doubles;
            }
        }

        router& m_router;
        bool m_first;
        std::size_t m_count = 0;
    };

    template <class... Opts>
    template <class P, class G>
    void router<Opts...>::step(P&& params, G&& grads, const grad_transform& transform)
    {
        detail::require_stepped_in_place<P>();
        for (std::size_t k = 0; k < size; ++k)
        {
            m_floats[k].clear();
            m_doubles[k].clear();
        }
        const bool first = m_routes.empty();
        visitor v(*this);
        try
        {
            walk_params(v, std::forward<P>(params), std::forward<G>(grads));
            if (v.count() != m_routes.size())
            {
                throw std::invalid_argument("xoptim::router: this step passed " + std::to_string(v.count())
                                            + " parameters, the first passed " + std::to_string(m_routes.size()));
            }
        }
        catch (...)
        {
            if (first)
            {
                m_routes.clear();
                m_names.clear();
                m_shapes.clear();
            }
            throw;
        }
        run(std::index_sequence_for<Opts...>{}, transform);
    }

    template <class... Opts>
    template <std::size_t... K>
    void router<Opts...>::run(std::index_sequence<K...>, const grad_transform& transform)
    {
        // Names are final now: the named views may point into them.
        const auto name_views = [&](auto& s) {
            for (std::size_t i = 0; i < s.params.size(); ++i)
            {
                s.named.push_back(named(m_names[s.leaves[i]], s.params[i]));
            }
        };
        ((name_views(m_floats[K]), name_views(m_doubles[K])), ...);
        // An empty name adds no piece to the path: state is known by the parameter's name.
        std::size_t prepared = 0;
        try
        {
            ((std::get<K>(m_optimizers)
                  .prepare(std::forward_as_tuple(named("", m_floats[K].named), named("", m_doubles[K].named)),
                           std::forward_as_tuple(m_floats[K].grads, m_doubles[K].grads)),
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
