// The portable kernels of the arch seam: every operation for any xsimd architecture, in
// xsimd batches and short scalar loops. An instruction set's own file (x86_*.hpp,
// neon.hpp) overloads what its instructions do better, or what xsimd does differently
// there; whatever it leaves out comes from here.
//
// Dispatch is by tag, as in xsimd's own arch/ folder: each kernel takes the architecture
// as a last argument, `requires_arch<Tag>`, and overload resolution picks the most
// derived tag the build's architecture inherits from (xsimd::generic is the base of all).
#ifndef XOPTIM_ENGINE_ARCH_GENERIC_HPP
#define XOPTIM_ENGINE_ARCH_GENERIC_HPP

#include <array>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "q8_tables.hpp"
#include "xsimd_version.hpp"

namespace xoptim
{
    namespace arch
    {
        template <class T>
        using requires_arch = const T&;

        // The front functions (arch.hpp), declared here for the kernels that call others:
        // a call through them reaches the build's own overloads, not only this file's.
        template <class U, class A, class S>
        xsimd::batch<U, A> widen(const S* p) noexcept;
        template <class S, class U, class A>
        void narrow(const xsimd::batch<U, A>& b, S* p) noexcept;
        template <class T, class A>
        xsimd::batch<T, A> fma(const xsimd::batch<T, A>& a, const xsimd::batch<T, A>& b,
                               const xsimd::batch<T, A>& c) noexcept;
        template <class T, class A>
        xsimd::batch<T, A> min(const xsimd::batch<T, A>& a, const xsimd::batch<T, A>& b) noexcept;
        template <class T, class A>
        xsimd::batch<T, A> opaque(const xsimd::batch<T, A>& x) noexcept;

        // The tree every sum of squares ends in, whatever the width it was summed at.
        inline double sum_of_eight(const double* l) noexcept
        {
            return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
        }

        namespace kernel
        {
            using xsimd::generic;

            /**************
             * Arithmetic *
             **************/

            // x, through memory the compiler cannot see through (an ISA's file does it
            // in a register): a product passed through here is never contracted with an
            // add into an fma, whatever -ffp-contract says.
            template <class A, class T>
            inline xsimd::batch<T, A> opaque(const xsimd::batch<T, A>& x, requires_arch<generic>) noexcept
            {
                alignas(64) T p[xsimd::batch<T, A>::size];
                x.store_aligned(p);
#if defined(__GNUC__)
                asm volatile("" : : "r"(p) : "memory");
#endif
                return xsimd::batch<T, A>::load_aligned(p);
            }

            template <class A, class T>
            inline xsimd::batch<T, A> mul(const xsimd::batch<T, A>& a, const xsimd::batch<T, A>& b,
                                          requires_arch<generic>) noexcept
            {
                return arch::opaque(a * b);
            }

            // xsimd's division and square root are IEEE's on x86 (divps, sqrtps); neon.hpp
            // replaces them where they are not.
            template <class A, class T>
            inline xsimd::batch<T, A> div(const xsimd::batch<T, A>& a, const xsimd::batch<T, A>& b,
                                          requires_arch<generic>) noexcept
            {
                return a / b;
            }

            template <class A, class T>
            inline xsimd::batch<T, A> sqrt(const xsimd::batch<T, A>& a, requires_arch<generic>) noexcept
            {
                return xsimd::sqrt(a);
            }

            // One rounding without the instruction: lane by lane through the C library's
            // fma (exact everywhere; x86_sse2.hpp has a batch form for floats).
            template <class A, class T>
            inline xsimd::batch<T, A> fma(const xsimd::batch<T, A>& a, const xsimd::batch<T, A>& b,
                                          const xsimd::batch<T, A>& c, requires_arch<generic>) noexcept
            {
                alignas(64) T x[xsimd::batch<T, A>::size], y[xsimd::batch<T, A>::size], z[xsimd::batch<T, A>::size];
                a.store_aligned(x);
                b.store_aligned(y);
                c.store_aligned(z);
                for (std::size_t i = 0; i < xsimd::batch<T, A>::size; ++i)
                {
                    x[i] = std::fma(x[i], y[i], z[i]);
                }
                return xsimd::batch<T, A>::load_aligned(x);
            }

            // Whether fma is one instruction.
            std::false_type hardware_fma(requires_arch<generic>);

