// Element-wise maps for the layers: out[i] = f(in1[i], in2[i], ...) in SIMD batches
// (xsimd, the widest instruction set the build targets) on xoptim's threads. f is
// generic: it receives xsimd::batch values and uses xsimd's functions (xsimd::max, ...).
// The tail shorter than a batch goes through the same batch code in a zero-padded
// buffer, so every element gets the same arithmetic wherever a range boundary falls.
//
//     // y = max(x, 0)^2
//     map(n, y, [](auto v) { auto r = xsimd::max(v, decltype(v)(0)); return r * r; }, x);
//
// out may be one of the inputs (an update in place); other overlaps are not allowed.
#ifndef XOPTIM_TRAIN_ELEMENTWISE_HPP
#define XOPTIM_TRAIN_ELEMENTWISE_HPP

#include <algorithm>
#include <cstddef>
#include <utility>

#include "../engine/arch/xsimd_version.hpp"
#include "parallel_for.hpp"

namespace xoptim::train
{
    namespace detail
    {
        template <class T, class F, std::size_t... K, class... In>
        void map_range(std::size_t begin, std::size_t end, std::size_t n, T* out, const F& f,
                       std::index_sequence<K...>, const In*... in)
        {
            using batch = xsimd::batch<T>;
            constexpr std::size_t lanes = batch::size;
            const std::size_t whole = std::min(end, n / lanes);
            for (std::size_t k = begin; k < whole; ++k)
            {
                f(batch::load_unaligned(in + k * lanes)...).store_unaligned(out + k * lanes);
            }
            if (end > whole)  // the last batch, short: through zero-padded copies
            {
                const std::size_t at = whole * lanes;
                alignas(64) T buffers[sizeof...(In) + 1][lanes] = {};
                (std::copy(in + at, in + n, buffers[K]), ...);
                f(batch::load_unaligned(buffers[K])...).store_unaligned(buffers[sizeof...(In)]);
                std::copy(buffers[sizeof...(In)], buffers[sizeof...(In)] + (n - at), out + at);
            }
        }
    }

    template <class T, class F, class... In>
    void map(std::size_t n, T* out, const F& f, const In*... in)
    {
        constexpr std::size_t lanes = xsimd::batch<T>::size;
        parallel_for((n + lanes - 1) / lanes, lanes, [&](std::size_t begin, std::size_t end) {
            detail::map_range(begin, end, n, out, f, std::index_sequence_for<In...>{}, in...);
        });
    }
}

#endif
