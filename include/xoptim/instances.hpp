// The optimizers' steps compiled once per project instead of once per unit. A step's
// kernels are instantiated by optimizer<O>::commit<Types> (Types: the element types a step
// meets: 1 float, 2 double, 3 both, as a stepper or router steps, 7 with the kernels of
// bf16 and 8-bit states, as set_storage asks for). Every unit that includes this header
// (after <xoptim/xoptim.hpp>) declares those as `extern template`, with the part of the
// parameter walk that depends on the element type alone (a leaf's state, memory and job:
// visitor::take<T>, and visitor::finish), so it compiles the walk over its own types only,
// and with what a stepper that owns the optimizer (stepper<O>) does beside the step (its
// accumulators, the gradients' norm); one unit of the project defines XOPTIM_INSTANTIATE
// before including it and compiles them all, once:
//
//     // xoptim_instances.cpp, one per project
//     #define XOPTIM_INSTANTIATE
//     #include <xoptim/instances.hpp>
//     #include <xoptim/instances_muon.hpp>   // with Muon, in a program linked with a CBLAS
//
// AdamW, Adam, SGD and Lion here; Muon in instances_muon.hpp. Saving measured in
// docs/benchmarks.md ("Compile time"). Other optimizers, and bf16 parameters stepped
// directly (commit<5>), compile where they are used, as without this header.
//
// compiled<O> (compiled.hpp), for AdamW, Adam, SGD and Lion, is compiled here too: a unit
// that steps through it includes compiled.hpp alone.
//
// A project that also defines XOPTIM_SEPARATE_IO in every unit (io/separate.hpp) compiles
// the checkpoint's and safetensors' functions that depend on no caller's type here too.
#ifndef XOPTIM_INSTANCES_HPP
#define XOPTIM_INSTANCES_HPP

#include "compiled.hpp"
#include "optim/adam.hpp"
#include "optim/lion.hpp"
#include "optim/sgd.hpp"
#include "step/stepper.hpp"
#if defined(XOPTIM_SEPARATE_IO) && defined(XOPTIM_INSTANTIATE)
#include "io/checkpoint.hpp"
#if !XOPTIM_IO_DEFINE
#error "xoptim: the instantiation unit defines XOPTIM_INSTANTIATE before it includes any xoptim header"
#endif
#endif

#ifdef XOPTIM_INSTANTIATE
#define XOPTIM_EXTERN
#else
#define XOPTIM_EXTERN extern
#endif

#define XOPTIM_INSTANCE(O, TYPES)                                                                                      \
    XOPTIM_EXTERN template void optimizer<O, O::options_type>::commit<TYPES>(const grad_transform&,                    \
                                                                             detail::whole_set_round*);

// A leaf's state, memory and job, by element type (the walk over the caller's types stays
// in each unit), and the end of the walk.
#define XOPTIM_LEAF_INSTANCE(O, T)                                                                            \
    XOPTIM_EXTERN template void optimizer<O, O::options_type>::visitor::take<T>(const name_path&, T*, const T*, \
                                                                                std::size_t, const detail::shape_ref&);

// A stepper's work over its float or double parameters beside the step (the parameter
// walk and the step stay in each unit).
#define XOPTIM_STEPPER_INSTANCE(O, T)                                                                                  \
    XOPTIM_EXTERN template void stepper<O>::check_accumulators<T>(const flat_share<T>&) const;                         \
    XOPTIM_EXTERN template void stepper<O>::accumulate<T>(const std::vector<tensor_view<const T>>&);                   \
    XOPTIM_EXTERN template void stepper<O>::use_accumulators<T>(flat_share<T>&);                                       \
    XOPTIM_EXTERN template grad_stats stepper<O>::reduce<T>(const flat_share<T>&);

