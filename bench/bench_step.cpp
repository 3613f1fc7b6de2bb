// One optimizer step, side by side in one run (docs/benchmarks.md):
//   - xoptim AdamW, SGD-momentum and Lion, 1 thread and all threads;
//   - the memory floor: a plain xsimd loop that moves the same arrays and computes
//     nothing (4 read / 3 written for AdamW, 3 read / 2 written for SGD-momentum and Lion),
//     1 thread and all threads (through xoptim::parallel_run, the same pool);
//   - xtensor written the obvious way: three xt::noalias statements, 1 thread.
// Cases: A = one tensor of 2^24 floats, B = 4096 tensors of 4096 floats.
// All three take p and g in std::vector<float>; floor and xoptim place the optimizer
// state alike (xoptim's state store, see `placement`), xtensor in its own containers.
// The optimizers of 2026 (1 thread, cases A and B), each against the floor of the arrays
// it moves: AdEMAMix (5 read / 4 written), Schedule-Free AdamW (4 / 3) and SGD (3 / 2),
// the EMA of the weights (2 / 1), cautious AdamW and Lion (two passes: against AdamW's
// and Lion's one-pass floors, 4 / 3 and 3 / 2, and against the same preceded, tensor by
// tensor, by a pass that reads g and m: what a step whose scale needs the whole tensor
// must move, 6 / 3 and 5 / 2 where the tensor does not fit in cache).
// Diagnostics: an in-cache case C = one tensor of 2^14 floats (the arithmetic's cost:
// AdamW, Lion and the cautious steps), and case A with every array 64-byte aligned (what
// misaligned p and g cost).
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>
#include <utility>
#include <vector>

#include <xsimd/xsimd.hpp>
#include <xtensor/xadapt.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xnoalias.hpp>
#include <xtensor/xtensor.hpp>

#include <xoptim/optim/ema.hpp>
#include <xoptim/optim/schedulefree.hpp>

#include "bench_common.hpp"

namespace
{
    using namespace bench;

    /****************
     * Memory floor *
     ****************/

    // W arrays are read and written back (p, m, v or p, buf), g is only read:
    // W + 1 arrays read, W written, one add each, nothing else.
    template <std::size_t W>
    struct floor_tensor
    {
        std::array<float*, W> rw;
        const float* g;
        std::size_t size;
    };

    // Unrolled by fold expressions: all loads, then all stores, as xoptim's kernel does
    // (a plain `for k < W` loop is not unrolled at -O2 and spills the batches).
    template <std::size_t W, std::size_t... K>
    inline void floor_range(const floor_tensor<W>& t, std::size_t lo, std::size_t hi, std::index_sequence<K...>)
    {
        using batch = xsimd::batch<float>;
        constexpr std::size_t width = batch::size;
        float* const rw[W] = {t.rw[K]...};
        std::size_t i = lo;
        for (; i + width <= hi; i += width)
        {
            const batch g = batch::load_unaligned(t.g + i);
            const batch r[W] = {batch::load_unaligned(rw[K] + i)...};
            ((r[K] + g).store_unaligned(rw[K] + i), ...);
        }
        for (; i < hi; ++i)
        {
            ((rw[K][i] += t.g[i]), ...);
        }
    }

    template <std::size_t W>
    inline void floor_range(const floor_tensor<W>& t, std::size_t lo, std::size_t hi)
    {
        floor_range(t, lo, hi, std::make_index_sequence<W>{});
    }

    // The floor of a cautious step's first pass: g and the first state read, one add
    // each, their sum kept (a count needs no more).
    template <std::size_t W>
    inline float read_two(const floor_tensor<W>& t, std::size_t lo, std::size_t hi)
    {
        using batch = xsimd::batch<float>;
        constexpr std::size_t width = batch::size;
        batch acc(0.0f);
        std::size_t i = lo;
        for (; i + width <= hi; i += width)
        {
            acc += batch::load_unaligned(t.g + i) + batch::load_unaligned(t.rw[1] + i);
        }
        float sum = xoptim::arch::reduce_add(acc);
        for (; i < hi; ++i)
        {
            sum += t.g[i] + t.rw[1][i];
        }
        return sum;
    }

    // The flat element range [lo, hi) over all tensors, as xoptim splits its work. With
    // `counted`, each tensor's piece is read by read_two first (the two passes of a
    // cautious step: its floor, 1 thread).
    template <std::size_t W>
    struct floor_job
    {
        std::vector<floor_tensor<W>> tensors;
        std::size_t size;  // every tensor has the same size here
        std::size_t total;
        bool counted = false;

