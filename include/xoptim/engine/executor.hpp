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
    }

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
        }

        void push_back(const Slots& s)
        {
            const std::size_t n = detail::size_of(s);
            m_jobs.push_back(s);
            m_ends.push_back(total() + (n + padding - 1) / padding * padding);
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
    };

    template <class T>
    using job_list = basic_job_list<tensor_slots<T>>;

    using coded_job_list = basic_job_list<coded_slots>;

    namespace detail
    {
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

        template <class Arch, class Slots, class Prepared, class Traits>
        void run_flat_range(const Prepared& prog, const grad_transform& transform, const basic_job_list<Slots>& jobs,
                            std::size_t lo, std::size_t hi)
        {
            for (std::size_t k = jobs.find(lo); k < jobs.size() && lo < hi; ++k)
            {
                const std::size_t base = jobs.begin_of(k);
                const std::size_t end = std::min(hi, base + size_of(jobs[k]));
                if (lo < end)
                {
                    run_job<Arch, Prepared, Traits>(prog, transform, jobs[k], k + 1 < jobs.size() ? &jobs[k + 1] : nullptr,
                                                    lo - base, end - base);
                }
                lo = std::max(lo, std::min(hi, jobs.begin_of(k + 1)));
            }
        }

        template <class Arch, class Slots, class Prepared, class Traits>
        struct parallel_task
        {
            const Prepared* prog;
            const grad_transform* transform;
            const basic_job_list<Slots>* jobs;

            static void call(void* self, std::size_t k, std::size_t n)
            {
                const auto& t = *static_cast<const parallel_task*>(self);
                const std::size_t total = t.jobs->total();
                auto cut = [&](std::size_t j) {
                    const std::size_t e = total / n * j + total % n * j / n;
                    return j == n ? total : e - e % basic_job_list<Slots>::granularity;
                };
                run_flat_range<Arch, Slots, Prepared, Traits>(*t.prog, *t.transform, *t.jobs, cut(k), cut(k + 1));
            }
        };

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

    // Evaluates `prog` over every tensor in `jobs`, threaded when the list is big enough,
    // the gradient seen through `transform`.
    template <class Arch = xsimd::default_arch, class Slots, class... A>
    void run_program(const program<A...>& prog, const basic_job_list<Slots>& jobs, const grad_transform& transform = {})
    {
        using T = typename detail::math_type_of<Slots>::type;
        using traits = detail::program_traits<program<A...>>;
        const auto prepared = prepare_program<Arch, T>(prog);
        using prepared_type = std::decay_t<decltype(prepared)>;
        const std::size_t total = jobs.total();
        const std::size_t per_thread = std::max<std::size_t>(parallel_threshold(), basic_job_list<Slots>::granularity);
        const std::size_t n = std::min(num_threads(), std::max<std::size_t>(1, total / per_thread));
        // One code path for any thread count: the kernel is instantiated once.
        detail::parallel_task<Arch, Slots, prepared_type, traits> task{&prepared, &transform, &jobs};
        parallel_run(&decltype(task)::call, &task, n);
    }
}

#endif
