// Low-memory training, side by side in one run (docs/benchmarks.md, "Low-memory states"):
//   - AdamW with float states, with 8-bit block-wise states and with bf16 states,
//     1 thread and all; cautious AdamW with 8-bit states (its second pass reads the
//     tensor's factor, a per-tensor scalar);
//   - each low-memory step's memory floor: a plain xsimd loop that moves exactly its
//     bytes (p read and written, g read, the two state arrays read and written, for
//     8-bit two floats per block of 256 read and written) and computes nothing, split
//     across threads as xoptim splits the step.
// Cases: A = one tensor of 2^24 floats, B = 4096 tensors of 4096 floats, C = one tensor
// of 2^14 floats (in cache: the arithmetic alone). The 8-bit codec alone on case C
// (q8_codec/...).
// And the state memory of a 100M-parameter AdamW step: each configuration runs in a
// fresh process (this program, started again with --state-memory=native|8bit), which
// reports its peak resident set beyond the parameters and gradients.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "bench_common.hpp"
#include <xoptim/train/memory.hpp>

namespace
{
    using namespace bench;

    xoptim::adamw make_adamw_states(xoptim::state_storage states, bool caution = false)
    {
        auto options = make_adamw().options();
        options.caution = caution;
        xoptim::adamw opt(options);
        xoptim::storage_options s;
        s.states = states;
        opt.set_storage(s);
        return opt;
    }

    xoptim::adamw make_adamw_8bit()
    {
        return make_adamw_states(xoptim::state_storage::blockwise_8bit);
    }

    // Bytes a step with states of type S moves per element: p 4 + 4, g 4, m and v
    // 2 sizeof(S) each; for 8-bit, per block, two absmax floats read and written.
    template <class S>
    constexpr double bytes_per_element = 12.0 + 4.0 * sizeof(S) + (sizeof(S) == 1 ? 16.0 / double(xoptim::codec_block) : 0.0);

    template <class S>
    void set_bytes_lowmem(benchmark::State& st, const shape& s, std::size_t threads)
    {
        st.SetBytesProcessed(
            static_cast<std::int64_t>(double(st.iterations()) * double(s.elements()) * bytes_per_element<S>));
        st.counters["threads"] = double(threads);
    }

    template <class S>
    struct floor_tensor_lowmem
    {
        std::vector<float> p, g;
        std::vector<S> m, v;
        std::vector<float> m_scale, v_scale;  // 8-bit only
    };

    // One pass, block by block: the same traffic as the low-memory step, no arithmetic.
    template <class S>
    void floor_lowmem(floor_tensor_lowmem<S>& t, std::size_t lo, std::size_t hi)
    {
        using fbatch = xsimd::batch<float>;
        using sbatch = xsimd::batch<S>;
        for (std::size_t b = lo; b < hi; b += xoptim::codec_block)
        {
            const std::size_t end = std::min(hi, b + xoptim::codec_block);
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
            for (; j + sbatch::size <= end; j += sbatch::size)
            {
                (sbatch::load_unaligned(t.m.data() + j) + sbatch(1)).store_unaligned(t.m.data() + j);
                (sbatch::load_unaligned(t.v.data() + j) + sbatch(1)).store_unaligned(t.v.data() + j);
            }
            for (; j < end; ++j)
            {
                ++t.m[j];
                ++t.v[j];
            }
            if constexpr (sizeof(S) == 1)
            {
                t.m_scale[b / xoptim::codec_block] += 1.0f;
                t.v_scale[b / xoptim::codec_block] += 1.0f;
            }
        }
    }

    // The flat element range over all tensors (of one size), as xoptim splits its work.
    template <class S>
    struct floor_job_lowmem
    {
        std::vector<floor_tensor_lowmem<S>>* tensors;
        std::size_t size;

        void run(std::size_t lo, std::size_t hi) const
        {
            for (std::size_t k = lo / size; k < tensors->size() && lo < hi; ++k)
            {
                const std::size_t base = k * size;
                const std::size_t end = std::min(hi, base + size);
                floor_lowmem((*tensors)[k], lo - base, end - base);
                lo = end;
            }
        }
    };

    template <class S>
    void bm_floor_lowmem(benchmark::State& st, const shape& s, std::size_t threads)
    {
        const std::size_t blocks = (s.size + xoptim::codec_block - 1) / xoptim::codec_block;
        std::vector<floor_tensor_lowmem<S>> ts(s.count);
        for (auto& t : ts)
        {
            t = {std::vector<float>(s.size, 0.5f), std::vector<float>(s.size, 1e-7f), std::vector<S>(s.size, 1),
                 std::vector<S>(s.size, 1), std::vector<float>(sizeof(S) == 1 ? blocks : 0, 1.0f),
                 std::vector<float>(sizeof(S) == 1 ? blocks : 0, 1.0f)};
        }
        const floor_job_lowmem<S> job{&ts, s.size};
        run_split(job, s.elements(), xoptim::codec_block, threads);  // warm-up: pool started
        for (auto _ : st)
        {
            run_split(job, s.elements(), xoptim::codec_block, threads);
            benchmark::ClobberMemory();
        }
        set_bytes_lowmem<S>(st, s, threads);
    }

