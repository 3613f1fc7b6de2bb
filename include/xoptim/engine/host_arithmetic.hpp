// Host arithmetic in a tensor's type with every operation rounded on its own. GCC
// contracts a * b + c into an fma wherever the target has one, so the same line would
// round differently on an x86-64 build than on an x86-64-v3 or AArch64 one; a value
// stored through a volatile is rounded where it is written, on every build.
#ifndef XOPTIM_ENGINE_HOST_ARITHMETIC_HPP
#define XOPTIM_ENGINE_HOST_ARITHMETIC_HPP

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <type_traits>

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

        // The sum of x[i]^2 in double, each square rounded on its own (a float's is
        // exact): no fma absorbs a double square into the sum on one build and not another.
        template <class T>
        double rounded_square_sum(const T* x, std::size_t n) noexcept
        {
            double sum = 0;
            for (std::size_t i = 0; i < n; ++i)
            {
                const double v = double(x[i]);
                sum += std::is_same_v<T, float> ? v * v : rounded(v * v);
            }
            return sum;
        }

        // The Frobenius norm of x[0..n) where its squares leave double's normal range
        // (doubles above 1e154 or below 1e-146): the largest magnitude times the norm of x
        // divided by it.
        template <class T>
        double scaled_norm(const T* x, std::size_t n) noexcept
        {
            double top = 0;
            for (std::size_t i = 0; i < n; ++i)
            {
                top = std::max(top, std::abs(double(x[i])));
            }
            if (!(top > 0) || std::isinf(top))
            {
                return top;
            }
            double sum = 0;
            for (std::size_t i = 0; i < n; ++i)
            {
                const double v = rounded(double(x[i]) / top);
                sum += rounded(v * v);
            }
            return top * std::sqrt(sum);
        }
    }
}

#endif
