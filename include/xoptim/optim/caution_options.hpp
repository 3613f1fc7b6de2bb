// The normalizations of a cautious update (cautious.hpp), an option of AdamW and Lion; here
// apart so the options structs need no engine.
#ifndef XOPTIM_OPTIM_CAUTION_OPTIONS_HPP
#define XOPTIM_OPTIM_CAUTION_OPTIONS_HPP

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
}

#endif
