// The arch seam: every intrinsic, and every compiler or xsimd workaround, the engine
// uses, behind one set of functions. Each instruction set has its own file, in the
// style of xsimd's arch/ folder:
//
//   generic.hpp      every operation for any xsimd architecture (the fallback)
//   x86_sse2.hpp     SSE2 to SSE4.2 (every x86-64; a build without -march flags)
//   x86_avx2.hpp     AVX and AVX2 (x86-64-v3)
//   x86_fma3.hpp     the FMA3 instructions (with AVX or AVX2)
//   x86_avx512.hpp   AVX-512
//   neon.hpp         ARM NEON (AArch64)
//
// This is the only place that asks which instruction set the build targets; the engine
// files call the functions below and never do. A function here takes xsimd batches of
// any architecture A and calls kernel::f<A>(..., A{}), whose overloads for the tag of
// each instruction set are chosen by overload resolution (the most derived base of A).
// To add an instruction set: a file of kernels for its tag, included below under its
// compiler macro (see docs/design.md, "The arch seam").
#ifndef XOPTIM_ENGINE_ARCH_ARCH_HPP
#define XOPTIM_ENGINE_ARCH_ARCH_HPP

#include <array>
#include <cstddef>
#include <cstdint>

#include "generic.hpp"
#include "product.hpp"
#include "xsimd_version.hpp"

#if defined(__SSE2__)
#include "x86_sse2.hpp"
#endif
#if defined(__AVX__)
#include "x86_avx2.hpp"
#endif
#if defined(__FMA__)
#include "x86_fma3.hpp"
#endif
#if defined(__AVX512F__)
#include "x86_avx512.hpp"
#endif
#if defined(__ARM_NEON)
#include "neon.hpp"
#endif

namespace xoptim
{
    namespace arch
    {
        // The architecture of one-value arithmetic on the host (the engine's finalizing
        // assignments): the narrowest batches of the build. (GCC 12 warns, bug 105593,
        // where an AVX-512 square root of a constant is folded.)
#if defined(__SSE2__)
        using host_arch = xsimd::sse2;
#else
        using host_arch = xsimd::default_arch;
#endif

        /**************
         * Arithmetic *
         **************/

        // The arithmetic gives IEEE's bits on every instruction set: the division and
        // square root correctly rounded, a product rounded on its own, fma rounded once,
        // min and max by compares. Only where an fma is written is a product fused.

        // a * b + c rounded once: the instruction where there is one (FMA3, AVX-512,
        // AArch64), an exact emulation where not (SSE2, generic; see kernel::fma).
        template <class T, class A>
        inline xsimd::batch<T, A> fma(const xsimd::batch<T, A>& a, const xsimd::batch<T, A>& b,
                                      const xsimd::batch<T, A>& c) noexcept
        {
            return kernel::fma<A>(a, b, c, A{});
        }

        // Whether arch::fma is one instruction on A.
        template <class A>
        constexpr bool hardware_fma() noexcept
        {
            return decltype(kernel::hardware_fma(A{}))::value;
        }

        // x unchanged, but unknown to the optimizer: no product before it is contracted
        // with an add after it (GCC contracts a * b + c into an fma by default wherever
        // the target has one, also across xsimd's operators; clang does within one
        // expression).
        template <class T, class A>
        inline xsimd::batch<T, A> opaque(const xsimd::batch<T, A>& x) noexcept
        {
            return kernel::opaque<A>(x, A{});
        }

        // a * b rounded on its own, never contracted with a following add.
        template <class T, class A>
        inline xsimd::batch<T, A> mul(const xsimd::batch<T, A>& a, const xsimd::batch<T, A>& b) noexcept
        {
            return kernel::mul<A>(a, b, A{});
        }

        template <class T, class A>
        inline xsimd::batch<T, A> div(const xsimd::batch<T, A>& a, const xsimd::batch<T, A>& b) noexcept
        {
            return kernel::div<A>(a, b, A{});
        }

        template <class T, class A>
        inline xsimd::batch<T, A> sqrt(const xsimd::batch<T, A>& a) noexcept
        {
            return kernel::sqrt<A>(a, A{});
        }

