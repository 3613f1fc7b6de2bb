// Dynamic batch size from memory pressure (SPEC section 6): below 50% of the memory
// budget the batch doubles (up to max), above 80% it halves (down to base/2), in between
// it stays.
//
//     xoptim::train::batch_size_policy policy{32, 64, std::size_t(8) << 30};  // 8 GB budget
//     std::size_t batch = policy.base;
//     for (...)
//     {
//         train_step(batch);
//         batch = policy.next(batch, xoptim::train::current_rss());
//     }
//
// The comparisons are exact in integers: 50% of an odd budget is not rounded either way.
#ifndef XOPTIM_TRAIN_BATCH_SIZE_HPP
#define XOPTIM_TRAIN_BATCH_SIZE_HPP

#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <string>

namespace xoptim::train
{
    struct batch_size_policy
    {
        std::size_t base = 32;          // the starting batch; base/2 (at least 1) is the floor
        std::size_t max = 64;           // the ceiling
        std::size_t budget_bytes = 0;   // the memory the run may use; required

        // The batch to use next, given the one just used and the memory in use.
        // The batch only moves in the direction the pressure asks for: a batch already
        // above max is not cut while memory is plentiful, nor one below the floor raised
        // under pressure. Throws std::invalid_argument naming a bad field or argument.
        std::size_t next(std::size_t current_batch, std::size_t used_bytes) const;

        std::size_t floor() const noexcept
        {
            return std::max<std::size_t>(1, base / 2);
        }
    };

    inline std::size_t batch_size_policy::next(std::size_t current_batch, std::size_t used_bytes) const
    {
        const auto fail = [](const char* what, const std::string& rule, std::size_t got) {
            throw std::invalid_argument(std::string("xoptim::train::batch_size_policy: ") + what + " must be " + rule
                                        + " (got " + std::to_string(got) + ")");
        };
        if (budget_bytes == 0)
        {
            fail("budget_bytes", "> 0", budget_bytes);
        }
        if (base == 0)
        {
            fail("base", ">= 1", base);
        }
        if (max < base)
        {
            fail("max", ">= base (" + std::to_string(base) + ")", max);
        }
        if (current_batch == 0)
        {
            fail("current_batch", ">= 1", current_batch);
        }

        // used < budget / 2, i.e. 2 * used < budget, without overflow.
        const bool low = used_bytes < budget_bytes / 2 + budget_bytes % 2;
        // used > 4 * budget / 5, i.e. 5 * used > 4 * budget, without overflow.
        const bool high = used_bytes > 4 * (budget_bytes / 5) + 4 * (budget_bytes % 5) / 5;
        if (low)
        {
            const std::size_t doubled = current_batch > max / 2 ? max : current_batch * 2;
            return std::max(current_batch, std::min(doubled, max));
        }
        if (high)
        {
            return std::min(current_batch, std::max(current_batch / 2, floor()));
        }
        return current_batch;
    }
}

#endif