// The steps over float, double, both (stepper, router), and both with coded states
// (set_storage); the walk's element-type part; the owning stepper's work.
#define XOPTIM_INSTANCES(O)                                                      \
    XOPTIM_INSTANCE(O, 1u)                                                       \
    XOPTIM_INSTANCE(O, 2u)                                                       \
    XOPTIM_INSTANCE(O, 3u)                                                       \
    XOPTIM_INSTANCE(O, 7u)                                                       \
    XOPTIM_LEAF_INSTANCE(O, float)                                               \
    XOPTIM_LEAF_INSTANCE(O, double)                                              \
    XOPTIM_LEAF_INSTANCE(O, bfloat16)                                            \
    XOPTIM_EXTERN template void optimizer<O, O::options_type>::visitor::finish(); \
    XOPTIM_EXTERN template void stepper<O>::make_accumulators();                 \
    XOPTIM_STEPPER_INSTANCE(O, float)                                            \
    XOPTIM_STEPPER_INSTANCE(O, double)                                           \
    XOPTIM_EXTERN template std::string stepper<O>::first_non_finite();

namespace xoptim
{
    XOPTIM_INSTANCES(adamw)
    XOPTIM_INSTANCES(adam)
    XOPTIM_INSTANCES(sgd)
    XOPTIM_INSTANCES(lion)

    // compiled<O>'s members that need O's definition or the walk's code: flat_params' walk
    // in pieces over the leaves the caller's unit erased, then O's step over its lists, as
    // the stepper steps.
    template <class O>
    compiled<O>::compiled(const options_type& o)
        : m_opt(std::make_unique<O>(o))
    {
    }

    template <class O>
    compiled<O>::compiled(compiled&&) noexcept = default;

    template <class O>
    compiled<O>& compiled<O>::operator=(compiled&&) noexcept = default;

    template <class O>
    compiled<O>::~compiled() = default;

    template <class O>
    auto compiled<O>::options() const noexcept -> const options_type&
    {
        return m_opt->options();
    }

    template <class O>
    void compiled<O>::set_options(const options_type& o)
    {
        m_opt->set_options(o);
    }

    template <class O>
    std::size_t compiled<O>::step_count() const noexcept
    {
        return m_opt->step_count();
    }

    template <class O>
    void compiled<O>::begin_walk()
    {
        m_flat.begin(detail::compiled_optimizer<O>::who);
    }

    template <class O>
    void compiled<O>::take(const name_path& path, const detail::erased_leaf& leaf)
    {
        m_flat.take(path, leaf);
    }

    template <class O>
    void compiled<O>::mismatch(const name_path& path, const std::string& what) const
    {
        m_flat.mismatch(path, what);
    }

    template <class O>
    checked_walk compiled<O>::finish()
    {
        return m_flat.finish();
    }

    template <class O>
    void compiled<O>::abandon() noexcept
    {
        m_flat.abandon();
    }

    // A refused first step leaves no names behind: the next call is a first walk again.
    // O's state made through optimizer() (init, or load_checkpoint into a new or a fresh
    // O) follows the caller's set, where double parameters may come between float ones:
    // it is put in the order of the lists O steps, float parameters first (a pass over
    // the names where it already is).
    template <class O>
    void compiled<O>::step_over(const checked_walk& walk)
    {
        const std::vector<std::size_t>& floats = m_flat.template share<float>().leaves;
        const std::vector<std::size_t>& doubles = m_flat.template share<double>().leaves;
        m_opt->m_state.reorder(floats.size() + doubles.size(), [&](std::size_t k) -> const std::string& {
            return m_flat.name(k < floats.size() ? floats[k] : doubles[k - floats.size()]);
        });
        try
        {
            m_opt->step(m_flat.params(), m_flat.grads(), grad_transform{}, walk);
        }
        catch (...)
        {
            if (m_opt->step_count() == 0)
            {
                m_flat.reset();
            }
            throw;
        }
    }

    XOPTIM_EXTERN template class compiled<adamw>;
    XOPTIM_EXTERN template class compiled<adam>;
    XOPTIM_EXTERN template class compiled<sgd>;
    XOPTIM_EXTERN template class compiled<lion>;
#ifndef XOPTIM_INSTANTIATE
    // compiled<muon>'s members come from the unit that includes instances_muon.hpp (and
    // links a CBLAS): a unit that includes only this header uses them, and compiles no Muon.
    extern template class compiled<muon>;
#endif
}

#endif