        void run(std::size_t lo, std::size_t hi) const
        {
            for (std::size_t k = lo / size; k < tensors.size() && lo < hi; ++k)
            {
                const std::size_t base = k * size;
                const std::size_t end = std::min(hi, base + size);
                if (counted)
                {
                    float sum = read_two(tensors[k], lo - base, end - base);
                    benchmark::DoNotOptimize(sum);
                }
                floor_range(tensors[k], lo - base, end - base);
                lo = end;
            }
        }
    };

    // 64-byte aligned float arrays (the diagnostic placement of p and g).
    struct free_deleter
    {
        void operator()(float* p) const noexcept
        {
            std::free(p);
        }
    };

    using aligned_array = std::unique_ptr<float[], free_deleter>;

    aligned_array make_aligned(std::size_t n, float value)
    {
        const std::size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
        auto* p = static_cast<float*>(std::aligned_alloc(64, bytes));
        if (p == nullptr)
        {
            throw std::bad_alloc();
        }
        std::fill_n(p, n, value);
        return aligned_array(p);
    }

    // Memory placement of the arrays a step touches. The W - 1 state arrays come from
    // xoptim's state store (floor_states), placed as an optimizer's state is. With
    // `like_xoptim`, p and g are std::vector<float> (as the xoptim runs pass them), so
    // floor and xoptim touch memory laid out the same way. `all_aligned`: p and g
    // 64-byte aligned (diagnostic: what misaligned p and g cost).
    enum class placement
    {
        like_xoptim,
        all_aligned
    };

    enum class passes
    {
        one,
        counted_first  // read_two, then the one pass, tensor by tensor
    };

    template <std::size_t W>
    void bm_floor(benchmark::State& st, const shape& s, std::size_t threads, placement where, passes how = passes::one)
    {
        tensor_list p_vec, g_vec;
        std::vector<aligned_array> owned;
        floor_job<W> job{{}, s.size, s.elements(), how == passes::counted_first};
        const floor_states states(s, W - 1, 0.5f);
        if (where == placement::like_xoptim)
        {
            p_vec = make_list(s, 0.5f);
            g_vec = make_list(s, 1e-7f);
        }
        for (std::size_t j = 0; j < s.count; ++j)
        {
            floor_tensor<W> t{};
            if (where == placement::like_xoptim)
            {
                t.rw[0] = p_vec[j].data();
                t.g = g_vec[j].data();
            }
            else
            {
                owned.push_back(make_aligned(s.size, 0.5f));
                t.rw[0] = owned.back().get();
                owned.push_back(make_aligned(s.size, 1e-7f));
                t.g = owned.back().get();
            }
            for (std::size_t k = 1; k < W; ++k)
            {
                t.rw[k] = states.at(j, k - 1);
            }
            t.size = s.size;
            job.tensors.push_back(t);
        }
        run_split(job, job.total, 64, threads);  // warm-up: pages touched, pool started
        for (auto _ : st)
        {
            run_split(job, job.total, 64, threads);
            benchmark::ClobberMemory();
        }
        set_bytes(st, s, 2 * W + 1 + (how == passes::counted_first ? 2 : 0), threads);
    }

    /*********************
     * xtensor, 3 stmts  *
     *********************/

    using xvec = xt::xtensor<float, 1>;
    using xshape = std::array<std::size_t, 1>;
    // p and g adapt the same std::vector<float> buffers the xoptim runs use; m and v
    // are xt::xtensor<float, 1> owning (aligned) storage, as a user's would be.
    using xview = decltype(xt::adapt(static_cast<float*>(nullptr), std::size_t(0), xt::no_ownership(), xshape{}));

    struct xt_tensor
    {
        xview p, g;
        xvec m, v;
    };

    // torch.optim.AdamW, the obvious way: float scalars (double ones would promote the
    // whole expression to double), one statement per updated tensor.
    struct xt_adamw
    {
        std::size_t t = 0;

