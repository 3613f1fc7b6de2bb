// The storage codecs (engine/codecs.hpp): bitsandbytes' dynamic maps against a torch
// transcription of its generator, nearest-value encoding, SIMD against scalar, bf16
// rounding against torch, stochastic rounding's statistics, compensation.
// Built twice: for this CPU (AVX-512 paths where it has them) and with AVX-512 off
// (AVX2's), so both paths are held to the same bits; every other build (SSE2, NEON)
// runs it with its own batch codec.
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <xoptim/engine/coded.hpp>

namespace
{
    using arch = xsimd::default_arch;
    using xoptim::dynamic_map;
    namespace codec = xoptim::codec;

    const nlohmann::json& reference()
    {
        static const nlohmann::json j = [] {
            std::ifstream in(XOPTIM_TEST_DATA_DIR "/lowmem.json");
            return nlohmann::json::parse(in);
        }();
        return j;
    }

    std::uint32_t bits_of(float x)
    {
        std::uint32_t u;
        std::memcpy(&u, &x, sizeof u);
        return u;
    }

    float float_of(std::uint32_t u)
    {
        float x;
        std::memcpy(&x, &u, sizeof x);
        return x;
    }

    // Distance in units in the last place of float32 (same-sign values).
    std::int64_t ulps(float a, float b)
    {
        return std::llabs(std::int64_t(bits_of(std::fabs(a))) - std::int64_t(bits_of(std::fabs(b))));
    }

    struct map_case
    {
        const dynamic_map* map;
        const char* key;
    };

    const map_case maps[] = {{&dynamic_map::signed_map(), "dynamic_signed"},
                             {&dynamic_map::unsigned_map(), "dynamic_unsigned"}};

    // Values to encode: every midpoint between neighbouring map values and the
    // floats around it, log-uniform magnitudes down to 1e-9, the ends and zero.
    std::vector<float> probes(const dynamic_map& m)
    {
        const auto& v = m.values();
        std::vector<float> out;
        for (std::size_t i = 0; i + 1 < v.size(); ++i)
        {
            const float mid = float((double(v[i]) + double(v[i + 1])) / 2);
            float below = mid, above = mid;
            out.push_back(mid);
            for (int k = 0; k < 3; ++k)
            {
                below = std::nextafter(below, -2.0f);
                above = std::nextafter(above, 2.0f);
                out.push_back(below);
                out.push_back(above);
            }
        }
        std::mt19937 rng(11);
        std::uniform_real_distribution<float> u(0.0f, 1.0f);
        for (int k = 0; k < 6000; ++k)
        {
            const float x = std::pow(10.0f, -9.0f * u(rng));
            out.push_back(m.is_signed() && k % 2 ? -x : x);
        }
        // The farthest from its midpoint that a scan of every float in [0, 1] found
        // encoded to the other neighbour (6.4e-6 relative, signed map).
        for (float x : {0.0f, -0.0f, 1.0f, 1e-30f, 2e-45f, 0x1.10a0c6p-15f})
        {
            out.push_back(x);
        }
        if (m.is_signed())
        {
            out.push_back(-1.0f);
        }
        return out;
    }

    TEST(dynamic_map, values_match_bitsandbytes_create_dynamic_map)
    {
        for (const auto& c : maps)
        {
            const auto& expected = reference().at(c.key);
            ASSERT_EQ(expected.size(), 256u);
            std::int64_t worst = 0;
            for (std::size_t i = 0; i < 256; ++i)
            {
                const float e = expected[i].get<float>();
                const float got = c.map->values()[i];
                ASSERT_EQ(std::signbit(e), std::signbit(got)) << c.key << " code " << i;
                worst = std::max(worst, ulps(e, got));
            }
            // Ours is fma(q, width, offset) in float (what the AVX-512 decode computes);
            // bitsandbytes sums float32 linspace means in Python floats.
            EXPECT_LE(worst, 8) << c.key;
            EXPECT_EQ(c.map->values()[c.map->zero_code()], 0.0f);
            EXPECT_EQ(c.map->values()[255], 1.0f);
        }
    }

    TEST(dynamic_map, every_value_encodes_to_its_own_code)
    {
        for (const auto& c : maps)
        {
            for (std::size_t i = 0; i < 256; ++i)
            {
                EXPECT_EQ(c.map->encode(c.map->values()[i]), i) << c.key;
            }
        }
    }

