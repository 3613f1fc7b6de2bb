// A scalar product rounded on its own: never contracted with a following add into an
// fma. GCC contracts a * b + c by default wherever the target has an fma, so the same
// line of host code (a hyperparameter, a schedule) would round differently on an
// x86-64 build than on an x86-64-v3 or AArch64 one; written with product(a, b), it
// rounds the same on all. A volatile is the one barrier every compiler keeps.
#ifndef XOPTIM_ENGINE_ARCH_PRODUCT_HPP
#define XOPTIM_ENGINE_ARCH_PRODUCT_HPP

namespace xoptim
{
    namespace arch
    {
        template <class T>
        inline T product(T a, T b) noexcept
        {
            volatile T p = a * b;
            return p;
        }
    }
}

#endif
