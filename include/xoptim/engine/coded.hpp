// Slots stored in a narrower type than the math (bf16, 8-bit block-wise): the same
// fused batch code, run block by block.
//
// For each block of codec_block (256) elements, every coded slot the program reads is
// decoded into an L1-resident float buffer, the program's ordinary batch loop
// (run_prepared) runs over the block with those buffers in place of the coded slots
// and the float tensors in place, then every coded slot it writes is encoded back:
// 8-bit states take the block's new absmax first. Memory is still read once and
// written once per element, in one pass; the buffers never leave L1.
#ifndef XOPTIM_ENGINE_CODED_HPP
#define XOPTIM_ENGINE_CODED_HPP

#include <algorithm>
#include <array>
#include <cassert>
#include <cstdint>

#include "codecs.hpp"
#include "kernel.hpp"

namespace xoptim
{
    // How a slot is stored. native: the math type itself (float or double). The bf16
    // formats differ in how a write rounds: nearest-even, stochastically, or keeping
    // the rounding error in a compensation tensor. q8: 8-bit codes of the signed or
    // unsigned dynamic map with one float absmax per block.
    enum class slot_format : std::uint8_t
    {
        native,
        bf16,
        bf16_stochastic,
        bf16_compensated,
        q8_signed,
        q8_unsigned
    };

    constexpr bool is_8bit(slot_format f) noexcept
    {
        return f == slot_format::q8_signed || f == slot_format::q8_unsigned;
    }

    // One parameter's tensors for the coded path, computed in float.
    struct coded_slots
    {
        tensor_slots<float> plain;                          // float tensors; null where coded
        std::array<const void*, first_local> source{};      // coded slots, read
        std::array<void*, first_local> target{};            // coded slots, written (not the gradient)
        std::array<float*, first_local> absmax{};           // 8-bit slots: a scale per block
        std::array<slot_format, first_local> format{};      // native where `plain` holds the slot
        std::uint16_t* compensation = nullptr;              // bf16_compensated parameter: low halves
        std::uint32_t key = 0;                              // bf16_stochastic: this tensor, this step
        std::size_t position = 0;                           // where the job starts in its tensor (a window's)
    };

    namespace codec
    {
        inline const dynamic_map& map_of(slot_format f) noexcept
        {
            return f == slot_format::q8_signed ? dynamic_map::signed_map() : dynamic_map::unsigned_map();
        }

        // Elements [first, first + n) of a coded tensor into out (first is a multiple of
        // codec_block for 8-bit formats).
        template <class Arch>
        void decode(slot_format f, const void* data, const float* absmax, const std::uint16_t* compensation,
                    std::size_t first, std::size_t n, float* out) noexcept
        {
            if (is_8bit(f))
            {
                for (std::size_t b = 0; b < n; b += codec_block)
                {
                    decode_q8<Arch>(static_cast<const std::uint8_t*>(data) + first + b,
                                    absmax[(first + b) / codec_block], map_of(f), out + b,
                                    std::min(codec_block, n - b));
                }
            }
            else if (f == slot_format::bf16_compensated && compensation != nullptr)
            {
                decode_bf16_pair<Arch>(static_cast<const std::uint16_t*>(data) + first, compensation + first, out, n);
            }
            else
            {
                decode_bf16<Arch>(static_cast<const std::uint16_t*>(data) + first, out, n);
            }
        }

        // A stochastic rounding draws the bits of elements position + first, ... of the
        // tensor's stream (position: where a window of the tensor starts, see window()).
        template <class Arch>
        void encode(slot_format f, void* data, float* absmax, std::uint16_t* compensation, std::uint32_t key,
                    std::size_t position, std::size_t first, std::size_t n, const float* in) noexcept
        {
            switch (f)
            {
                case slot_format::q8_signed:
                case slot_format::q8_unsigned:
                    for (std::size_t b = 0; b < n; b += codec_block)
                    {
                        absmax[(first + b) / codec_block] = encode_q8<Arch>(
                            in + b, map_of(f), static_cast<std::uint8_t*>(data) + first + b, std::min(codec_block, n - b));
                    }
                    break;
                case slot_format::bf16_stochastic:
                    encode_bf16_stochastic<Arch>(in, static_cast<std::uint16_t*>(data) + first, n, key,
                                                 std::uint64_t(position + first));
                    break;
                case slot_format::bf16_compensated:
                    encode_bf16_pair<Arch>(in, static_cast<std::uint16_t*>(data) + first, compensation + first, n);
                    break;
                default:
                    encode_bf16<Arch>(in, static_cast<std::uint16_t*>(data) + first, n);
                    break;
            }
        }
    }

