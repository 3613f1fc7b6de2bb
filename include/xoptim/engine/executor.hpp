// Runs one program over all the tensors of a step.
//
// The parameters of one element type form a job list. The list is cut into equal
// element ranges, one per thread, whatever the tensor boundaries: one huge tensor and
// thousands of tiny ones are split the same way, and a tiny tensor costs a few
// pointer loads, not a dispatch. Parameters with coded slots (bf16, 8-bit) form their
// own list, cut on block boundaries (coded.hpp).
#ifndef XOPTIM_ENGINE_EXECUTOR_HPP
#define XOPTIM_ENGINE_EXECUTOR_HPP

#include <algorithm>
#include <array>
#include <memory>
#include <type_traits>
#include <vector>

#include "coded.hpp"
#include "parallel.hpp"

namespace xoptim
{
    namespace detail
    {
        // Range boundaries fall on whole cache lines of every element type, and on
        // whole blocks of coded tensors.
        inline constexpr std::size_t split_granularity = 64;

        // Coded tensors start on a block boundary of the flat range: each one's extent is
        // rounded up to whole blocks.
        template <class Slots>
        inline constexpr std::size_t padding_of = 1;

        template <>
        inline constexpr std::size_t padding_of<coded_slots> = codec_block;

        template <class T>
        std::size_t size_of(const tensor_slots<T>& s) noexcept
        {
            return s.size;
        }

        inline std::size_t size_of(const coded_slots& s) noexcept
        {
            return s.plain.size;
        }

        // A reducing pass is cut into units that depend on the shapes only: each tensor
        // in pieces of this many elements (whole codec blocks), so each unit's sums, and
        // their sum in unit order, are the same for any thread count.
        inline constexpr std::size_t reduction_unit = std::size_t(1) << 15;

        struct unit
        {
            std::size_t job;
            std::size_t lo;
            std::size_t hi;
            std::size_t start;  // among the pass's elements: where the thread split places it
        };

        // run_in_turn runs both passes over a tensor of 1 to in_turn_limit elements (one
        // reduction unit) one after the other, on one thread: the second pass reads the
        // tensor's arrays (a few of 64 KiB) from the core's cache, where the first left them.
        inline constexpr std::size_t in_turn_limit = std::size_t(1) << 14;
        static_assert(in_turn_limit <= reduction_unit, "xoptim: a tensor run in turn is one reduction unit");

        inline bool runs_in_turn(std::size_t n) noexcept
        {
            return n > 0 && n <= in_turn_limit;
        }

        // The type a job's arithmetic runs in: coded tensors compute in float.
        template <class Slots>
        struct math_type_of;

        template <class T>
        struct math_type_of<tensor_slots<T>>
        {
            using type = T;
        };

        template <>
        struct math_type_of<coded_slots>
        {
            using type = float;
        };
    }

    // The per-tensor scalars of one job (sym::scalar<K>, then step_context::total's), in
    // double: what a finalizing assignment wrote, read by the passes after it.
    using job_scalars = std::array<double, max_scalars + 1>;

    // The tensors of one step, as one flat range of elements, cut into thread ranges
    // at multiples of `granularity`.
    template <class Slots>
    class basic_job_list
    {
    public:

        static constexpr std::size_t padding = detail::padding_of<Slots>;
        static constexpr std::size_t granularity = std::max(padding, detail::split_granularity);

        // Keeps the capacity: a step that clears and refills allocates nothing.
        void clear() noexcept
        {
            m_jobs.clear();
            m_ends.clear();
            m_scalars.clear();
        }

        void push_back(const Slots& s)
        {
            const std::size_t n = detail::size_of(s);
            m_jobs.push_back(s);
            m_ends.push_back(total() + (n + padding - 1) / padding * padding);
            m_scalars.push_back({});
        }

        // The step's per-tensor values: written by the executor between passes, on the
        // calling thread, or, for a tensor run in turn, by the one thread that runs it.
        job_scalars& scalars(std::size_t k) const noexcept
        {
            return m_scalars[k];
        }

