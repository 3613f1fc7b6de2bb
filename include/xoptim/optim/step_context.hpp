// What an optimizer's update sees: the step number, the step's gradient transform, and
// ways to run fused programs over every parameter (optimizer<D>::commit makes one).
#ifndef XOPTIM_OPTIM_STEP_CONTEXT_HPP
#define XOPTIM_OPTIM_STEP_CONTEXT_HPP

#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>

#include "../engine/executor.hpp"
#include "../params/param_set.hpp"
#include "state.hpp"

namespace xoptim
{
    // What an optimizer's update sees: the step number and a way to run a program.
    template <unsigned Types>
    class step_context
    {
    public:

        step_context(std::size_t t, std::size_t states, const state_store& store, job_list<float>& f,
                     job_list<double>& d, coded_job_list& c, const grad_transform& transform) noexcept
            : m_t(t), m_states(states), m_store(store), m_floats(f), m_doubles(d), m_coded(c), m_transform(transform)
        {
        }

        // Calls f(entry, slots) for every parameter in order, with its state entry (name,
        // shape) and its tensors: for the work between fused passes that is not
        // element-wise (Muon's Newton-Schulz). A parameter with coded tensors shows its
        // float tensors only (its scratch states are always float).
        template <class F>
        void for_each_parameter(F&& f) const
        {
            walk<false>(f);
        }

        // Calls f(entry, job) for every parameter in order, `job` its tensor_slots<float>
        // or <double>, or its coded_slots where it has coded tensors (bf16, 8-bit): for an
        // optimizer that builds job lists of its own from them (Adafactor's rows).
        template <class F>
        void for_each_job(F&& f) const
        {
            walk<true>(f);
        }

        // Whether this step runs coded tensors (its kernels compiled: set_storage).
        static constexpr bool runs_coded = (Types & detail::coded_bit) != 0;

        // Step number, starting at 1 for the first step.
        std::size_t count() const noexcept
        {
            return m_t;
        }

        // How every pass of this step sees the gradient (clipping, accumulation mean).
        const grad_transform& transform() const noexcept
        {
            return m_transform;
        }

        // The optimizer's number over all its tensors (contract.hpp: whole_set_total),
        // computed before any tensor changed; over a param_groups, every group's added.
        // 0 where its shards() is not whole_set.
        double whole_set_total() const noexcept
        {
            return m_whole_set_total;
        }

        void set_whole_set_total(double total) noexcept
        {
            m_whole_set_total = total;
        }

        // Fuses the assignments into one pass and runs it over every parameter, the
        // gradient seen through the step's transform (clipping, accumulation mean).
        template <class... A>
        void run(A&&... assignments) const
        {
            run_fused(fuse(std::forward<A>(assignments)...));
        }

        // The same for assignments already fused: run_fused(fuse(a, b)) is run(a, b).
        template <class... A>
        void run_fused(const program<A...>& prog) const
        {
            check_program<program<A...>>();
            for_each_list([&](const auto& jobs) { run_program(prog, jobs, m_transform); });
        }

        // run(first...), then between(job, scalars) for each parameter, then
        // run(second...), for an update whose second pass reads the per-tensor scalars
        // (sym::scalar<K>) that the first pass's finalizing assignments and `between`
        // set: the same bits, but a small tensor goes through the three at once, its
        // second pass reading its arrays from cache (engine/executor.hpp run_in_turn).
        // `job` is the parameter's tensor_slots<float> or <double>, or its coded_slots;
        // `scalars` its job_scalars.
        template <class... A, class Between, class... B>
        void run_in_turn(const program<A...>& first, const Between& between, const program<B...>& second) const
        {
            check_program<program<A...>>();
            check_program<program<B...>>();
            for_each_list([&](const auto& jobs) { xoptim::run_in_turn(first, between, second, jobs, m_transform); });
        }

        // The same, where `first` also writes sym::carried (an array of the tensor's size)
        // and `second` reads it instead of computing again what `first` wrote there
        // (LAMB's update): engine/executor.hpp run_carrying. Float and double states
        // only; the carried array takes the last state slot, so the update has fewer than
        // max_states states. A tensor of more than detail::in_turn_limit elements
        // carries through an array of its size, kept across steps for the biggest.
        template <class... A, class Between, class... B>
        void run_carrying(const program<A...>& first, const Between& between, const program<B...>& second) const
        {
            check_program<program<A...>, true>();
            check_program<program<B...>, true>();
            for_each_list([&](const auto& jobs) { xoptim::run_carrying(first, between, second, jobs, m_transform); });
        }

