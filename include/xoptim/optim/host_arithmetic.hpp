// Host arithmetic in a tensor's type with every operation rounded on its own. GCC
// contracts a * b + c into an fma wherever the target has one, so the same line would
// round differently on an x86-64 build than on an x86-64-v3 or AArch64 one; a value
// stored through a volatile is rounded where it is written, on every build.
#ifndef XOPTIM_OPTIM_HOST_ARITHMETIC_HPP
#define XOPTIM_OPTIM_HOST_ARITHMETIC_HPP

#include <cmath>

namespace xoptim
{
    namespace detail
    {
        // x rounded to T on its own.
        template <class T>
        T rounded(T x) noexcept
        {
            volatile T v = x;
            return v;
        }

        // ATen's lerp(start, end, weight) in T, in its two forms (start + w (end - start)
        // for |w| < 0.5, else end - (end - start)(1 - w)), each operation rounded.
        template <class T>
        T aten_lerp(T start, T end, T weight) noexcept
        {
            const T diff = rounded<T>(end - start);
            if (std::abs(weight) < T(0.5))
            {
                return rounded<T>(start + rounded<T>(weight * diff));
            }
            return rounded<T>(end - rounded<T>(diff * rounded<T>(T(1) - weight)));
        }
    }
}

#endif
