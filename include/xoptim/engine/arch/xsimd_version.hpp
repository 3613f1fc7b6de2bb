// The library's one include of xsimd (every other header reaches xsimd through this one),
// and the xsimd calls whose spelling changed between versions, each behind one name. Compiled
// against xsimd 8.1 (Debian 12); the later spellings follow xsimd's changelog: 9.0 renamed
// hadd to reduce_add (hadd is gone from 11), 10.0 made bitwise_cast take the target's
// element type instead of its batch type. Everything else the library calls is spelled
// the same from 8.1 to 14.
#ifndef XOPTIM_ENGINE_ARCH_XSIMD_VERSION_HPP
#define XOPTIM_ENGINE_ARCH_XSIMD_VERSION_HPP

#include <xsimd/xsimd.hpp>

namespace xoptim
{
    namespace arch
    {
        // The sum of a batch's lanes.
        template <class T, class A>
        inline T reduce_add(const xsimd::batch<T, A>& x) noexcept
        {
#if XSIMD_VERSION_MAJOR < 9
            return xsimd::hadd(x);
#else
            return xsimd::reduce_add(x);
#endif
        }

        // x's bits as a batch of U.
        template <class U, class T, class A>
        inline xsimd::batch<U, A> bitwise_cast(const xsimd::batch<T, A>& x) noexcept
        {
#if XSIMD_VERSION_MAJOR < 10
            return xsimd::bitwise_cast<xsimd::batch<U, A>>(x);
#else
            return xsimd::bitwise_cast<U>(x);
#endif
        }
    }
}

#endif