    namespace detail
    {
        inline float*& float_slot(tensor_slots<float>& s, std::size_t i) noexcept
        {
            return i == param_slot ? s.param : s.states[i - first_state];
        }

        template <std::uint64_t Mask>
        inline constexpr bool in_mask(std::size_t i) noexcept
        {
            return (Mask >> i & 1) != 0;
        }
    }

    // Elements [at, at + n) of a coded job's tensors as a job of its own (a factored
    // optimizer's row of a matrix): every slot, float or coded, starts at element `at`, a
    // stochastic rounding continues the tensor's stream there, and 8-bit slots take their
    // block scales from block at / codec_block, so `at` must be a multiple of codec_block
    // where the job has one (asserted). As for tensor_slots, every slot must have the
    // job's size.
    inline coded_slots window(const coded_slots& s, std::size_t at, std::size_t n) noexcept
    {
        coded_slots w = s;
        w.plain = window(s.plain, at, n);
        for (std::size_t i = 0; i < first_local; ++i)
        {
            if (s.format[i] == slot_format::native)
            {
                continue;
            }
            assert((!is_8bit(s.format[i]) || at % codec_block == 0) && "an 8-bit slot is windowed at whole blocks");
            const std::size_t bytes = is_8bit(s.format[i]) ? at : 2 * at;
            w.source[i] = s.source[i] != nullptr ? static_cast<const char*>(s.source[i]) + bytes : nullptr;
            w.target[i] = s.target[i] != nullptr ? static_cast<char*>(s.target[i]) + bytes : nullptr;
            w.absmax[i] = s.absmax[i] != nullptr ? s.absmax[i] + at / codec_block : nullptr;
        }
        w.compensation = s.compensation != nullptr ? s.compensation + at : nullptr;
        w.position = s.position + at;
        return w;
    }

    // Elements per pass of the block loop: whole 8-bit blocks, the buffers of the slots
    // a program touches still in L1.
    inline constexpr std::size_t coded_chunk = 4 * codec_block;

    namespace detail
    {
        // The generic path for elements [first, first + n): every coded slot decoded
        // into its buffer, the batch loop over the buffers and the float tensors, every
        // coded slot written encoded back.
        // `run(slots, n)` runs the loop over the block's slots.
        template <class Traits, class Arch, class Run>
        void run_coded_block_with(const coded_slots& job, std::size_t first, std::size_t n,
                                  float (&buffer)[first_local][coded_chunk], Run&& run)
        {
            constexpr std::uint64_t used = Traits::loads | Traits::stores;
            tensor_slots<float> s = job.plain;
            s.param = s.param != nullptr ? s.param + first : nullptr;
            s.grad = s.grad != nullptr ? s.grad + first : nullptr;
            for (auto& state : s.states)
            {
                state = state != nullptr ? state + first : nullptr;
            }
            for (std::size_t i = 0; i < first_local; ++i)
            {
                if (!in_mask<used>(i) || job.format[i] == slot_format::native)
                {
                    continue;
                }
                if (in_mask<Traits::loads>(i))
                {
                    codec::decode<Arch>(job.format[i], job.source[i], job.absmax[i], job.compensation, first, n,
                                        buffer[i]);
                }
                if (i == grad_slot)
                {
                    s.grad = buffer[i];
                }
                else
                {
                    float_slot(s, i) = buffer[i];
                }
            }
            run(s, n);
            for (std::size_t i = 0; i < first_local; ++i)
            {
                if (in_mask<Traits::stores>(i) && job.format[i] != slot_format::native)
                {
                    codec::encode<Arch>(job.format[i], job.target[i], job.absmax[i], job.compensation, job.key,
                                        job.position, first, n, buffer[i]);
                }
            }
        }

        template <class Arch, class Prepared, class Traits>
        void run_coded_block(const Prepared& prog, const grad_transform& transform, const coded_slots& job,
                             std::size_t first, std::size_t n, float (&buffer)[first_local][coded_chunk])
        {
            run_coded_block_with<Traits, Arch>(job, first, n, buffer, [&](const tensor_slots<float>& s, std::size_t m) {
                run_prepared<Arch, float, Prepared, Traits>(prog, transform, s, 0, m);
            });
        }