    TEST(dynamic_map, encode_picks_the_nearest_value)
    {
        for (const auto& c : maps)
        {
            const auto& v = c.map->values();
            for (const float x : probes(*c.map))
            {
                float best = std::numeric_limits<float>::infinity();
                for (float value : v)
                {
                    best = std::min(best, std::fabs(value - x));
                }
                const float got = std::fabs(v[c.map->encode(x)] - x);
                // The nearest value, except within 1e-5 (relative) of a midpoint, where
                // either neighbour may come: the code is one fma against the bucket's
                // offset (up to 255 codes), whose float rounding moves a midpoint that
                // much. A wrong neighbour is then 2 |x - midpoint| farther.
                EXPECT_LE(got - best, 2e-5f * std::max(std::fabs(x), 1e-7f)) << c.key << " x = " << x;
            }
        }
    }

    TEST(dynamic_map, out_of_range_goes_to_the_nearest_end)
    {
        const float inf = std::numeric_limits<float>::infinity();
        const auto& s = dynamic_map::signed_map();
        const auto& u = dynamic_map::unsigned_map();
        EXPECT_EQ(s.encode(1.5f), 255);
        EXPECT_EQ(s.encode(-1.5f), 0);
        EXPECT_EQ(s.encode(inf), 255);
        EXPECT_EQ(s.encode(-inf), 0);
        EXPECT_EQ(u.encode(7.0f), 255);
        EXPECT_EQ(u.encode(inf), 255);
        EXPECT_EQ(u.encode(-1e-9f), u.zero_code());  // the unsigned map encodes |x|
        // The same through the SIMD path, with NaNs of both signs, quiet and signalling
        // (the codec sees the raw bits: AVX-512's vrangeps gives a signalling NaN back
        // quiet where it clamps any other value), and the smallest magnitudes.
        for (const auto& c : maps)
        {
            const float nan = std::numeric_limits<float>::quiet_NaN();
            const float snan = float_of(0x7f800001u), snan_last = float_of(0x7fbfffffu),
                        minus_snan = float_of(0xff800001u);
            alignas(64) float x[16] = {inf,  -inf, 1.5f,       -1.5f,     nan,          -2.0f, 1e30f,   -1e30f,
                                       -nan, snan, minus_snan, snan_last, float_of(1u), -0.0f, -1e-30f, 0.0f};
            std::uint8_t codes[16];
            const xoptim::arch::q8_codec<arch> coder(c.map->tables());
            for (std::size_t i = 0; i < 16; i += xsimd::batch<float, arch>::size)
            {
                coder.encode(xsimd::batch<float, arch>::load_aligned(x + i), codes + i);
            }
            for (std::size_t i = 0; i < 16; ++i)
            {
                EXPECT_EQ(codes[i], c.map->encode(x[i])) << c.key << " " << x[i];
            }
        }
    }

    // The batch codec of this build (a table permute, byte lookups or cells per
    // instruction set) decodes every code to the map's value, bit for bit.
    TEST(dynamic_map, every_code_decodes_to_its_value_in_batches)
    {
        using batch = xsimd::batch<float, arch>;
        for (const auto& c : maps)
        {
            const xoptim::arch::q8_codec<arch> coder(c.map->tables());
            alignas(64) std::uint8_t codes[256];
            for (std::size_t i = 0; i < 256; ++i)
            {
                codes[i] = std::uint8_t(i);
            }
            for (std::size_t i = 0; i < 256; i += batch::size)
            {
                alignas(64) float v[batch::size];
                coder.decode(codes + i).store_aligned(v);
                for (std::size_t k = 0; k < batch::size; ++k)
                {
                    ASSERT_EQ(bits_of(v[k]), bits_of(c.map->values()[i + k])) << c.key << " code " << i + k;
                }
            }
        }
    }

    // Where the scalar encoder's code changes (found by bisection between every two
    // neighbouring values, so within one float of its real boundary, which lies up to
    // 1e-5 off the midpoint), the batch codec of this build gives the same codes to the
    // floats around it, of both signs.
    TEST(dynamic_map, batch_codes_change_where_the_scalar_codes_do)
    {
        using batch = xsimd::batch<float, arch>;
        for (const auto& c : maps)
        {
            const auto& v = c.map->values();
            std::vector<float> x;
            for (std::size_t k = c.map->zero_code(); k < 255; ++k)
            {
                std::uint32_t below = bits_of(v[k]), past = bits_of(v[k + 1]);  // codes k and k + 1 (as |x|)
                while (past - below > 1)
                {
                    const std::uint32_t mid = below + (past - below) / 2;
                    (c.map->encode(float_of(mid)) == c.map->encode(v[k]) ? below : past) = mid;
                }
                for (std::uint32_t u = past - 3; u <= past + 3; ++u)
                {
                    x.push_back(float_of(u));
                    x.push_back(-float_of(u));
                }
            }
            while (x.size() % batch::size != 0)
            {
                x.push_back(0.0f);
            }
            const xoptim::arch::q8_codec<arch> coder(c.map->tables());
            std::vector<std::uint8_t> codes(x.size());
            for (std::size_t i = 0; i < x.size(); i += batch::size)
            {
                coder.encode(batch::load_unaligned(x.data() + i), codes.data() + i);
            }
            for (std::size_t i = 0; i < x.size(); ++i)
            {
                ASSERT_EQ(codes[i], c.map->encode(x[i])) << c.key << " x = " << x[i];
            }
        }
    }

