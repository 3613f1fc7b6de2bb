// Counts every allocation of the program by replacing the global operator new: include it
// in exactly one file of a test executable, and read xoptim_test::allocations.
#ifndef XOPTIM_TESTS_SUPPORT_COUNT_ALLOCATIONS_HPP
#define XOPTIM_TESTS_SUPPORT_COUNT_ALLOCATIONS_HPP

#include <atomic>
#include <cstdlib>
#include <new>

namespace xoptim_test
{
    inline std::atomic<std::size_t> allocations{0};
}

// The replacements below pair malloc with free; GCC cannot tell they replace the
// global operators and warns about a mismatch that is not there.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

void* operator new(std::size_t n)
{
    ++xoptim_test::allocations;
    if (void* p = std::malloc(n == 0 ? 1 : n))
    {
        return p;
    }
    throw std::bad_alloc();
}

void operator delete(void* p) noexcept
{
    std::free(p);
}

void operator delete(void* p, std::size_t) noexcept
{
    std::free(p);
}

#endif