        // Scratch of the reducing passes (units, their partial sums), kept across steps:
        // a steady step allocates nothing.
        std::vector<detail::unit>& units() const noexcept
        {
            return m_units;
        }

        std::vector<double>& partials() const noexcept
        {
            return m_partials;
        }

        // run_carrying's carried array for a tensor of more than one unit, each unit
        // writing its window: as many elements as the biggest such tensor.
        std::vector<typename detail::math_type_of<Slots>::type>& carried() const noexcept
        {
            return m_carried;
        }

        std::size_t size() const noexcept
        {
            return m_jobs.size();
        }

        bool empty() const noexcept
        {
            return m_jobs.empty();
        }

        std::size_t total() const noexcept
        {
            return m_ends.empty() ? 0 : m_ends.back();
        }

        const Slots& operator[](std::size_t k) const noexcept
        {
            return m_jobs[k];
        }

        Slots& operator[](std::size_t k) noexcept
        {
            return m_jobs[k];
        }

        // Index of the job holding flat element `e`.
        std::size_t find(std::size_t e) const noexcept
        {
            return static_cast<std::size_t>(std::upper_bound(m_ends.begin(), m_ends.end(), e) - m_ends.begin());
        }

        std::size_t begin_of(std::size_t k) const noexcept
        {
            return k == 0 ? 0 : m_ends[k - 1];
        }

    private:

        std::vector<Slots> m_jobs;
        std::vector<std::size_t> m_ends;
        mutable std::vector<job_scalars> m_scalars;
        mutable std::vector<detail::unit> m_units;
        mutable std::vector<double> m_partials;
        mutable std::vector<typename detail::math_type_of<Slots>::type> m_carried;
    };

    template <class T>
    using job_list = basic_job_list<tensor_slots<T>>;

    using coded_job_list = basic_job_list<coded_slots>;

    namespace detail
    {
        template <class Traits, class T>
        void set_scalars(tensor_slots<T>& s, const job_scalars& values) noexcept
        {
            if constexpr ((Traits::loads & scalar_mask) != 0)
            {
                for (std::size_t k = 0; k < max_scalars; ++k)
                {
                    s.scalars[k] = static_cast<T>(values[k]);
                }
            }
        }

        // The job's tensors with its scalars, for a program that reads them.
        template <class Traits, class T>
        tensor_slots<T> with_scalars(const tensor_slots<T>& s, const job_scalars& values) noexcept
        {
            tensor_slots<T> out = s;
            set_scalars<Traits>(out, values);
            return out;
        }

        template <class Traits>
        coded_slots with_scalars(const coded_slots& s, const job_scalars& values) noexcept
        {
            coded_slots out = s;
            set_scalars<Traits>(out.plain, values);
            return out;
        }

        template <class Arch, class Prepared, class Traits, class T>
        void run_job(const Prepared& prog, const grad_transform& transform, const tensor_slots<T>& s,
                     const tensor_slots<T>*, std::size_t begin, std::size_t end)
        {
            run_prepared<Arch, T, Prepared, Traits>(prog, transform, s, begin, end);
        }

        template <class Arch, class Prepared, class Traits>
        void run_job(const Prepared& prog, const grad_transform& transform, const coded_slots& s,
                     const coded_slots* next, std::size_t begin, std::size_t end)
        {
            run_coded<Arch, Prepared, Traits>(prog, transform, s, next, begin, end);
        }

        // The lines of one job's description, asked for before it is read.
        template <class Slots>
        [[gnu::always_inline]] inline void prefetch_job(const Slots& job) noexcept
        {
            const char* bytes = reinterpret_cast<const char*>(&job);
            for (std::size_t i = 0; i < sizeof(Slots); i += cache_line)
            {
                arch::prefetch(bytes + i);
            }
            arch::prefetch(bytes + sizeof(Slots) - 1);
        }