        // One 8-bit state in the fused loop: its map's tables in registers, the block's
        // scale, and the running max of the values the block writes.
        template <class Arch>
        struct q8_lane
        {
            using batch = xsimd::batch<float, Arch>;

            explicit q8_lane(slot_format f) noexcept
                : map(codec::map_of(f)), coder(map.tables())
            {
            }

            const dynamic_map& map;
            arch::q8_codec<Arch> coder;
            batch scale = batch(0.0f);
            batch top = batch(0.0f);
        };

        // A whole block of a job whose touched states are all 8-bit, as run_batch's slots:
        // p and g are the float tensors' from the block's first element on (the base);
        // each state is decoded and scaled as it is loaded, and stored to the block's
        // buffer, its lane's running max kept, as it is stored.
        template <class Arch, std::size_t S>
        struct q8_state_slots : tensor_slots<float>
        {
            std::array<q8_lane<Arch>, S>* lanes = nullptr;
            std::array<const std::uint8_t*, S> codes{};
            float (*buffer)[codec_block] = nullptr;

            // The job's scalars, and no float state (every state the program touches is
            // coded); p and g come with each block (rebase).
            q8_state_slots(const coded_slots& job, std::array<q8_lane<Arch>, S>& job_lanes) noexcept
                : tensor_slots<float>{nullptr, nullptr, {}, 0, job.plain.scalars}, lanes(&job_lanes)
            {
            }

            // The view of the n elements from `first` of `job`, their values written to
            // `block_buffer`: only the pointers move, a block at a time (a copy of the
            // whole view per block was 3.5% of the step on one tensor of 2^24).
            void rebase(const coded_slots& job, std::size_t first, std::size_t n, float (*block_buffer)[codec_block]) noexcept
            {
                param = job.plain.param != nullptr ? job.plain.param + first : nullptr;
                grad = job.plain.grad != nullptr ? job.plain.grad + first : nullptr;
                size = n;
                for (std::size_t k = 0; k < S; ++k)
                {
                    const auto* source = static_cast<const std::uint8_t*>(job.source[first_state + k]);
                    codes[k] = source != nullptr ? source + first : nullptr;
                }
                buffer = block_buffer;
            }
        };

        // A state's load and store (p and g take the base's, kernel.hpp).
        template <std::uint64_t Mask, std::size_t I, class B, class Arch, std::size_t S, std::enable_if_t<(I >= first_state), int> = 0>
        [[gnu::always_inline]] inline void load_slot(registers<B>& r, const q8_state_slots<Arch, S>& s, std::size_t i)
        {
            if constexpr (has_slot<Mask, I>)
            {
                const q8_lane<Arch>& lane = (*s.lanes)[I - first_state];
                r[I] = arch::mul(lane.coder.decode(s.codes[I - first_state] + i), lane.scale);
            }
        }

        template <std::uint64_t Mask, std::size_t I, class B, class Arch, std::size_t S, std::enable_if_t<(I >= first_state), int> = 0>
        [[gnu::always_inline]] inline void store_slot(const registers<B>& r, const q8_state_slots<Arch, S>& s, std::size_t i)
        {
            if constexpr (has_slot<Mask, I>)
            {
                q8_lane<Arch>& lane = (*s.lanes)[I - first_state];
                r[I].store_aligned(s.buffer[I - first_state] + i);
                lane.top = arch::max_abs(lane.top, r[I]);
            }
        }

        template <class Arch, std::size_t... K>
        std::array<q8_lane<Arch>, sizeof...(K)> make_lanes(const coded_slots& job, std::index_sequence<K...>)
        {
            return {q8_lane<Arch>(job.format[first_state + K])...};
        }

        // How many of states 0 .. k-1 the program writes.
        template <class Traits>
        constexpr std::size_t written_before(std::size_t k)
        {
            std::size_t n = 0;
            for (std::size_t j = 0; j < k; ++j)
            {
                n += in_mask<Traits::stores>(first_state + j) ? 1 : 0;
            }
            return n;
        }

