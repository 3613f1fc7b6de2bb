// The message of the std::invalid_argument that f() throws, to compare whole messages.
#pragma once

#include <stdexcept>
#include <string>

namespace xoptim_test
{
    template <class F>
    std::string message_of(F&& f)
    {
        try
        {
            f();
        }
        catch (const std::invalid_argument& e)
        {
            return e.what();
        }
        return "no std::invalid_argument thrown";
    }
}