        // The jobs' elements in flat range [lo, hi); with SkipInTurn, not those of the
        // tensors run_in_turn ran whole. The description of the job after next is asked
        // for as each job starts: with thousands of small tensors, reading each where it
        // is needed waited on memory (run_coded reads the next one's scales ahead).
        template <class Arch, class Slots, class Prepared, class Traits, bool SkipInTurn = false>
        void run_flat_range(const Prepared& prog, const grad_transform& transform, const basic_job_list<Slots>& jobs,
                            std::size_t lo, std::size_t hi)
        {
            for (std::size_t k = jobs.find(lo); k < jobs.size() && lo < hi; ++k)
            {
                const std::size_t base = jobs.begin_of(k);
                const std::size_t end = std::min(hi, base + size_of(jobs[k]));
                if (k + 2 < jobs.size())
                {
                    prefetch_job(jobs[k + 2]);
                }
                if (lo < end && !(SkipInTurn && runs_in_turn(size_of(jobs[k]))))
                {
                    const Slots* next = k + 1 < jobs.size() ? &jobs[k + 1] : nullptr;
                    if constexpr ((Traits::loads & scalar_mask) != 0)
                    {
                        run_job<Arch, Prepared, Traits>(prog, transform, with_scalars<Traits>(jobs[k], jobs.scalars(k)),
                                                        next, lo - base, end - base);
                    }
                    else
                    {
                        run_job<Arch, Prepared, Traits>(prog, transform, jobs[k], next, lo - base, end - base);
                    }
                }
                lo = std::max(lo, std::min(hi, jobs.begin_of(k + 1)));
            }
        }

        // Where thread j of n starts in `total` elements split at multiples of `granularity`.
        inline std::size_t share_start(std::size_t total, std::size_t j, std::size_t n, std::size_t granularity) noexcept
        {
            const std::size_t e = total / n * j + total % n * j / n;
            return j == n ? total : e - e % granularity;
        }

        // The threads an element-wise pass over `total` elements runs on.
        inline std::size_t threads_for(std::size_t total, std::size_t granularity) noexcept
        {
            const std::size_t per_thread = std::max<std::size_t>(parallel_threshold(), granularity);
            return std::min(num_threads(), std::max<std::size_t>(1, total / per_thread));
        }

        template <class Arch, class Slots, class Prepared, class Traits, bool SkipInTurn = false>
        struct parallel_task
        {
            const Prepared* prog;
            const grad_transform* transform;
            const basic_job_list<Slots>* jobs;

            static void call(void* self, std::size_t k, std::size_t n)
            {
                const auto& t = *static_cast<const parallel_task*>(self);
                constexpr std::size_t granularity = basic_job_list<Slots>::granularity;
                const std::size_t total = t.jobs->total();
                run_flat_range<Arch, Slots, Prepared, Traits, SkipInTurn>(
                    *t.prog, *t.transform, *t.jobs, share_start(total, k, n, granularity),
                    share_start(total, k + 1, n, granularity));
            }
        };

        // A non-finalizing program over every job, threaded when the list is big enough.
        template <class Arch, class T, class Traits, bool SkipInTurn = false, class Slots, class... A>
        void run_parallel(const program<A...>& prog, const basic_job_list<Slots>& jobs, const grad_transform& transform)
        {
            const auto prepared = prepare_program<Arch, T>(prog);
            using prepared_type = std::decay_t<decltype(prepared)>;
            // One code path for any thread count: the kernel is instantiated once.
            parallel_task<Arch, Slots, prepared_type, Traits, SkipInTurn> task{&prepared, &transform, &jobs};
            parallel_run(&decltype(task)::call, &task, threads_for(jobs.total(), basic_job_list<Slots>::granularity));
        }

        // A prepared non-finalizing program over one job, threaded as run_parallel would.
        template <class Arch, class Prepared, class Traits, class Slots>
        struct job_task
        {
            const Prepared* prog;
            const grad_transform* transform;
            Slots job;