        // A block's scales from its written states' running maxima: false where one
        // needs encode_q8's rare paths (an inf, a NaN, a subnormal scale).
        template <class Traits, class Arch, std::size_t S>
        [[gnu::always_inline]] inline bool block_scales(const std::array<q8_lane<Arch>, S>& lanes, float (&absmax)[S], float (&inverse)[S]) noexcept
        {
            bool regular = true;
            for (std::size_t k = 0; k < S; ++k)
            {
                absmax[k] = arch::horizontal_max(lanes[k].top);
                inverse[k] = codec::regular_inverse(absmax[k]);
                regular = regular && (!in_mask<Traits::stores>(first_state + k) || inverse[k] > 0 || absmax[k] == 0);
            }
            return regular;
        }

        inline std::uint8_t* codes_of(const coded_slots& job, std::size_t k, std::size_t first) noexcept
        {
            return static_cast<std::uint8_t*>(job.target[first_state + k]) + first;
        }

        // Encodes a block's written states, all in one loop (their work interleaves),
        // unless one needs encode_q8's rare paths.
        template <class Traits, class Arch, std::size_t S, std::size_t... K>
        void encode_lanes(const coded_slots& job, std::array<q8_lane<Arch>, S>& lanes,
                          float (&buffer)[S][codec_block], std::size_t first, std::size_t n, std::index_sequence<K...>)
        {
            using batch = xsimd::batch<float, Arch>;
            constexpr bool written[] = {in_mask<Traits::stores>(first_state + K)...};
            float absmax[S], inverse[S];
            std::size_t i = 0;
            if (block_scales<Traits>(lanes, absmax, inverse))
            {
                const batch scale[S] = {batch(inverse[K])...};
                constexpr std::size_t group = arch::q8_codec<Arch>::group;
                for (; i + group <= n; i += group)
                {
                    ((written[K] ? lanes[K].coder.encode_group(buffer[K] + i, scale[K], codes_of(job, K, first) + i)
                                 : void()),
                     ...);
                }
            }
            // What is left (or everything): lane by lane, on the same scale.
            for (std::size_t k = 0; k < S; ++k)
            {
                if (written[k])
                {
                    job.absmax[first_state + k][first / codec_block] = i == n ? absmax[k] : codec::encode_q8<Arch>(
                        buffer[k] + i, absmax[k], lanes[k].map, lanes[k].coder, codes_of(job, k, first) + i, n - i);
                }
            }
        }

        // A whole block of 8-bit states whose codes are still to be written: its new
        // values in a buffer and their scales, encoded a group at a time between the
        // next block's batches (see run_q8_blocks).
        template <class Arch, std::size_t S>
        struct q8_pending
        {
            const float (*values)[codec_block] = nullptr;  // null: none
            std::size_t first = 0;
            xsimd::batch<float, Arch> scale[S];
        };

        // The pending block's codes, all at once (before a block that is not whole, and
        // at the end).
        template <class Traits, class Arch, std::size_t S>
        [[gnu::always_inline]] inline void encode_pending(const coded_slots& job, const std::array<q8_lane<Arch>, S>& lanes,
                                                          q8_pending<Arch, S>& pending)
        {
            constexpr std::size_t group = arch::q8_codec<Arch>::group;
            for (std::size_t g = 0; pending.values != nullptr && g < codec_block / group; ++g)
            {
                for (std::size_t k = 0; k < S; ++k)
                {
                    if (in_mask<Traits::stores>(first_state + k))
                    {
                        lanes[k].coder.encode_group(pending.values[k] + g * group, pending.scale[k],
                                                    codes_of(job, k, pending.first) + g * group);
                    }
                }
            }
            pending.values = nullptr;
        }

        // Group g of a whole block (its batches) with group g of the pending block's
        // codes written between them: each written state's encoding after its share of
        // the batches. The batches' divisions and square roots wait on their own unit
        // while the encoding's permutes and floors run beside them.
        template <class Traits, class Arch, class Prepared, std::size_t S, std::size_t K>
        [[gnu::always_inline]] inline void run_q8_part(const Prepared& prog,
                                                       const prepared_transform<xsimd::batch<float, Arch>>& transform,
                                                       const coded_slots& job, const q8_state_slots<Arch, S>& s,
                                                       const q8_pending<Arch, S>& pending, std::size_t g)
        {
            if constexpr (in_mask<Traits::stores>(first_state + K))
            {
                constexpr std::size_t group = arch::q8_codec<Arch>::group;
                constexpr std::size_t width = xsimd::batch<float, Arch>::size;
                constexpr std::size_t per_group = group / width;
                constexpr std::size_t written = written_before<Traits>(S);
                constexpr std::size_t rank = written_before<Traits>(K);
                for (std::size_t b = rank * per_group / written; b < (rank + 1) * per_group / written; ++b)
                {
                    run_batch<Traits>(prog, transform, s, g * group + b * width);
                }
                (*s.lanes)[K].coder.encode_group(pending.values[K] + g * group, pending.scale[K],
                                                 codes_of(job, K, pending.first) + g * group);
            }
        }

