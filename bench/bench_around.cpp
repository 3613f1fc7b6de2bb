// Around the step, side by side in one run:
//   - the global norm + non-finite check (xoptim::reduce_gradients) against one plain
//     read of the same gradients (its memory floor);
//   - a whole AdamW step through xoptim::stepper (guard on, global-norm clipping)
//     against the plain AdamW step: the price of the extra read of the gradients;
//     on 16,384 tensors of 16 floats (case_tiny), the price of the stepper's walk.
//
//   bench_around --benchmark_enable_random_interleaving=true
#include <benchmark/benchmark.h>

#include <xoptim/engine/reduce.hpp>
#include <xoptim/step/stepper.hpp>

#include "bench_common.hpp"

namespace
{
    using namespace bench;

    xoptim::job_list<float> grad_jobs(const tensor_list& g)
    {
        xoptim::job_list<float> jobs;
        for (const auto& t : g)
        {
            xoptim::tensor_slots<float> s;
            s.grad = t.data();
            s.size = t.size();
            jobs.push_back(s);
        }
        return jobs;
    }

    // One read of every element: four independent xsimd sums (the floor of any
    // reduction over the gradients).
    struct read_job
    {
        const xoptim::job_list<float>* jobs;
        float* sums;

        static void task(void* self, std::size_t k, std::size_t n)
        {
            const auto& job = *static_cast<const read_job*>(self);
            using batch = xsimd::batch<float>;
            constexpr std::size_t w = batch::size;
            batch a(0.0f), b(0.0f), c(0.0f), d(0.0f);
            const auto& jobs = *job.jobs;
            for (std::size_t j = jobs.size() * k / n; j < jobs.size() * (k + 1) / n; ++j)
            {
                const float* x = jobs[j].grad;
                const std::size_t size = jobs[j].size;
                std::size_t i = 0;
                for (; i + 4 * w <= size; i += 4 * w)
                {
                    a += batch::load_unaligned(x + i);
                    b += batch::load_unaligned(x + i + w);
                    c += batch::load_unaligned(x + i + 2 * w);
                    d += batch::load_unaligned(x + i + 3 * w);
                }
                for (; i < size; ++i)
                {
                    job.sums[k] += x[i];
                }
            }
            job.sums[k] += xsimd::hadd((a + b) + (c + d));
        }
    };

    void bm_read(benchmark::State& st, const shape& s, std::size_t threads)
    {
        xoptim::set_num_threads(threads);
        const tensor_list g = make_list(s, 1e-3f);
        const auto jobs = grad_jobs(g);
        std::vector<float> sums(threads, 0.0f);
        read_job job{&jobs, sums.data()};
        // Whole tensors per thread (case A has one: split it as the reduction does).
        std::vector<std::vector<float>> pieces;
        xoptim::job_list<float> split;
        if (s.count == 1)
        {
            for (std::size_t k = 0; k < 64; ++k)
            {
                xoptim::tensor_slots<float> slot;
                slot.grad = g[0].data() + s.size / 64 * k;
                slot.size = s.size / 64;
                split.push_back(slot);
            }
            job.jobs = &split;
        }
        for (auto _ : st)
        {
            xoptim::parallel_run(&read_job::task, &job, threads);
            benchmark::DoNotOptimize(sums.data());
        }
        set_bytes(st, s, 1, threads);
    }

    void bm_norm(benchmark::State& st, const shape& s, std::size_t threads)
    {
        xoptim::set_num_threads(threads);
        const tensor_list g = make_list(s, 1e-3f);
        const auto jobs = grad_jobs(g);
        std::vector<double> scratch;
        for (auto _ : st)
        {
            const xoptim::grad_stats r = xoptim::reduce_gradients(jobs, scratch);
            benchmark::DoNotOptimize(r);
        }
        set_bytes(st, s, 1, threads);
    }

    // AdamW through the stepper: guard (skip) and clipping to norm 1, or (diagnostic)
    // neither, which leaves only the stepper's walk over the parameters.
    void bm_stepper(benchmark::State& st, const shape& s, std::size_t threads, bool clip)
    {
        xoptim::set_num_threads(threads);
        xoptim::stepper_options o;
        o.clip_global_norm = clip ? 1.0 : 0.0;
        o.on_non_finite = clip ? xoptim::non_finite::skip : xoptim::non_finite::ignore;
        xoptim::stepper<xoptim::adamw> step(make_adamw(), o);
        tensor_list p = make_list(s, 0.5f);
        const tensor_list g = make_list(s, 1e-3f);
        step(p, g);
        for (auto _ : st)
        {
            step(p, g);
            benchmark::ClobberMemory();
        }
        set_bytes(st, s, adamw_arrays + (clip ? 1 : 0), threads);
    }

    void register_all()
    {
        const std::vector<std::size_t> threads = thread_counts();
        for (const shape& s : {case_a, case_b, case_tiny})
        {
            for (std::size_t t : threads)
            {
                configure(benchmark::RegisterBenchmark(name("norm", "xoptim", s, t).c_str(),
                                                       [s, t](benchmark::State& st) { bm_norm(st, s, t); }),
                          s);
                configure(benchmark::RegisterBenchmark(name("read_floor", "xsimd", s, t).c_str(),
                                                       [s, t](benchmark::State& st) { bm_read(st, s, t); }),
                          s);
            }
            register_xoptim_adamw(s);
            for (std::size_t t : threads)
            {
                configure(benchmark::RegisterBenchmark(name("adamw_clipped", "xoptim_stepper", s, t).c_str(),
                                                       [s, t](benchmark::State& st) { bm_stepper(st, s, t, true); }),
                          s);
                configure(benchmark::RegisterBenchmark(name("adamw_unguarded", "xoptim_stepper", s, t).c_str(),
                                                       [s, t](benchmark::State& st) { bm_stepper(st, s, t, false); }),
                          s);
            }
        }
    }
}

int main(int argc, char** argv)
{
    register_all();
    return bench::run_main(argc, argv);
}
