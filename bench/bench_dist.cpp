// bench_dist: distributed AdamW steps under MPI (docs/benchmarks.md, "Distributed").
//
//     mpiexec -n N bench_dist [--benchmark_filter=...]     N = 1, 2, 4, ...
//     mpiexec -n N bench_dist --steps-only MODE CASE STEPS   (no timing: for measuring bytes)
//
// Every rank runs the same fixed number of steps (the collectives keep them in step);
// rank 0 reports. One xoptim thread per rank. Benchmarks:
//
//   dist_adamw/MODE/CASE/ranks:N   AdamW through data_parallel, MODE data_parallel,
//       zero1, or zero1_collective (ZeRO-1 with mpi_comm's reduce-scatter as MPI's own
//       collective instead of one rooted MPI_Reduce per rank), CASE 1x2^24 (one tensor) or 4096x4096 (4,096 tensors). Time: the step()
//       call, median. Counters per step: pack_ms (gradients into the buckets), comm_ms
//       (waiting for the gradients' collectives), update_ms (the fused step), gather_ms
//       (ZeRO-1: the updated parameters to every rank), payload_MB (what this rank hands
//       to MPI), minimum_MB (2 (N-1)/N of the gradient bytes: a ring allreduce, or a
//       reduce-scatter plus an allgather), state_MB (this rank's optimizer state) and
//       state_share (that over the one-process state).
//   dist_reduce_scatter/ALGORITHM/FLOATS/ranks:N   mpi_comm::reduce_scatter_sum alone,
//       ALGORITHM rooted_reduces (one MPI_Reduce per rank) or collective
//       (MPI_Reduce_scatter_block), FLOATS 2^21, 2^23 or 2^24 floats summed (each rank
//       receives its 1/N). Time: the call, after a barrier, median.
//   dist_overlap/MODE/BACKWARD/ranks:N   16 tensors of 2^20 floats, 8 buckets of 8 MiB.
//       A simulated backward pass frees one gradient at a time, each after `waiting`
//       (sleep: as if computed elsewhere, on an accelerator or other cores) or `busy`
//       (spinning on this rank's core) for 1.2x (the gradients' communication time)/16.
//       BACKWARD after_backward: step() after the whole pass; grad_ready: grad_ready(i)
//       as each gradient is freed. Time: the step() call; counters: backward_ms and
//       iteration_ms (backward + step).
#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <benchmark/benchmark.h>

#include <xoptim/dist/data_parallel.hpp>
#include <xoptim/dist/mpi.hpp>

#include "bench_common.hpp"

namespace
{
    namespace dist = xoptim::dist;
    using clock_type = std::chrono::steady_clock;

    double seconds(clock_type::time_point since)
    {
        return std::chrono::duration<double>(clock_type::now() - since).count();
    }

    dist::mpi_comm& world()
    {
        static dist::mpi_comm comm(MPI_COMM_WORLD);
        return comm;
    }

    dist::mpi_comm& world_collective()
    {
        static dist::mpi_comm comm(MPI_COMM_WORLD, dist::reduce_scatter_algorithm::collective);
        return comm;
    }

    dist::mpi_comm& comm_of(const std::string& mode)
    {
        return mode == "zero1_collective" ? world_collective() : world();
    }

    // A model of `count` tensors of `size` floats, each rank its own gradients.
    struct model
    {
        std::vector<std::vector<float>> p, g;

        model(std::size_t count, std::size_t size)
            : p(count, std::vector<float>(size, 0.5f)), g(count, std::vector<float>(size))
        {
            const float r = float(world().rank() + 1);
            for (auto& t : g)
            {
                for (std::size_t i = 0; i < t.size(); ++i)
                {
                    t[i] = 1e-3f * r * float(1 + i % 7);
                }
            }
        }
    };

    dist::mode mode_of(const std::string& name)
    {
        return name == "data_parallel" ? dist::mode::data_parallel : dist::mode::zero1;
    }

    std::string suffix()
    {
        return "/ranks:" + std::to_string(world().size());
    }

    // Bytes of float gradients `bytes`: what a ring allreduce (or a reduce-scatter plus an
    // allgather) moves per rank at least.
    double minimum_bytes(double bytes)
    {
        const double n = world().size();
        return 2 * (n - 1) / n * bytes;
    }

