// The fused loop: a list of assignments evaluated per SIMD batch, in order, in
// registers. Every slot a program reads is loaded once, every slot it writes is
// stored once, whatever the number of assignments that touch it.
#ifndef XOPTIM_ENGINE_KERNEL_HPP
#define XOPTIM_ENGINE_KERNEL_HPP

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>

#include "ops.hpp"

namespace xoptim
{
    // The tensors one step touches for one parameter: the parameter, its gradient
    // and the optimizer's states, all of `size` elements.
    template <class T>
    struct tensor_slots
    {
        T* param = nullptr;
        const T* grad = nullptr;
        std::array<T*, max_states> states{};
        std::size_t size = 0;
    };

    // How a program sees the gradient: g' = clamp(scale * g, -clip, clip), applied as g
    // is loaded, so gradient clipping and the mean of accumulated gradients cost no pass
    // of their own (SPEC section 5). The default changes no bit: x * 1 is x, and NaN
    // passes the clamp unchanged.
    struct grad_transform
    {
        double scale = 1;
        double clip = std::numeric_limits<double>::infinity();
    };

    // A step's assignments, in order: a list built by fuse(), run by run_program().
    template <class... A>
    struct program;

    template <>
    struct program<>
    {
    };

    template <class A, class... R>
    struct program<A, R...>
    {
        static_assert(is_assignment<A>::value, "xoptim: fuse() takes assignments such as `m = b1 * m + (1 - b1) * g`");
        A first;
        program<R...> rest;
    };

    constexpr program<> fuse()
    {
        return {};
    }

    template <class A, class... R>
    constexpr program<std::decay_t<A>, std::decay_t<R>...> fuse(A&& a, R&&... rest)
    {
        return {std::forward<A>(a), fuse(std::forward<R>(rest)...)};
    }

    namespace detail
    {
        /*********************
         * Program analysis  *
         *********************/

        template <class A>
        struct assignment_traits;

        template <std::size_t I, class E>
        struct assignment_traits<assignment<I, E>>
        {
            static constexpr std::uint64_t reads = symbols_of<E>::mask;
            static constexpr std::uint64_t writes = std::uint64_t(1) << I;
        };

        // Slots read before the program writes them must come from memory; slots
        // written must go back to memory, except locals, which live in registers.
        template <class P>
        struct program_traits;

        template <class... A>
        struct program_traits<program<A...>>
        {
            static constexpr std::uint64_t local_mask = ((std::uint64_t(1) << max_locals) - 1)
                                                        << first_local;

            static constexpr std::uint64_t compute_loads()
            {
                std::uint64_t written = 0;
                std::uint64_t loads = 0;
                ((loads |= assignment_traits<A>::reads & ~written,
                  written |= assignment_traits<A>::writes),
                 ...);
                return loads;
            }

            static constexpr std::uint64_t writes = (std::uint64_t(0) | ... | assignment_traits<A>::writes);
            static constexpr std::uint64_t loads = compute_loads();
            static constexpr std::uint64_t stores = writes & ~local_mask;
            static_assert((loads & local_mask) == 0,
                          "xoptim: a local is read before it is assigned in this program");
        };

        // One past the highest state slot a program (given by its traits) loads or
        // stores: the state tensors it needs.
        template <class Traits>
        constexpr std::size_t states_used()
        {
            constexpr std::uint64_t touched = (Traits::loads | Traits::stores) >> first_state;
            std::size_t n = 0;
            for (std::size_t k = 0; k < max_states; ++k)
            {
                n = (touched >> k & 1) != 0 ? k + 1 : n;
            }
            return n;
        }

        /******************************
         * Preparation and evaluation *
         ******************************/

        template <class A, class Rest>
        struct program_cons;

        template <class A, class... R>
        struct program_cons<A, program<R...>>
        {
            static program<A, R...> make(A a, program<R...> rest)
            {
                return {a, rest};
            }
        };

        // Scalars become broadcast batches once per call, outside the element loop.
        template <class B>
        struct prepared_constant
        {
            B value;
        };

        template <class B, std::size_t I>
        constexpr symbol<I> prepare(const symbol<I>& s)
        {
            return s;
        }

        template <class B>
        prepared_constant<B> prepare(const constant& c)
        {
            using value_type = typename B::value_type;
            return {B(static_cast<value_type>(c.value))};
        }

        template <class B, class Op, class A>
        auto prepare(const node<Op, A>& n);
        template <class B, class Op, class A, class C>
        auto prepare(const node<Op, A, C>& n);
        template <class B, class Op, class A, class C, class D>
        auto prepare(const node<Op, A, C, D>& n);

        template <class B, class Op, class A>
        auto prepare(const node<Op, A>& n)
        {
            return node<Op, decltype(prepare<B>(n.a))>{prepare<B>(n.a)};
        }

        template <class B, class Op, class A, class C>
        auto prepare(const node<Op, A, C>& n)
        {
            return node<Op, decltype(prepare<B>(n.a)), decltype(prepare<B>(n.b))>{prepare<B>(n.a), prepare<B>(n.b)};
        }