            static void call(void* self, std::size_t k, std::size_t n)
            {
                const auto& t = *static_cast<const job_task*>(self);
                constexpr std::size_t granularity = basic_job_list<Slots>::granularity;
                const std::size_t size = size_of(t.job);
                run_job<Arch, Prepared, Traits>(*t.prog, *t.transform, t.job, static_cast<const Slots*>(nullptr),
                                                share_start(size, k, n, granularity),
                                                share_start(size, k + 1, n, granularity));
            }
        };

        /*******************
         * Reducing passes *
         *******************/

        template <class Arch, class Prepared, class Traits, class Reductions, class T>
        void run_unit(const Prepared& prog, const Reductions& reds, const grad_transform& transform,
                      const tensor_slots<T>& s, std::size_t lo, std::size_t hi, double* sums)
        {
            run_prepared_reducing<Arch, T, Prepared, Traits>(prog, reds, transform, s, lo, hi, sums);
        }

        template <class Arch, class Prepared, class Traits, class Reductions>
        void run_unit(const Prepared& prog, const Reductions& reds, const grad_transform& transform,
                      const coded_slots& s, std::size_t lo, std::size_t hi, double* sums)
        {
            run_coded_reducing<Arch, Prepared, Traits>(prog, reds, transform, s, lo, hi, sums);
        }

        // run_in_turn's carried array (sym::carried), one per thread and element type: as
        // many elements as a unit, so that any unit's first pass may write it; the second
        // pass of a tensor run in turn, on the same thread right after, reads it.
        template <class T>
        T* carry_buffer()
        {
            struct alignas(64) block
            {
                T values[reduction_unit];
            };
            thread_local const std::unique_ptr<block> buffer(new block);
            return buffer->values;
        }

        // What a reducing pass does after each unit: nothing (run_program), or, after a
        // unit that is a whole tensor run in turn, the rest of its step (run_in_turn),
        // given the job as the unit's pass saw it (with `carries`, the unit's elements,
        // from element lo of its tensor, as a job of their own, given its carried array
        // by carrying(job, lo)).
        struct no_follow_up
        {
            static constexpr bool runs_tensors = false;
            static constexpr bool carries = false;

            template <class Slots>
            void operator()(std::size_t, const Slots&, const double*) const noexcept
            {
            }
        };

        // Host work between a finalizing pass and the next: none.
        struct nothing_between
        {
            template <class Slots>
            void operator()(const Slots&, job_scalars&) const noexcept
            {
            }
        };

        template <class Arch, class Slots, class Prepared, class Reductions, class Traits, class FollowUp>
        struct reducing_task
        {
            const Prepared* prog;
            const Reductions* reds;
            const grad_transform* transform;
            const basic_job_list<Slots>* jobs;
            const FollowUp* follow_up;
            std::size_t total;  // the elements of the pass's units

            // Thread k of n runs the units that start in its share of the pass's elements.
            static void call(void* self, std::size_t k, std::size_t n)
            {
                const auto& t = *static_cast<const reducing_task*>(self);
                const std::vector<unit>& units = t.jobs->units();
                const std::size_t total = t.total;
                auto cut = [&](std::size_t j) { return j == n ? total + 1 : total / n * j + total % n * j / n; };
                const auto first_at = [&](std::size_t e) {
                    return std::lower_bound(units.begin(), units.end(), e,
                                            [](const unit& u, std::size_t x) { return u.start < x; });
                };
                constexpr std::size_t count = std::tuple_size_v<Reductions>;
                double* partials = t.jobs->partials().data();
                for (auto u = first_at(cut(k)), last = first_at(cut(k + 1)); u != last; ++u)
                {
                    double* sums = partials + static_cast<std::size_t>(u - units.begin()) * count;
                    std::fill(sums, sums + count, 0.0);
                    const auto run = [&](const Slots& job, std::size_t lo, std::size_t hi) {
                        run_unit<Arch, Prepared, Traits>(*t.prog, *t.reds, *t.transform,
                                                         with_scalars<Traits>(job, t.jobs->scalars(u->job)), lo, hi, sums);
                        (*t.follow_up)(u->job, job, sums);
                    };
                    if constexpr (FollowUp::carries)
                    {
                        run(t.follow_up->carrying(window((*t.jobs)[u->job], u->lo, u->hi - u->lo), u->lo), 0,
                            u->hi - u->lo);
                    }
                    else
                    {
                        run((*t.jobs)[u->job], u->lo, u->hi);
                    }
                }
            }
        };

