// Shared pieces of the benchmark programs: the cases, the naming scheme and the
// xoptim runner (bench_step.cpp and bench_libtorch.cpp both time xoptim AdamW, so
// that every comparison is made side by side in one process).
//
// Benchmark names are  <algorithm>/<implementation>/<case>/threads:<n>,  e.g.
// "adamw/xoptim/4096x4096/threads:1"; tools/bench_summary.py parses them.
#ifndef XOPTIM_BENCH_COMMON_HPP
#define XOPTIM_BENCH_COMMON_HPP

#include <algorithm>
#include <cstddef>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>

#include <xoptim/xoptim.hpp>

namespace bench
{
    // `count` tensors of `size` floats each.
    struct shape
    {
        const char* name;
        std::size_t count;
        std::size_t size;

        std::size_t elements() const noexcept
        {
            return count * size;
        }
    };

    inline constexpr shape case_a{"1x2^24", 1, std::size_t(1) << 24};      // one big tensor
    inline constexpr shape case_b{"4096x4096", 4096, 4096};                // many small tensors
    inline constexpr shape case_c{"1x2^14", 1, std::size_t(1) << 14};      // in cache: compute cost
    inline constexpr shape case_tiny{"16384x16", 16384, 16};                // tiny tensors: the walk's cost

    // AdamW hyperparameters used by every implementation (torch.optim.AdamW defaults).
    inline constexpr double lr = 1e-3;
    inline constexpr double beta1 = 0.9;
    inline constexpr double beta2 = 0.999;
    inline constexpr double eps = 1e-8;
    inline constexpr double weight_decay = 1e-2;

    inline constexpr int repetitions = 7;

    inline std::size_t all_threads()
    {
        return std::max(1u, std::thread::hardware_concurrency());
    }

    // The thread counts every program compares: 1, and all where there are more.
    inline std::vector<std::size_t> thread_counts()
    {
        return all_threads() > 1 ? std::vector<std::size_t>{1, all_threads()} : std::vector<std::size_t>{1};
    }

    inline std::string name(const char* algorithm, const char* impl, const shape& s, std::size_t threads)
    {
        return std::string(algorithm) + "/" + impl + "/" + s.name + "/threads:" + std::to_string(threads);
    }

    // Applies the common settings: wall-clock time (the threads run off the timing
    // thread), medians over repetitions.
    inline benchmark::internal::Benchmark* configure(benchmark::internal::Benchmark* b, const shape& s)
    {
        return b->UseRealTime()
            ->Unit(s.elements() >= (std::size_t(1) << 20) ? benchmark::kMillisecond : benchmark::kMicrosecond)
            ->Repetitions(repetitions)
            ->ReportAggregatesOnly(true);
    }