        template <class B, class Op, class A, class C, class D>
        auto prepare(const node<Op, A, C, D>& n)
        {
            return node<Op, decltype(prepare<B>(n.a)), decltype(prepare<B>(n.b)), decltype(prepare<B>(n.c))>{
                prepare<B>(n.a), prepare<B>(n.b), prepare<B>(n.c)};
        }

        template <class B>
        program<> prepare_program(const program<>& p)
        {
            return p;
        }

        template <class B, std::size_t I, class E, class... R>
        auto prepare_program(const program<assignment<I, E>, R...>& p)
        {
            using rhs = decltype(prepare<B>(p.first.rhs));
            using rest = decltype(prepare_program<B>(p.rest));
            return program_cons<assignment<I, rhs>, rest>::make({prepare<B>(p.first.rhs)}, prepare_program<B>(p.rest));
        }

        template <class B>
        using registers = std::array<B, max_slots>;

        template <class B>
        struct prepared_transform
        {
            using value_type = typename B::value_type;

            explicit prepared_transform(const grad_transform& t)
                : identity(t.scale == 1 && t.clip == std::numeric_limits<double>::infinity()),
                  scale(static_cast<value_type>(t.scale)),
                  low(static_cast<value_type>(-t.clip)),
                  high(static_cast<value_type>(t.clip))
            {
            }

            // min(high, max(low, g * scale)) in that operand order: arch::min and max
            // give their second operand where one is NaN (or both are equal), so a NaN
            // gradient stays NaN, in two ops where compare-and-select takes four; none
            // for the identity, behind a branch that always goes the same way (in cache,
            // where the 8-bit loop is bound by arithmetic: 9.27-9.43 -> 8.93-9.01 ns per
            // batch of 16).
            B apply(const B& g) const
            {
                if (identity)
                {
                    return g;
                }
                return arch::min(high, arch::max(low, g * scale));
            }

            bool identity;
            B scale;
            B low;
            B high;
        };

        template <class B, std::size_t I>
        inline const B& eval(const symbol<I>&, const registers<B>& r)
        {
            return r[I];
        }

        template <class B>
        inline const B& eval(const prepared_constant<B>& c, const registers<B>&)
        {
            return c.value;
        }

        template <class B, class Op, class A>
        inline auto eval(const node<Op, A>& n, const registers<B>& r);
        template <class B, class Op, class A, class C>
        inline auto eval(const node<Op, A, C>& n, const registers<B>& r);
        template <class B, class Op, class A, class C, class D>
        inline auto eval(const node<Op, A, C, D>& n, const registers<B>& r);

        template <class B, class Op, class A>
        inline auto eval(const node<Op, A>& n, const registers<B>& r)
        {
            return Op::apply(eval(n.a, r));
        }

        template <class B, class Op, class A, class C>
        inline auto eval(const node<Op, A, C>& n, const registers<B>& r)
        {
            return Op::apply(eval(n.a, r), eval(n.b, r));
        }

        template <class B, class Op, class A, class C, class D>
        inline auto eval(const node<Op, A, C, D>& n, const registers<B>& r)
        {
            return Op::apply(eval(n.a, r), eval(n.b, r), eval(n.c, r));
        }

        // The assignments in order, each writing its target's register.
        template <class B>
        inline void run_steps(const program<>&, registers<B>&)
        {
        }

        template <class B, std::size_t I, class E, class... R>
        inline void run_steps(const program<assignment<I, E>, R...>& p, registers<B>& r)
        {
            r[I] = eval(p.first.rhs, r);
            run_steps(p.rest, r);
        }

        /**********
         * Memory *
         **********/

        template <std::size_t I, class T>
        inline const T* slot_pointer(const tensor_slots<T>& s)
        {
            if constexpr (I == param_slot)
            {
                return s.param;
            }
            else if constexpr (I == grad_slot)
            {
                return s.grad;
            }
            else
            {
                return s.states[I - first_state];
            }
        }

        template <std::size_t I, class T>
        inline T* writable_slot_pointer(const tensor_slots<T>& s)
        {
            if constexpr (I == param_slot)
            {
                return s.param;
            }
            else
            {
                static_assert(I >= first_state && I < first_local, "xoptim: only the parameter and states are stored");
                return s.states[I - first_state];
            }
        }

        template <std::uint64_t Mask, std::size_t I>
        inline constexpr bool has_slot = (Mask >> I & 1) != 0;

        template <std::uint64_t Mask, std::size_t I, class B, class T>
        inline void load_slot(registers<B>& r, const tensor_slots<T>& s, std::size_t i)
        {
            if constexpr (has_slot<Mask, I>)
            {
                r[I] = B::load_unaligned(slot_pointer<I>(s) + i);
            }
        }

        template <std::uint64_t Mask, std::size_t I, class B, class T>
        inline void store_slot(const registers<B>& r, const tensor_slots<T>& s, std::size_t i)
        {
            if constexpr (has_slot<Mask, I>)
            {
                r[I].store_unaligned(writable_slot_pointer<I>(s) + i);
            }
        }

