// Element-wise operations on expressions: the vocabulary an optimizer's update is
// written in. Each operation is a stateless functor applied to xsimd batches.
#ifndef XOPTIM_ENGINE_OPS_HPP
#define XOPTIM_ENGINE_OPS_HPP

#include "arch/arch.hpp"
#include "expression.hpp"

namespace xoptim
{
    namespace ops
    {
#define XOPTIM_BINARY_FUNCTOR(NAME, EXPR)                                                          \
    struct NAME                                                                                    \
    {                                                                                              \
        template <class A, class B>                                                                \
        static auto apply(const A& a, const B& b)                                                  \
        {                                                                                          \
            return EXPR;                                                                           \
        }                                                                                          \
    };

        // The arithmetic goes through engine/arch: IEEE's bits on every instruction set,
        // and a product rounded on its own (never contracted into an fma: write fma()
        // where one rounding is meant).
        XOPTIM_BINARY_FUNCTOR(plus, a + b)
        XOPTIM_BINARY_FUNCTOR(minus, a - b)
        XOPTIM_BINARY_FUNCTOR(multiplies, arch::mul(a, b))
        XOPTIM_BINARY_FUNCTOR(divides, arch::div(a, b))
        XOPTIM_BINARY_FUNCTOR(less, a < b)
        XOPTIM_BINARY_FUNCTOR(less_equal, a <= b)
        XOPTIM_BINARY_FUNCTOR(greater, a > b)
        XOPTIM_BINARY_FUNCTOR(greater_equal, a >= b)
        XOPTIM_BINARY_FUNCTOR(equal_to, a == b)
        // xsimd 8's != is the ordered comparison (false for NaN); C++ says true.
        XOPTIM_BINARY_FUNCTOR(not_equal_to, !(a == b))
        XOPTIM_BINARY_FUNCTOR(logical_and, a && b)
        XOPTIM_BINARY_FUNCTOR(logical_or, a || b)
        // min(a, b) = a < b ? a : b, max(a, b) = a > b ? a : b: b where one is NaN.
        XOPTIM_BINARY_FUNCTOR(minimum, arch::min(a, b))
        XOPTIM_BINARY_FUNCTOR(maximum, arch::max(a, b))
#undef XOPTIM_BINARY_FUNCTOR

        struct negate
        {
            template <class A>
            static A apply(const A& a)
            {
                return -a;
            }
        };

        struct square_root
        {
            template <class A>
            static A apply(const A& a)
            {
                return arch::sqrt(a);
            }
        };

        struct absolute
        {
            template <class A>
            static A apply(const A& a)
            {
                return xsimd::abs(a);
            }
        };

        // sign(0) = 0 as in PyTorch; unlike torch.sign, a NaN stays NaN so a bad
        // gradient cannot vanish silently into a zero update.
        struct signum
        {
            template <class A>
            static A apply(const A& a)
            {
                const A one(typename A::value_type(1));
                const A zero(typename A::value_type(0));
                // 1 with a's sign where |a| > 0 (neither zero nor NaN), else +0.
                const A s = xsimd::select(xsimd::abs(a) > zero, xsimd::bitofsign(a) | one, zero);
                return xsimd::select(xsimd::isnan(a), a, s);
            }
        };

        // One rounding, always (engine/arch).
        struct fused_multiply_add
        {
            template <class T, class Arch>
            static xsimd::batch<T, Arch> apply(const xsimd::batch<T, Arch>& a, const xsimd::batch<T, Arch>& b,
                                               const xsimd::batch<T, Arch>& c)
            {
                return arch::fma(a, b, c);
            }
        };

        struct where
        {
            template <class C, class A>
            static A apply(const C& c, const A& a, const A& b)
            {
                return xsimd::select(c, a, b);
            }
        };
    }