        // a < b ? a : b, lane by lane: b where one is NaN.
        template <class T, class A>
        inline xsimd::batch<T, A> min(const xsimd::batch<T, A>& a, const xsimd::batch<T, A>& b) noexcept
        {
            return kernel::min<A>(a, b, A{});
        }

        // a > b ? a : b, lane by lane: b where one is NaN.
        template <class T, class A>
        inline xsimd::batch<T, A> max(const xsimd::batch<T, A>& a, const xsimd::batch<T, A>& b) noexcept
        {
            return kernel::max<A>(a, b, A{});
        }

        // The lanes of x as doubles (exact): the low half, then the high one.
        template <class A>
        inline std::array<xsimd::batch<double, A>, 2> widen_halves(const xsimd::batch<float, A>& x) noexcept
        {
            return kernel::widen_halves<A>(x, A{});
        }

        // max(a, |x|), a where x is NaN.
        template <class A>
        inline xsimd::batch<float, A> max_abs(const xsimd::batch<float, A>& a, const xsimd::batch<float, A>& x) noexcept
        {
            return kernel::max_abs<A>(a, x, A{});
        }

        // The largest lane (no lane NaN).
        template <class A>
        inline float horizontal_max(const xsimd::batch<float, A>& b) noexcept
        {
            return kernel::horizontal_max<A>(b, A{});
        }

        /*********************************
         * 8- and 16-bit storage, 32-bit *
         *********************************/

        // batch::size 8- or 16-bit values from p, each in a 32-bit lane of type U.
        template <class U, class A, class S>
        inline xsimd::batch<U, A> widen(const S* p) noexcept
        {
            return kernel::widen<A, U>(p, A{});
        }

        // The lanes of b, each in [0, 2^(8 sizeof(S))), stored to p as S.
        template <class S, class U, class A>
        inline void narrow(const xsimd::batch<U, A>& b, S* p) noexcept
        {
            kernel::narrow<A, S>(b, p, A{});
        }

        // batch::size bf16 values from p, as floats (exact).
        template <class A>
        inline xsimd::batch<float, A> bf16_to_float(const std::uint16_t* p) noexcept
        {
            return kernel::bf16_to_float<A>(p, A{});
        }

        /***********************
         * Kernels with state  *
         ***********************/

        // The 8-bit dynamic map's batch codec, its tables in registers: encode(x, out)
        // writes batch::size codes of x, encode_group(in, scale, out) the codes of
        // in[0, group) * scale, decode(codes) gives batch::size values (not scaled);
        // `interleaved`: whether the fused 8-bit loop (coded.hpp) writes a block's codes
        // between the next block's batches, the encoding tables of every state in
        // registers beside the program's and the decoding tables, or right after the
        // block's own batches, in a loop of their own.
        template <class A>
        using q8_codec = decltype(kernel::q8_codec_of<A>(A{}));

        // 32 running sums of squares in double: add(x) adds x[0, 32), total() their sum.
        template <class A>
        using square_lanes = decltype(kernel::square_lanes_of<A>(A{}));

        [[gnu::always_inline]] inline void prefetch(const void* p) noexcept
        {
            kernel::prefetch(p, xsimd::generic{});
        }

        [[gnu::always_inline]] inline void prefetch_outer(const void* p) noexcept
        {
            kernel::prefetch_outer(p, xsimd::generic{});
        }
    }

    // The instruction set the engine's kernels were compiled for (xsimd's name for it:
    // sse2, fma3+avx2, avx512bw, arm64+neon, ...), and the floats in one of its batches.
    inline const char* simd_arch() noexcept
    {
        return xsimd::default_arch::name();
    }

    inline std::size_t simd_width() noexcept
    {
        return xsimd::batch<float>::size;
    }

    // Whether the fused multiply-adds are one instruction (else an exact emulation).
    inline bool simd_hardware_fma() noexcept
    {
        return arch::hardware_fma<xsimd::default_arch>();
    }
}

#endif
