// What kind of object a trainer is: an optimizer, a router (or param_groups), a stepper.
// The traits need only declarations, so a header that checks what it was given (a
// stepper, a checkpoint) can say what was wrong without including every optimizer.
#ifndef XOPTIM_OPTIM_KINDS_HPP
#define XOPTIM_OPTIM_KINDS_HPP

#include <type_traits>

namespace xoptim
{
    template <class Derived, class Options>
    class optimizer;

    template <class Opt>
    class stepper;

    class ema;

    template <class O>
    class compiled;

    namespace detail
    {
        template <class Storage>
        class router_base;

        // Whether T derives from optimizer<T, T::options_type>.
        template <class T, class = void>
        struct is_optimizer : std::false_type
        {
        };

        template <class T>
        struct is_optimizer<T, std::void_t<typename T::options_type>>
            : std::is_base_of<optimizer<T, typename T::options_type>, T>
        {
        };

        template <class D, class O>
        std::true_type optimizer_base(const optimizer<D, O>*);
        std::false_type optimizer_base(const void*);

        // An optimizer, or a class of the user's derived from one (is_optimizer is the
        // optimizer type itself).
        template <class X>
        struct derives_from_optimizer : decltype(optimizer_base(static_cast<const X*>(nullptr)))
        {
        };

        template <class D, class O>
        D* optimizer_type(const optimizer<D, O>*);

        // The optimizer X is or derives from (adamw for a user's class derived from adamw),
        // const as X is.
        template <class X, class D = std::remove_pointer_t<decltype(optimizer_type(static_cast<const X*>(nullptr)))>>
        using optimizer_of = std::conditional_t<std::is_const_v<X>, const D, D>;

        template <class X>
        struct is_stepper : std::false_type
        {
        };

        template <class O>
        struct is_stepper<stepper<O>> : std::true_type
        {
        };

        template <class S>
        std::true_type router_storage(const router_base<S>*);
        std::false_type router_storage(const void*);

        // A router or param_groups.
        template <class X>
        struct is_router : decltype(router_storage(static_cast<const X*>(nullptr)))
        {
        };

        template <class X>
        struct is_compiled : std::false_type
        {
        };

        template <class O>
        struct is_compiled<compiled<O>> : std::true_type
        {
        };

        // What a stepper steps, and a router routes to: an optimizer (an average is not
        // stepped) or a router.
        template <class X>
        struct is_steppable : std::bool_constant<(derives_from_optimizer<X>::value && !std::is_base_of_v<ema, X>)
                                                 || is_router<X>::value>
        {
        };

        // What a checkpoint keeps: an optimizer (an average too) or a class derived from one
        // (its optimizer part is kept), a router or a stepper.
        template <class X>
        struct is_trainer
            : std::bool_constant<derives_from_optimizer<X>::value || is_router<X>::value || is_stepper<X>::value>
        {
        };
    }
}

#endif
