// The step driver every optimizer shares. An optimizer (see sgd.hpp) supplies its
// name, its state names and an `update(step)` that calls `step.run(assignments...)`;
// this base walks the parameters, checks everything, creates state on first use,
// and only then runs the fused program over all tensors.
#ifndef XOPTIM_OPTIM_OPTIMIZER_HPP
#define XOPTIM_OPTIM_OPTIMIZER_HPP

#include <stdexcept>
#include <string>

#include "../engine/executor.hpp"
#include "../params/param_set.hpp"
#include "state.hpp"

namespace xoptim
{
    // What an optimizer's update sees: the step number and a way to run a program.
    template <unsigned Types>
    class step_context
    {
    public:

        step_context(std::size_t t, std::size_t states, job_list<float>& f, job_list<double>& d) noexcept
            : m_t(t), m_states(states), m_floats(f), m_doubles(d)
        {
        }

        // Step number, starting at 1 for the first step.
        std::size_t count() const noexcept
        {
            return m_t;
        }

        // Fuses the assignments into one pass and runs it over every parameter.
        template <class... A>
        void run(A&&... assignments) const
        {
            const auto prog = fuse(std::forward<A>(assignments)...);
            if (detail::states_used<std::decay_t<decltype(prog)>>() > m_states)
            {
                throw std::logic_error("xoptim: the update uses more state tensors than num_states() created");
            }
            if constexpr ((Types & detail::float_bit) != 0)
            {
                run_program(prog, m_floats);
            }
            if constexpr ((Types & detail::double_bit) != 0)
            {
                run_program(prog, m_doubles);
            }
        }

    private:

        std::size_t m_t;
        std::size_t m_states;
        job_list<float>& m_floats;
        job_list<double>& m_doubles;
    };

    template <class Derived>
    class optimizer
    {
    public:

        // One step over `params` with gradients `grads`, two parameter sets of the same
        // structure. Throws std::invalid_argument, before changing anything, if a
        // gradient does not fit its parameter or the parameters do not fit the state.
        template <class P, class G>
        void step(P&& params, G&& grads);

        // Creates the state for `params` now instead of on the first step.
        template <class P>
        void init(P&& params);

        // Steps taken so far.
        std::size_t step_count() const noexcept
        {
            return m_steps;
        }

        const state_store& state() const noexcept
        {
            return m_state;
        }

        state_report report() const noexcept
        {
            return m_state.report();
        }

    protected:

        optimizer() = default;

    private:

        class visitor;

        template <class P, class G>
        void collect(P&& params, G&& grads);

        const Derived& derived() const noexcept
        {
            return static_cast<const Derived&>(*this);
        }

        state_store m_state;
        job_list<float> m_floats;
        job_list<double> m_doubles;
        std::size_t m_steps = 0;
    };

    /******************
     * Implementation *
     ******************/

    namespace detail
    {
        // Shapes must agree when both sides carry one; a flat container (std::vector,
        // rank 1) only needs the same number of elements.
        template <class A, class B>
        bool same_shape(const A& a, const B& b)
        {
            if (tensor::rank(a) == 1 || tensor::rank(b) == 1)
            {
                return true;
            }
            if (tensor::rank(a) != tensor::rank(b))
            {
                return false;
            }
            for (std::size_t d = 0; d < tensor::rank(a); ++d)
            {
                if (tensor::extent(a, d) != tensor::extent(b, d))
                {
                    return false;
                }
            }
            return true;
        }

        template <class C>
        bool same_shape(const C& c, const std::vector<std::size_t>& shape)
        {
            if (tensor::rank(c) != shape.size())
            {
                return false;
            }
            for (std::size_t d = 0; d < shape.size(); ++d)
            {
                if (tensor::extent(c, d) != shape[d])
                {
                    return false;
                }
            }
            return true;
        }

        template <class T>
        bool overlap(const T* a, std::size_t na, const T* b, std::size_t nb) noexcept
        {
            return na != 0 && nb != 0 && a < b + nb && b < a + na;
        }
    }

    template <class Derived>
    class optimizer<Derived>::visitor
    {
    public:

        visitor(optimizer& o, bool with_grads) noexcept
            : m_opt(o), m_with_grads(with_grads), m_creating(o.m_state.empty())
        {
        }

        [[noreturn]] void mismatch(const name_path& path, const std::string& what) const
        {
            throw std::invalid_argument(std::string("xoptim::") + Derived::name + ": parameter '" + path.name()
                                        + "': " + what);
        }

        template <class P, class G>
        void leaf(const name_path& path, P& param, G& grad)
        {
            using T = tensor::value_type<P>;
            static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                          "xoptim: parameters must be float or double tensors");
            static_assert(!std::is_const_v<std::remove_pointer_t<decltype(tensor::data(param))>>,
                          "xoptim: parameters must be mutable (got a const tensor)");
            if (!tensor::contiguous(param))
            {
                mismatch(path, "parameter is not contiguous (a strided view cannot be stepped in place)");
            }
            tensor_slots<T> slots;
            slots.param = tensor::data(param);
            slots.size = tensor::size(param);
            if constexpr (!std::is_same_v<detail::bare<G>, no_grads>)
            {
                check_grad(path, param, grad);
                slots.grad = tensor::data(grad);
            }
            const state_store::entry& e = state_for(path, param);
            for (std::size_t k = 0; k < e.count; ++k)
            {
                slots.states[k] = e.template state<T>(k);
            }
            if (m_with_grads)
            {
                jobs<T>().push_back(slots);
            }
            ++m_index;
        }