    // Bytes one step must move: `arrays` arrays of the case's size, each read or
    // written once (a read-modify-write array counts twice).
    inline void set_bytes(benchmark::State& st, const shape& s, std::size_t arrays, std::size_t threads)
    {
        st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * static_cast<std::int64_t>(arrays)
                             * static_cast<std::int64_t>(s.elements() * sizeof(float)));
        st.counters["threads"] = static_cast<double>(threads);
    }

    using tensor_list = std::vector<std::vector<float>>;

    inline tensor_list make_list(const shape& s, float value)
    {
        return tensor_list(s.count, std::vector<float>(s.size, value));
    }

    // A floor's state arrays, placed as xoptim places an optimizer's: `count` float arrays
    // per tensor of s, from xoptim's own state store (a big tensor's arrays at their page
    // offsets: optim/state.hpp), each filled with `value`.
    class floor_states
    {
    public:

        floor_states(const shape& s, std::size_t count, float value)
        {
            xoptim::state_layout layout;
            layout.count = count;
            for (std::size_t j = 0; j < s.count; ++j)
            {
                const auto& e = m_store.add("t", xoptim::dtype::float32, {s.size}, s.size, layout);
                for (std::size_t k = 0; k < count; ++k)
                {
                    std::fill_n(e.state<float>(k), s.size, value);
                }
            }
        }

        float* at(std::size_t tensor, std::size_t k) const noexcept
        {
            return m_store[tensor].state<float>(k);
        }

    private:

        xoptim::state_store m_store;
    };

    // Steady-state xoptim steps: one untimed step creates the state first. Case A is a
    // single std::vector<float>, the others a std::vector of them. Vec can change the
    // parameter and gradient container (an aligned allocator for the diagnostic runs).
    template <class Vec = std::vector<float>, class Optimizer>
    void run_xoptim(benchmark::State& st, const shape& s, std::size_t arrays, std::size_t threads, Optimizer opt)
    {
        xoptim::set_num_threads(threads);
        if (s.count == 1)
        {
            Vec p(s.size, 0.5f);
            Vec g(s.size, 1e-3f);
            opt.step(p, g);
            for (auto _ : st)
            {
                opt.step(p, g);
                benchmark::ClobberMemory();
            }
            benchmark::DoNotOptimize(p.data());
        }
        else
        {
            std::vector<Vec> p(s.count, Vec(s.size, 0.5f));
            std::vector<Vec> g(s.count, Vec(s.size, 1e-3f));
            opt.step(p, g);
            for (auto _ : st)
            {
                opt.step(p, g);
                benchmark::ClobberMemory();
            }
            benchmark::DoNotOptimize(p.data());
        }
        set_bytes(st, s, arrays, threads);
    }

    inline xoptim::adamw make_adamw()
    {
        xoptim::adamw_options o;
        o.lr = lr;
        o.betas = {beta1, beta2};
        o.eps = eps;
        o.weight_decay = weight_decay;
        return xoptim::adamw(o);
    }

    // AdamW reads p, g, m, v and writes p, m, v.
    inline constexpr std::size_t adamw_arrays = 7;

    // Runs job.run(lo, hi) on pieces of [0, total) cut at multiples of `granularity` as
    // xoptim cuts a step, one per thread of xoptim's own pool, with no more threads than
    // one per parallel_threshold() elements (the floors' thread split).
    template <class Job>
    void run_split(const Job& job, std::size_t total, std::size_t granularity, std::size_t threads)
    {
        struct task
        {
            const Job* job;
            std::size_t total;
            std::size_t granularity;

            static void call(void* self, std::size_t k, std::size_t n)
            {
                const auto& t = *static_cast<const task*>(self);
                auto cut = [&](std::size_t j) {
                    const std::size_t e = t.total / n * j + t.total % n * j / n;
                    return j == n ? t.total : e - e % t.granularity;
                };
                t.job->run(cut(k), cut(k + 1));
            }
        };
        task t{&job, total, granularity};
        const std::size_t n = std::min(threads, std::max<std::size_t>(1, total / xoptim::parallel_threshold()));
        xoptim::parallel_run(&task::call, &t, n);
    }

    // A benchmark program's main after its benchmarks are registered: the common
    // context (the xsimd architecture, xoptim's kernels, the hardware threads) plus
    // `context` pairs.
    inline int run_main(int argc, char** argv, const std::vector<std::pair<std::string, std::string>>& context = {})
    {
        benchmark::Initialize(&argc, argv);
        if (benchmark::ReportUnrecognizedArguments(argc, argv))
        {
            return 1;
        }
        benchmark::AddCustomContext("xsimd_arch", xsimd::default_arch::name());
        benchmark::AddCustomContext("xoptim_simd_arch", xoptim::simd_arch());
        benchmark::AddCustomContext("hardware_concurrency", std::to_string(all_threads()));
        for (const auto& [key, value] : context)
        {
            benchmark::AddCustomContext(key, value);
        }
        benchmark::RunSpecifiedBenchmarks();
        benchmark::Shutdown();
        return 0;
    }

    inline void register_xoptim_adamw(const shape& s)
    {
        for (std::size_t t : thread_counts())
        {
            configure(benchmark::RegisterBenchmark(name("adamw", "xoptim", s, t).c_str(),
                                                   [s, t](benchmark::State& st) {
                                                       run_xoptim(st, s, adamw_arrays, t, make_adamw());
                                                   }),
                      s);
        }
    }
}

#endif
