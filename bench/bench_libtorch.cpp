// torch::optim::AdamW (LibTorch, CPU) beside xoptim AdamW, in one run, on
// case A (one tensor of 2^24 floats) and case B (4096 tensors of 4096 floats),
// with 1 thread (at::set_num_threads(1) / xoptim::set_num_threads(1)) and with
// all threads (at::set_num_threads(hardware_concurrency), and LibTorch's own
// default count where it differs).
#include <algorithm>

#include <torch/torch.h>

#include "bench_common.hpp"

namespace
{
    using namespace bench;

    // LibTorch's intra-op thread count before anyone changes it.
    int default_torch_threads = 1;

    void bm_torch_adamw(benchmark::State& st, const shape& s, int threads)
    {
        at::set_num_threads(threads);
        std::vector<torch::Tensor> params;
        params.reserve(s.count);
        for (std::size_t k = 0; k < s.count; ++k)
        {
            auto p = torch::full({static_cast<std::int64_t>(s.size)}, 0.5f, torch::kFloat32).requires_grad_();
            p.mutable_grad() = torch::full({static_cast<std::int64_t>(s.size)}, 1e-3f, torch::kFloat32);
            params.push_back(p);
        }
        torch::optim::AdamW opt(params, torch::optim::AdamWOptions(lr)
                                            .betas(std::make_tuple(beta1, beta2))
                                            .eps(eps)
                                            .weight_decay(weight_decay));
        opt.step();  // creates the state
        for (auto _ : st)
        {
            opt.step();
            benchmark::ClobberMemory();
        }
        set_bytes(st, s, adamw_arrays, static_cast<std::size_t>(threads));
    }

    void register_all()
    {
        // 1, LibTorch's default, and all hardware threads (the default can be lower:
        // it is 1 on the 2-core VM of docs/benchmarks.md).
        std::vector<int> threads = {1};
        for (int t : {default_torch_threads, static_cast<int>(all_threads())})
        {
            if (std::find(threads.begin(), threads.end(), t) == threads.end())
            {
                threads.push_back(t);
            }
        }
        for (const shape& s : {case_a, case_b})
        {
            for (int t : threads)
            {
                configure(benchmark::RegisterBenchmark(name("adamw", "libtorch", s, static_cast<std::size_t>(t)).c_str(),
                                                       [s, t](benchmark::State& st) { bm_torch_adamw(st, s, t); }),
                          s);
            }
            register_xoptim_adamw(s);
        }
    }
}

int main(int argc, char** argv)
{
    default_torch_threads = at::get_num_threads();
    register_all();
    return bench::run_main(argc, argv, {{"torch_version", TORCH_VERSION},
                                 {"torch_default_threads", std::to_string(default_torch_threads)},
                                 {"torch_parallel_info", at::get_parallel_info()}});
}