            // min(a, b) = a < b ? a : b and max(a, b) = a > b ? a : b: b where one is NaN
            // (x86's rule, by compare and select; NEON's own min and max give the NaN).
            template <class A, class T>
            inline xsimd::batch<T, A> min(const xsimd::batch<T, A>& a, const xsimd::batch<T, A>& b,
                                          requires_arch<generic>) noexcept
            {
                return xsimd::select(a < b, a, b);
            }

            template <class A, class T>
            inline xsimd::batch<T, A> max(const xsimd::batch<T, A>& a, const xsimd::batch<T, A>& b,
                                          requires_arch<generic>) noexcept
            {
                return xsimd::select(a > b, a, b);
            }

            // max(a, |x|) by compare and select (a NaN x leaves a as it is).
            template <class A>
            inline xsimd::batch<float, A> max_abs(const xsimd::batch<float, A>& a, const xsimd::batch<float, A>& x,
                                                  requires_arch<generic>) noexcept
            {
                const xsimd::batch<float, A> m = xsimd::abs(x);
                return xsimd::select(m > a, m, a);
            }

            // The largest lane, by a tree; the lanes are not NaN.
            template <class A>
            inline float horizontal_max(const xsimd::batch<float, A>& b, requires_arch<generic>) noexcept
            {
                alignas(64) float lanes[xsimd::batch<float, A>::size];
                b.store_aligned(lanes);
                for (std::size_t half = xsimd::batch<float, A>::size / 2; half > 0; half /= 2)
                {
                    for (std::size_t k = 0; k < half; ++k)
                    {
                        lanes[k] = std::max(lanes[k], lanes[k + half]);
                    }
                }
                return lanes[0];
            }

            /*********************************
             * 8- and 16-bit storage, 32-bit *
             *********************************/

            // 8- and 16-bit storage as 32-bit lanes and back, by small fixed-count loops
            // through an aligned buffer (xsimd 8 names neither).
            template <class A, class U, class S>
            inline xsimd::batch<U, A> widen(const S* p, requires_arch<generic>) noexcept
            {
                using batch = xsimd::batch<U, A>;
                alignas(64) U tmp[batch::size];
                for (std::size_t i = 0; i < batch::size; ++i)
                {
                    tmp[i] = U(p[i]);
                }
                return batch::load_aligned(tmp);
            }

            template <class A, class S, class U>
            inline void narrow(const xsimd::batch<U, A>& b, S* p, requires_arch<generic>) noexcept
            {
                using batch = xsimd::batch<U, A>;
                alignas(64) U tmp[batch::size];
                b.store_aligned(tmp);
                for (std::size_t i = 0; i < batch::size; ++i)
                {
                    p[i] = S(tmp[i]);
                }
            }

            template <class A>
            inline xsimd::batch<float, A> bf16_to_float(const std::uint16_t* p, requires_arch<generic>) noexcept
            {
                return arch::bitwise_cast<float>(arch::widen<std::uint32_t, A>(p) << 16);
            }

            /*****************
             * 8-bit codes   *
             *****************/

            // The dynamic map's codes and values by octave tables and gathers (xsimd's).
            template <class A>
            class q8_codec_generic
            {
            public:

                using batch = xsimd::batch<float, A>;
                using ibatch = xsimd::batch<std::int32_t, A>;

                // Elements per encode_group.
                static constexpr std::size_t group = batch::size;

                // Its tables are read from memory: none held in registers.
                static constexpr bool interleaved = true;

                explicit q8_codec_generic(const q8_tables& t) noexcept
                    : m_t(t)
                {
                }

                // Codes of x (already divided by the block's scale), as 32-bit lanes.
                ibatch codes(const batch& x) const noexcept
                {
                    const q8_tables& t = m_t;
                    const batch a = xsimd::abs(x);
                    const ibatch o = octave(a);
                    const batch above = xsimd::select(a >= batch::gather(t.octave_next.data(), o), batch(1.0f), batch(0.0f));
                    const ibatch count = ibatch::gather(t.octave_count.data(), o) + xsimd::batch_cast<std::int32_t>(above);
                    batch code = arch::min(xsimd::floor(arch::fma(a, batch::gather(t.inv_width.data(), count),
                                                                  batch::gather(t.code_offset.data(), count))),
                                           batch::gather(t.last_code.data(), count));
                    if (t.is_signed)
                    {
                        code = xsimd::select(x < batch(0.0f), batch(254.0f) - arch::min(code, batch(254.0f)), code);
                    }
                    return xsimd::batch_cast<std::int32_t>(code);
                }