        template <class Traits, class B, class T, std::size_t... I>
        inline void load_slots(registers<B>& r, const tensor_slots<T>& s, std::size_t i, std::index_sequence<I...>)
        {
            (load_slot<Traits::loads, I>(r, s, i), ...);
        }

        template <class Traits, class B, class T, std::size_t... I>
        inline void store_slots(const registers<B>& r, const tensor_slots<T>& s, std::size_t i, std::index_sequence<I...>)
        {
            (store_slot<Traits::stores, I>(r, s, i), ...);
        }

        template <class Traits, class Prepared, class B, class T>
        [[gnu::always_inline]] inline void run_batch(const Prepared& prog, const prepared_transform<B>& transform, const tensor_slots<T>& s,
                              std::size_t i)
        {
            registers<B> r;
            load_slots<Traits>(r, s, i, std::make_index_sequence<first_local>{});
            if constexpr (has_slot<Traits::loads, grad_slot>)
            {
                r[grad_slot] = transform.apply(r[grad_slot]);
            }
            run_steps(prog, r);
            store_slots<Traits>(r, s, i, std::make_index_sequence<first_local>{});
        }

        // Tail helpers: move `count` elements of every slot in Mask between the tensors
        // and a buffer laid out slot after slot, `stride` elements apart.
        template <std::uint64_t Mask, std::size_t I, class T>
        inline void copy_slot(T* dst, std::size_t stride, const tensor_slots<T>& s, std::size_t begin, std::size_t count)
        {
            if constexpr (has_slot<Mask, I>)
            {
                std::memcpy(dst + I * stride, slot_pointer<I>(s) + begin, count * sizeof(T));
            }
        }

        template <std::uint64_t Mask, std::size_t I, class T>
        inline void copy_back_slot(const T* src, std::size_t stride, const tensor_slots<T>& s, std::size_t begin,
                                   std::size_t count)
        {
            if constexpr (has_slot<Mask, I>)
            {
                std::memcpy(writable_slot_pointer<I>(s) + begin, src + I * stride, count * sizeof(T));
            }
        }

        template <std::uint64_t Mask, class T, std::size_t... I>
        inline void copy_slots(T* dst, std::size_t stride, const tensor_slots<T>& s, std::size_t begin,
                               std::size_t count, std::index_sequence<I...>)
        {
            (copy_slot<Mask, I>(dst, stride, s, begin, count), ...);
        }

        template <std::uint64_t Mask, class T, std::size_t... I>
        inline void copy_back_slots(const T* src, std::size_t stride, const tensor_slots<T>& s, std::size_t begin,
                                    std::size_t count, std::index_sequence<I...>)
        {
            (copy_back_slot<Mask, I>(src, stride, s, begin, count), ...);
        }
    }

    // Runs the program over elements [begin, end) of one parameter's tensors. The tail
    // shorter than a batch goes through a zero-padded copy and the very same batch code,
    // so every element gets bit-identical arithmetic wherever a range boundary falls.
    template <class Arch, class T, class Prepared, class Traits>
    void run_prepared(const Prepared& prog, const grad_transform& transform, const tensor_slots<T>& slots,
                      std::size_t begin, std::size_t end)
    {
        // A local copy: the compiler can keep the pointers in registers, knowing the
        // stores through them cannot change them.
        const tensor_slots<T> s = slots;
        using batch = xsimd::batch<T, Arch>;
        constexpr std::size_t width = batch::size;
        using slot_indices = std::make_index_sequence<first_local>;
        std::size_t i = begin;
        {
            // A local copy of the broadcast constants: kept in registers, not re-read
            // from memory every batch.
            const Prepared local_prog = prog;
            const detail::prepared_transform<batch> local_transform(transform);
            for (; i + width <= end; i += width)
            {
                detail::run_batch<Traits, Prepared, batch>(local_prog, local_transform, s, i);
            }
        }
        if (i < end)
        {
            const std::size_t rest = end - i;
            alignas(64) T buffer[first_local * width] = {};
            tensor_slots<T> tail;
            tail.param = buffer + param_slot * width;
            tail.grad = buffer + grad_slot * width;
            for (std::size_t k = 0; k < max_states; ++k)
            {
                tail.states[k] = buffer + (first_state + k) * width;
            }
            detail::copy_slots<Traits::loads>(buffer, width, s, i, rest, slot_indices{});
            detail::run_batch<Traits, Prepared, batch>(prog, detail::prepared_transform<batch>(transform), tail, 0);
            detail::copy_back_slots<Traits::stores>(buffer, width, s, i, rest, slot_indices{});
        }
    }

    // Broadcasts the program's scalars for element type T on architecture Arch.
    template <class Arch, class T, class... A>
    auto prepare_program(const program<A...>& p)
    {
        return detail::prepare_program<xsimd::batch<T, Arch>>(p);
    }
}

#endif
