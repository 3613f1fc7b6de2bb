// The optimizers that need the engine's reductions and per-tensor scalars, side by side
// with their own memory floors in one run (docs/benchmarks.md, "LAMB"):
//   - xoptim LAMB as apex defines it (max_grad_norm 1: a read of g for the global norm,
//     then p g m v -> m v with the two norms, then p m v -> p): 8 arrays read, 3 written;
//   - LAMB as optax (no built-in clipping): 7 read, 3 written;
//   - the floors: plain xsimd loops moving the same arrays in the same passes and
//     computing nothing (floor_lamb: the three passes, floor_lamb_noclip: the last two);
//   - AdamW and its floor (4 read, 3 written), the one-pass reference point;
//   - Adafactor (torch.optim.Adafactor) on one 4096 x 4096 matrix, against the issue's
//     floor (p and g read, p written: floor_r2w1) and its own passes' (p g, g, p g -> p:
//     floor_adafactor, 5 read, 1 written).
// Cases: A = one tensor of 2^24 floats, B = 4096 tensors of 4096 floats.
#include <vector>

#include <xsimd/xsimd.hpp>

#include "bench_common.hpp"

namespace
{
    using namespace bench;

    // One tensor's arrays: p, g, m, v.
    struct lamb_tensor
    {
        float* p;
        const float* g;
        float* m;
        float* v;
    };

    using batch = xsimd::batch<float>;

    // Reads g; its sum goes to `sink` so the loop is not removed.
    inline void read_g(const lamb_tensor& t, std::size_t lo, std::size_t hi, float& sink)
    {
        batch acc(0.0f);
        std::size_t i = lo;
        for (; i + batch::size <= hi; i += batch::size)
        {
            acc += batch::load_unaligned(t.g + i);
        }
        sink += xoptim::arch::reduce_add(acc);
    }

    // p g m v -> m v
    inline void first_pass(const lamb_tensor& t, std::size_t lo, std::size_t hi)
    {
        for (std::size_t i = lo; i + batch::size <= hi; i += batch::size)
        {
            const batch p = batch::load_unaligned(t.p + i);
            const batch g = batch::load_unaligned(t.g + i);
            const batch m = batch::load_aligned(t.m + i);
            const batch v = batch::load_aligned(t.v + i);
            (m + g).store_aligned(t.m + i);
            (v + p).store_aligned(t.v + i);
        }
    }

    // p m v -> p
    inline void second_pass(const lamb_tensor& t, std::size_t lo, std::size_t hi)
    {
        for (std::size_t i = lo; i + batch::size <= hi; i += batch::size)
        {
            const batch p = batch::load_unaligned(t.p + i);
            const batch m = batch::load_aligned(t.m + i);
            const batch v = batch::load_aligned(t.v + i);
            (p + m + v).store_unaligned(t.p + i);
        }
    }

    template <int Pass>
    struct floor_pass
    {
        const std::vector<lamb_tensor>* tensors;
        std::size_t size;
        mutable float sink = 0;

        void run(std::size_t lo, std::size_t hi) const
        {
            for (std::size_t k = lo / size; k < tensors->size() && lo < hi; ++k)
            {
                const std::size_t base = k * size;
                const std::size_t end = std::min(hi, base + size);
                const lamb_tensor& t = (*tensors)[k];
                if constexpr (Pass == 0)
                {
                    read_g(t, lo - base, end - base, sink);
                }
                else if constexpr (Pass == 1)
                {
                    first_pass(t, lo - base, end - base);
                }
                else
                {
                    second_pass(t, lo - base, end - base);
                }
                lo = end;
            }
        }
    };

    void bm_floor_lamb(benchmark::State& st, const shape& s, std::size_t threads, bool clip)
    {
        tensor_list p = make_list(s, 0.5f);
        tensor_list g = make_list(s, 1e-7f);
        const floor_states mv(s, 2, 0.0f);
        std::vector<lamb_tensor> ts;
        for (std::size_t k = 0; k < s.count; ++k)
        {
            ts.push_back({p[k].data(), g[k].data(), mv.at(k, 0), mv.at(k, 1)});
        }
        const floor_pass<0> pass0{&ts, s.size};
        const floor_pass<1> pass1{&ts, s.size};
        const floor_pass<2> pass2{&ts, s.size};
        const auto step = [&] {
            if (clip)
            {
                run_split(pass0, s.elements(), 64, threads);
            }
            run_split(pass1, s.elements(), 64, threads);
            run_split(pass2, s.elements(), 64, threads);
        };
        step();
        for (auto _ : st)
        {
            step();
            benchmark::ClobberMemory();
        }
        benchmark::DoNotOptimize(pass0.sink);
        set_bytes(st, s, clip ? 11 : 10, threads);
    }