        template <class Traits, class Arch, class Prepared, std::size_t S, std::size_t... K>
        [[gnu::always_inline]] inline void run_q8_group(const Prepared& prog,
                                                        const prepared_transform<xsimd::batch<float, Arch>>& transform,
                                                        const coded_slots& job, const q8_state_slots<Arch, S>& s,
                                                        const q8_pending<Arch, S>& pending, std::size_t g,
                                                        std::index_sequence<K...>)
        {
            (run_q8_part<Traits, Arch, Prepared, S, K>(prog, transform, job, s, pending, g), ...);
        }

        template <class Traits, class Arch, std::size_t S>
        [[gnu::always_inline]] inline void prefetch_lines(const coded_slots& job, std::size_t at) noexcept
        {
            constexpr std::size_t group = arch::q8_codec<Arch>::group;
            for (std::size_t i = 0; i < group; i += cache_line / sizeof(float))
            {
                if constexpr (has_slot<Traits::loads, param_slot>)
                {
                    arch::prefetch(job.plain.param + at + i);
                }
                if constexpr (has_slot<Traits::loads, grad_slot>)
                {
                    arch::prefetch(job.plain.grad + at + i);
                }
            }
            for (std::size_t k = 0; k < S; ++k)
            {
                for (std::size_t i = 0; in_mask<Traits::loads>(first_state + k) && i < group; i += cache_line)
                {
                    arch::prefetch(static_cast<const std::uint8_t*>(job.source[first_state + k]) + at + i);
                }
            }
        }

        // Asks for the lines of elements [at, at + group) ahead of their
        // batches, or past the end of the range for those at the start of the next job:
        // with tensors of a few pages the hardware prefetchers, which start over at each
        // page, fall behind (4,096 tensors of 4,096, 1 thread: 14.0-14.9 ms without,
        // 13.2-13.3 ms one block ahead, 13.5-14.3 two, 14.3-14.8 four; one block ahead
        // across jobs as well: 13.7-13.9 -> 12.5-13.0 ms).
        template <class Traits, class Arch, std::size_t S>
        [[gnu::always_inline]] inline void prefetch_group(const coded_slots& job, const coded_slots* next,
                                                          std::size_t at, std::size_t end) noexcept
        {
            if (at < end)
            {
                prefetch_lines<Traits, Arch, S>(job, at);
            }
            else if (next != nullptr)
            {
                prefetch_lines<Traits, Arch, S>(*next, at - end);
            }
        }

        // The block scales of a job's 8-bit slots: a line or two per tensor that its
        // first block reads before anything else can start, asked for a job ahead
        // (4,096 tensors of 4,096, 1 thread: 13.35 -> 12.95 ms).
        inline void prefetch_scales(const coded_slots& job) noexcept
        {
            for (const float* scales : job.absmax)
            {
                if (scales != nullptr)
                {
                    arch::prefetch(scales);
                }
            }
        }

