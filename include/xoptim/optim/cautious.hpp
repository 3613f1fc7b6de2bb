// Cautious updates (Liang, Chen, Liu & Liu 2024, "Cautious Optimizers", arXiv 2411.16085),
// an option of AdamW and Lion: components of the update whose sign disagrees with the
// gradient's are dropped, the rest scaled up by a per-tensor factor,
//   mean:            1 / max(mean(mask), 1e-3)        (timm's adamw.py / lion.py)
//   count_plus_one:  numel / (sum(mask) + 1)          (the paper's Algorithm 1, C-Optim)
// The factor needs the whole tensor's mask before any element is updated, and the engine
// shares its scalars across tensors, so a cautious step is two fused passes with the
// mask in a scratch state between them: pass 1 updates the moments and writes the mask
// (0 or 1, or Lion's sign(c) or 0); normalize_caution (here, on the host, per tensor)
// counts it exactly and scales it by the factor, computed in the parameter's type as
// the references compute it; pass 2 applies the update with the scaled mask.
#ifndef XOPTIM_OPTIM_CAUTIOUS_HPP
#define XOPTIM_OPTIM_CAUTIOUS_HPP

#include <algorithm>
#include <cstddef>

#include <xsimd/xsimd.hpp>

#include "state.hpp"

namespace xoptim
{
    enum class caution_normalization
    {
        mean,           // mask / max(mean(mask), 1e-3)
        count_plus_one  // mask * numel / (sum(mask) + 1)
    };

    inline const char* to_string(caution_normalization c) noexcept
    {
        return c == caution_normalization::mean ? "mean" : "count_plus_one";
    }

    namespace detail
    {
        // The factor of a tensor of n elements whose mask has `count` non-zeros, in T.
        template <class T>
        T caution_factor(std::size_t count, std::size_t n, caution_normalization how) noexcept
        {
            if (how == caution_normalization::mean)
            {
                const T mean = n == 0 ? T(0) : static_cast<T>(double(count) / double(n));
                return T(1) / std::max(mean, static_cast<T>(1e-3));
            }
            return static_cast<T>(n) / (static_cast<T>(count) + T(1));
        }

        // The non-zeros of x[0, n): batches of 0/1 summed in T per chunk of 4096 (exact),
        // the chunks' sums in an integer.
        template <class T>
        std::size_t count_nonzero(const T* x, std::size_t n) noexcept
        {
            using batch = xsimd::batch<T>;
            constexpr std::size_t chunk = 4096;
            std::size_t count = 0;
            std::size_t i = 0;
            while (i + batch::size <= n)
            {
                batch ones(T(0));
                const std::size_t end = std::min(n, i + chunk);
                for (; i + batch::size <= end; i += batch::size)
                {
                    ones += xsimd::select(batch::load_unaligned(x + i) != batch(T(0)), batch(T(1)), batch(T(0)));
                }
                count += static_cast<std::size_t>(arch::reduce_add(ones));
            }
            for (; i < n; ++i)
            {
                count += x[i] != T(0);
            }
            return count;
        }

        template <class T>
        void scale(T* x, std::size_t n, T factor) noexcept
        {
            using batch = xsimd::batch<T>;
            std::size_t i = 0;
            for (; i + batch::size <= n; i += batch::size)
            {
                (batch::load_unaligned(x + i) * batch(factor)).store_unaligned(x + i);
            }
            for (; i < n; ++i)
            {
                x[i] *= factor;
            }
        }

        // Scales the mask in state `slot` of every parameter by its tensor's factor: a
        // mask element is 0 or ±1, so the product is exact.
        template <class Step>
        void normalize_caution(const Step& step, std::size_t slot, caution_normalization how)
        {
            step.for_each_parameter([&](const state_store::entry& e, const auto& slots) {
                auto* mask = slots.states[slot];
                using T = std::remove_pointer_t<decltype(mask)>;
                const T factor = caution_factor<T>(count_nonzero(mask, e.size), e.size, how);
                scale(mask, e.size, factor);
            });
        }
    }
}

#endif
