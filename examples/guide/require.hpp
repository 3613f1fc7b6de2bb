// What a guide program checks beyond what it prints: a condition that does not hold ends
// the program with an error, so its ctest fails.
#ifndef XOPTIM_EXAMPLES_GUIDE_REQUIRE_HPP
#define XOPTIM_EXAMPLES_GUIDE_REQUIRE_HPP

#include <stdexcept>
#include <string>

namespace guide
{
    inline void require(bool holds, const std::string& what)
    {
        if (!holds)
        {
            throw std::runtime_error("guide: " + what);
        }
    }
}

#endif