    template <class DP>
    double payload_bytes(const DP& dp)
    {
        // Data parallel: every bucket is allreduced whole. ZeRO-1: every bucket is
        // reduce-scattered and allgathered; a rank's payload is the bucket both times.
        double bytes = 0;
        for (const auto& b : dp.plan().buckets)
        {
            bytes += double(b.length) * (b.type == xoptim::dtype::float64 ? 8 : 4);
        }
        return dp.dist_options().mode == dist::mode::zero1 ? 2 * bytes : bytes;
    }

    void adamw_steps(benchmark::State& st, const std::string& how, const bench::shape& s)
    {
        model m(s.count, s.size);
        dist::options o;
        o.mode = mode_of(how);
        o.progress_thread = std::getenv("NOTHREAD") == nullptr;
        dist::data_parallel dp(comm_of(how), bench::make_adamw(), o);
        dp.step(m.p, m.g);  // first step: agreement, plan, state
        dist::step_timing sum;
        for (auto _ : st)
        {
            const auto start = clock_type::now();
            dp.step(m.p, m.g);
            st.SetIterationTime(seconds(start));
            const auto& t = dp.last_timing();
            sum.pack += t.pack;
            sum.communicate += t.communicate;
            sum.update += t.update;
            sum.gather += t.gather;
        }
        const double n = double(st.iterations());
        const double grad_bytes = double(s.elements()) * sizeof(float);
        st.counters["pack_ms"] = 1e3 * sum.pack / n;
        st.counters["comm_ms"] = 1e3 * sum.communicate / n;
        st.counters["update_ms"] = 1e3 * sum.update / n;
        st.counters["gather_ms"] = 1e3 * sum.gather / n;
        st.counters["payload_MB"] = world().size() > 1 ? payload_bytes(dp) / 1e6 : 0;
        st.counters["minimum_MB"] = minimum_bytes(grad_bytes) / 1e6;
        st.counters["state_MB"] = double(dp.report().state_bytes) / 1e6;
        st.counters["state_share"] = double(dp.report().state_bytes) / (2 * grad_bytes);
    }

    void reduce_scatter(benchmark::State& st, const dist::mpi_comm& comm, std::size_t floats)
    {
        const auto ranks = std::size_t(comm.size());
        std::vector<float> send(floats, 1.0f), recv(floats / ranks);
        const std::vector<std::size_t> counts(ranks, floats / ranks);
        comm.reduce_scatter_sum(send.data(), recv.data(), counts.data());
        for (auto _ : st)
        {
            MPI_Barrier(comm.native());
            const auto start = clock_type::now();
            comm.reduce_scatter_sum(send.data(), recv.data(), counts.data());
            st.SetIterationTime(seconds(start));
        }
        benchmark::DoNotOptimize(recv.data());
    }

    // Spins (busy) or sleeps (waiting) for `s` seconds.
    void simulate(double s, bool busy)
    {
        if (!busy)
        {
            std::this_thread::sleep_for(std::chrono::duration<double>(s));
            return;
        }
        const auto start = clock_type::now();
        while (seconds(start) < s)
        {
        }
    }

    constexpr std::size_t overlap_tensors = 16;
    constexpr std::size_t overlap_size = std::size_t(1) << 20;

    // The per-gradient backward time: 1.2x the communication of a step, over the
    // gradients (the same on every rank: the mean of their measurements).
    template <class DP>
    double calibrate(DP& dp, model& m)
    {
        std::vector<double> comm;
        for (int k = 0; k < 5; ++k)
        {
            dp.step(m.p, m.g);
            comm.push_back(dp.last_timing().communicate + dp.last_timing().pack);
        }
        std::sort(comm.begin(), comm.end());
        double median = comm[comm.size() / 2];
        world().allreduce_sum(&median, 1);
        return 1.2 * median / world().size() / double(overlap_tensors);
    }

    void overlap_steps(benchmark::State& st, dist::mode how, bool ready, bool busy)
    {
        model m(overlap_tensors, overlap_size);
        dist::options o;
        o.mode = how;
        o.bucket_bytes = std::size_t(8) << 20;
        dist::data_parallel dp(world(), bench::make_adamw(), o);
        const double per_gradient = calibrate(dp, m);
        double backward = 0, iteration = 0;
        for (auto _ : st)
        {
            const auto start = clock_type::now();
            for (std::size_t i = overlap_tensors; i-- > 0;)
            {
                simulate(per_gradient, busy);
                if (ready)
                {
                    dp.grad_ready(i);
                }
            }
            backward += seconds(start);
            const auto step_start = clock_type::now();
            dp.step(m.p, m.g);
            st.SetIterationTime(seconds(step_start));
            iteration += seconds(start);
        }
        st.counters["backward_ms"] = 1e3 * backward / double(st.iterations());
        st.counters["iteration_ms"] = 1e3 * iteration / double(st.iterations());
        st.counters["comm_estimate_ms"] = 1e3 * per_gradient * overlap_tensors / 1.2;
    }