        // A step must see exactly the parameters the state was made for.
        void finish() const
        {
            if (m_index != m_opt.m_state.size())
            {
                throw std::invalid_argument(std::string("xoptim::") + Derived::name + ": this step passed "
                                            + std::to_string(m_index) + " parameters, the optimizer state holds "
                                            + std::to_string(m_opt.m_state.size()));
            }
        }

    private:

        template <class T>
        job_list<T>& jobs() noexcept
        {
            if constexpr (std::is_same_v<T, float>)
            {
                return m_opt.m_floats;
            }
            else
            {
                return m_opt.m_doubles;
            }
        }

        template <class P, class G>
        void check_grad(const name_path& path, const P& param, const G& grad) const
        {
            using T = tensor::value_type<P>;
            static_assert(std::is_same_v<T, tensor::value_type<G>>,
                          "xoptim: a gradient must have the same element type as its parameter");
            constexpr std::size_t ps = tensor::static_size<P>;
            constexpr std::size_t gs = tensor::static_size<G>;
            static_assert(ps == 0 || gs == 0 || ps == gs,
                          "xoptim: gradient and parameter have different (compile-time) sizes");
            if (tensor::size(grad) != tensor::size(param))
            {
                mismatch(path, "gradient has " + std::to_string(tensor::size(grad)) + " elements, parameter has "
                                   + std::to_string(tensor::size(param)));
            }
            if (!detail::same_shape(param, grad))
            {
                mismatch(path, "gradient shape " + format_shape(tensor::shape(grad)) + " differs from parameter shape "
                                   + format_shape(tensor::shape(param)));
            }
            if (!tensor::contiguous(grad))
            {
                mismatch(path, "gradient is not contiguous");
            }
            if (detail::overlap<T>(tensor::data(param), tensor::size(param), tensor::data(grad), tensor::size(grad)))
            {
                mismatch(path, "gradient and parameter share memory");
            }
        }

        template <class P>
        const state_store::entry& state_for(const name_path& path, const P& param)
        {
            using T = tensor::value_type<P>;
            state_store& store = m_opt.m_state;
            if (m_creating)
            {
                return store.add(path.name(), param, m_opt.derived().num_states());
            }
            if (m_index >= store.size())
            {
                mismatch(path, "the optimizer state holds only " + std::to_string(store.size()) + " parameters");
            }
            const state_store::entry& e = store[m_index];
            if (e.type != dtype_of<T>() || e.size != tensor::size(param) || !detail::same_shape(param, e.shape))
            {
                mismatch(path, std::string("parameter is ") + dtype_name(dtype_of<T>()) + " "
                                   + format_shape(tensor::shape(param)) + ", its optimizer state (made for '" + e.name
                                   + "') is " + dtype_name(e.type) + " of " + std::to_string(e.size)
                                   + " elements");
            }
            return e;
        }

        optimizer& m_opt;
        bool m_with_grads;
        bool m_creating;
        std::size_t m_index = 0;
    };

    template <class Derived>
    template <class P, class G>
    void optimizer<Derived>::collect(P&& params, G&& grads)
    {
        const std::size_t before = m_state.size();
        m_floats.clear();
        m_doubles.clear();
        visitor v(*this, !std::is_same_v<detail::bare<G>, no_grads>);
        try
        {
            walk_params(v, std::forward<P>(params), std::forward<G>(grads));
            v.finish();
        }
        catch (...)
        {
            m_state.truncate(before);
            throw;
        }
    }

    template <class Derived>
    template <class P, class G>
    void optimizer<Derived>::step(P&& params, G&& grads)
    {
        static_assert(!std::is_same_v<detail::bare<G>, no_grads>, "xoptim: step needs gradients");
        static_assert(std::is_lvalue_reference_v<P> || !detail::holds_copy_v<P>,
                      "xoptim: the parameters are a temporary, so a step would update a copy; pass the "
                      "tensors themselves");
        constexpr unsigned types = detail::element_types_v<P>;
        collect(std::forward<P>(params), std::forward<G>(grads));
        const step_context<types> ctx(m_steps + 1, m_state.empty() ? 0 : derived().num_states(), m_floats, m_doubles);
        derived().update(ctx);
        ++m_steps;
    }

    template <class Derived>
    template <class P>
    void optimizer<Derived>::init(P&& params)
    {
        if (!m_state.empty())
        {
            throw std::logic_error(std::string("xoptim::") + Derived::name + ": init after the state exists");
        }
        collect(std::forward<P>(params), no_grads{});
    }
}

#endif
