// Newton-Schulz, 5 steps, fp32, one thread, shapes 1024x4096, 4096x1024, 768x768,
// side by side in one run:
//   xoptim        xoptim::newton_schulz (syrk, syrk, symm per iteration)
//   xoptim_bf16   the same with ns_precision bf16 (torch.optim.Muon's bf16 iteration: bf16
//                 products, float sums, on AVX-512 BF16 where the build has it)
//   xoptim_bf16_portable  the bf16 products as a build without AVX-512 BF16 runs them (same
//                 bits), 768 x 768 only
//   three_gemm    the same formula with three general products per iteration through the
//                 same BLAS, scalars folded into alpha/beta as well
//   blas_floor    only the BLAS calls xoptim's iteration makes (its floor; row-major)
//   torch         LibTorch running the reference formula (built when LibTorch is found)
//   muon_step     a whole xoptim::muon step on one parameter of that shape (1 thread):
//                 the fused passes around NS, against NS alone
#include <algorithm>
#include <vector>

#include <benchmark/benchmark.h>

#include "bench_common.hpp"
#include <xoptim/linalg/blas_info.hpp>
#include <xoptim/linalg/newton_schulz.hpp>
#include <xoptim/optim/muon.hpp>

#ifdef XOPTIM_BENCH_TORCH
#include <torch/torch.h>
#endif

namespace
{
    constexpr int steps = 5;
    constexpr float a = 3.4445f, b = -4.7750f, c = 2.0315f;

    std::vector<float> input(std::size_t n)
    {
        std::vector<float> g(n);
        for (std::size_t i = 0; i < n; ++i)
        {
            g[i] = static_cast<float>((i * 2654435761u % 1000003u) / 1000003.0 - 0.5);
        }
        return g;
    }

    // The m x n iterate (m <= n) of a rows x cols input, the next one, and the two
    // m x m products: what a hand-written iteration works on.
    struct iteration_buffers
    {
        int m, n;
        std::vector<float> x, y, amat, bmat;

        explicit iteration_buffers(const benchmark::State& st)
            : m(static_cast<int>(std::min(st.range(0), st.range(1))))
            , n(static_cast<int>(std::max(st.range(0), st.range(1))))
            , x(input(std::size_t(m) * std::size_t(n)))
            , y(x.size())
            , amat(std::size_t(m) * std::size_t(m))
            , bmat(amat.size())
        {
        }
    };

    void bm_xoptim(benchmark::State& st)
    {
        const auto rows = static_cast<std::size_t>(st.range(0)), cols = static_cast<std::size_t>(st.range(1));
        const auto g = input(rows * cols);
        std::vector<float> out(rows * cols);
        xoptim::newton_schulz<float> ns;
        ns(g.data(), out.data(), rows, cols);  // workspace
        for (auto _ : st)
        {
            ns(g.data(), out.data(), rows, cols);
            benchmark::DoNotOptimize(out.data());
        }
    }

    void bm_xoptim_bf16(benchmark::State& st)
    {
        const auto rows = static_cast<std::size_t>(st.range(0)), cols = static_cast<std::size_t>(st.range(1));
        const auto g = input(rows * cols);
        std::vector<float> out(rows * cols);
        xoptim::newton_schulz_options o;
        o.precision = xoptim::ns_precision::bf16;
        xoptim::newton_schulz<float> ns(o);
        ns(g.data(), out.data(), rows, cols);  // workspace
        for (auto _ : st)
        {
            ns(g.data(), out.data(), rows, cols);
            benchmark::DoNotOptimize(out.data());
        }
        st.counters["hardware_bf16"] = xoptim::linalg::bf16_dot_in_hardware() ? 1 : 0;
    }

    // One iteration's three products as a build without AVX-512 BF16 runs them, times
    // `steps` (the element-wise work around them is left out).
    void bm_xoptim_bf16_portable(benchmark::State& st)
    {
        iteration_buffers w(st);
        const std::size_t m = std::size_t(w.m), n = std::size_t(w.n);
        const std::size_t np = xoptim::linalg::bf16_padded(n), mp = xoptim::linalg::bf16_padded(m);
        std::vector<std::uint16_t> x(m * np, 0x3c00), xt(n * mp, 0x3c00), a(m * mp, 0x3c00);
        std::vector<float> out(m * n);
        xoptim::linalg::bf16_workspace ws;
        for (auto _ : st)
        {
            for (int k = 0; k < steps; ++k)
            {
                xoptim::linalg::bf16_products_without_hardware(x.data(), m, x.data(), m, np, out.data(), m, ws, true);
                xoptim::linalg::bf16_products_without_hardware(a.data(), m, a.data(), m, mp, out.data(), m, ws);
                xoptim::linalg::bf16_products_without_hardware(a.data(), m, xt.data(), n, mp, out.data(), n, ws);
            }
            benchmark::DoNotOptimize(out.data());
        }
    }

