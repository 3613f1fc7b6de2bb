// Thread scaling of one AdamW step against the memory floor (the same 4-read /
// 3-write traffic, nothing computed), for 1, 2, 4, ... threads up to the machine's.
// A plain program, no Google Benchmark, so it can be carried as one static binary to
// a bigger machine:  thread_scaling [log2_elements=26] [repetitions=7]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include <xoptim/optim/adam.hpp>

namespace
{
    using clock_type = std::chrono::steady_clock;

    struct floor_task
    {
        float *p, *m, *v;
        const float* g;
        std::size_t n;

        static void call(void* self, std::size_t k, std::size_t parts)
        {
            const auto& t = *static_cast<const floor_task*>(self);
            using batch = xsimd::batch<float>;
            const std::size_t lo = t.n / parts * k / batch::size * batch::size;
            const std::size_t hi = k + 1 == parts ? t.n : t.n / parts * (k + 1) / batch::size * batch::size;
            for (std::size_t i = lo; i < hi; i += batch::size)
            {
                const auto g = batch::load_unaligned(t.g + i);
                (batch::load_unaligned(t.p + i) + g).store_unaligned(t.p + i);
                (batch::load_unaligned(t.m + i) + g).store_unaligned(t.m + i);
                (batch::load_unaligned(t.v + i) + g).store_unaligned(t.v + i);
            }
        }
    };

    template <class F>
    double median_ms(F&& f, int repetitions)
    {
        std::vector<double> t;
        f();  // warm-up
        for (int r = 0; r < repetitions; ++r)
        {
            const auto start = clock_type::now();
            f();
            t.push_back(std::chrono::duration<double, std::milli>(clock_type::now() - start).count());
        }
        std::sort(t.begin(), t.end());
        return t[t.size() / 2];
    }
}

int main(int argc, char** argv)
{
    const std::size_t n = std::size_t(1) << (argc > 1 ? std::atoi(argv[1]) : 26);
    const int repetitions = argc > 2 ? std::atoi(argv[2]) : 7;
    const std::size_t cores = std::max(1u, std::thread::hardware_concurrency());
    std::vector<float> p(n, 1.0f), g(n, 0.5f), m(n, 0.0f), v(n, 0.0f);
    xoptim::adamw opt;
    opt.step(p, g);  // creates the state
    floor_task floor{p.data(), m.data(), v.data(), g.data(), n};
    std::printf("elements %zu, hardware threads %zu, median of %d\n", n, cores, repetitions);
    std::printf("| threads | AdamW ms | floor ms | AdamW / floor | AdamW speed-up | floor speed-up | AdamW GB/s |\n");
    std::printf("|---:|---:|---:|---:|---:|---:|---:|\n");
    double adamw1 = 0, floor1 = 0;
    for (std::size_t threads = 1; threads <= cores; threads *= 2)
    {
        xoptim::set_num_threads(threads);
        const double a = median_ms([&] { opt.step(p, g); }, repetitions);
        const double f = median_ms([&] { xoptim::parallel_run(&floor_task::call, &floor, threads); }, repetitions);
        if (threads == 1)
        {
            adamw1 = a;
            floor1 = f;
        }
        std::printf("| %zu | %.2f | %.2f | %.2f | %.2f | %.2f | %.1f |\n", threads, a, f, a / f, adamw1 / a, floor1 / f,
                    28.0 * double(n) / a / 1e6);
    }
}