        // Runs a program over job lists the optimizer built itself (Adafactor's rows of
        // matrix views: a job per row, its statistics as per-job scalars and a state
        // slot), the gradient seen through the step's transform.
        template <class Slots, class... A>
        void run_on(const basic_job_list<Slots>& jobs, A&&... assignments) const
        {
            if (!jobs.empty())
            {
                run_program(fuse(std::forward<A>(assignments)...), jobs, m_transform);
            }
        }

        // The sum over every parameter of one reduction, in one pass: `step.total(sum_squares(g))`
        // is the squared global norm of the gradients as the step sees them. Each tensor's sum
        // as a finalizer gets it, added in a fixed order (float, then bf16/8-bit, then double
        // parameters, each in order): the same for any thread count.
        template <class Kind, class E>
        double total(const reduction<Kind, E>& r) const
        {
            run(symbol<total_scalar>{} = r);
            double sum = 0;
            for_each_list([&](const auto& jobs) {
                for (std::size_t k = 0; k < jobs.size(); ++k)
                {
                    sum += jobs.scalars(k)[max_scalars];
                }
            });
            return sum;
        }

    private:

        // Before any pass writes: the program's states exist (and leave the carried
        // array's slot free), and coded tensors have kernels.
        template <class Program, bool Carries = false>
        void check_program() const
        {
            if (detail::states_used<detail::program_traits<Program>, Carries>() > m_states)
            {
                throw std::logic_error("xoptim: the update uses more state tensors than num_states() created");
            }
            if (Carries && m_states > carry_slot - first_state)
            {
                throw std::logic_error("xoptim: an update that carries an array (sym::carried) leaves the last state slot "
                                       "free: at most " + std::to_string(carry_slot - first_state) +
                                       " states, num_states() created " + std::to_string(m_states));
            }
            if ((Types & detail::coded_bit) == 0 && !m_coded.empty())
            {
                throw std::logic_error("xoptim: coded tensors in a step compiled without their kernels");
            }
        }

        // Calls f(jobs) for each job list this step runs, in the fixed order float,
        // bf16/8-bit (where there are any), double.
        template <class F>
        void for_each_list(F&& f) const
        {
            if constexpr ((Types & detail::float_bit) != 0)
            {
                f(m_floats);
            }
            if constexpr ((Types & detail::coded_bit) != 0)
            {
                if (!m_coded.empty())
                {
                    f(m_coded);
                }
            }
            if constexpr ((Types & detail::double_bit) != 0)
            {
                f(m_doubles);
            }
        }

        // Calls f(entry, job) for every parameter in order, a coded parameter shown whole
        // (Whole) or by its float tensors.
        template <bool Whole, class F>
        void walk(F&& f) const
        {
            std::size_t floats = 0;
            std::size_t doubles = 0;
            std::size_t coded = 0;
            for (std::size_t k = 0; k < m_store.size(); ++k)
            {
                const state_store::entry& e = m_store[k];
                if (e.type != dtype::float64)
                {
                    if constexpr ((Types & detail::float_bit) != 0)
                    {
                        if (e.plain())
                        {
                            f(e, m_floats[floats]);
                            ++floats;
                        }
                        else
                        {
                            if constexpr (Whole)
                            {
                                f(e, m_coded[coded]);
                            }
                            else
                            {
                                f(e, m_coded[coded].plain);
                            }
                            ++coded;
                        }
                    }
                }
                else
                {
                    if constexpr ((Types & detail::double_bit) != 0)
                    {
                        f(e, m_doubles[doubles]);
                        ++doubles;
                    }
                }
            }
        }

        std::size_t m_t;
        std::size_t m_states;
        const state_store& m_store;
        job_list<float>& m_floats;
        job_list<double>& m_doubles;
        coded_job_list& m_coded;
        grad_transform m_transform;
        double m_whole_set_total = 0;
    };
}

#endif
