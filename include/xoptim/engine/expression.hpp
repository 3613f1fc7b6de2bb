// The symbolic side of a step: leaves, element-wise operations and assignments.
//
// Nothing here touches memory. An optimizer writes its update as assignments over
// these nodes; engine/kernel.hpp turns the list into one SIMD loop. Every node is a
// small value type: scalars are held by value, so an expression can never dangle.
#ifndef XOPTIM_ENGINE_EXPRESSION_HPP
#define XOPTIM_ENGINE_EXPRESSION_HPP

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

namespace xoptim
{
    /************
     * Symbols  *
     ************/

    // Slot layout of every step: 0 the parameter, 1 the gradient, 2.. the optimizer's
    // states (one tensor each), and from `first_local` on, registers that live for one
    // SIMD batch only (temporaries with a name, never loaded or stored).
    inline constexpr std::size_t param_slot = 0;
    inline constexpr std::size_t grad_slot = 1;
    inline constexpr std::size_t first_state = 2;
    inline constexpr std::size_t max_states = 6;
    inline constexpr std::size_t first_local = first_state + max_states;
    inline constexpr std::size_t max_locals = 4;
    // Then per-tensor scalars: values one per tensor (a job), read by an element program
    // like a hyperparameter (broadcast), written by a finalizing assignment after a pass
    // whose reductions they hold (`ratio = lr * sqrt(sum_squares(p))`). The last one is
    // the engine's own (step_context::total).
    inline constexpr std::size_t first_scalar = first_local + max_locals;
    inline constexpr std::size_t max_scalars = 4;
    inline constexpr std::size_t total_scalar = first_scalar + max_scalars;
    inline constexpr std::size_t max_slots = total_scalar + 1;
    // run_in_turn's carried array (sym::carried): the last state slot, which an optimizer
    // that carries leaves free; a per-thread buffer, not a state.
    inline constexpr std::size_t carry_slot = first_state + max_states - 1;

    // A hyperparameter or derived scalar, captured by value. Stored in double and
    // rounded once to the tensor's element type when the kernel is prepared.
    struct literal
    {
        double value;
    };

    template <std::size_t I, class E>
    struct assignment;

    template <std::size_t I>
    struct symbol
    {
        static_assert(I < max_slots, "xoptim: symbol index out of range (too many states or locals)");
        static constexpr std::size_t index = I;

        constexpr symbol() = default;
        constexpr symbol(const symbol&) = default;

        // `m = expr` builds an assignment; it changes nothing until a kernel runs it.
        template <class E>
        constexpr assignment<I, std::decay_t<E>> operator=(E&& e) const;
        template <class E, std::enable_if_t<std::is_arithmetic_v<std::decay_t<E>>, int> = 0>
        constexpr assignment<I, literal> operator=(E e) const;
        constexpr assignment<I, symbol> operator=(const symbol& e) const;
    };

    // An element-wise operation of one to three operands. `Op` is a stateless functor
    // from engine/ops. Plain members, not a std::tuple: cheaper to instantiate.
    template <class Op, class... E>
    struct node;

    template <class Op, class A>
    struct node<Op, A>
    {
        A a;
    };

    template <class Op, class A, class B>
    struct node<Op, A, B>
    {
        A a;
        B b;
    };

    template <class Op, class A, class B, class C>
    struct node<Op, A, B, C>
    {
        A a;
        B b;
        C c;
    };

    // A sum over the whole tensor of an element expression, accumulated while a pass runs
    // (engine/kernel.hpp, engine/executor.hpp): `Kind` is reduce_sum (of e, in double),
    // reduce_sum_squares (of e * e, the square taken in double) or reduce_count (of the
    // elements where the condition e holds, exact). Only in the right-hand side of an
    // assignment to a per-tensor scalar.
    struct reduce_sum
    {
    };

    struct reduce_sum_squares
    {
    };

    struct reduce_count
    {
    };

    template <class Kind, class E>
    struct reduction
    {
        using kind = Kind;
        E e;
    };

    /**********
     * Traits *
     **********/

    template <class T>
    struct is_expression : std::false_type
    {
    };

    template <std::size_t I>
    struct is_expression<symbol<I>> : std::true_type
    {
    };

    template <>
    struct is_expression<literal> : std::true_type
    {
    };

    template <class Op, class... E>
    struct is_expression<node<Op, E...>> : std::true_type
    {
    };

    template <class Kind, class E>
    struct is_expression<reduction<Kind, E>> : std::true_type
    {
    };

    template <class T>
    inline constexpr bool is_expression_v = is_expression<std::decay_t<T>>::value;

    // Operators accept expressions mixed with plain numbers, but need at least one
    // expression, so `2.0 * 3.0` stays ordinary arithmetic.
    template <class... T>
    inline constexpr bool any_expression_v = (is_expression_v<T> || ...);

    template <class T>
    inline constexpr bool is_operand_v = is_expression_v<T> || std::is_arithmetic_v<std::decay_t<T>>;