        // A finalizing assignment's right-hand side, in double, once per tensor: its
        // reductions' sums from `sums` (in program order), scalars from `values`. The
        // operations are the element ones, on one-value batches.
        using host_batch = xsimd::batch<double, arch::host_arch>;

        inline host_batch host_eval(const literal& c, const double*, const job_scalars&)
        {
            return host_batch(c.value);
        }

        template <std::size_t I>
        host_batch host_eval(const symbol<I>&, const double*, const job_scalars& values)
        {
            static_assert(I >= first_scalar, "xoptim: a finalizing assignment reads scalars and reductions only");
            return host_batch(values[I - first_scalar]);
        }

        template <class Kind, class E>
        host_batch host_eval(const reduction<Kind, E>&, const double* sums, const job_scalars&)
        {
            return host_batch(sums[0]);
        }

        template <class Op, class A>
        auto host_eval(const node<Op, A>& n, const double* sums, const job_scalars& values)
        {
            return Op::apply(host_eval(n.a, sums, values));
        }

        template <class Op, class A, class C>
        auto host_eval(const node<Op, A, C>& n, const double* sums, const job_scalars& values)
        {
            return Op::apply(host_eval(n.a, sums, values), host_eval(n.b, sums + reductions_in<A>::value, values));
        }

        template <class Op, class A, class C, class D>
        auto host_eval(const node<Op, A, C, D>& n, const double* sums, const job_scalars& values)
        {
            const double* sums_c = sums + reductions_in<A>::value;
            return Op::apply(host_eval(n.a, sums, values), host_eval(n.b, sums_c, values),
                             host_eval(n.c, sums_c + reductions_in<C>::value, values));
        }

        inline void finalize(const program<>&, const double*, job_scalars&)
        {
        }

        template <std::size_t I, class E, class... R>
        void finalize(const program<assignment<I, E>, R...>& p, const double* sums, job_scalars& values)
        {
            if constexpr (I >= first_scalar)
            {
                values[I - first_scalar] = host_eval(p.first.rhs, sums, values).get(0);
                finalize(p.rest, sums + reductions_in<E>::value, values);
            }
            else
            {
                finalize(p.rest, sums, values);
            }
        }

        // Every job of a list.
        struct every_job
        {
            bool operator()(std::size_t) const noexcept
            {
                return true;
            }
        };