    // One inf in a block: the scale is the block's largest finite magnitude, the inf
    // goes to the end, and every other value is encoded as without it.
    TEST(block_codes, an_inf_does_not_take_the_block_with_it)
    {
        for (const auto& c : maps)
        {
            alignas(64) float in[256], out[256], clean_out[256];
            for (std::size_t i = 0; i < 256; ++i)
            {
                in[i] = (c.map->is_signed() && i % 3 ? -1.0f : 1.0f) * float(i + 1) / 256;
            }
            std::uint8_t codes[256], clean[256];
            const float clean_scale = codec::encode_q8<arch>(in, *c.map, clean, 256);
            codec::decode_q8<arch>(clean, clean_scale, *c.map, clean_out, 256);
            in[100] = std::numeric_limits<float>::infinity();
            const float scale = codec::encode_q8<arch>(in, *c.map, codes, 256);
            EXPECT_EQ(scale, clean_scale);
            codec::decode_q8<arch>(codes, scale, *c.map, out, 256);
            for (std::size_t i = 0; i < 256; ++i)
            {
                if (i == 100)
                {
                    EXPECT_EQ(codes[i], 255);
                    EXPECT_EQ(out[i], scale);
                    continue;
                }
                EXPECT_EQ(codes[i], clean[i]) << c.key << " " << i;
                EXPECT_EQ(out[i], clean_out[i]);
            }
        }
    }

    // A block of subnormal values: 1 / absmax overflows, so the block is divided by
    // its scale instead, and decodes close to what it held.
    TEST(block_codes, a_subnormal_block_keeps_its_values)
    {
        alignas(64) float in[256] = {}, out[256];
        in[0] = 1e-39f;
        in[1] = -0.5e-39f;
        in[2] = 0.25e-39f;
        std::uint8_t codes[256];
        const auto& s = dynamic_map::signed_map();
        const float scale = codec::encode_q8<arch>(in, s, codes, 256);
        codec::decode_q8<arch>(codes, scale, s, out, 256);
        EXPECT_EQ(scale, 1e-39f);
        for (std::size_t i = 0; i < 256; ++i)
        {
            EXPECT_NEAR(out[i], in[i], 0.01e-39f) << i;
        }
    }

    // decode_q8 / encode_q8 over lengths that leave every kind of tail.
    TEST(block_codes, simd_and_scalar_give_the_same_codes_and_values)
    {
        for (const auto& c : maps)
        {
            const std::vector<float> all = probes(*c.map);
            for (std::size_t n : {0u, 1u, 15u, 16u, 17u, 63u, 64u, 65u, 200u, 255u, 256u})
            {
                for (std::size_t start = 0; start + n <= all.size(); start += 997)
                {
                    alignas(64) float in[256] = {};
                    alignas(64) float out[256] = {};
                    std::uint8_t codes[257] = {};
                    std::copy_n(all.begin() + long(start), n, in);
                    const float absmax = codec::encode_q8<arch>(in, *c.map, codes + 1, n);  // unaligned
                    float top = 0;
                    for (std::size_t i = 0; i < n; ++i)
                    {
                        top = std::max(top, std::fabs(in[i]));
                    }
                    ASSERT_EQ(absmax, top);
                    const float inverse = absmax > 0 ? 1 / absmax : 0;
                    codec::decode_q8<arch>(codes + 1, absmax, *c.map, out, n);
                    for (std::size_t i = 0; i < n; ++i)
                    {
                        ASSERT_EQ(codes[1 + i], c.map->encode(in[i] * inverse)) << c.key << " n " << n << " i " << i;
                        ASSERT_EQ(bits_of(out[i]), bits_of(c.map->values()[codes[1 + i]] * absmax));
                    }
                }
            }
        }
    }