                void encode(const batch& x, std::uint8_t* out) const noexcept
                {
                    arch::narrow(codes(x), out);
                }

                // Codes of in[0 .. group) times `scale` (1 / the block's absmax).
                void encode_group(const float* in, const batch& scale, std::uint8_t* out) const noexcept
                {
                    encode(batch::load_aligned(in) * scale, out);
                }

                // The map's values of batch::size codes.
                batch decode(const std::uint8_t* c) const noexcept
                {
                    return batch::gather(m_t.values.data(), arch::widen<std::int32_t, A>(c));
                }

            private:

                const q8_tables& m_t;

                // The octave of |x| as an index 0..24 (2^-24 .. 2^0), from its float exponent.
                static ibatch octave(const batch& a) noexcept
                {
                    const ibatch low(127 - std::int32_t(q8_tables::octaves - 1));
                    const ibatch high(std::int32_t(q8_tables::octaves - 1));
                    const ibatch exponent = arch::bitwise_cast<std::int32_t>(a) >> 23;
                    return xsimd::min(xsimd::max(exponent - low, ibatch(0)), high);
                }
            };

            template <class A>
            q8_codec_generic<A> q8_codec_of(requires_arch<generic>);

            /**********************
             * Sums of squares    *
             **********************/

            // 32 running sums of squares in double, one per element position mod 32 of
            // a chunk of 32 floats, added up at the end in a fixed tree: the same sums in
            // the same order on every instruction set (a float squared is exact in
            // double, so an fma and a multiply then add give the same bits).
            template <class A>
            class square_lanes_generic
            {
            public:

                void add(const float* x) noexcept
                {
                    for (std::size_t k = 0; k < 32; ++k)
                    {
                        m_sum[k] += double(x[k]) * double(x[k]);
                    }
                }

                // (s[k] + s[k + 8]) + (s[k + 16] + s[k + 24]) for k = 0..7, then those
                // eight pairwise.
                double total() const noexcept
                {
                    double l[8];
                    for (std::size_t k = 0; k < 8; ++k)
                    {
                        l[k] = (m_sum[k] + m_sum[k + 8]) + (m_sum[k + 16] + m_sum[k + 24]);
                    }
                    return arch::sum_of_eight(l);
                }

            private:

                double m_sum[32] = {};
            };

            template <class A>
            square_lanes_generic<A> square_lanes_of(requires_arch<generic>);

            // The lanes of a float batch as doubles (exact): the low half, then the high.
            template <class A>
            inline std::array<xsimd::batch<double, A>, 2> widen_halves(const xsimd::batch<float, A>& x,
                                                                       requires_arch<generic>) noexcept
            {
                constexpr std::size_t n = xsimd::batch<double, A>::size;
                static_assert(xsimd::batch<float, A>::size == 2 * n, "xoptim: a float batch holds two double batches");
                alignas(64) float f[2 * n];
                alignas(64) double d[2 * n];
                x.store_unaligned(f);
                for (std::size_t i = 0; i < 2 * n; ++i)
                {
                    d[i] = f[i];
                }
                return {xsimd::batch<double, A>::load_unaligned(d), xsimd::batch<double, A>::load_unaligned(d + n)};
            }

            /*********
             * Cache *
             *********/

            // A line asked for into every cache level (always inlined: GCC finds a function
            // that only prefetches free of effects and drops the calls to it),
            [[gnu::always_inline]] inline void prefetch(const void* p, requires_arch<generic>) noexcept
            {
#if defined(__GNUC__)
                __builtin_prefetch(p);
#else
                (void)p;
#endif
            }

            // or into the outer levels only (L2 on x86: prefetcht1), for more lines than
            // the first level holds.
            [[gnu::always_inline]] inline void prefetch_outer(const void* p, requires_arch<generic>) noexcept
            {
#if defined(__GNUC__)
                __builtin_prefetch(p, 0, 2);
#else
                (void)p;
#endif
            }
        }
    }
}

#endif