        // A program with finalizing assignments over the jobs k where includes(k): the
        // pass over units, each unit's sums in its own slots, the sums of a tensor added
        // in unit order, then the finalizers and between(job, scalars) per tensor on the
        // calling thread, but for the tensors a follow-up ran whole.
        template <class Arch, class T, class Slots, class Traits, class FollowUp, class Between, class Includes,
                  class... A>
        void run_finalizing(const program<A...>& prog, const basic_job_list<Slots>& jobs,
                            const grad_transform& transform, const FollowUp& follow_up, const Between& between,
                            const Includes& includes)
        {
            const auto prepared = prepare_program<Arch, T>(prog);
            const auto reds = program_reductions(prepared);
            using prepared_type = std::decay_t<decltype(prepared)>;
            using reductions_type = std::decay_t<decltype(reds)>;
            constexpr std::size_t count = std::tuple_size_v<reductions_type>;
            std::vector<unit>& units = jobs.units();
            units.clear();
            std::size_t total = 0;
            for (std::size_t k = 0; k < jobs.size(); ++k)
            {
                if (!includes(k))
                {
                    continue;
                }
                const std::size_t n = size_of(jobs[k]);
                for (std::size_t lo = 0; lo < n; lo += reduction_unit)
                {
                    units.push_back({k, lo, std::min(n, lo + reduction_unit), total + lo});
                }
                total += jobs.begin_of(k + 1) - jobs.begin_of(k);
            }
            jobs.partials().assign(units.size() * count, 0.0);
            const std::size_t per_thread = std::max<std::size_t>(parallel_threshold(), reduction_unit);
            const std::size_t n = std::min({num_threads(), std::max<std::size_t>(1, units.size()),
                                            std::max<std::size_t>(1, total / per_thread)});
            if (!units.empty())
            {
                reducing_task<Arch, Slots, prepared_type, reductions_type, Traits, FollowUp> task{
                    &prepared, &reds, &transform, &jobs, &follow_up, total};
                parallel_run(&decltype(task)::call, &task, n);
            }
            std::size_t u = 0;
            std::array<double, count + 1> sums{};
            for (std::size_t k = 0; k < jobs.size(); ++k)
            {
                if (!includes(k))
                {
                    continue;
                }
                sums.fill(0.0);
                bool first = true;
                for (; u < units.size() && units[u].job == k; ++u, first = false)
                {
                    for (std::size_t r = 0; r < count; ++r)
                    {
                        const double x = jobs.partials()[u * count + r];
                        sums[r] = first ? x : sums[r] + x;
                    }
                }
                if (!(FollowUp::runs_tensors && runs_in_turn(size_of(jobs[k]))))
                {
                    finalize(prog, sums.data(), jobs.scalars(k));
                    between(jobs[k], jobs.scalars(k));
                }
            }
        }

        // The arrays of a job that a program reads from memory (not the carried one).
        template <class Traits>
        inline constexpr std::uint64_t arrays_read =
            Traits::loads & ((std::uint64_t(1) << first_local) - 1) & ~(std::uint64_t(1) << carry_slot);

        // What the second pass of a tensor run in turn asks for ahead: where it reads
        // arrays of its own from memory (a cautious step's p and v, which its first pass
        // does not read), the lines of the arrays either pass reads of the tensor after
        // it (those lines come in beside its own, and that tensor's first pass then reads
        // them from cache); where it reads only what its first pass brought in (LAMB's p
        // and carried u), nothing: it runs from cache, too fast to hide them (asked for
        // there, LAMB's case B went from 0.87 to 1.09 times its floor, AVX2).
        template <class FirstTraits, class SecondTraits>
        inline constexpr std::uint64_t asked_ahead =
            (arrays_read<SecondTraits> & ~arrays_read<FirstTraits>) != 0
                ? arrays_read<FirstTraits> | arrays_read<SecondTraits>
                : 0;

        // The second pass of a tensor run in turn, asking as it goes for the lines of the
        // arrays in Ahead of the tensor after it, where that one runs in turn too. (A
        // coded job asks for the next one's lines itself: run_coded.)
        template <class Arch, class Second, class SecondTraits, std::uint64_t Ahead, class T>
        void run_second_in_turn(const Second& second, const grad_transform& transform, const tensor_slots<T>& job,
                                const tensor_slots<T>* next)
        {
            const std::size_t n = size_of(job);
            if constexpr (Ahead != 0)
            {
                if (next != nullptr && runs_in_turn(size_of(*next)))
                {
                    const lines_ahead<T, Ahead> ahead(*next, n * sizeof(T) / cache_line);
                    run_prepared<Arch, T, Second, SecondTraits>(second, transform, job, 0, n, ahead);
                    return;
                }
            }
            run_prepared<Arch, T, Second, SecondTraits>(second, transform, job, 0, n);
        }

        template <class Arch, class Second, class SecondTraits, std::uint64_t Ahead>
        void run_second_in_turn(const Second& second, const grad_transform& transform, const coded_slots& job,
                                const coded_slots* next)
        {
            run_job<Arch, Second, SecondTraits>(second, transform, job, next, 0, size_of(job));
        }

