// A parameter set (and its gradients) flattened into lists of views, one list per
// element type, each view named by the parameter's own name. Whatever drives a step
// from outside an optimizer (the stepper, checkpoints) walks the user's set once into
// these lists and hands them to the optimizer, which sees the very same names. The walk
// reduces each leaf to a detail::erased_leaf where it meets it; the rest (checks, names,
// views) depends on no tensor type, so it is compiled once per unit, or, for compiled<O>,
// in the instantiation unit only.
//
// Names are recorded on the first walk; later walks must pass the same parameters in
// the same order: a parameter found at a new address must carry the name recorded at
// its position (so reordered named parameters are an error, not a silent swap of their
// state; unnamed ones are named by position, so for them a new order is new buffers). No
// memory may be written twice or written while read: the alias check runs over the whole
// set (params/aliasing.hpp), so a router or param_groups sees overlaps between its
// optimizers' shares and the stepper sees the gradients it reads itself. A steady-state
// walk compares pointers and allocates nothing.
//
// Each leaf is checked once per step: a walk returns a checked_walk, which its owner
// hands on with the lists (or with views it made into them or into its own buffers) to
// the optimizers or the router it steps; they then check no leaf again and run no
// second alias check. Only a walk makes one, so no caller can skip the checks by
// passing it.
#ifndef XOPTIM_PARAMS_FLAT_HPP
#define XOPTIM_PARAMS_FLAT_HPP

#include <stdexcept>
#include <string>
#include <vector>

#include "aliasing.hpp"
#include "param_set.hpp"

namespace xoptim
{
    template <class O>
    class compiled;

    // Proof that a walk checked the lists handed on with it (see above). Only
    // flat_params::collect makes one.
    class checked_walk
    {
        checked_walk() noexcept {}  // user-provided: no aggregate, so no checked_walk{} outside
        friend class flat_params;
    };

    template <class T>
    struct flat_share
    {
        std::vector<tensor_view<T>> params;
        std::vector<tensor_view<const T>> grads;
        std::vector<std::size_t> leaves;  // position of each in the walk
        std::vector<named_ref<tensor_view<T>>> named;
    };

    namespace detail
    {
        // A leaf of a walk with its types erased: a float or double parameter and its
        // gradient (none in a walk without gradients), read through leaf_facts. A walk
        // reduces each leaf to this where it meets it and hands it to flat_params::take,
        // which depends on no tensor type. A walk over lists an earlier walk checked
        // (`checked`) asks no tensor whether it is contiguous: nothing checks it there.
        struct erased_leaf
        {
            bool is_double;
            void* param;
            leaf_facts param_facts;
            bool has_grad;  // false: a walk without gradients
            const void* grad;
            leaf_facts grad_facts;

            template <class P, class G>
            static erased_leaf of(P& param, G& grad, bool checked)
            {
                using T = tensor::value_type<P>;
                constexpr bool number = std::is_same_v<T, float> || std::is_same_v<T, double>;
                static_assert(number, "xoptim: parameters must be float or double tensors here (bf16 parameters are "
                                      "stepped by an optimizer itself; the stepper, routers and checkpoints take float "
                                      "and double)");
                constexpr bool mutable_param = check_mutable_param<P>();
                if constexpr (number && mutable_param)  // else the message above comes alone
                {
                    erased_leaf e{std::is_same_v<T, double>,
                                  tensor::data(param),
                                  facts(param, checked),
                                  false,
                                  nullptr,
                                  {}};
                    if constexpr (!std::is_same_v<std::remove_const_t<G>, no_grads>)
                    {
                        static_assert(std::is_same_v<T, tensor::value_type<G>>,
                                      "xoptim: a gradient must have its parameter's element type");
                        e.has_grad = true;
                        e.grad = tensor::data(grad);
                        e.grad_facts = facts(grad, checked);
                    }
                    return e;
                }
                else
                {
                    return erased_leaf{};
                }
            }

        private:

            template <class C>
            static leaf_facts facts(const C& c, bool checked) noexcept
            {
                return {tensor::size(c), shape_ref::of(c), checked || tensor::contiguous(c)};
            }
        };