    /*************
     * Operators *
     *************/

#define XOPTIM_BINARY_OPERATOR(OP, FUNCTOR)                                                        \
    template <class A, class B, std::enable_if_t<any_expression_v<A, B> && is_operand_v<A> && is_operand_v<B>, int> = 0> \
    constexpr auto operator OP(A&& a, B&& b)                                                       \
    {                                                                                              \
        return detail::make_node<ops::FUNCTOR>(std::forward<A>(a), std::forward<B>(b));            \
    }

    XOPTIM_BINARY_OPERATOR(+, plus)
    XOPTIM_BINARY_OPERATOR(-, minus)
    XOPTIM_BINARY_OPERATOR(*, multiplies)
    XOPTIM_BINARY_OPERATOR(/, divides)
    XOPTIM_BINARY_OPERATOR(<, less)
    XOPTIM_BINARY_OPERATOR(<=, less_equal)
    XOPTIM_BINARY_OPERATOR(>, greater)
    XOPTIM_BINARY_OPERATOR(>=, greater_equal)
    XOPTIM_BINARY_OPERATOR(==, equal_to)
    XOPTIM_BINARY_OPERATOR(!=, not_equal_to)
    XOPTIM_BINARY_OPERATOR(&&, logical_and)
    XOPTIM_BINARY_OPERATOR(||, logical_or)
#undef XOPTIM_BINARY_OPERATOR

    template <class A, std::enable_if_t<is_expression_v<A>, int> = 0>
    constexpr auto operator-(A&& a)
    {
        return detail::make_node<ops::negate>(std::forward<A>(a));
    }

    /*************
     * Functions *
     *************/

#define XOPTIM_FUNCTION(NAME, FUNCTOR, ...)                                                        \
    template <class... A, std::enable_if_t<any_expression_v<A...> && (is_operand_v<A> && ...), int> = 0> \
    constexpr auto NAME(A&&... a)                                                                  \
    {                                                                                              \
        static_assert(sizeof...(A) == (__VA_ARGS__), "xoptim::" #NAME ": wrong number of arguments"); \
        return detail::make_node<ops::FUNCTOR>(std::forward<A>(a)...);                             \
    }

    XOPTIM_FUNCTION(sqrt, square_root, 1)
    XOPTIM_FUNCTION(abs, absolute, 1)
    XOPTIM_FUNCTION(sign, signum, 1)
    XOPTIM_FUNCTION(min, minimum, 2)
    XOPTIM_FUNCTION(max, maximum, 2)
    XOPTIM_FUNCTION(fma, fused_multiply_add, 3)  // fma(a, b, c) = a*b + c, rounded once
    XOPTIM_FUNCTION(where, where, 3)             // where(condition, if_true, if_false)
#undef XOPTIM_FUNCTION

    /**************
     * Reductions *
     **************/

    // sum(e): the sum over the tensor of e; sum_squares(e): of e * e, squared in double.
    // Accumulated in double (the element type's double for double data) in a fixed order:
    // the same bits for any thread count and any instruction set (docs/design.md,
    // "Reductions and per-tensor scalars"). Only in an assignment to sym::scalar<K>.
    template <class E, std::enable_if_t<is_expression_v<E>, int> = 0>
    constexpr auto sum(E&& e)
    {
        return reduction<reduce_sum, std::decay_t<E>>{std::forward<E>(e)};
    }

    template <class E, std::enable_if_t<is_expression_v<E>, int> = 0>
    constexpr auto sum_squares(E&& e)
    {
        return reduction<reduce_sum_squares, std::decay_t<E>>{std::forward<E>(e)};
    }

    // count(c): how many elements of the tensor satisfy the condition c (a comparison, or
    // a logical combination of comparisons), exact. Where a sum of where(c, 1.0, 0.0)
    // widens every batch to double, the count adds its 1s and 0s in the element type:
    // exact while each lane counts fewer than 2^24 (a range of fewer than 2^28 elements;
    // the executor's units have 2^15, engine/executor.hpp).
    template <class E, std::enable_if_t<is_expression_v<E>, int> = 0>
    constexpr auto count(E&& c)
    {
        return reduction<reduce_count, std::decay_t<E>>{std::forward<E>(c)};
    }
}

#endif