        // The fused path, for whole blocks of a parameter whose touched coded slots are
        // all 8-bit states: codes decoded in registers as the batch loads them, the
        // block's new absmax kept as it is written. Where the codec is `interleaved`, a
        // whole block with regular scales is encoded between the next block's batches,
        // its new values kept in the other half of a double buffer until then; any
        // other block, and every block elsewhere, right after its batches.
        template <class Arch, class Prepared, class Traits>
        void run_q8_blocks(const Prepared& prog, const grad_transform& transform, const coded_slots& job,
                           const coded_slots* next, std::size_t begin, std::size_t end)
        {
            using batch = xsimd::batch<float, Arch>;
            // States 0 .. S-1 (the last one the program touches): only they get a lane.
            constexpr std::size_t S = std::max<std::size_t>(1, states_used<Traits>());
            constexpr std::size_t group = arch::q8_codec<Arch>::group;
            constexpr bool pipelined = arch::q8_codec<Arch>::interleaved && written_before<Traits>(S) > 0;
            using states = std::make_index_sequence<S>;
            auto lanes = make_lanes<Arch>(job, states{});
            alignas(64) float buffer[pipelined ? 2 : 1][S][codec_block];
            q8_state_slots<Arch, S> slots(job, lanes);
            q8_pending<Arch, S> pending;
            std::size_t half = 0;
            const Prepared local_prog = prog;
            const prepared_transform<batch> local_transform(transform);
            constexpr std::size_t ahead = codec_block;
            for (std::size_t first = begin; first < end; first += codec_block)
            {
                const std::size_t n = std::min(codec_block, end - first);
                const std::size_t block = first / codec_block;
                for (std::size_t k = 0; k < S; ++k)
                {
                    if (in_mask<Traits::loads>(first_state + k))
                    {
                        lanes[k].scale = batch(job.absmax[first_state + k][block]);
                    }
                    lanes[k].top = batch(0.0f);
                }
                slots.rebase(job, first, n, buffer[half]);
                if (pending.values != nullptr && n == codec_block)
                {
                    for (std::size_t g = 0; g < codec_block / group; ++g)
                    {
                        prefetch_group<Traits, Arch, S>(job, next, first + ahead + g * group, end);
                        run_q8_group<Traits>(local_prog, local_transform, job, slots, pending, g, states{});
                    }
                    pending.values = nullptr;
                }
                else
                {
                    for (std::size_t i = 0; i < n; i += batch::size)
                    {
                        run_batch<Traits>(local_prog, local_transform, slots, i);
                    }
                    encode_pending<Traits>(job, lanes, pending);
                }
                float absmax[S], inverse[S];
                if (pipelined && n == codec_block && block_scales<Traits>(lanes, absmax, inverse))
                {
                    for (std::size_t k = 0; k < S; ++k)
                    {
                        if (in_mask<Traits::stores>(first_state + k))
                        {
                            job.absmax[first_state + k][block] = absmax[k];
                        }
                        pending.scale[k] = batch(inverse[k]);
                    }
                    pending.values = buffer[half];
                    pending.first = first;
                    half ^= 1;
                }
                else
                {
                    encode_lanes<Traits>(job, lanes, buffer[half], first, n, states{});
                }
            }
            encode_pending<Traits>(job, lanes, pending);
        }
    }

    namespace detail
    {
        // A job whose states are bf16 and whose p and g are float, as run_batch's slots:
        // p, g and the scalars are the float tensors' (the base); each state is widened
        // as it is loaded and rounded to nearest-even as it is stored, in registers; the
        // arithmetic of decoding a buffer, running the program over it and encoding it
        // back, element for element.
        struct bf16_state_slots : tensor_slots<float>
        {
            std::array<const std::uint16_t*, max_states> source;
            std::array<std::uint16_t*, max_states> target;
        };

        // A state's load and store (p and g take the base's, kernel.hpp).
        template <std::uint64_t Mask, std::size_t I, class B, std::enable_if_t<(I >= first_state), int> = 0>
        [[gnu::always_inline]] inline void load_slot(registers<B>& r, const bf16_state_slots& s, std::size_t i)
        {
            if constexpr (has_slot<Mask, I>)
            {
                r[I] = arch::bf16_to_float<typename B::arch_type>(s.source[I - first_state] + i);
            }
        }

        template <std::uint64_t Mask, std::size_t I, class B, std::enable_if_t<(I >= first_state), int> = 0>
        [[gnu::always_inline]] inline void store_slot(const registers<B>& r, const bf16_state_slots& s, std::size_t i)
        {
            if constexpr (has_slot<Mask, I>)
            {
                arch::narrow(codec::round_nearest_even<typename B::arch_type>(r[I]), s.target[I - first_state] + i);
            }
        }