    template <class S>
    void bm_adamw_lowmem(benchmark::State& st, const shape& s, std::size_t threads, xoptim::state_storage states,
                         bool caution = false)
    {
        run_xoptim(st, s, adamw_arrays, threads, make_adamw_states(states, caution));
        set_bytes_lowmem<S>(st, s, threads);
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

    // The 8-bit codec alone, in cache: case C's 2^14 values (normal, the spread of a
    // momentum; their absolute values for the unsigned map) in blocks of codec_block,
    // encoded, decoded, or their block maxima found. Per element, what the fused 8-bit
    // step spends on each state in each direction (docs/benchmarks.md).
    enum class codec_work
    {
        encode,
        decode,
        abs_max
    };

    void bm_q8_codec(benchmark::State& st, const xoptim::dynamic_map& map, codec_work work)
    {
        using A = xsimd::default_arch;
        const std::size_t n = case_c.elements();
        std::vector<float, xsimd::aligned_allocator<float>> values(n), out(n);
        std::mt19937 rng(1);
        std::normal_distribution<float> normal(0.0f, 0.01f);
        for (float& x : values)
        {
            x = map.is_signed() ? normal(rng) : std::fabs(normal(rng));
        }
        std::vector<std::uint8_t> codes(n);
        std::vector<float> scales(n / xoptim::codec_block);
        const xoptim::arch::q8_codec<A> codec(map.tables());
        for (std::size_t b = 0; b < n; b += xoptim::codec_block)
        {
            scales[b / xoptim::codec_block] = xoptim::codec::encode_q8<A>(values.data() + b, map, codes.data() + b,
                                                                          xoptim::codec_block);
        }
        for (auto _ : st)
        {
            for (std::size_t b = 0; b < n; b += xoptim::codec_block)
            {
                float& scale = scales[b / xoptim::codec_block];
                switch (work)
                {
                    case codec_work::encode:
                        xoptim::codec::encode_q8<A>(values.data() + b, scale, map, codec, codes.data() + b,
                                                    xoptim::codec_block);
                        break;
                    case codec_work::decode:
                        xoptim::codec::decode_q8<A>(codes.data() + b, scale, map, out.data() + b, xoptim::codec_block);
                        break;
                    case codec_work::abs_max:
                        scale = xoptim::codec::abs_max<A>(values.data() + b, xoptim::codec_block);
                        break;
                }
            }
            benchmark::DoNotOptimize(codes.data());
            benchmark::DoNotOptimize(out.data());
            benchmark::ClobberMemory();
        }
        st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()) * static_cast<std::int64_t>(n));
    }

    void register_q8_codec()
    {
        const std::pair<const char*, codec_work> works[] = {
            {"encode", codec_work::encode}, {"decode", codec_work::decode}, {"abs_max", codec_work::abs_max}};
        for (const auto& [what, work] : works)
        {
            for (const bool is_signed : {true, false})
            {
                const xoptim::dynamic_map& map =
                    is_signed ? xoptim::dynamic_map::signed_map() : xoptim::dynamic_map::unsigned_map();
                benchmark::RegisterBenchmark(
                    (std::string("q8_codec/") + what + (is_signed ? "/signed/" : "/unsigned/") + case_c.name).c_str(),
                    [&map, work = work](benchmark::State& st) { bm_q8_codec(st, map, work); })
                    ->Unit(benchmark::kMicrosecond);
            }
        }
    }

    // AdamW with states of type S (stored as `states`) and its floor.
    template <class S>
    void register_lowmem(const char* kind, xoptim::state_storage states, const shape& s, std::size_t t)
    {
        configure(benchmark::RegisterBenchmark(name((std::string("adamw_") + kind).c_str(), "xoptim", s, t).c_str(),
                                               [s, t, states](benchmark::State& st) { bm_adamw_lowmem<S>(st, s, t, states); }),
                  s);
        configure(benchmark::RegisterBenchmark(name((std::string("floor_") + kind).c_str(), "xsimd", s, t).c_str(),
                                               [s, t](benchmark::State& st) { bm_floor_lowmem<S>(st, s, t); }),
                  s);
    }

    void register_all()
    {
        const std::vector<std::size_t> threads = thread_counts();
        for (const shape& s : {case_a, case_b, case_c})
        {
            register_xoptim_adamw(s);
            for (std::size_t t : threads)
            {
                register_lowmem<std::uint8_t>("8bit", xoptim::state_storage::blockwise_8bit, s, t);
                register_lowmem<std::uint16_t>("bf16", xoptim::state_storage::bf16, s, t);
            }
            configure(benchmark::RegisterBenchmark(name("adamw_cautious_8bit", "xoptim", s, 1).c_str(),
                                                   [s](benchmark::State& st) {
                                                       bm_adamw_lowmem<std::uint8_t>(
                                                           st, s, 1, xoptim::state_storage::blockwise_8bit, true);
                                                   }),
                      s);
        }
        register_q8_codec();
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