        // walk_params' visitor of a walk that erases each leaf where it meets it and hands
        // it to `sink`: flat_params itself (collect), or compiled<O>, whose take, finish
        // and abandon are compiled in the instantiation unit.
        template <class Sink>
        struct erasing_visitor
        {
            Sink& sink;
            bool checked;

            // One whole walk into `sink`, already begun: every leaf taken, then the walk
            // finished; abandoned instead where any of it threw.
            template <class P, class G>
            static checked_walk walk(Sink& sink, bool checked, P&& params, G&& grads)
            {
                try
                {
                    erasing_visitor v{sink, checked};
                    walk_params(v, std::forward<P>(params), std::forward<G>(grads));
                    return sink.finish();
                }
                catch (...)
                {
                    sink.abandon();
                    throw;
                }
            }

            template <class P, class G>
            void leaf(const name_path& path, P& param, G& grad)
            {
                sink.take(path, erased_leaf::of(param, grad, checked));
            }

            [[noreturn]] void mismatch(const name_path& path, const std::string& what) const
            {
                sink.mismatch(path, what);
            }
        };
    }

    class flat_params
    {
    public:

        // Walks `params` and `grads` (or no_grads{}); `who` prefixes error messages.
        template <class P, class G>
        checked_walk collect(P&& params, G&& grads, const char* who)
        {
            return walk(std::forward<P>(params), std::forward<G>(grads), who, false);
        }

        // The same over lists another walk checked (a stepper's, for the router it
        // steps): names, order and count are checked, each leaf and the aliasing not again.
        template <class P, class G>
        checked_walk collect(P&& params, G&& grads, const char* who, checked_walk)
        {
            return walk(std::forward<P>(params), std::forward<G>(grads), who, true);
        }

        std::size_t size() const noexcept
        {
            return m_names.size();
        }

        // Forgets the recorded names: the next walk is a first walk again.
        void reset() noexcept
        {
            m_names.clear();
            m_shapes.clear();
            m_addresses.clear();
            m_alias.forget();
        }

        const std::string& name(std::size_t leaf) const noexcept
        {
            return m_names[leaf];
        }

        const std::vector<std::size_t>& shape(std::size_t leaf) const noexcept
        {
            return m_shapes[leaf];
        }

        template <class T>
        flat_share<T>& share() noexcept
        {
            return detail::by_type<T>(m_floats, m_doubles);
        }

        template <class T>
        const flat_share<T>& share() const noexcept
        {
            return detail::by_type<T>(m_floats, m_doubles);
        }

        // The parameters and gradients as the optimizers take them: a tuple of two
        // named lists (the empty name adds nothing to a path) and a tuple of two lists.
        auto params() noexcept
        {
            return std::make_tuple(named("", m_floats.named), named("", m_doubles.named));
        }

        auto grads() noexcept
        {
            return std::forward_as_tuple(m_floats.grads, m_doubles.grads);
        }

    private:

        // collect in pieces, for compiled<O>, which walks the set itself (its unit reduces
        // each leaf to an erased_leaf and leaves the rest to the instantiation unit):
        // begin, take each leaf in order (mismatch for a structural mismatch), then
        // finish; abandon instead where any of them threw. Private, as the checked_walk
        // that finish makes must come from a whole walk.
        template <class O>
        friend class compiled;

        void begin(const char* who)
        {
            start(who, false);
        }
        void take(const name_path& path, const detail::erased_leaf& leaf);
        [[noreturn]] void mismatch(const name_path& path, const std::string& what) const
        {
            throw std::invalid_argument(std::string(m_who) + ": parameter '" + path.name() + "': " + what);
        }
        checked_walk finish();
        void abandon() noexcept;

        friend struct detail::erasing_visitor<flat_params>;

        template <class P, class G>
        checked_walk walk(P&& params, G&& grads, const char* who, bool checked)
        {
            start(who, checked);
            return detail::erasing_visitor<flat_params>::walk(*this, checked, std::forward<P>(params),
                                                              std::forward<G>(grads));
        }

        void start(const char* who, bool checked);

        template <class T>
        void take(const name_path& path, const detail::erased_leaf& leaf);