        void step(std::vector<xt_tensor>& ts)
        {
            ++t;
            const float b1 = static_cast<float>(beta1);
            const float b2 = static_cast<float>(beta2);
            const float decay = static_cast<float>(1 - lr * weight_decay);
            const float step_size = static_cast<float>(lr / (1 - std::pow(beta1, double(t))));
            const float bc2_sqrt = static_cast<float>(std::sqrt(1 - std::pow(beta2, double(t))));
            const float e = static_cast<float>(eps);
            for (auto& x : ts)
            {
                xt::noalias(x.m) = b1 * x.m + (1 - b1) * x.g;
                xt::noalias(x.v) = b2 * x.v + (1 - b2) * x.g * x.g;
                xt::noalias(x.p) = x.p * decay - step_size * x.m / (xt::sqrt(x.v) / bc2_sqrt + e);
            }
        }
    };

    void bm_xtensor_adamw(benchmark::State& st, const shape& s)
    {
        tensor_list p = make_list(s, 0.5f);
        tensor_list g = make_list(s, 1e-3f);
        std::vector<xt_tensor> ts;
        ts.reserve(s.count);
        for (std::size_t j = 0; j < s.count; ++j)
        {
            const xshape shp = {s.size};
            ts.push_back({xt::adapt(p[j].data(), s.size, xt::no_ownership(), shp),
                          xt::adapt(g[j].data(), s.size, xt::no_ownership(), shp), xvec(shp, 0.0f), xvec(shp, 0.0f)});
        }
        xt_adamw opt;
        opt.step(ts);
        for (auto _ : st)
        {
            opt.step(ts);
            benchmark::ClobberMemory();
        }
        set_bytes(st, s, adamw_arrays, 1);
    }

    /*********************
     * xoptim optimizers *
     *********************/

    using aligned_vector = std::vector<float, xsimd::aligned_allocator<float, 64>>;

    xoptim::sgd make_sgd()
    {
        xoptim::sgd_options o;
        o.lr = lr;
        o.momentum = 0.9;
        return xoptim::sgd(o);
    }

    xoptim::lion make_lion()
    {
        xoptim::lion_options o;
        o.lr = 1e-4;
        o.weight_decay = weight_decay;
        return xoptim::lion(o);
    }

    // SGD-momentum and Lion both read p, g, state and write p, state.
    constexpr std::size_t three_array_traffic = 5;

    xoptim::ademamix make_ademamix()
    {
        xoptim::ademamix_options o;
        o.lr = lr;
        o.weight_decay = weight_decay;
        return xoptim::ademamix(o);
    }

    xoptim::adamw_schedulefree make_adamw_schedulefree()
    {
        xoptim::adamw_schedulefree_options o;
        o.weight_decay = weight_decay;
        return xoptim::adamw_schedulefree(o);
    }

    xoptim::adamw make_cautious_adamw()
    {
        xoptim::adamw o = make_adamw();
        auto options = o.options();
        options.caution = true;
        return xoptim::adamw(options);
    }

    xoptim::lion make_cautious_lion()
    {
        auto options = make_lion().options();
        options.caution = true;
        return xoptim::lion(options);
    }

    // The EMA as run_xoptim steps an optimizer: update(params, step) per call.
    struct ema_updates
    {
        xoptim::ema average{xoptim::ema_options{}};
        std::size_t k = 0;

        template <class P, class G>
        void step(P& params, const G&)
        {
            average.update(params, ++k);
        }
    };

    template <class Make>
    void register_against_floor(const char* algorithm, const shape& s, std::size_t arrays, Make make)
    {
        configure(benchmark::RegisterBenchmark(name(algorithm, "xoptim", s, 1).c_str(),
                                               [s, arrays, make](benchmark::State& st) {
                                                   run_xoptim(st, s, arrays, 1, make());
                                               }),
                  s);
    }

    void register_2026(const shape& s)
    {
        register_against_floor("ademamix", s, 9, make_ademamix);
        register_against_floor("adamw_schedulefree", s, adamw_arrays, make_adamw_schedulefree);
        register_against_floor("sgd_schedulefree", s, three_array_traffic,
                               [] { return xoptim::sgd_schedulefree(xoptim::sgd_schedulefree_options{}); });
        register_against_floor("ema", s, 3, [] { return ema_updates{}; });
        register_against_floor("adamw_cautious", s, adamw_arrays, make_cautious_adamw);
        register_against_floor("lion_cautious", s, three_array_traffic, make_cautious_lion);
        configure(benchmark::RegisterBenchmark(name("floor_r5w4", "xsimd", s, 1).c_str(),
                                               [s](benchmark::State& st) { bm_floor<4>(st, s, 1, placement::like_xoptim); }),
                  s);
        configure(benchmark::RegisterBenchmark(name("floor_r2w1", "xsimd", s, 1).c_str(),
                                               [s](benchmark::State& st) { bm_floor<1>(st, s, 1, placement::like_xoptim); }),
                  s);
        // The cautious steps' two-pass floors: g and m read, then the one-pass floor.
        configure(benchmark::RegisterBenchmark(name("floor_r2_r4w3", "xsimd", s, 1).c_str(),
                                               [s](benchmark::State& st) {
                                                   bm_floor<3>(st, s, 1, placement::like_xoptim, passes::counted_first);
                                               }),
                  s);
        configure(benchmark::RegisterBenchmark(name("floor_r2_r3w2", "xsimd", s, 1).c_str(),
                                               [s](benchmark::State& st) {
                                                   bm_floor<2>(st, s, 1, placement::like_xoptim, passes::counted_first);
                                               }),
                  s);
    }

