// How an optimizer stores its states and writes bf16 parameters (docs/quantization.md):
// the user's choice, and the per-tensor layout it gives (optimizer<D>::layout_for).
#ifndef XOPTIM_OPTIM_STORAGE_HPP
#define XOPTIM_OPTIM_STORAGE_HPP

#include <cstddef>
#include <cstdint>

namespace xoptim
{
    enum class state_storage
    {
        native,         // the parameter's math type: float or double
        bf16,           // bfloat16, rounded to nearest-even
        blockwise_8bit  // 8-bit dynamic-map codes, a float absmax per block of 256
    };

    enum class bf16_rounding
    {
        nearest_even,
        stochastic,   // unbiased; seeded, the same for any thread count
        compensated   // the rounding error kept in a second bf16 tensor (Kahan-style)
    };

    inline const char* to_string(state_storage s) noexcept
    {
        return s == state_storage::native ? "native" : s == state_storage::bf16 ? "bf16" : "blockwise_8bit";
    }

    struct storage_options
    {
        // Of float and bf16 parameters; double parameters keep double states.
        state_storage states = state_storage::native;
        // 8-bit states only for tensors of at least this many elements; smaller ones
        // keep float states (their share of memory is small, their statistics noisy).
        std::size_t min_8bit_size = 4096;
        // How the step writes bf16 parameters.
        bf16_rounding parameters = bf16_rounding::nearest_even;
        // The stochastic rounding's stream: the same seed gives the same bits.
        std::uint64_t seed = 0;
    };
}

#endif
