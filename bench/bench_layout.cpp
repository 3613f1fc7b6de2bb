// Where the arrays of one big tensor sit against each other (docs/benchmarks.md,
// "Per instruction set"): AdamW on one tensor of 2^24 floats, float and 8-bit states,
// 1 thread, with p and g at the page offset a large std::vector gets from malloc
// (16 bytes past a page, as case A of bench_step and bench_lowmem) or shifted against
// each other and against the optimizer's states (which xoptim allocates itself).
//
// Names: adamw[_8bit]/xoptim/p<offset>_g<offset>/threads:1, offsets in bytes past a page.
#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>

#include "bench_common.hpp"

namespace
{
    using namespace bench;

    constexpr std::size_t elements = std::size_t(1) << 24;
    constexpr std::size_t page = 4096;

    struct free_deleter
    {
        void operator()(float* p) const noexcept
        {
            std::free(p);
        }
    };

    // elements floats starting `offset` bytes past a page boundary.
    struct placed_array
    {
        std::unique_ptr<float[], free_deleter> owned;
        float* data;

        placed_array(std::size_t offset, float value)
            : owned(static_cast<float*>(std::aligned_alloc(page, elements * sizeof(float) + 2 * page))),
              data(owned.get() + offset / sizeof(float))
        {
            std::fill(data, data + elements, value);
        }
    };

    void bm_layout(benchmark::State& st, std::size_t p_offset, std::size_t g_offset, bool eight_bit)
    {
        xoptim::set_num_threads(1);
        xoptim::adamw opt = make_adamw();
        if (eight_bit)
        {
            xoptim::storage_options s;
            s.states = xoptim::state_storage::blockwise_8bit;
            opt.set_storage(s);
        }
        placed_array p(p_offset, 0.5f), g(g_offset, 1e-3f);
        xoptim::tensor_view<float> pv(p.data, elements), gv(g.data, elements);
        opt.step(pv, gv);  // the states created
        for (auto _ : st)
        {
            opt.step(pv, gv);
            benchmark::ClobberMemory();
        }
        st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * std::int64_t(adamw_arrays)
                             * static_cast<std::int64_t>(elements * sizeof(float)));
    }

    void register_all()
    {
        const std::pair<std::size_t, std::size_t> offsets[] = {{16, 16}, {16, 1040}, {1024, 2048}};
        for (bool eight_bit : {false, true})
        {
            for (const auto& [po, go] : offsets)
            {
                const std::string name = std::string(eight_bit ? "adamw_8bit" : "adamw") + "/xoptim/p"
                                         + std::to_string(po) + "_g" + std::to_string(go) + "/threads:1";
                benchmark::RegisterBenchmark(name.c_str(),
                                             [po = po, go = go, eight_bit](benchmark::State& st) {
                                                 bm_layout(st, po, go, eight_bit);
                                             })
                    ->Unit(benchmark::kMillisecond)
                    ->Repetitions(repetitions)
                    ->ReportAggregatesOnly(true);
            }
        }
    }
}

int main(int argc, char** argv)
{
    register_all();
    return bench::run_main(argc, argv);
}
