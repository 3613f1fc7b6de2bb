// Optimizers whose step is compiled once per project. compiled<O> steps a parameter set as
// O does, but a unit that uses it includes this header only: the parameter walk and O's
// options, no engine, no xsimd, no intrinsics. The unit compiles the walk over its own
// types, which reduces each leaf to pointers, a size and a shape (detail::erased_leaf);
// everything after that (the leaf's checks, the lists of views, the step) is compiled in
// the project's instantiation unit (instances.hpp with XOPTIM_INSTANTIATE), which a
// program using compiled<O> must link:
//
//     #include <xoptim/compiled.hpp>
//
//     xoptim::adamw_options o;
//     o.lr = 3e-4;
//     xoptim::compiled<xoptim::adamw> opt(o);
//     opt.step(model, grads);
//
// O: adamw, adam, sgd, lion (instances.hpp), muon (instances_muon.hpp; the program links a
// CBLAS). The step is the stepper's (step/stepper.hpp): the walk checks every leaf and the
// aliasing (params/flat.hpp), then O steps the lists, float parameters then double, each
// named as in a direct step; so the state, its names and the bits are O's own. Parameters
// are float or double, of at most max_rank dimensions, passed in the same order on every
// step. Schedules, storage, checkpoints and the report go through optimizer(), in a unit
// that includes O's header.
#ifndef XOPTIM_COMPILED_HPP
#define XOPTIM_COMPILED_HPP

#include <memory>
#include <string>
#include <type_traits>

#include "optim/adam_options.hpp"
#include "optim/lion_options.hpp"
#include "optim/muon_options.hpp"
#include "optim/sgd_options.hpp"
#include "params/flat.hpp"

namespace xoptim
{
    namespace detail
    {
        // The optimizers compiled<O> offers: their options, and the name their walk's
        // messages start with.
        template <class O>
        struct compiled_optimizer
        {
            static_assert(!std::is_same_v<O, O>, "xoptim::compiled<O>: O is one of xoptim::adamw, adam, sgd, lion and "
                                                 "muon");
        };

        template <bool Decoupled>
        struct compiled_optimizer<adam_base<Decoupled>>
        {
            using options_type = adam_options_base<Decoupled>;
            static constexpr const char* who = Decoupled ? "xoptim::compiled<adamw>" : "xoptim::compiled<adam>";
        };

        template <>
        struct compiled_optimizer<sgd>
        {
            using options_type = sgd_options;
            static constexpr const char* who = "xoptim::compiled<sgd>";
        };

        template <>
        struct compiled_optimizer<lion>
        {
            using options_type = lion_options;
            static constexpr const char* who = "xoptim::compiled<lion>";
        };

        template <>
        struct compiled_optimizer<muon>
        {
            using options_type = muon_options;
            static constexpr const char* who = "xoptim::compiled<muon>";
        };
    }

    template <class O>
    class compiled
    {
    public:

        using optimizer_type = O;
        using options_type = typename detail::compiled_optimizer<O>::options_type;

        // Checks `o` as O's constructor does.
        explicit compiled(const options_type& o);

        // O's default options (SGD has none: its lr is required, as in torch.optim.SGD).
        template <class Q = O>
        compiled()
            : compiled(options_type{})
        {
            static_assert(!std::is_same_v<Q, sgd>, "xoptim::compiled<sgd>: SGD has no default options (lr is "
                                                   "required, as in torch.optim.SGD); pass an sgd_options");
        }

        // A moved-from compiled<O> may only be assigned to or destroyed.
        compiled(compiled&&) noexcept;
        compiled& operator=(compiled&&) noexcept;
        ~compiled();

        // One step over `params` with gradients `grads`, as O::step. Throws
        // std::invalid_argument, naming the parameter, before changing anything.
        template <class P, class G>
        void step(P&& params, G&& grads)
        {
            detail::require_gradients<G>();
            detail::require_stepped_in_place<P>();
            begin_walk();
            step_over(detail::erasing_visitor<compiled>::walk(*this, false, std::forward<P>(params),
                                                              std::forward<G>(grads)));
        }

        const options_type& options() const noexcept;
        void set_options(const options_type& o);  // as O::set_options
        std::size_t step_count() const noexcept;

        // The optimizer itself (its members need O's header).
        O& optimizer() noexcept
        {
            return *m_opt;
        }

        const O& optimizer() const noexcept
        {
            return *m_opt;
        }

    private:

        // The walk's visitor erases each leaf in the caller's unit; take, mismatch, finish
        // and abandon (the leaf's checks and the lists: flat_params' walk in pieces) are
        // the instantiation unit's.
        friend struct detail::erasing_visitor<compiled>;

        void begin_walk();
        void take(const name_path& path, const detail::erased_leaf& leaf);
        [[noreturn]] void mismatch(const name_path& path, const std::string& what) const;
        checked_walk finish();
        void abandon() noexcept;
        void step_over(const checked_walk& walk);  // O's step over the walk's lists

        std::unique_ptr<O> m_opt;
        flat_params m_flat;
    };
}

#endif