        std::vector<std::string> m_names;
        std::vector<std::vector<std::size_t>> m_shapes;
        std::vector<const void*> m_addresses;  // where each parameter was last seen
        detail::alias_check m_alias;
        flat_share<float> m_floats;
        flat_share<double> m_doubles;

        // The walk in progress.
        const char* m_who = "";
        bool m_first = false;
        bool m_checked = false;  // by an earlier walk: no leaf_problem, no aliasing
        std::size_t m_count = 0;
    };

    inline void flat_params::start(const char* who, bool checked)
    {
        const auto clear = [](auto& s) {
            s.params.clear();
            s.grads.clear();
            s.leaves.clear();
            s.named.clear();
        };
        clear(m_floats);
        clear(m_doubles);
        m_alias.clear();
        m_who = who;
        m_first = m_names.empty();
        m_checked = checked;
        m_count = 0;
    }

    inline void flat_params::take(const name_path& path, const detail::erased_leaf& leaf)
    {
        if (leaf.is_double)
        {
            take<double>(path, leaf);
        }
        else
        {
            take<float>(path, leaf);
        }
    }

    template <class T>
    void flat_params::take(const name_path& path, const detail::erased_leaf& leaf)
    {
        const detail::leaf_facts& facts = leaf.param_facts;
        if (!m_checked)
        {
            const detail::leaf_facts* grad = leaf.has_grad ? &leaf.grad_facts : nullptr;
            if (const std::string problem = detail::leaf_problem(facts, grad); !problem.empty())
            {
                mismatch(path, problem);
            }
            if (facts.shape.rank > max_rank)
            {
                mismatch(path, "parameter has " + std::to_string(facts.shape.rank)
                                   + " dimensions; the stepper, routers and checkpoints take at most "
                                   + std::to_string(max_rank));
            }
        }
        auto& s = share<T>();
        T* param = static_cast<T*>(leaf.param);
        const T* grad = static_cast<const T*>(leaf.grad);
        if (leaf.has_grad)
        {
            s.grads.push_back(tensor_view<const T>::of(grad, leaf.grad_facts.size, leaf.grad_facts.shape));
        }
        if (m_first)
        {
            m_names.push_back(path.name());
            m_shapes.push_back(facts.shape.vector());
            m_addresses.push_back(param);
        }
        else if (m_count >= m_names.size())
        {
            mismatch(path, "the first call passed only " + std::to_string(m_names.size()) + " parameters");
        }
        else if (param != m_addresses[m_count])
        {
            const std::string name = path.name();
            if (name != m_names[m_count])
            {
                mismatch(path, "found where '" + m_names[m_count]
                                   + "' was on the first call (parameters must keep their order)");
            }
            m_addresses[m_count] = param;
        }
        if (!m_checked)
        {
            m_alias.track(static_cast<const T*>(param), grad, facts.size, m_count);
        }
        s.params.push_back(tensor_view<T>::of(param, facts.size, facts.shape));
        s.leaves.push_back(m_count);
        ++m_count;
    }

    inline checked_walk flat_params::finish()
    {
        if (m_count != m_names.size())
        {
            throw std::invalid_argument(std::string(m_who) + ": this call passed " + std::to_string(m_count)
                                        + " parameters, the first passed " + std::to_string(m_names.size()));
        }
        const auto name = [&](std::size_t k) -> const std::string& { return m_names[k]; };
        if (m_first)
        {
            if (const std::string* twice = detail::repeated_name(m_names.size(), name))
            {
                throw std::invalid_argument(std::string(m_who) + ": " + detail::repeated_name_problem(*twice));
            }
        }
        if (!m_checked)
        {
            m_alias.check([&] { return m_who; }, name);
        }
        // Names are final now: the named views may point into them.
        const auto name_views = [&](auto& s) {
            for (std::size_t i = 0; i < s.params.size(); ++i)
            {
                s.named.push_back(named(m_names[s.leaves[i]], s.params[i]));
            }
        };
        name_views(m_floats);
        name_views(m_doubles);
        return checked_walk();
    }

    inline void flat_params::abandon() noexcept
    {
        if (m_first)
        {
            reset();
        }
    }
}

#endif
