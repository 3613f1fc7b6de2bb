// Low-memory training, side by side in one run (docs/benchmarks.md, "Low-memory states"):
//   - AdamW with float states, and with 8-bit block-wise states, 1 thread and all;
//   - the 8-bit step's memory floor: a plain xsimd loop that moves exactly its bytes
//     (p read and written, g read, two byte arrays read and written, two floats per
//     block of 256 read and written) and computes nothing.
// Cases: A = one tensor of 2^24 floats, B = 4096 tensors of 4096 floats, C = one tensor
// of 2^14 floats (in cache: the arithmetic alone).
// And the state memory of a 100M-parameter AdamW step: each configuration runs in a
// fresh process (this program, started again with --state-memory=native|8bit), which
// reports its peak resident set beyond the parameters and gradients.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include <xoptim/train/memory.hpp>

namespace
{
    using namespace bench;

    xoptim::adamw make_adamw_8bit()
    {
        xoptim::adamw opt = make_adamw();
        xoptim::storage_options s;
        s.states = xoptim::state_storage::blockwise_8bit;
        opt.set_storage(s);
        return opt;
    }

    // Bytes an 8-bit AdamW step moves per element: p 4 + 4, g 4, m and v 1 + 1 each;
    // per block, two absmax floats read and written.
    constexpr double bytes_8bit = 16.0 + 16.0 / double(xoptim::codec_block);

    void set_bytes_8bit(benchmark::State& st, const shape& s, std::size_t threads)
    {
        st.SetBytesProcessed(static_cast<std::int64_t>(double(st.iterations()) * double(s.elements()) * bytes_8bit));
        st.counters["threads"] = double(threads);
    }

    struct floor_tensor_8bit
    {
        std::vector<float> p, g;
        std::vector<std::uint8_t> m, v;
        std::vector<float> m_scale, v_scale;
    };

    // One pass, block by block: the same traffic as the 8-bit step, no arithmetic.
    void floor_8bit(floor_tensor_8bit& t)
    {
        using fbatch = xsimd::batch<float>;
        using bbatch = xsimd::batch<std::uint8_t>;
        const std::size_t n = t.p.size();
        for (std::size_t b = 0; b < n; b += xoptim::codec_block)
        {
            const std::size_t end = std::min(n, b + xoptim::codec_block);
            std::size_t i = b;
            for (; i + fbatch::size <= end; i += fbatch::size)
            {
                (fbatch::load_unaligned(t.p.data() + i) + fbatch::load_unaligned(t.g.data() + i))
                    .store_unaligned(t.p.data() + i);
            }
            for (; i < end; ++i)
            {
                t.p[i] += t.g[i];
            }
            std::size_t j = b;
            for (; j + bbatch::size <= end; j += bbatch::size)
            {
                (bbatch::load_unaligned(t.m.data() + j) + bbatch(1)).store_unaligned(t.m.data() + j);
                (bbatch::load_unaligned(t.v.data() + j) + bbatch(1)).store_unaligned(t.v.data() + j);
            }
            for (; j < end; ++j)
            {
                ++t.m[j];
                ++t.v[j];
            }
            t.m_scale[b / xoptim::codec_block] += 1.0f;
            t.v_scale[b / xoptim::codec_block] += 1.0f;
        }
    }

    void bm_floor_8bit(benchmark::State& st, const shape& s)
    {
        const std::size_t blocks = (s.size + xoptim::codec_block - 1) / xoptim::codec_block;
        std::vector<floor_tensor_8bit> ts(s.count);
        for (auto& t : ts)
        {
            t = {std::vector<float>(s.size, 0.5f), std::vector<float>(s.size, 1e-7f),
                 std::vector<std::uint8_t>(s.size, 1), std::vector<std::uint8_t>(s.size, 1),
                 std::vector<float>(blocks, 1.0f), std::vector<float>(blocks, 1.0f)};
        }
        for (auto _ : st)
        {
            for (auto& t : ts)
            {
                floor_8bit(t);
            }
            benchmark::ClobberMemory();
        }
        set_bytes_8bit(st, s, 1);
    }

    void bm_adamw_8bit(benchmark::State& st, const shape& s, std::size_t threads)
    {
        run_xoptim(st, s, adamw_arrays, threads, make_adamw_8bit());
        set_bytes_8bit(st, s, threads);
    }

    /****************
     * State memory *
     ****************/

    constexpr std::size_t memory_params = 100'000'000;

    // In the child: p and g resident, the peak reset to now, one step, then the peak
    // growth in bytes on stdout.
    int state_memory_child(const std::string& kind)
    {
        xoptim::set_num_threads(1);
        std::vector<float> p(memory_params, 0.5f);
        std::vector<float> g(memory_params, 1e-3f);
        xoptim::adamw opt = kind == "8bit" ? make_adamw_8bit() : make_adamw();
        xoptim::train::memory_profiler profiler;
        xoptim::train::memory_scope scope(profiler, "step");  // the kernel's mark reset to now
        opt.step(p, g);
        std::printf("%zu %zu\n", scope.stop().peak_rise(), opt.report().state_bytes);
        return 0;
    }

    // This program, as main was called (the child is started by that path).
    std::string program_path;

    void bm_state_memory(benchmark::State& st, const char* kind)
    {
        std::size_t grown = 0, reported = 0;
        for (auto _ : st)
        {
            const std::string command = program_path + " --state-memory=" + kind;
            FILE* child = popen(command.c_str(), "r");
            if (child == nullptr || std::fscanf(child, "%zu %zu", &grown, &reported) != 2)
            {
                st.SkipWithError("the child process reported nothing");
            }
            if (child != nullptr)
            {
                pclose(child);
            }
        }
        st.counters["peak_rss_growth_bytes_per_param"] = double(grown) / double(memory_params);
        st.counters["reported_state_bytes_per_param"] = double(reported) / double(memory_params);
    }

    void register_all()
    {
        const std::vector<std::size_t> threads = thread_counts();
        for (const shape& s : {case_a, case_b, case_c})
        {
            register_xoptim_adamw(s);
            for (std::size_t t : threads)
            {
                configure(benchmark::RegisterBenchmark(name("adamw_8bit", "xoptim", s, t).c_str(),
                                                       [s, t](benchmark::State& st) { bm_adamw_8bit(st, s, t); }),
                          s);
            }
            configure(benchmark::RegisterBenchmark(name("floor_8bit", "xsimd", s, 1).c_str(),
                                                   [s](benchmark::State& st) { bm_floor_8bit(st, s); }),
                      s);
        }
        for (const char* kind : {"native", "8bit"})
        {
            benchmark::RegisterBenchmark((std::string("state_memory/adamw_") + kind + "/100M").c_str(),
                                         [kind](benchmark::State& st) { bm_state_memory(st, kind); })
                ->Iterations(1)
                ->Unit(benchmark::kMillisecond);
        }
    }
}

int main(int argc, char** argv)
{
    const std::string flag = "--state-memory=";
    if (argc == 2 && std::string(argv[1]).compare(0, flag.size(), flag) == 0)
    {
        return state_memory_child(std::string(argv[1]).substr(flag.size()));
    }
    program_path = argv[0];
    register_all();
    return bench::run_main(argc, argv);
}
