// Runs one program over all the tensors of a step.
//
// The parameters of one element type form a job list. The list is cut into equal
// element ranges, one per thread, whatever the tensor boundaries: one huge tensor and
// thousands of tiny ones are split the same way, and a tiny tensor costs a few
// pointer loads, not a dispatch.
#ifndef XOPTIM_ENGINE_EXECUTOR_HPP
#define XOPTIM_ENGINE_EXECUTOR_HPP

#include <algorithm>
#include <vector>

#include "kernel.hpp"
#include "parallel.hpp"

namespace xoptim
{
    template <class T>
    class job_list
    {
    public:

        using value_type = T;

        // Keeps the capacity: a step that clears and refills allocates nothing.
        void clear() noexcept
        {
            m_jobs.clear();
            m_ends.clear();
        }

        void push_back(const tensor_slots<T>& s)
        {
            m_jobs.push_back(s);
            m_ends.push_back(total() + s.size);
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

        const tensor_slots<T>& operator[](std::size_t k) const noexcept
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

        std::vector<tensor_slots<T>> m_jobs;
        std::vector<std::size_t> m_ends;
    };

    namespace detail
    {
        // Range boundaries fall on whole cache lines of every element type.
        inline constexpr std::size_t split_granularity = 64;

        template <class Arch, class T, class Prepared, class Traits>
        void run_flat_range(const Prepared& prog, const grad_transform& transform, const job_list<T>& jobs,
                            std::size_t lo, std::size_t hi)
        {
            for (std::size_t k = jobs.find(lo); k < jobs.size() && lo < hi; ++k)
            {
                const std::size_t base = jobs.begin_of(k);
                const std::size_t end = std::min(hi, base + jobs[k].size);
                run_prepared<Arch, T, Prepared, Traits>(prog, transform, jobs[k], lo - base, end - base);
                lo = end;
            }
        }

        template <class Arch, class T, class Prepared, class Traits>
        struct parallel_task
        {
            const Prepared* prog;
            const grad_transform* transform;
            const job_list<T>* jobs;

            static void call(void* self, std::size_t k, std::size_t n)
            {
                const auto& t = *static_cast<const parallel_task*>(self);
                const std::size_t total = t.jobs->total();
                auto cut = [&](std::size_t j) {
                    const std::size_t e = total / n * j + total % n * j / n;
                    return j == n ? total : e - e % split_granularity;
                };
                run_flat_range<Arch, T, Prepared, Traits>(*t.prog, *t.transform, *t.jobs, cut(k), cut(k + 1));
            }
        };

        template <class P>
        constexpr std::size_t states_used()
        {
            constexpr std::uint64_t touched = (program_traits<P>::loads | program_traits<P>::stores) >> first_state;
            std::size_t n = 0;
            for (std::size_t k = 0; k < max_states; ++k)
            {
                if (touched >> k & 1)
                {
                    n = k + 1;
                }
            }
            return n;
        }
    }

    // Evaluates `prog` over every tensor in `jobs`, threaded when the list is big enough,
    // the gradient seen through `transform`.
    template <class Arch = xsimd::default_arch, class T, class... A>
    void run_program(const program<A...>& prog, const job_list<T>& jobs, const grad_transform& transform = {})
    {
        using traits = detail::program_traits<program<A...>>;
        const auto prepared = prepare_program<Arch, T>(prog);
        using prepared_type = std::decay_t<decltype(prepared)>;
        const std::size_t total = jobs.total();
        const std::size_t per_thread = std::max<std::size_t>(parallel_threshold(), detail::split_granularity);
        const std::size_t n = std::min(num_threads(), std::max<std::size_t>(1, total / per_thread));
        // One code path for any thread count: the kernel is instantiated once.
        detail::parallel_task<Arch, T, prepared_type, traits> task{&prepared, &transform, &jobs};
        parallel_run(&decltype(task)::call, &task, n);
    }
}

#endif