    // Adafactor's passes as plain loops: reads of p and g (summed, so not removed), and
    // p += g.
    struct matrix_floor
    {
        float* p;
        const float* g;
        mutable float sink = 0;

        template <int Pass>
        void range(std::size_t lo, std::size_t hi) const
        {
            batch acc(0.0f);
            for (std::size_t i = lo; i + batch::size <= hi; i += batch::size)
            {
                const batch g_ = batch::load_unaligned(g + i);
                if constexpr (Pass == 0)
                {
                    acc += batch::load_unaligned(p + i) + g_;
                }
                else if constexpr (Pass == 1)
                {
                    acc += g_;
                }
                else
                {
                    (batch::load_unaligned(p + i) + g_).store_unaligned(p + i);
                }
            }
            sink += xoptim::arch::reduce_add(acc);
        }
    };

    template <int Pass>
    struct matrix_pass
    {
        const matrix_floor* f;

        void run(std::size_t lo, std::size_t hi) const
        {
            f->range<Pass>(lo, hi);
        }
    };

    constexpr std::size_t side = 4096;

    void bm_floor_adafactor(benchmark::State& st, std::size_t threads, bool own_passes)
    {
        std::vector<float> p(side * side, 0.5f), g(side * side, 1e-3f);
        const matrix_floor f{p.data(), g.data()};
        const std::size_t n = side * side;
        const auto step = [&] {
            if (own_passes)
            {
                run_split(matrix_pass<0>{&f}, n, 64, threads);
                run_split(matrix_pass<1>{&f}, n, 64, threads);
            }
            run_split(matrix_pass<2>{&f}, n, 64, threads);
        };
        step();
        for (auto _ : st)
        {
            step();
            benchmark::ClobberMemory();
        }
        benchmark::DoNotOptimize(f.sink);
        st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * (own_passes ? 6 : 3)
                             * static_cast<std::int64_t>(n * sizeof(float)));
        st.counters["threads"] = static_cast<double>(threads);
    }

    void bm_adafactor(benchmark::State& st, std::size_t threads)
    {
        xoptim::set_num_threads(threads);
        std::vector<float> p(side * side, 0.5f), g(side * side, 1e-3f);
        const auto pv = xoptim::view(p.data(), {side, side});
        const auto gv = xoptim::view(g.data(), {side, side});
        xoptim::adafactor opt;
        opt.step(pv, gv);
        for (auto _ : st)
        {
            opt.step(pv, gv);
            benchmark::ClobberMemory();
        }
        st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * 3
                             * static_cast<std::int64_t>(side * side * sizeof(float)));
        st.counters["threads"] = static_cast<double>(threads);
    }

    xoptim::lamb make_lamb(bool clip)
    {
        xoptim::lamb_options o;  // apex's defaults: weight decay 0.01, so the trust ratio applies
        if (!clip)
        {
            o.max_grad_norm = std::nullopt;
        }
        return xoptim::lamb(o);
    }

    void register_all()
    {
        const shape matrix{"4096x4096_matrix", 1, side * side};
        for (std::size_t t : thread_counts())
        {
            configure(benchmark::RegisterBenchmark(name("adafactor", "xoptim", matrix, t).c_str(),
                                                   [t](benchmark::State& st) { bm_adafactor(st, t); }),
                      matrix);
            configure(benchmark::RegisterBenchmark(name("floor_r2w1", "xsimd", matrix, t).c_str(),
                                                   [t](benchmark::State& st) { bm_floor_adafactor(st, t, false); }),
                      matrix);
            configure(benchmark::RegisterBenchmark(name("floor_adafactor", "xsimd", matrix, t).c_str(),
                                                   [t](benchmark::State& st) { bm_floor_adafactor(st, t, true); }),
                      matrix);
        }
        for (const shape& s : {case_a, case_b})
        {
            register_xoptim_adamw(s);
            for (std::size_t t : thread_counts())
            {
                configure(benchmark::RegisterBenchmark(name("lamb", "xoptim", s, t).c_str(),
                                                       [s, t](benchmark::State& st) {
                                                           run_xoptim(st, s, 11, t, make_lamb(true));
                                                       }),
                          s);
                configure(benchmark::RegisterBenchmark(name("floor_lamb", "xsimd", s, t).c_str(),
                                                       [s, t](benchmark::State& st) { bm_floor_lamb(st, s, t, true); }),
                          s);
                configure(benchmark::RegisterBenchmark(name("lamb_noclip", "xoptim", s, t).c_str(),
                                                       [s, t](benchmark::State& st) {
                                                           run_xoptim(st, s, 10, t, make_lamb(false));
                                                       }),
                          s);
                configure(benchmark::RegisterBenchmark(name("floor_lamb_noclip", "xsimd", s, t).c_str(),
                                                       [s, t](benchmark::State& st) { bm_floor_lamb(st, s, t, false); }),
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