        // run_in_turn's follow-up of a unit: where the unit is a whole tensor run in
        // turn, the first program's finalizers, between(job, scalars) and the second
        // program over the tensor, at once. With Carries, every unit's job gets the
        // thread's carried array.
        template <class Arch, class Slots, class First, class Between, class Second, class SecondTraits, bool Carries>
        struct in_turn_follow_up
        {
            static constexpr bool runs_tensors = true;
            static constexpr bool carries = Carries;

            const First* first;
            const Between* between;
            const Second* second;
            const grad_transform* transform;
            const basic_job_list<Slots>* jobs;

            Slots carrying(Slots job, std::size_t) const
            {
                job.states[carry_slot - first_state] = carry_buffer<typename math_type_of<Slots>::type>();
                return job;
            }

            void operator()(std::size_t k, const Slots& job, const double* sums) const
            {
                const basic_job_list<Slots>& list = *jobs;
                const std::size_t n = size_of(list[k]);
                if (runs_in_turn(n))
                {
                    job_scalars& values = list.scalars(k);
                    finalize(*first, sums, values);
                    (*between)(list[k], values);
                    const Slots* next = k + 1 < list.size() ? &list[k + 1] : nullptr;
                    run_second_in_turn<Arch, Second, SecondTraits, asked_ahead<program_traits<First>, SecondTraits>>(
                        *second, *transform, with_scalars<SecondTraits>(job, values), next);
                }
            }
        };

        // run_carrying's follow-up of a unit of a tensor bigger than one: the unit's
        // window of the tensor's carried array.
        template <class Slots>
        struct carried_window
        {
            static constexpr bool runs_tensors = false;
            static constexpr bool carries = true;

            typename math_type_of<Slots>::type* carried;

            Slots carrying(Slots job, std::size_t lo) const noexcept
            {
                job.states[carry_slot - first_state] = carried + lo;
                return job;
            }

            void operator()(std::size_t, const Slots&, const double*) const noexcept
            {
            }
        };

        template <class First, class Second>
        constexpr void check_in_turn() noexcept
        {
            static_assert(program_traits<First>::finalizes, "xoptim: run_in_turn's first program sets per-tensor scalars");
            static_assert(!program_traits<Second>::finalizes,
                          "xoptim: run_in_turn's second program sets no per-tensor scalars");
        }
    }

    // Evaluates `prog` over every tensor in `jobs`, threaded when the list is big enough,
    // the gradient seen through `transform`.
    template <class Arch = xsimd::default_arch, class Slots, class... A>
    void run_program(const program<A...>& prog, const basic_job_list<Slots>& jobs, const grad_transform& transform = {})
    {
        using T = typename detail::math_type_of<Slots>::type;
        using traits = detail::program_traits<program<A...>>;
        if constexpr (traits::finalizes)
        {
            detail::run_finalizing<Arch, T, Slots, traits>(prog, jobs, transform, detail::no_follow_up{},
                                                           detail::nothing_between{}, detail::every_job{});
        }
        else
        {
            detail::run_parallel<Arch, T, traits>(prog, jobs, transform);
        }
    }