    namespace detail
    {
        template <class T>
        constexpr auto as_expression(T&& t)
        {
            if constexpr (is_expression_v<T>)
            {
                return std::decay_t<T>(std::forward<T>(t));
            }
            else
            {
                static_assert(std::is_arithmetic_v<std::decay_t<T>>,
                              "xoptim: an operand must be an xoptim expression or a number");
                return literal{static_cast<double>(t)};
            }
        }

        template <class Op, class... A>
        constexpr auto make_node(A&&... a)
        {
            return node<Op, decltype(as_expression(std::forward<A>(a)))...>{as_expression(std::forward<A>(a))...};
        }

        // Bit I is set when symbol<I> appears in the expression.
        template <class E>
        struct symbols_of
        {
            static constexpr std::uint64_t mask = 0;
        };

        template <std::size_t I>
        struct symbols_of<symbol<I>>
        {
            static constexpr std::uint64_t mask = std::uint64_t(1) << I;
        };

        template <class Op, class... E>
        struct symbols_of<node<Op, E...>>
        {
            static constexpr std::uint64_t mask = (std::uint64_t(0) | ... | symbols_of<E>::mask);
        };

        // Symbols read outside any reduction: what an expression needs per element in
        // an element assignment, per tensor in a finalizing one.
        template <class Kind, class E>
        struct symbols_of<reduction<Kind, E>>
        {
            static constexpr std::uint64_t mask = 0;
        };

        // Symbols read inside reductions: what a reducing pass evaluates per element.
        template <class E>
        struct reduced_symbols_of
        {
            static constexpr std::uint64_t mask = 0;
        };

        template <class Op, class... E>
        struct reduced_symbols_of<node<Op, E...>>
        {
            static constexpr std::uint64_t mask = (std::uint64_t(0) | ... | reduced_symbols_of<E>::mask);
        };

        template <class Kind, class E>
        struct reduced_symbols_of<reduction<Kind, E>>
        {
            static_assert(reduced_symbols_of<E>::mask == 0, "xoptim: a reduction inside a reduction");
            static constexpr std::uint64_t mask = symbols_of<E>::mask;
        };

        // The number of reductions in an expression.
        template <class E>
        struct reductions_in : std::integral_constant<std::size_t, 0>
        {
        };

        template <class Op, class... E>
        struct reductions_in<node<Op, E...>> : std::integral_constant<std::size_t, (std::size_t(0) + ... + reductions_in<E>::value)>
        {
        };

        template <class Kind, class E>
        struct reductions_in<reduction<Kind, E>> : std::integral_constant<std::size_t, 1>
        {
        };
    }

    /***************
     * Assignments *
     ***************/

    template <std::size_t I, class E>
    struct assignment
    {
        static constexpr std::size_t target = I;
        E rhs;
    };

    namespace detail
    {
        template <std::size_t I>
        constexpr void check_assignable()
        {
            static_assert(I != grad_slot, "xoptim: the gradient is read-only; assign the modified "
                                          "gradient to a local (sym::local<K>) instead");
        }
    }

    template <std::size_t I>
    template <class E>
    constexpr assignment<I, std::decay_t<E>> symbol<I>::operator=(E&& e) const
    {
        static_assert(is_expression_v<E>, "xoptim: the right-hand side of an assignment must be an "
                                          "xoptim expression or a number");
        detail::check_assignable<I>();
        return {std::forward<E>(e)};
    }

    template <std::size_t I>
    template <class E, std::enable_if_t<std::is_arithmetic_v<std::decay_t<E>>, int>>
    constexpr assignment<I, literal> symbol<I>::operator=(E e) const
    {
        detail::check_assignable<I>();
        return {literal{static_cast<double>(e)}};
    }

    template <std::size_t I>
    constexpr assignment<I, symbol<I>> symbol<I>::operator=(const symbol& e) const
    {
        detail::check_assignable<I>();
        return {e};
    }

    template <class T>
    struct is_assignment : std::false_type
    {
    };

    template <std::size_t I, class E>
    struct is_assignment<assignment<I, E>> : std::true_type
    {
    };

    /***********
     * Leaves  *
     ***********/

    namespace detail
    {
        template <std::size_t K>
        constexpr std::size_t scalar_slot()
        {
            static_assert(K < max_scalars, "xoptim: sym::scalar<K> takes K < max_scalars (4)");
            return first_scalar + K;
        }
    }

    namespace sym
    {
        inline constexpr symbol<param_slot> p{};
        inline constexpr symbol<grad_slot> g{};

        template <std::size_t K>
        inline constexpr symbol<first_state + K> state{};

        template <std::size_t K>
        inline constexpr symbol<first_local + K> local{};

        template <std::size_t K>
        inline constexpr symbol<detail::scalar_slot<K>()> scalar{};

        // An array of the tensor's size that a first pass run in turn writes and its second
        // pass reads (engine/executor.hpp run_in_turn): what the second would compute again.
        inline constexpr symbol<carry_slot> carried{};
    }
}

#endif
