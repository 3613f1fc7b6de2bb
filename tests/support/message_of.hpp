// The message of the exception of type E (std::invalid_argument unless given) that f()
// throws, to compare whole messages; other exceptions go on to the test.
#ifndef XOPTIM_TESTS_SUPPORT_MESSAGE_OF_HPP
#define XOPTIM_TESTS_SUPPORT_MESSAGE_OF_HPP

#include <stdexcept>
#include <string>
#include <type_traits>

namespace xoptim_test
{
    template <class E = std::invalid_argument, class F>
    std::string message_of(F&& f)
    {
        try
        {
            f();
        }
        catch (const E& e)
        {
            return e.what();
        }
        return std::is_same_v<E, std::invalid_argument> ? "no std::invalid_argument thrown" : "no exception thrown";
    }
}

#endif