    // Every benchmark here: its own clock (the step, or the call after a barrier), the
    // median of 5 repetitions of 5.
    void timed(benchmark::internal::Benchmark* b)
    {
        b->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(5)->Repetitions(5)->ReportAggregatesOnly(true);
    }

    void register_all()
    {
        for (const char* how : {"data_parallel", "zero1", "zero1_collective"})
        {
            for (const bench::shape* s : {&bench::case_a, &bench::case_b})
            {
                const std::string name = std::string("dist_adamw/") + how + "/" + s->name + suffix();
                timed(benchmark::RegisterBenchmark(name.c_str(), [how, s](benchmark::State& st) {
                    adamw_steps(st, how, *s);
                }));
            }
        }
        for (const char* algorithm : {"rooted_reduces", "collective"})
        {
            for (const int log2 : {21, 23, 24})
            {
                const std::string name =
                    std::string("dist_reduce_scatter/") + algorithm + "/2^" + std::to_string(log2) + suffix();
                timed(benchmark::RegisterBenchmark(name.c_str(), [algorithm, log2](benchmark::State& st) {
                    reduce_scatter(st, std::strcmp(algorithm, "collective") == 0 ? world_collective() : world(),
                                   std::size_t(1) << log2);
                }));
            }
        }
        for (const char* how : {"data_parallel", "zero1"})
        {
            for (const bool busy : {false, true})
            {
                for (const bool ready : {false, true})
                {
                    const std::string name = std::string("dist_overlap/") + how + "/" + (busy ? "busy" : "waiting") + "/"
                                             + (ready ? "grad_ready" : "after_backward") + suffix();
                    timed(benchmark::RegisterBenchmark(name.c_str(), [how, ready, busy](benchmark::State& st) {
                        overlap_steps(st, mode_of(how), ready, busy);
                    }));
                }
            }
        }
    }

    // No output: every rank but 0.
    class silent_reporter : public benchmark::BenchmarkReporter
    {
    public:
        bool ReportContext(const Context&) override
        {
            return true;
        }
        void ReportRuns(const std::vector<Run>&) override
        {
        }
    };

    // --steps-only MODE CASE STEPS: the first step, then STEPS steps, nothing else.
    int steps_only(const std::string& how, const std::string& case_name, std::size_t steps)
    {
        const bench::shape& s = case_name == bench::case_a.name ? bench::case_a : bench::case_b;
        model m(s.count, s.size);
        dist::options o;
        o.mode = mode_of(how);
        dist::data_parallel dp(comm_of(how), bench::make_adamw(), o);
        dp.step(m.p, m.g);
        for (std::size_t t = 0; t < steps; ++t)
        {
            dp.step(m.p, m.g);
        }
        return 0;
    }
}

int main(int argc, char** argv)
{
    dist::mpi_session session(argc, argv);
    xoptim::set_num_threads(1);
    const int rank = world().rank();
    if (argc == 5 && std::string(argv[1]) == "--steps-only")
    {
        return steps_only(argv[2], argv[3], std::stoul(argv[4]));
    }
    // Only rank 0 writes a --benchmark_out file.
    std::vector<char*> args;
    for (int i = 0; i < argc; ++i)
    {
        if (rank == 0 || std::strncmp(argv[i], "--benchmark_out", 15) != 0)
        {
            args.push_back(argv[i]);
        }
    }
    int n = int(args.size());
    register_all();
    benchmark::Initialize(&n, args.data());
    benchmark::AddCustomContext("xsimd_arch", xsimd::default_arch::name());
    benchmark::AddCustomContext("ranks", std::to_string(world().size()));
    benchmark::AddCustomContext("collectives", world().concurrent() ? "on a thread (MPI_THREAD_MULTIPLE)" : "non-blocking");
    if (rank == 0)
    {
        benchmark::RunSpecifiedBenchmarks();
    }
    else
    {
        silent_reporter quiet;
        benchmark::RunSpecifiedBenchmarks(&quiet);
    }
    benchmark::Shutdown();
    world() = dist::mpi_comm(MPI_COMM_SELF);  // the world's duplicates go before MPI_Finalize
    world_collective() = dist::mpi_comm(MPI_COMM_SELF);
    return 0;
}