    // run_program(first), a program that sets per-tensor scalars, then between(job,
    // scalars) for each job, then run_program(second), which reads them: the same bits,
    // but a tensor of 1 to detail::in_turn_limit elements goes through all three at
    // once, on the thread of its first pass, so that its second pass reads its arrays
    // from cache. The other tensors go pass by pass.
    template <class Arch = xsimd::default_arch, class Slots, class... A, class Between, class... B>
    void run_in_turn(const program<A...>& first, const Between& between, const program<B...>& second,
                     const basic_job_list<Slots>& jobs, const grad_transform& transform = {})
    {
        using T = typename detail::math_type_of<Slots>::type;
        using second_traits = detail::program_traits<program<B...>>;
        detail::check_in_turn<program<A...>, program<B...>>();
        const auto prepared = prepare_program<Arch, T>(second);
        using follow_up_type = detail::in_turn_follow_up<Arch, Slots, program<A...>, Between,
                                                         std::decay_t<decltype(prepared)>, second_traits, false>;
        detail::run_finalizing<Arch, T, Slots, detail::program_traits<program<A...>>>(
            first, jobs, transform, follow_up_type{&first, &between, &prepared, &transform, &jobs}, between,
            detail::every_job{});
        for (std::size_t k = 0; k < jobs.size(); ++k)
        {
            if (detail::size_of(jobs[k]) > detail::in_turn_limit)
            {
                detail::run_parallel<Arch, T, second_traits, true>(second, jobs, transform);
                return;
            }
        }
    }

    // The same, where `first` also writes sym::carried, an array of the tensor's size,
    // and `second` reads it instead of computing again what `first` wrote there: a tensor
    // run in turn carries it in the thread's array of one unit; a bigger one goes on its
    // own, pass by pass, both passes threaded, through the job list's carried() array,
    // of the biggest such tensor's size and kept across steps. Float and double jobs.
    template <class Arch = xsimd::default_arch, class Slots, class... A, class Between, class... B>
    void run_carrying(const program<A...>& first, const Between& between, const program<B...>& second,
                      const basic_job_list<Slots>& jobs, const grad_transform& transform = {})
    {
        using T = typename detail::math_type_of<Slots>::type;
        using first_traits = detail::program_traits<program<A...>>;
        using second_traits = detail::program_traits<program<B...>>;
        detail::check_in_turn<program<A...>, program<B...>>();
        static_assert(!std::is_same_v<Slots, coded_slots>, "xoptim: a step with coded states carries nothing");
        constexpr std::uint64_t carry = std::uint64_t(1) << carry_slot;
        static_assert((first_traits::stores & second_traits::loads & carry) != 0 &&
                          ((first_traits::loads | second_traits::stores) & carry) == 0,
                      "xoptim: sym::carried is written by run_carrying's first program and read by its second");
        const auto prepared = prepare_program<Arch, T>(second);
        using prepared_type = std::decay_t<decltype(prepared)>;
        using follow_up_type =
            detail::in_turn_follow_up<Arch, Slots, program<A...>, Between, prepared_type, second_traits, true>;
        const auto small = [&](std::size_t k) { return detail::size_of(jobs[k]) <= detail::in_turn_limit; };
        // The carried array first: where it cannot be had, no tensor has moved yet.
        std::size_t biggest = 0;
        for (std::size_t k = 0; k < jobs.size(); ++k)
        {
            biggest = small(k) ? biggest : std::max(biggest, detail::size_of(jobs[k]));
        }
        std::vector<T>& carried = jobs.carried();
        if (carried.size() < biggest)
        {
            carried = std::vector<T>(biggest);  // exactly: a growing resize may double the capacity
        }
        detail::run_finalizing<Arch, T, Slots, first_traits>(
            first, jobs, transform, follow_up_type{&first, &between, &prepared, &transform, &jobs}, between, small);
        for (std::size_t k = 0; k < jobs.size(); ++k)
        {
            if (small(k))
            {
                continue;
            }
            const std::size_t n = detail::size_of(jobs[k]);
            detail::run_finalizing<Arch, T, Slots, first_traits>(first, jobs, transform,
                                                                 detail::carried_window<Slots>{carried.data()}, between,
                                                                 [k](std::size_t j) { return j == k; });
            detail::job_task<Arch, prepared_type, second_traits, Slots> task{
                &prepared, &transform, detail::with_scalars<second_traits>(jobs[k], jobs.scalars(k))};
            task.job.states[carry_slot - first_state] = carried.data();
            parallel_run(&decltype(task)::call, &task, detail::threads_for(n, basic_job_list<Slots>::granularity));
        }
    }
}

#endif
