// The fused loop: a list of assignments evaluated per SIMD batch, in order, in
// registers. Every slot a program reads is loaded once, every slot it writes is
// stored once, whatever the number of assignments that touch it.
#ifndef XOPTIM_ENGINE_KERNEL_HPP
#define XOPTIM_ENGINE_KERNEL_HPP

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <tuple>
#include <type_traits>

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
        // The per-tensor scalars (sym::scalar<K>), rounded to T; set by the executor from
        // the job list for the programs that read them.
        std::array<T, max_scalars> scalars{};
    };

    // Elements [at, at + n) of a job's tensors as a job of its own (a factored optimizer's
    // row of a matrix): every tensor it has, from element `at` on, so each must have the
    // job's size (a caller clears any other, such as row or column statistics, first).
    template <class T>
    tensor_slots<T> window(const tensor_slots<T>& s, std::size_t at, std::size_t n) noexcept
    {
        tensor_slots<T> w = s;
        w.param = s.param != nullptr ? s.param + at : nullptr;
        w.grad = s.grad != nullptr ? s.grad + at : nullptr;
        for (T*& state : w.states)
        {
            state = state != nullptr ? state + at : nullptr;
        }
        w.size = n;
        return w;
    }

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

        inline constexpr std::uint64_t scalar_mask = ((std::uint64_t(1) << (max_scalars + 1)) - 1) << first_scalar;

        // An element assignment writes a slot per element; a finalizing one (its target a
        // per-tensor scalar) runs once per tensor after the pass, from the pass's
        // reductions and the scalars before it.
        template <std::size_t I, class E>
        struct assignment_traits<assignment<I, E>>
        {
            static constexpr bool finalizing = I >= first_scalar;
            static constexpr std::uint64_t reads = symbols_of<E>::mask;
            static constexpr std::uint64_t reduced = reduced_symbols_of<E>::mask;
            static constexpr std::uint64_t writes = std::uint64_t(1) << I;
            static constexpr std::size_t reductions = reductions_in<E>::value;
            static_assert(finalizing || reductions == 0,
                          "xoptim: a reduction (sum, sum_squares) gives one value per tensor: assign it to "
                          "sym::scalar<K> and read that scalar from the next step.run on");
            static_assert(!finalizing || (reads & ~scalar_mask) == 0,
                          "xoptim: an assignment to sym::scalar<K> reads the parameter, gradient, states and "
                          "locals only inside reductions (sum, sum_squares)");
        };

        // Slots read before the program writes them must come from memory; slots
        // written must go back to memory, except locals, which live in registers.
        // Reductions read the registers as the element assignments leave them.
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
                std::uint64_t read = 0;
                ((read |= assignment_traits<A>::finalizing ? 0 : assignment_traits<A>::reads & ~written,
                  written |= assignment_traits<A>::finalizing ? 0 : assignment_traits<A>::writes),
                 ...);
                const std::uint64_t reduced = (std::uint64_t(0) | ... | assignment_traits<A>::reduced);
                return read | (reduced & ~written);
            }

            static constexpr std::uint64_t writes =
                (std::uint64_t(0) | ... | (assignment_traits<A>::finalizing ? 0 : assignment_traits<A>::writes));
            static constexpr std::uint64_t finalized =
                (std::uint64_t(0) | ... | (assignment_traits<A>::finalizing ? assignment_traits<A>::writes : 0));
            static constexpr std::uint64_t loads = compute_loads();
            static constexpr std::uint64_t stores = writes & ~local_mask;
            static constexpr std::size_t reductions = (std::size_t(0) + ... + assignment_traits<A>::reductions);
            // A program with finalizing assignments runs on the executor's reducing path;
            // any other compiles to the plain loop.
            static constexpr bool finalizes = finalized != 0;
            static_assert((loads & local_mask) == 0,
                          "xoptim: a local is read before it is assigned in this program");
            static_assert((loads & finalized) == 0,
                          "xoptim: a per-tensor scalar is read in the pass that computes it; its value is "
                          "available from the next step.run on");
        };

        // One past the highest state slot a program (given by its traits) loads or
        // stores: the state tensors it needs (with Carries, sym::carried is not one).
        template <class Traits, bool Carries = false>
        constexpr std::size_t states_used()
        {
            constexpr std::uint64_t carry = Carries ? std::uint64_t(1) << carry_slot : 0;
            constexpr std::uint64_t touched = ((Traits::loads | Traits::stores) & ~carry) >> first_state;
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
        struct prepared_literal
        {
            B value;
        };

        template <class B, std::size_t I>
        constexpr symbol<I> prepare(const symbol<I>& s)
        {
            return s;
        }

        template <class B>
        prepared_literal<B> prepare(const literal& c)
        {
            using value_type = typename B::value_type;
            return {B(static_cast<value_type>(c.value))};
        }

        template <class B, class Kind, class E>
        auto prepare(const reduction<Kind, E>& r);
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

        template <class B, class Kind, class E>
        auto prepare(const reduction<Kind, E>& r)
        {
            return reduction<Kind, decltype(prepare<B>(r.e))>{prepare<B>(r.e)};
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
        inline const B& eval(const prepared_literal<B>& c, const registers<B>&)
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
            if constexpr (I < first_scalar)
            {
                r[I] = eval(p.first.rhs, r);
            }
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

        template <class Traits, class B, class S, std::size_t... I>
        inline void load_slots(registers<B>& r, const S& s, std::size_t i, std::index_sequence<I...>)
        {
            (load_slot<Traits::loads, I>(r, s, i), ...);
        }

        // Per-tensor scalars the program reads, broadcast (hoisted out of the loop: the
        // slots are a local copy).
        template <class Traits, class B, class S, std::size_t... K>
        inline void load_scalars(registers<B>& r, const S& s, std::index_sequence<K...>)
        {
            ((has_slot<Traits::loads, first_scalar + K> ? void(r[first_scalar + K] = B(s.scalars[K])) : void()), ...);
        }

        template <class Traits, class B, class S, std::size_t... I>
        inline void store_slots(const registers<B>& r, const S& s, std::size_t i, std::index_sequence<I...>)
        {
            (store_slot<Traits::stores, I>(r, s, i), ...);
        }

        // One batch at element i: the loads, the assignments, the stores; `r` holds the
        // registers as the assignments leave them. `s` is a tensor_slots, or a type derived
        // from one with load_slot and store_slot overloads of its own (coded.hpp).
        template <class Traits, class Prepared, class B, class S>
        [[gnu::always_inline]] inline void run_batch(const Prepared& prog, const prepared_transform<B>& transform,
                                                     const S& s, std::size_t i, registers<B>& r)
        {
            load_slots<Traits>(r, s, i, std::make_index_sequence<first_local>{});
            if constexpr ((Traits::loads & scalar_mask) != 0)
            {
                load_scalars<Traits>(r, s, std::make_index_sequence<max_scalars>{});
            }
            if constexpr (has_slot<Traits::loads, grad_slot>)
            {
                r[grad_slot] = transform.apply(r[grad_slot]);
            }
            run_steps(prog, r);
            store_slots<Traits>(r, s, i, std::make_index_sequence<first_local>{});
        }

        template <class Traits, class Prepared, class B, class S>
        [[gnu::always_inline]] inline void run_batch(const Prepared& prog, const prepared_transform<B>& transform,
                                                     const S& s, std::size_t i)
        {
            registers<B> r;
            run_batch<Traits>(prog, transform, s, i, r);
        }

        // The tail's slots: every tensor slot `width` elements of `buffer`, slot after slot.
        template <std::size_t Width, class T>
        tensor_slots<T> tail_slots(T* buffer, const tensor_slots<T>& s) noexcept
        {
            tensor_slots<T> tail;
            tail.scalars = s.scalars;
            tail.param = buffer + param_slot * Width;
            tail.grad = buffer + grad_slot * Width;
            for (std::size_t k = 0; k < max_states; ++k)
            {
                tail.states[k] = buffer + (first_state + k) * Width;
            }
            return tail;
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

    namespace detail
    {
        inline constexpr std::size_t cache_line = 64;

        // What a pass asks for ahead, besides its own arrays: nothing,
        struct nothing_ahead
        {
            static constexpr bool asks = false;
        };

        // or the lines of another tensor's arrays (the parameter, gradient and states in
        // Mask, but the carried one, which is in cache), spread over the pass's lines:
        // line k of the pass asks for the line at k * stride of each, stride a whole
        // number of lines (one where the two tensors are the same size; where the other
        // is bigger, the lines in between are left to the hardware's prefetchers).
        // run_in_turn's second pass over a small tensor reads its arrays from cache, so
        // without this the memory would stand idle while it runs; with the lines of the
        // tensor the thread runs next asked for, that tensor's first pass reads from cache
        // too. (No loop of prefetches only: a compiler may drop a loop without effects.)
        template <class T, std::uint64_t Mask>
        class lines_ahead
        {
        public:

            static constexpr bool asks = true;

            // For a pass of `lines` whole lines.
            lines_ahead(const tensor_slots<T>& next, std::size_t lines) noexcept
                : m_arrays(arrays_of(next, std::make_index_sequence<first_local>{})), m_bytes(next.size * sizeof(T))
            {
                const std::size_t next_lines = (m_bytes + cache_line - 1) / cache_line;
                const std::size_t own_lines = std::max<std::size_t>(lines, 1);
                m_stride = (next_lines + own_lines - 1) / own_lines * cache_line;
            }

            // Line k of the pass.
            [[gnu::always_inline]] void ask(std::size_t k) const noexcept
            {
                const std::size_t at = offset(k);
                if (at < m_bytes)
                {
                    ask_at(at, std::make_index_sequence<count()>{});
                }
            }

            // The byte its line k asks for in each array (none at or past the end).
            std::size_t offset(std::size_t k) const noexcept
            {
                return k * m_stride;
            }

            const auto& arrays() const noexcept
            {
                return m_arrays;
            }

        private:

            static constexpr bool asked(std::size_t slot) noexcept
            {
                return (Mask >> slot & 1) != 0 && slot != carry_slot;
            }

            static constexpr std::size_t count() noexcept
            {
                std::size_t n = 0;
                for (std::size_t slot = 0; slot < first_local; ++slot)
                {
                    n += asked(slot) ? 1 : 0;
                }
                return n;
            }

            template <std::size_t... I>
            static std::array<const char*, count()> arrays_of(const tensor_slots<T>& next,
                                                             std::index_sequence<I...>) noexcept
            {
                std::array<const char*, count()> a{};
                std::size_t k = 0;
                ((asked(I) ? void(a[k++] = reinterpret_cast<const char*>(slot_pointer<I>(next))) : void()), ...);
                return a;
            }

            template <std::size_t... A>
            [[gnu::always_inline]] void ask_at(std::size_t at, std::index_sequence<A...>) const noexcept
            {
                (arch::prefetch_outer(m_arrays[A] + at), ...);
            }

            std::array<const char*, count()> m_arrays;
            std::size_t m_bytes;
            std::size_t m_stride = 0;
        };
    }

    // Runs the program over elements [begin, end) of one parameter's tensors. The tail
    // shorter than a batch goes through a zero-padded copy and the very same batch code,
    // so every element gets bit-identical arithmetic wherever a range boundary falls.
    // `ahead` (detail::lines_ahead) asks for another tensor's lines as the pass goes.
    template <class Arch, class T, class Prepared, class Traits, class Ahead = detail::nothing_ahead>
    void run_prepared(const Prepared& prog, const grad_transform& transform, const tensor_slots<T>& slots,
                      std::size_t begin, std::size_t end, const Ahead& ahead = {})
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
            if constexpr (Ahead::asks)
            {
                const Ahead local_ahead = ahead;
                // A line's worth of batches at a time, each after asking for its line
                // of the other tensor.
                constexpr std::size_t per_line = std::max<std::size_t>(1, detail::cache_line / sizeof(batch));
                for (std::size_t line = 0; i + per_line * width <= end; i += per_line * width, ++line)
                {
                    local_ahead.ask(line);
                    for (std::size_t j = 0; j < per_line; ++j)
                    {
                        detail::run_batch<Traits, Prepared, batch>(local_prog, local_transform, s, i + j * width);
                    }
                }
            }
            for (; i + width <= end; i += width)
            {
                detail::run_batch<Traits, Prepared, batch>(local_prog, local_transform, s, i);
            }
        }
        if (i < end)
        {
            const std::size_t rest = end - i;
            alignas(64) T buffer[first_local * width] = {};
            const tensor_slots<T> tail = detail::tail_slots<width>(buffer, s);
            detail::copy_slots<Traits::loads>(buffer, width, s, i, rest, slot_indices{});
            detail::run_batch<Traits, Prepared, batch>(prog, detail::prepared_transform<batch>(transform), tail, 0);
            detail::copy_back_slots<Traits::stores>(buffer, width, s, i, rest, slot_indices{});
        }
    }

    namespace detail
    {
        /**************
         * Reductions *
         **************/

        // The reductions of a program's finalizing assignments, in order (depth first,
        // left to right): the order the pass accumulates them in and the finalizers read
        // their sums in.
        template <class E>
        std::tuple<> reductions_of(const E&);
        template <class Kind, class E>
        std::tuple<reduction<Kind, E>> reductions_of(const reduction<Kind, E>& r);
        template <class Op, class A>
        auto reductions_of(const node<Op, A>& n);
        template <class Op, class A, class C>
        auto reductions_of(const node<Op, A, C>& n);
        template <class Op, class A, class C, class D>
        auto reductions_of(const node<Op, A, C, D>& n);

        template <class E>
        std::tuple<> reductions_of(const E&)
        {
            return {};
        }

        template <class Kind, class E>
        std::tuple<reduction<Kind, E>> reductions_of(const reduction<Kind, E>& r)
        {
            return {r};
        }

        template <class Op, class A>
        auto reductions_of(const node<Op, A>& n)
        {
            return reductions_of(n.a);
        }

        template <class Op, class A, class C>
        auto reductions_of(const node<Op, A, C>& n)
        {
            return std::tuple_cat(reductions_of(n.a), reductions_of(n.b));
        }

        template <class Op, class A, class C, class D>
        auto reductions_of(const node<Op, A, C, D>& n)
        {
            return std::tuple_cat(reductions_of(n.a), reductions_of(n.b), reductions_of(n.c));
        }

        inline std::tuple<> program_reductions(const program<>&)
        {
            return {};
        }

        template <std::size_t I, class E, class... R>
        auto program_reductions(const program<assignment<I, E>, R...>& p)
        {
            if constexpr (I >= first_scalar)
            {
                return std::tuple_cat(reductions_of(p.first.rhs), program_reductions(p.rest));
            }
            else
            {
                return program_reductions(p.rest);
            }
        }

        // The running sums of one reduction over a range: 16 double lanes, element e of
        // the range (from its first element) going to lane e mod 16 whatever the batch
        // width, the lanes added in one fixed tree at the end. So a sum depends only on
        // the range, not on the instruction set or the thread split.
        template <class T, class Arch>
        class reduction_lanes
        {
        public:

            using batch = xsimd::batch<T, Arch>;
            using dbatch = xsimd::batch<double, Arch>;
            static constexpr std::size_t lanes = 16;
            static constexpr std::size_t positions = lanes / batch::size;  // batches per 16 elements
            static_assert(lanes % batch::size == 0, "xoptim: a batch width that does not divide 16");

            reduction_lanes() noexcept
            {
                m_acc.fill(dbatch(0.0));
            }

            // Adds x, the batch at position J of its group of 16 elements.
            template <class Kind, std::size_t J>
            [[gnu::always_inline]] void add(const batch& x) noexcept
            {
                if constexpr (std::is_same_v<T, double>)
                {
                    put<Kind>(m_acc[J], x);
                }
                else
                {
                    const auto halves = arch::widen_halves(x);
                    put<Kind>(m_acc[2 * J], halves[0]);
                    put<Kind>(m_acc[2 * J + 1], halves[1]);
                }
            }

            // (l[k] + l[k + 8]) for k = 0..7, then those eight pairwise.
            double total() const noexcept
            {
                alignas(64) double l[lanes];
                for (std::size_t k = 0; k < m_acc.size(); ++k)
                {
                    m_acc[k].store_unaligned(l + k * dbatch::size);
                }
                double e[8];
                for (std::size_t k = 0; k < 8; ++k)
                {
                    e[k] = l[k] + l[k + 8];
                }
                return arch::sum_of_eight(e);
            }

        private:

            template <class Kind>
            [[gnu::always_inline]] static void put(dbatch& acc, const dbatch& x) noexcept
            {
                if constexpr (std::is_same_v<Kind, reduce_sum_squares>)
                {
                    acc = arch::fma(x, x, acc);
                }
                else
                {
                    acc = acc + x;
                }
            }

            std::array<dbatch, lanes / dbatch::size> m_acc;
        };

        // The running count of a count reduction over a range: the condition's 1s and 0s
        // added in the element type, one accumulator per position of a group of 16
        // elements. Every partial count is an integer below 2^24 (a range of fewer than
        // 2^28 elements), so exact, and so is the total, in any order.
        template <class T, class Arch>
        class count_lanes
        {
        public:

            using batch = xsimd::batch<T, Arch>;
            static constexpr std::size_t positions = 16 / batch::size;

            count_lanes() noexcept
            {
                m_acc.fill(batch(T(0)));
            }

            // Adds x (1 where the condition holds, else 0), the batch at position J.
            template <class Kind, std::size_t J>
            [[gnu::always_inline]] void add(const batch& x) noexcept
            {
                m_acc[J] = m_acc[J] + x;
            }

            double total() const noexcept
            {
                alignas(64) T l[16];
                for (std::size_t k = 0; k < positions; ++k)
                {
                    m_acc[k].store_aligned(l + k * batch::size);
                }
                double n = 0;
                for (const T x : l)
                {
                    n += double(x);
                }
                return n;
            }

        private:

            std::array<batch, positions> m_acc;
        };

        template <class T, class Arch, class Kind>
        using lanes_of = std::conditional_t<std::is_same_v<Kind, reduce_count>, count_lanes<T, Arch>,
                                            reduction_lanes<T, Arch>>;

        template <class T, class Arch, class Reductions, std::size_t... R>
        std::tuple<lanes_of<T, Arch, typename std::tuple_element_t<R, Reductions>::kind>...> make_reduction_lanes(
            std::index_sequence<R...>);

        // A reduction's term for one batch: its expression's value, or for a count 1 where
        // the condition holds and 0 elsewhere.
        template <class Kind, class B, class V>
        [[gnu::always_inline]] inline B reduction_term(const V& v)
        {
            if constexpr (std::is_same_v<Kind, reduce_count>)
            {
                return xsimd::select(v, B(typename B::value_type(1)), B(typename B::value_type(0)));
            }
            else
            {
                return B(v);
            }
        }

        // One batch of a reducing pass: the element assignments, then every reduction's
        // expression added to its lanes. `rest` < width only for the zero-padded tail,
        // whose padding lanes must not reach the sums.
        template <class Traits, std::size_t J, class Prepared, class Reductions, class Lanes, class B, class T,
                  std::size_t... R>
        [[gnu::always_inline]] inline void run_reducing_batch(const Prepared& prog, const Reductions& reds,
                                                              Lanes& lanes, const prepared_transform<B>& transform,
                                                              const tensor_slots<T>& s, std::size_t i,
                                                              std::size_t rest, std::index_sequence<R...>)
        {
            registers<B> r;
            run_batch<Traits>(prog, transform, s, i, r);
            const auto masked = [&](const B& x) {
                if (rest == B::size)
                {
                    return x;
                }
                alignas(64) T v[B::size];
                x.store_unaligned(v);
                std::fill(v + rest, v + B::size, T(0));
                return B::load_unaligned(v);
            };
            (std::get<R>(lanes).template add<typename std::tuple_element_t<R, Reductions>::kind, J>(
                 masked(reduction_term<typename std::tuple_element_t<R, Reductions>::kind, B>(
                     eval(std::get<R>(reds).e, r)))),
             ...);
        }

        template <std::size_t... J, class F>
        [[gnu::always_inline]] inline void for_positions(std::index_sequence<J...>, F&& f)
        {
            (f(std::integral_constant<std::size_t, J>{}), ...);
        }
    }

    // The reducing form of run_prepared: the same element arithmetic over [begin, end),
    // and the sums of the program's reductions over the range added to sums[0..R).
    template <class Arch, class T, class Prepared, class Traits, class Reductions>
    void run_prepared_reducing(const Prepared& prog, const Reductions& reds, const grad_transform& transform,
                               const tensor_slots<T>& slots, std::size_t begin, std::size_t end, double* sums)
    {
        const tensor_slots<T> s = slots;
        using batch = xsimd::batch<T, Arch>;
        using lanes_type = detail::reduction_lanes<T, Arch>;
        constexpr std::size_t width = batch::size;
        constexpr std::size_t count = std::tuple_size_v<Reductions>;
        using reduction_indices = std::make_index_sequence<count>;
        using positions = std::make_index_sequence<lanes_type::positions>;
        decltype(detail::make_reduction_lanes<T, Arch, Reductions>(reduction_indices{})) lanes;
        const Prepared local_prog = prog;
        const Reductions local_reds = reds;
        const detail::prepared_transform<batch> transform_b(transform);
        std::size_t i = begin;
        for (; i + lanes_type::lanes <= end; i += lanes_type::lanes)
        {
            detail::for_positions(positions{}, [&](auto j) {
                detail::run_reducing_batch<Traits, decltype(j)::value>(local_prog, local_reds, lanes, transform_b, s,
                                                                       i + j * width, width, reduction_indices{});
            });
        }
        // Fewer than 16 left: whole batches at their positions, then the padded tail.
        detail::for_positions(positions{}, [&](auto j) {
            constexpr std::size_t J = decltype(j)::value;
            const std::size_t at = i + J * width;
            if (at + width <= end)
            {
                detail::run_reducing_batch<Traits, J>(local_prog, local_reds, lanes, transform_b, s, at, width,
                                                      reduction_indices{});
            }
            else if (at < end)
            {
                const std::size_t rest = end - at;
                using slot_indices = std::make_index_sequence<first_local>;
                alignas(64) T buffer[first_local * width] = {};
                const tensor_slots<T> tail = detail::tail_slots<width>(buffer, s);
                detail::copy_slots<Traits::loads>(buffer, width, s, at, rest, slot_indices{});
                detail::run_reducing_batch<Traits, J>(local_prog, local_reds, lanes, transform_b, tail, 0, rest,
                                                      reduction_indices{});
                detail::copy_back_slots<Traits::stores>(buffer, width, s, at, rest, slot_indices{});
            }
        });
        std::apply([&](const auto&... l) { ((*sums++ += l.total()), ...); }, lanes);
    }

    // Broadcasts the program's scalars for element type T on architecture Arch.
    template <class Arch, class T, class... A>
    auto prepare_program(const program<A...>& p)
    {
        return detail::prepare_program<xsimd::batch<T, Arch>>(p);
    }
}

#endif
