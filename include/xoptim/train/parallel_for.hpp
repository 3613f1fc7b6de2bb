// Row-parallel loops for the layers: [0, n) cut into one contiguous range per thread of
// xoptim's pool (engine/parallel.hpp: set_num_threads), or run on the calling thread when
// the work is too small to pay for waking threads. Each item is computed by the same code
// whatever the split, so results do not depend on the thread count.
//
// The body must not throw (it may run on a pool thread): check inputs before the loop.
#ifndef XOPTIM_TRAIN_PARALLEL_FOR_HPP
#define XOPTIM_TRAIN_PARALLEL_FOR_HPP

#include <algorithm>
#include <cstddef>

#include "../engine/parallel.hpp"

namespace xoptim::train
{
    // Below about this many element operations per thread a loop stays on one thread.
    inline constexpr std::size_t min_parallel_work = std::size_t(1) << 15;

    // Calls body(begin, end) over [0, n) in up to num_threads() pieces, `work_per_item`
    // being a rough count of element operations per item.
    template <class F>
    void parallel_for(std::size_t n, std::size_t work_per_item, const F& body)
    {
        const std::size_t work = n * std::max<std::size_t>(1, work_per_item);
        const std::size_t pieces = std::min({num_threads(), n, std::max<std::size_t>(1, work / min_parallel_work)});
        if (pieces <= 1)
        {
            body(std::size_t(0), n);
            return;
        }
        struct context
        {
            const F* body;
            std::size_t n;
        } ctx{&body, n};
        parallel_run(
            [](void* c, std::size_t k, std::size_t count) {
                const auto& x = *static_cast<const context*>(c);
                (*x.body)(x.n * k / count, x.n * (k + 1) / count);
            },
            &ctx, pieces);
    }
}

#endif