    TEST(block_codes, a_block_of_zeros_stays_zero)
    {
        for (const auto& c : maps)
        {
            alignas(64) float in[256] = {};
            alignas(64) float out[256];
            std::uint8_t codes[256];
            EXPECT_EQ(codec::encode_q8<arch>(in, *c.map, codes, 256), 0.0f);
            codec::decode_q8<arch>(codes, 0.0f, *c.map, out, 256);
            for (std::size_t i = 0; i < 256; ++i)
            {
                EXPECT_EQ(codes[i], c.map->zero_code());
                EXPECT_EQ(out[i], 0.0f);
            }
        }
    }

    TEST(block_codes, error_is_within_half_a_step_of_the_map_times_absmax)
    {
        std::mt19937 rng(3);
        std::normal_distribution<float> normal;
        for (const auto& c : maps)
        {
            alignas(64) float in[256], out[256];
            std::uint8_t codes[256];
            for (auto& x : in)
            {
                x = c.map->is_signed() ? normal(rng) : std::fabs(normal(rng));
            }
            const float absmax = codec::encode_q8<arch>(in, *c.map, codes, 256);
            codec::decode_q8<arch>(codes, absmax, *c.map, out, 256);
            const auto& v = c.map->values();
            for (std::size_t i = 0; i < 256; ++i)
            {
                const std::size_t k = codes[i];
                const float below = k > 0 ? v[k] - v[k - 1] : 0;
                const float above = k < 255 ? v[k + 1] - v[k] : 0;
                // Half the larger gap beside the value, plus the rounding of the
                // scaled value and of the difference.
                EXPECT_LE(std::fabs(out[i] - in[i]),
                          0.5f * std::max(below, above) * absmax + 4 * FLT_EPSILON * std::fabs(in[i]));
            }
        }
    }

    /********
     * bf16 *
     ********/

    TEST(bf16, nearest_even_matches_torch)
    {
        const auto& r = reference().at("bf16");
        const auto& x_bits = r.at("x_bits");
        const auto& expected = r.at("bf16_bits");
        const std::size_t n = x_bits.size();
        std::vector<float, xsimd::aligned_allocator<float, 64>> x(n);
        for (std::size_t i = 0; i < n; ++i)
        {
            x[i] = float_of(x_bits[i].get<std::uint32_t>());
        }
        std::vector<std::uint16_t> simd(n);
        codec::encode_bf16<arch>(x.data(), simd.data(), n);
        for (std::size_t i = 0; i < n; ++i)
        {
            const auto want = expected[i].get<std::uint16_t>();
            if (std::isnan(x[i]))
            {
                // torch writes every NaN as 0xffff; ours keeps the sign and the top
                // payload bits, quieted. Both are NaNs.
                EXPECT_TRUE(std::isnan(xoptim::bfloat16::to_float(simd[i])));
                EXPECT_TRUE(std::isnan(float(xoptim::bfloat16(x[i]))));
                continue;
            }
            EXPECT_EQ(simd[i], want) << std::hex << "x bits " << x_bits[i].get<std::uint32_t>();
            EXPECT_EQ(xoptim::bfloat16(x[i]).bits, want);
        }
    }

    TEST(bf16, decoding_is_exact)
    {
        std::vector<std::uint16_t> in(70);
        for (std::size_t i = 0; i < in.size(); ++i)
        {
            in[i] = std::uint16_t(0x3f80 + 977 * i);
        }
        alignas(64) float out[80];
        codec::decode_bf16<arch>(in.data(), out, in.size());
        for (std::size_t i = 0; i < in.size(); ++i)
        {
            EXPECT_EQ(bits_of(out[i]), std::uint32_t(in[i]) << 16);
        }
    }