        // The fused path for the whole batches of [begin, end) of a job whose touched
        // states are all bf16 (nearest-even) and whose p and g are float: no buffers.
        template <class Arch, class Prepared, class Traits>
        void run_bf16_states(const Prepared& prog, const grad_transform& transform, const coded_slots& job,
                             std::size_t begin, std::size_t end)
        {
            using batch = xsimd::batch<float, Arch>;
            // Local copies: the pointers and constants kept in registers.
            bf16_state_slots s{job.plain, {}, {}};
            for (std::size_t k = 0; k < max_states; ++k)
            {
                s.source[k] = static_cast<const std::uint16_t*>(job.source[first_state + k]);
                s.target[k] = static_cast<std::uint16_t*>(job.target[first_state + k]);
            }
            const Prepared local_prog = prog;
            const prepared_transform<batch> local_transform(transform);
            for (std::size_t i = begin; i + batch::size <= end; i += batch::size)
            {
                run_batch<Traits, Prepared, batch>(local_prog, local_transform, s, i);
            }
        }
    }

    // Runs the program over elements [begin, end) of one coded parameter, begin a
    // multiple of codec_block. Four paths, by what the program touches: no coded slot
    // (the plain batch loop over the whole range); only 8-bit states beside float p
    // and g (the fused loop, for whole blocks of whole batches); only bf16 states
    // beside float p and g (the fused bf16 loop, for whole batches); anything else, and
    // a tensor's last block or batch when it ends within a batch (the generic block
    // path). Each computes the same bits: which one runs never depends on the thread
    // split. `next`, the job after this one (or null), is only read ahead.
    template <class Arch, class Prepared, class Traits>
    void run_coded(const Prepared& prog, const grad_transform& transform, const coded_slots& job,
                   const coded_slots* next, std::size_t begin, std::size_t end)
    {
        constexpr std::uint64_t used = Traits::loads | Traits::stores;
        constexpr std::size_t width = xsimd::batch<float, Arch>::size;
        bool coded = false;
        bool only_8bit_states = true;  // every state touched is 8-bit, p and g are float
        bool only_bf16_states = true;  // every state touched is bf16, p and g are float
        for (std::size_t i = 0; i < first_local; ++i)
        {
            if (detail::in_mask<used>(i))
            {
                coded = coded || job.format[i] != slot_format::native;
                const bool float_slot = i < first_state && job.format[i] == slot_format::native;
                only_8bit_states = only_8bit_states && (float_slot || (i >= first_state && is_8bit(job.format[i])));
                only_bf16_states =
                    only_bf16_states && (float_slot || (i >= first_state && job.format[i] == slot_format::bf16));
            }
        }
        if (!coded)
        {
            run_prepared<Arch, float, Prepared, Traits>(prog, transform, job.plain, begin, end);
            return;
        }
        if (only_bf16_states)
        {
            // A tail shorter than a batch goes the generic way.
            const std::size_t whole = end - (end - begin) % width;
            detail::run_bf16_states<Arch, Prepared, Traits>(prog, transform, job, begin, whole);
            begin = whole;
        }
        if (only_8bit_states)
        {
            // A last block ending within a batch goes the generic way, whole.
            const std::size_t last = (end - begin) % codec_block;
            const std::size_t whole = last % width == 0 ? end : end - last;
            if (next != nullptr)
            {
                detail::prefetch_scales(*next);
            }
            detail::run_q8_blocks<Arch, Prepared, Traits>(prog, transform, job, next, begin, whole);
            begin = whole;
        }
        alignas(64) float buffer[first_local][coded_chunk];
        for (std::size_t first = begin; first < end; first += coded_chunk)
        {
            detail::run_coded_block<Arch, Prepared, Traits>(prog, transform, job, first,
                                                            std::min(coded_chunk, end - first), buffer);
        }
    }

    // The reducing form (kernel.hpp, run_prepared_reducing) over elements [begin, end) of
    // a job with coded slots: always the generic block path, so the reductions see each
    // value as the pass computes it (before a coded state is encoded).
    template <class Arch, class Prepared, class Traits, class Reductions>
    void run_coded_reducing(const Prepared& prog, const Reductions& reds, const grad_transform& transform,
                            const coded_slots& job, std::size_t begin, std::size_t end, double* sums)
    {
        alignas(64) float buffer[first_local][coded_chunk];
        for (std::size_t first = begin; first < end; first += coded_chunk)
        {
            detail::run_coded_block_with<Traits, Arch>(
                job, first, std::min(coded_chunk, end - first), buffer, [&](const tensor_slots<float>& s, std::size_t n) {
                    run_prepared_reducing<Arch, float, Prepared, Traits>(prog, reds, transform, s, 0, n, sums);
                });
        }
    }
}

#endif