    void register_all()
    {
        const std::vector<std::size_t> threads = thread_counts();
        for (const shape& s : {case_a, case_b})
        {
            register_xoptim_adamw(s);
            register_2026(s);
            for (std::size_t t : threads)
            {
                configure(benchmark::RegisterBenchmark(name("floor_r4w3", "xsimd", s, t).c_str(),
                                                       [s, t](benchmark::State& st) { bm_floor<3>(st, s, t, placement::like_xoptim); }),
                          s);
            }
            configure(benchmark::RegisterBenchmark(name("adamw", "xtensor", s, 1).c_str(),
                                                   [s](benchmark::State& st) { bm_xtensor_adamw(st, s); }),
                      s);
            for (std::size_t t : threads)
            {
                configure(benchmark::RegisterBenchmark(name("sgd_momentum", "xoptim", s, t).c_str(),
                                                       [s, t](benchmark::State& st) {
                                                           run_xoptim(st, s, three_array_traffic, t, make_sgd());
                                                       }),
                          s);
                configure(benchmark::RegisterBenchmark(name("lion", "xoptim", s, t).c_str(),
                                                       [s, t](benchmark::State& st) {
                                                           run_xoptim(st, s, three_array_traffic, t, make_lion());
                                                       }),
                          s);
                configure(benchmark::RegisterBenchmark(name("floor_r3w2", "xsimd", s, t).c_str(),
                                                       [s, t](benchmark::State& st) { bm_floor<2>(st, s, t, placement::like_xoptim); }),
                          s);
            }
        }
        // Alignment diagnostic (case A, 1 thread): every array 64-byte aligned, p and g
        // in std::vector<float, xsimd::aligned_allocator<float, 64>>.
        configure(benchmark::RegisterBenchmark(name("adamw", "xoptim_aligned", case_a, 1).c_str(),
                                               [](benchmark::State& st) {
                                                   run_xoptim<aligned_vector>(st, case_a, adamw_arrays, 1,
                                                                              make_adamw());
                                               }),
                  case_a);
        configure(benchmark::RegisterBenchmark(name("floor_r4w3", "xsimd_aligned", case_a, 1).c_str(),
                                               [](benchmark::State& st) {
                                                   bm_floor<3>(st, case_a, 1, placement::all_aligned);
                                               }),
                  case_a);
        // In-cache diagnostic: 64 KiB per array, so the step's arithmetic shows.
        const shape s = case_c;
        configure(benchmark::RegisterBenchmark(name("adamw", "xoptim", s, 1).c_str(),
                                               [s](benchmark::State& st) {
                                                   run_xoptim(st, s, adamw_arrays, 1, make_adamw());
                                               }),
                  s);
        configure(benchmark::RegisterBenchmark(name("floor_r4w3", "xsimd", s, 1).c_str(),
                                               [s](benchmark::State& st) { bm_floor<3>(st, s, 1, placement::like_xoptim); }),
                  s);
        configure(benchmark::RegisterBenchmark(name("adamw", "xtensor", s, 1).c_str(),
                                               [s](benchmark::State& st) { bm_xtensor_adamw(st, s); }),
                  s);
        // The cautious steps beside Lion: the arithmetic of their two passes.
        register_against_floor("lion", s, three_array_traffic, make_lion);
        register_against_floor("lion_cautious", s, three_array_traffic, make_cautious_lion);
        register_against_floor("adamw_cautious", s, adamw_arrays, make_cautious_adamw);
    }
}

int main(int argc, char** argv)
{
    register_all();
    return bench::run_main(argc, argv);
}