    TEST(bf16, stochastic_rounding_is_reproducible_split_invariant_and_unbiased)
    {
        // x = 1 + 2^-10 lies a quarter of the way from bf16 1 to the next value, 1 + 2^-7
        // ... so a stochastic rounding picks the upper one with probability 1/8.
        const std::size_t n = 1 << 16;
        const float x = 1.0f + 0x1p-10f;
        std::vector<float, xsimd::aligned_allocator<float, 64>> in(n, x);
        std::vector<std::uint16_t> a(n), b(n), other(n);
        const std::uint32_t key = codec::stream_key(42, 7, 3);
        codec::encode_bf16_stochastic<arch>(in.data(), a.data(), n, key, 0);
        // The same elements written in pieces starting anywhere: the same bits.
        for (std::size_t first = 0; first < n; first += 333)
        {
            const std::size_t count = std::min<std::size_t>(333, n - first);
            std::vector<float, xsimd::aligned_allocator<float, 64>> piece(in.begin() + long(first),
                                                                           in.begin() + long(first + count));
            codec::encode_bf16_stochastic<arch>(piece.data(), b.data() + first, count, key, std::uint32_t(first));
        }
        EXPECT_EQ(a, b);
        codec::encode_bf16_stochastic<arch>(in.data(), other.data(), n, codec::stream_key(42, 8, 3), 0);
        EXPECT_NE(a, other);
        double sum = 0;
        std::size_t up = 0;
        for (std::uint16_t h : a)
        {
            ASSERT_TRUE(h == 0x3f80 || h == 0x3f81) << std::hex << h;
            up += h == 0x3f81;
            sum += xoptim::bfloat16::to_float(h);
        }
        // Binomial(n, 1/8): sd = sqrt(n p (1-p)) ~ 85; 5 sd.
        EXPECT_NEAR(double(up), n / 8.0, 5 * std::sqrt(n * 0.125 * 0.875));
        EXPECT_NEAR(sum / n, double(x), 5 * std::sqrt(0.125 * 0.875 / n) * 0x1p-7);
    }

    // Elements 2^32 apart draw their own bits (the hash takes 32 bits of the index: they
    // drew the same ones, perfectly correlated), and a call across that boundary is the
    // two calls either side of it, whatever its alignment.
    TEST(bf16, stochastic_rounding_does_not_repeat_after_two_to_the_32_elements)
    {
        const std::size_t n = 4096;
        const std::uint64_t segment = std::uint64_t(1) << 32;
        std::vector<float, xsimd::aligned_allocator<float, 64>> in(n, 1.0f + 0x1p-9f);  // up with p = 1/4
        std::vector<std::uint16_t> near(n), far(n);
        const std::uint32_t key = codec::stream_key(1, 1, 0);
        codec::encode_bf16_stochastic<arch>(in.data(), near.data(), n, key, 7);
        codec::encode_bf16_stochastic<arch>(in.data(), far.data(), n, key, segment + 7);
        std::size_t same = 0;
        for (std::size_t i = 0; i < n; ++i)
        {
            same += near[i] == far[i];
        }
        // Independent draws agree with probability 1/16 + 9/16 = 5/8: 2560 of 4096, sd 31.
        EXPECT_NEAR(double(same), n * 0.625, 6 * std::sqrt(n * 0.625 * 0.375));
        for (const std::uint64_t start : {segment - 3, segment - 100, segment - 16})
        {
            std::vector<std::uint16_t> whole(n), split(n);
            codec::encode_bf16_stochastic<arch>(in.data(), whole.data(), n, key, start);
            const std::size_t before = std::size_t(segment - start);
            std::vector<float, xsimd::aligned_allocator<float, 64>> tail(in.begin() + long(before), in.end());
            codec::encode_bf16_stochastic<arch>(in.data(), split.data(), before, key, start);
            codec::encode_bf16_stochastic<arch>(tail.data(), split.data() + before, n - before, key, segment);
            EXPECT_EQ(whole, split) << start;
        }
    }

    TEST(bf16, stochastic_rounding_keeps_exact_values_and_nan)
    {
        alignas(64) float in[18] = {1.0f, -2.5f, 0.0f, std::numeric_limits<float>::infinity(),
                                    std::numeric_limits<float>::quiet_NaN()};
        std::uint16_t out[18];
        codec::encode_bf16_stochastic<arch>(in, out, 18, 123, 5);
        EXPECT_EQ(out[0], 0x3f80);
        EXPECT_EQ(out[1], 0xc020);
        EXPECT_EQ(out[2], 0x0000);
        EXPECT_EQ(out[3], 0x7f80);
        EXPECT_TRUE(std::isnan(xoptim::bfloat16::to_float(out[4])));
    }

    TEST(bf16, a_compensated_pair_keeps_sixteen_bits)
    {
        std::mt19937 rng(5);
        std::uniform_real_distribution<float> u(-3.0f, 3.0f);
        alignas(64) float in[100], out[100];
        for (auto& x : in)
        {
            x = u(rng);
        }
        std::uint16_t hi[100], lo[100];
        codec::encode_bf16_pair<arch>(in, hi, lo, 100);
        codec::decode_bf16_pair<arch>(hi, lo, out, 100);
        for (std::size_t i = 0; i < 100; ++i)
        {
            EXPECT_EQ(hi[i], xoptim::bfloat16(in[i]).bits);
            EXPECT_LE(std::fabs(out[i] - in[i]), std::fabs(in[i]) * 0x1p-16f);
        }
    }
}