    void bm_three_gemm(benchmark::State& st)
    {
        iteration_buffers w(st);
        auto& [m, n, x, y, amat, bmat] = w;
        for (auto _ : st)
        {
            for (int k = 0; k < steps; ++k)
            {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, m, n, 1, x.data(), n, x.data(), n, 0,
                            amat.data(), m);
                bmat = amat;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, m, m, c, amat.data(), m, amat.data(), m,
                            b, bmat.data(), m);
                y = x;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, m, 1, bmat.data(), m, x.data(), n, a,
                            y.data(), n);
                x.swap(y);
            }
            benchmark::DoNotOptimize(x.data());
        }
    }

    void bm_blas_floor(benchmark::State& st)
    {
        iteration_buffers w(st);
        auto& [m, n, x, y, amat, bmat] = w;
        for (auto _ : st)
        {
            for (int k = 0; k < steps; ++k)
            {
                const auto l = xoptim::blas::layout::row_major;
                xoptim::blas::syrk(l, m, n, 1.0f, x.data(), n, 0.0f, amat.data());
                xoptim::blas::syrk(l, m, m, c, amat.data(), m, b, bmat.data());
                xoptim::blas::symm(l, m, n, 1.0f, bmat.data(), x.data(), 0.0f, y.data(), n);
            }
            benchmark::DoNotOptimize(y.data());
        }
    }

    void bm_muon_step(benchmark::State& st)
    {
        const auto rows = static_cast<std::size_t>(st.range(0)), cols = static_cast<std::size_t>(st.range(1));
        auto p = input(rows * cols);
        const auto g = input(rows * cols);
        xoptim::set_num_threads(1);
        xoptim::muon opt;
        const auto param = xoptim::view(p.data(), {rows, cols});
        const auto grad = xoptim::view(g.data(), {rows, cols});
        opt.step(param, grad);  // state and workspace
        for (auto _ : st)
        {
            opt.step(param, grad);
            benchmark::DoNotOptimize(p.data());
        }
    }

#ifdef XOPTIM_BENCH_TORCH
    void bm_torch(benchmark::State& st)
    {
        at::set_num_threads(1);
        const auto g = torch::rand({st.range(0), st.range(1)}, torch::kFloat32) - 0.5;
        torch::NoGradGuard no_grad;
        for (auto _ : st)
        {
            auto x = g.size(0) > g.size(1) ? g.t() : g;
            x = x / (x.norm() + 1e-7);
            for (int k = 0; k < steps; ++k)
            {
                const auto A = torch::mm(x, x.t());
                const auto B = b * A + c * torch::mm(A, A);
                x = a * x + torch::mm(B, x);
            }
            if (g.size(0) > g.size(1))
            {
                x = x.t();
            }
            benchmark::DoNotOptimize(x.data_ptr());
        }
    }
#endif

    void shapes(benchmark::internal::Benchmark* b)
    {
        b->Args({1024, 4096})->Args({4096, 1024})->Args({768, 768});
        b->Unit(benchmark::kMillisecond)->UseRealTime()->Repetitions(5)->ReportAggregatesOnly(true);
    }
}

BENCHMARK(bm_xoptim)->Apply(shapes);
BENCHMARK(bm_xoptim_bf16)->Apply(shapes);
BENCHMARK(bm_xoptim_bf16_portable)
    ->Args({768, 768})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Repetitions(3)
    ->ReportAggregatesOnly(true);
BENCHMARK(bm_three_gemm)->Apply(shapes);
BENCHMARK(bm_blas_floor)->Apply(shapes);
BENCHMARK(bm_muon_step)->Apply(shapes);
#ifdef XOPTIM_BENCH_TORCH
BENCHMARK(bm_torch)->Apply(shapes);
#endif

int main(int argc, char** argv)
{
    // One BLAS thread whichever CBLAS is linked; the context names it and its kernels.
    xoptim::blas::set_library_threads(1);
    return bench::run_main(argc, argv, {{"blas", xoptim::blas::library().text()}});
}
