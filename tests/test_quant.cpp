// Group-wise quantization (include/xoptim/quant/groupwise.hpp): the packed layout pinned by
// hand, the round-trip error bound for every format, MLX's formula against
// tests/reference/generate_quant.py, argument errors, layer-wise config, fake quantization.
#include <gtest/gtest.h>

#include "support/message_of.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include <xoptim/quant/groupwise.hpp>

namespace
{
    using xoptim::quant::quant_config;
    using xoptim::quant::quant_mode;
    using xoptim::quant::quant_params;
    using xoptim::quant::quantized_tensor;
    using xoptim_test::message_of;

    using words = std::vector<std::uint32_t>;

    std::uint32_t bits_of(float x)
    {
        std::uint32_t u;
        std::memcpy(&u, &x, sizeof u);
        return u;
    }

    // One row of `cols` values, f(j) for element j.
    template <class F>
    std::vector<float> row(std::size_t cols, F f)
    {
        std::vector<float> w(cols);
        for (std::size_t j = 0; j < cols; ++j)
        {
            w[j] = static_cast<float>(f(static_cast<int>(j)));
        }
        return w;
    }

    quantized_tensor quantize_row(const std::vector<float>& w, int bits, int group_size,
                                  quant_mode mode = quant_mode::affine)
    {
        return xoptim::quant::quantize(w.data(), {1, w.size()}, {bits, group_size, mode});
    }

    /******************
     * Packing layout *
     ******************/

    // Element j of a row occupies bits [j * bits, (j + 1) * bits) of the row's stream; word k
    // holds stream bits [32k, 32k + 32), the first one least significant.

    TEST(quant_layout, four_bits_low_nibble_first)
    {
        // w_j = j % 16 - 15: min -15, max 0. |min| > |max|, so min is MLX's edge:
        // scale = (0 - -15) / 15 = 1, q0 = round(-15 / 1) = -15, scale = -15 / -15 = 1,
        // bias = -15, code = round((w + 15) / 1) = j % 16.
        const auto q = quantize_row(row(32, [](int j) { return j % 16 - 15; }), 4, 32);
        // Codes 0..7 in nibbles 0..7 of word 0: 0x76543210; codes 8..15: 0xFEDCBA98.
        EXPECT_EQ(q.packed, (words{0x76543210, 0xFEDCBA98, 0x76543210, 0xFEDCBA98}));
        EXPECT_EQ(q.scales, std::vector<float>{1.f});
        EXPECT_EQ(q.biases, std::vector<float>{-15.f});
    }

    TEST(quant_layout, four_bits_maximum_edge_gives_a_negative_scale)
    {
        // w_j = j % 16: min 0, max 15. |0| > |15| is false, so the maximum is the edge and
        // the scale is negated: scale = -(15 / 15) = -1, q0 = round(15 / -1) = -15,
        // scale = 15 / -15 = -1, bias = 15, code = round((w - 15) / -1) = 15 - w.
        const std::vector<float> w = row(32, [](int j) { return j % 16; });
        const auto q = quantize_row(w, 4, 32);
        // Codes 15, 14, ..., 8 in nibbles 0..7: 0x89ABCDEF; codes 7..0: 0x01234567.
        EXPECT_EQ(q.packed, (words{0x89ABCDEF, 0x01234567, 0x89ABCDEF, 0x01234567}));
        EXPECT_EQ(q.scales, std::vector<float>{-1.f});
        EXPECT_EQ(q.biases, std::vector<float>{15.f});
        EXPECT_EQ(xoptim::quant::dequantize(q), w);
    }

    TEST(quant_layout, two_bits)
    {
        // w_j = j % 4 - 3: scale 1, bias -3, code j % 4. Four codes 0, 1, 2, 3 per byte:
        // 0 | 1 << 2 | 2 << 4 | 3 << 6 = 0xE4; 16 codes per word.
        const auto q = quantize_row(row(32, [](int j) { return j % 4 - 3; }), 2, 32);
        EXPECT_EQ(q.packed, (words{0xE4E4E4E4, 0xE4E4E4E4}));
        EXPECT_EQ(q.scales, std::vector<float>{1.f});
        EXPECT_EQ(q.biases, std::vector<float>{-3.f});
    }

    TEST(quant_layout, eight_bits_one_byte_per_code)
    {
        // Codes 0..30 and 255: w_j = j - 255 for j < 31, w_31 = 0. min -255, max 0:
        // scale 255 / 255 = 1, bias -255, code = w + 255. Byte k of word i is code 4i + k.
        std::vector<float> w = row(32, [](int j) { return j - 255; });
        w[31] = 0.f;
        const auto q = quantize_row(w, 8, 32);
        EXPECT_EQ(q.packed, (words{0x03020100, 0x07060504, 0x0B0A0908, 0x0F0E0D0C, 0x13121110, 0x17161514,
                                   0x1B1A1918, 0xFF1E1D1C}));
        EXPECT_EQ(q.scales, std::vector<float>{1.f});
        EXPECT_EQ(q.biases, std::vector<float>{-255.f});
    }

    TEST(quant_layout, three_bits_straddle_words)
    {
        // w_j = j % 8 - 7: scale 1, bias -7, code j % 8. Eight 3-bit codes 0..7 make the
        // 24-bit pattern P = 0o76543210 = 0xFAC688, repeated 4 times in 96 bits = 3 words:
        //   word 0 = P | (P & 0xFF) << 24                 = 0x88FAC688
        //   word 1 = P >> 8 | (P & 0xFFFF) << 16          = 0xC688FAC6
        //   word 2 = P >> 16 | P << 8                     = 0xFAC688FA
        // Element 10 (code 2 = 0b010) straddles: its bits 0, 1 are bits 30, 31 of word 0
        // (0, 1: the top nibble 0x8), its bit 2 is bit 0 of word 1 (0: 0x...6).
        const auto q = quantize_row(row(32, [](int j) { return j % 8 - 7; }), 3, 32);
        EXPECT_EQ(q.packed, (words{0x88FAC688, 0xC688FAC6, 0xFAC688FA}));
        EXPECT_EQ(q.scales, std::vector<float>{1.f});
        EXPECT_EQ(q.biases, std::vector<float>{-7.f});
    }

    TEST(quant_layout, six_bits_straddle_words)
    {
        // w_j = j - 63 over a group of 64: scale 1, bias -63, code j. 64 * 6 bits = 12 words.
        //   word 0: codes 0..4 at bits 0, 6, 12, 18, 24; the low 2 bits of code 5 (0b01) at 30:
        //           1 << 6 | 2 << 12 | 3 << 18 | 4 << 24 | 1 << 30                = 0x440C2040
        //   word 1: code 5 >> 2 = 1 at bit 0; codes 6..9 at 4, 10, 16, 22; the low 4 bits
        //           of code 10 (0b1010) at 28:
        //           1 | 6 << 4 | 7 << 10 | 8 << 16 | 9 << 22 | 10 << 28            = 0xA2481C61
        //   word 2: code 10 >> 4 = 0 at bit 0; codes 11..15 at 2, 8, 14, 20, 26:
        //           11 << 2 | 12 << 8 | 13 << 14 | 14 << 20 | 15 << 26             = 0x3CE34C2C
        const auto q = quantize_row(row(64, [](int j) { return j - 63; }), 6, 64);
        ASSERT_EQ(q.packed.size(), 12u);
        EXPECT_EQ(q.packed[0], 0x440C2040u);
        EXPECT_EQ(q.packed[1], 0xA2481C61u);
        EXPECT_EQ(q.packed[2], 0x3CE34C2Cu);
        // Codes 16..31 fill words 3..5 the same way as 0..15 fill 0..2, plus 16 in each code:
        // decoding gives back every value exactly.
        EXPECT_EQ(xoptim::quant::dequantize(q), row(64, [](int j) { return j - 63; }));
    }

    TEST(quant_layout, symmetric_codes_are_offset_binary)
    {
        // w_j = j % 8 - 7: absmax 7, scale = 7 / (2^3 - 1) = 1, q = w, code = q + 8 = j % 8 + 1.
        // Codes 1..8 in nibbles 0..7: 0x87654321.
        const auto q = quantize_row(row(32, [](int j) { return j % 8 - 7; }), 4, 32, quant_mode::symmetric);
        EXPECT_EQ(q.packed, (words{0x87654321, 0x87654321, 0x87654321, 0x87654321}));
        EXPECT_EQ(q.scales, std::vector<float>{1.f});
        EXPECT_TRUE(q.biases.empty());

        // An all-zero group: scale 0, every q = 0, code 8.
        const auto z = quantize_row(std::vector<float>(32, 0.f), 4, 32, quant_mode::symmetric);
        EXPECT_EQ(z.packed, (words{0x88888888, 0x88888888, 0x88888888, 0x88888888}));
        EXPECT_EQ(z.scales, std::vector<float>{0.f});
        EXPECT_EQ(xoptim::quant::dequantize(z), std::vector<float>(32, 0.f));

        // Halves round to even, as in affine mode (absmax 7: scale 1).
        std::vector<float> ties(32, 0.f);
        const float halves[] = {7.f, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f};
        std::copy(std::begin(halves), std::end(halves), ties.begin());
        const auto back = xoptim::quant::dequantize(quantize_row(ties, 4, 32, quant_mode::symmetric));
        EXPECT_EQ(std::vector<float>(back.begin(), back.begin() + 7),
                  (std::vector<float>{7.f, 0.f, 2.f, 2.f, 0.f, -2.f, -2.f}));
    }

    TEST(quant_layout, groups_and_rows_in_row_major_order)
    {
        // (2, 64) in groups of 32: group (r, g) is number 2r + g and holds
        // (j % 16 - 15) * (2r + g + 1): scale 2r + g + 1, bias -15 * (2r + g + 1), codes j % 16.
        std::vector<float> w(128);
        for (int r = 0; r < 2; ++r)
        {
            for (int j = 0; j < 64; ++j)
            {
                w[r * 64 + j] = static_cast<float>((j % 16 - 15) * (2 * r + j / 32 + 1));
            }
        }
        const auto q = xoptim::quant::quantize(w.data(), {2, 64}, {4, 32});
        EXPECT_EQ(q.scales, (std::vector<float>{1, 2, 3, 4}));
        EXPECT_EQ(q.biases, (std::vector<float>{-15, -30, -45, -60}));
        ASSERT_EQ(q.packed.size(), 2u * 8u);   // (2, 64 * 4 / 32)
        for (std::size_t k = 0; k < q.packed.size(); ++k)
        {
            EXPECT_EQ(q.packed[k], k % 2 == 0 ? 0x76543210u : 0xFEDCBA98u) << k;
        }
        EXPECT_EQ(xoptim::quant::dequantize(q), w);
    }

    TEST(quant_layout, constant_and_zero_groups_follow_mlx)
    {
        // Constant 2.5: the maximum is the edge, scale = -max(0 / 15, 1e-7) = -1e-7,
        // q0 = round(2.5 / -1e-7) = -25000000, scale = 2.5 / q0, bias 2.5, codes 0.
        const auto c = quantize_row(std::vector<float>(32, 2.5f), 4, 32);
        EXPECT_EQ(c.packed, words(4, 0u));
        EXPECT_EQ(c.biases, std::vector<float>{2.5f});
        EXPECT_EQ(c.scales, std::vector<float>{2.5f / std::nearbyint(2.5f / -1e-7f)});
        EXPECT_EQ(xoptim::quant::dequantize(c), std::vector<float>(32, 2.5f));
        // Zeros: q0 = round(0 / -1e-7) = 0, so the scale stays -1e-7 and the bias is 0.
        const auto z = quantize_row(std::vector<float>(32, 0.f), 4, 32);
        EXPECT_EQ(z.packed, words(4, 0u));
        EXPECT_EQ(z.scales, std::vector<float>{-1e-7f});
        EXPECT_EQ(z.biases, std::vector<float>{0.f});
        EXPECT_EQ(xoptim::quant::dequantize(z), std::vector<float>(32, 0.f));
    }

    /****************
     * Error bounds *
     ****************/

    // Rows of every kind: normal, all positive, constant / zero / one-outlier groups, tiny.
    std::vector<float> test_matrix(std::size_t rows, std::size_t cols, unsigned seed)
    {
        std::mt19937 gen(seed);
        std::normal_distribution<float> normal(0.f, 1.f);
        std::vector<float> w(rows * cols);
        for (std::size_t r = 0; r < rows; ++r)
        {
            for (std::size_t j = 0; j < cols; ++j)
            {
                float& x = w[r * cols + j];
                switch (r % 5)
                {
                case 0: x = normal(gen); break;
                case 1: x = 3.f + 0.5f * normal(gen); break;
                case 2:
                {
                    const std::size_t chunk = (j / 32) % 4;
                    x = chunk == 0 ? 1.25f : chunk == 1 ? 0.f : chunk == 2 ? -2.f : 0.01f * normal(gen);
                    break;
                }
                case 3: x = j % 32 == 7 ? 40.f : 0.05f * normal(gen); break;
                default: x = 1e-4f * normal(gen); break;
                }
            }
        }
        return w;
    }

    struct format_case
    {
        int bits;
        int group_size;
        quant_mode mode;
    };

    std::vector<format_case> all_formats()
    {
        std::vector<format_case> all;
        for (quant_mode mode : {quant_mode::affine, quant_mode::symmetric})
        {
            for (int bits : {2, 3, 4, 5, 6, 8})
            {
                for (int group_size : {32, 64, 128})
                {
                    all.push_back({bits, group_size, mode});
                }
            }
        }
        return all;
    }

    std::string describe(const format_case& f)
    {
        return std::string(xoptim::quant::to_string(f.mode)) + " bits " + std::to_string(f.bits) + " group "
               + std::to_string(f.group_size);
    }

    TEST(quant_round_trip, within_half_a_step_inside_the_range)
    {
        const std::size_t rows = 10, cols = 256;
        const std::vector<float> w = test_matrix(rows, cols, 7);
        for (const auto& f : all_formats())
        {
            SCOPED_TRACE(describe(f));
            const auto q = xoptim::quant::quantize(w.data(), {rows, cols}, {f.bits, f.group_size, f.mode});
            const std::vector<float> back = xoptim::quant::dequantize(q);
            const float top = static_cast<float>((1 << f.bits) - 1);
            for (std::size_t i = 0; i < w.size(); ++i)
            {
                const std::size_t k = i / static_cast<std::size_t>(f.group_size);
                const float s = std::abs(q.scales[k]);
                const float err = std::abs(back[i] - w[i]);
                // Float rounding of (w - bias) / scale and of the decode, relative to the values.
                const float slack = 1e-6f * (std::abs(w[i]) + (q.biases.empty() ? 0.f : std::abs(q.biases[k])));
                if (f.mode == quant_mode::symmetric)
                {
                    ASSERT_LE(err, 0.5f * s + slack) << i;
                    continue;
                }
                // Affine: the representable range runs from bias (code 0) to bias + top * scale.
                const float a = q.biases[k], b = q.biases[k] + top * q.scales[k];
                const bool inside = w[i] >= std::min(a, b) - slack && w[i] <= std::max(a, b) + slack;
                ASSERT_LE(err, (inside ? 0.5f : 1.f) * s + slack) << i << (inside ? " inside" : " outside");
            }
        }
    }

    // MLX rounds the larger edge onto a code (so 0 is a code too) and rescales to it; the
    // far edge can then fall up to one step outside the codes and is clamped. Here: 2 bits,
    // min -1, max 0.8: scale 1.8 / 3 = 0.6, q0 = round(-1 / 0.6) = round(-1.67) = -2,
    // scale = -1 / -2 = 0.5, bias -1. 0.8 -> round(1.8 / 0.5) = round(3.6) = 4 -> clamped to
    // 3 -> -1 + 3 * 0.5 = 0.5: off by 0.3, more than half a step (0.25), less than one.
    TEST(quant_round_trip, affine_far_edge_may_miss_by_up_to_a_step_as_in_mlx)
    {
        std::vector<float> w(32, 0.8f);
        w[0] = -1.f;
        const auto q = quantize_row(w, 2, 32);
        EXPECT_EQ(q.scales, std::vector<float>{0.5f});
        EXPECT_EQ(q.biases, std::vector<float>{-1.f});
        const auto back = xoptim::quant::dequantize(q);
        EXPECT_EQ(back[0], -1.f);
        EXPECT_EQ(back[1], 0.5f);
        // ... and 0 decodes to 0: code -q0 = 2, -1 + 2 * 0.5.
        w[2] = 0.f;
        EXPECT_EQ(xoptim::quant::dequantize(quantize_row(w, 2, 32))[2], 0.f);
    }

    TEST(quant_round_trip, raw_pointers_match_the_owning_form)
    {
        const std::size_t rows = 5, cols = 128;
        const std::vector<float> w = test_matrix(rows, cols, 3);
        const auto q = xoptim::quant::quantize(w.data(), {rows, cols}, {5, 64, quant_mode::affine});
        words packed(rows * xoptim::quant::packed_cols(cols, 5));
        std::vector<float> scales(rows * 2), biases(rows * 2), back(w.size());
        xoptim::quant::quantize(w.data(), packed.data(), scales.data(), biases.data(), rows, cols, 5, 64);
        EXPECT_EQ(packed, q.packed);
        EXPECT_EQ(scales, q.scales);
        EXPECT_EQ(biases, q.biases);
        xoptim::quant::dequantize(packed.data(), scales.data(), biases.data(), back.data(), rows, cols, 5, 64);
        EXPECT_EQ(back, xoptim::quant::dequantize(q));
        // Symmetric needs no biases.
        xoptim::quant::quantize(w.data(), packed.data(), scales.data(), nullptr, rows, cols, 5, 64,
                                quant_mode::symmetric);
        xoptim::quant::dequantize(packed.data(), scales.data(), nullptr, back.data(), rows, cols, 5, 64,
                                  quant_mode::symmetric);
        const auto s = xoptim::quant::quantize(w.data(), {rows, cols}, {5, 64, quant_mode::symmetric});
        EXPECT_EQ(back, xoptim::quant::dequantize(s));
    }

    TEST(quant_round_trip, higher_dimensional_tensors_group_the_last_axis)
    {
        // (2, 3, 64) is (6, 64) to the quantizer.
        const std::vector<float> w = test_matrix(6, 64, 11);
        const auto a = xoptim::quant::quantize(w.data(), {2, 3, 64}, {4, 32});
        const auto b = xoptim::quant::quantize(w.data(), {6, 64}, {4, 32});
        EXPECT_EQ(a.rows(), 6u);
        EXPECT_EQ(a.cols(), 64u);
        EXPECT_EQ(a.packed, b.packed);
        EXPECT_EQ(a.scales, b.scales);
    }

    /*************************
     * MLX formula reference *
     *************************/

    TEST(quant_reference, matches_the_numpy_transcription_of_mlx)
    {
        std::ifstream in(XOPTIM_TEST_DATA_DIR "/quant.json");
        ASSERT_TRUE(in) << "cannot open quant.json";
        const auto doc = nlohmann::json::parse(in);
        const auto floats = [](const nlohmann::json& j) {
            std::vector<float> v;
            for (const auto& x : j)
            {
                v.push_back(static_cast<float>(x.get<double>()));
            }
            return v;
        };
        std::size_t n_cases = 0;
        for (const auto& c : doc.at("cases"))
        {
            SCOPED_TRACE(c.at("name").get<std::string>());
            const quant_mode mode = c.at("mode") == "affine" ? quant_mode::affine : quant_mode::symmetric;
            const quant_params p{c.at("bits").get<int>(), c.at("group_size").get<int>(), mode};
            const auto shape = c.at("shape").get<std::vector<std::size_t>>();
            const std::vector<float> w = floats(c.at("w"));
            const auto q = xoptim::quant::quantize(w.data(), shape, p);
            // Codes, scales and biases come from divisions and roundings only: to the bit.
            EXPECT_EQ(q.packed, c.at("packed").get<words>());
            const std::vector<float> scales = floats(c.at("scales")), biases = floats(c.at("biases"));
            ASSERT_EQ(q.scales.size(), scales.size());
            ASSERT_EQ(q.biases.size(), biases.size());
            for (std::size_t k = 0; k < scales.size(); ++k)
            {
                EXPECT_EQ(bits_of(q.scales[k]), bits_of(scales[k])) << k;
            }
            for (std::size_t k = 0; k < biases.size(); ++k)
            {
                EXPECT_EQ(bits_of(q.biases[k]), bits_of(biases[k])) << k;
            }
            // The decode q * scale + bias may be fused into one rounding by the compiler.
            const std::vector<float> want = floats(c.at("dequantized")), back = xoptim::quant::dequantize(q);
            ASSERT_EQ(back.size(), want.size());
            for (std::size_t i = 0; i < want.size(); ++i)
            {
                const std::size_t k = i / static_cast<std::size_t>(p.group_size);
                const float mag = std::abs(q.scales[k]) * 256.f + (biases.empty() ? 0.f : std::abs(biases[k]));
                EXPECT_NEAR(back[i], want[i], 2 * std::numeric_limits<float>::epsilon() * mag) << i;
            }
            ++n_cases;
        }
        EXPECT_EQ(n_cases, 26u);
    }

    /**********
     * Errors *
     **********/

    TEST(quant_errors, name_the_argument_and_the_rule)
    {
        const std::vector<float> w(128, 1.f);
        EXPECT_EQ(message_of([&] { xoptim::quant::quantize(w.data(), {2, 64}, {7, 64}); }),
                  "xoptim::quant::quantize: bits must be one of 2, 3, 4, 5, 6, 8 (got 7)");
        EXPECT_EQ(message_of([&] { xoptim::quant::quantize(w.data(), {2, 64}, {1, 64}); }),
                  "xoptim::quant::quantize: bits must be one of 2, 3, 4, 5, 6, 8 (got 1)");
        EXPECT_EQ(message_of([&] { xoptim::quant::quantize(w.data(), {2, 64}, {4, 48}); }),
                  "xoptim::quant::quantize: group_size must be one of 32, 64, 128 (got 48)");
        EXPECT_EQ(message_of([&] { xoptim::quant::quantize(w.data(), {1, 96}, {4, 64}); }),
                  "xoptim::quant::quantize: cols (96) must be a multiple of group_size (64)");
        EXPECT_EQ(message_of([&] { xoptim::quant::quantize(w.data(), {128}, {4, 64}); }),
                  "xoptim::quant::quantize: shape must have at least 2 dimensions, as MLX's (got (128,))");
        EXPECT_EQ(message_of([&] { xoptim::quant::quantize(nullptr, {2, 64}, {4, 64}); }),
                  "xoptim::quant::quantize: w must not be null");

        words packed(16);
        std::vector<float> scales(2), out(128);
        EXPECT_EQ(message_of([&] {
                      xoptim::quant::quantize(w.data(), packed.data(), scales.data(), nullptr, 2, 64, 4, 64);
                  }),
                  "xoptim::quant::quantize: biases (affine mode) must not be null");
        EXPECT_EQ(message_of([&] {
                      xoptim::quant::dequantize(packed.data(), scales.data(), nullptr, out.data(), 2, 64, 9, 64,
                                                quant_mode::symmetric);
                  }),
                  "xoptim::quant::dequantize: bits must be one of 2, 3, 4, 5, 6, 8 (got 9)");
        EXPECT_EQ(message_of([&] { xoptim::quant::fake_quantize(w.data(), out.data(), 1, 100, 4, 32); }),
                  "xoptim::quant::fake_quantize: cols (100) must be a multiple of group_size (32)");
        EXPECT_EQ(message_of([&] {
                      xoptim::quant::fake_quantize(w.data(), out.data(), 2, 64, 4, 64, static_cast<quant_mode>(5));
                  }),
                  "xoptim::quant::fake_quantize: mode must be affine or symmetric (got 5)");

        auto q = xoptim::quant::quantize(w.data(), {2, 64}, {4, 32});
        q.packed.pop_back();
        EXPECT_EQ(message_of([&] { xoptim::quant::dequantize(q); }),
                  "xoptim::quant::dequantize: packed has 15 words, expected 16 for shape (2, 64), 4 bits, "
                  "group_size 32, affine");
        q = xoptim::quant::quantize(w.data(), {2, 64}, {4, 32, quant_mode::symmetric});
        q.biases.resize(4);
        EXPECT_EQ(message_of([&] { xoptim::quant::dequantize(q); }),
                  "xoptim::quant::dequantize: biases has 4 values, expected 0 for shape (2, 64), 4 bits, "
                  "group_size 32, symmetric");
    }

    /************************
     * Layer-wise selection *
     ************************/

    TEST(quant_config_rules, first_match_wins_and_unmatched_stay_float)
    {
        quant_config cfg;
        cfg.keep("embed.weight").add("*.attn.*.weight", {8, 64}).add("*.weight", {4, 32, quant_mode::symmetric});
        EXPECT_FALSE(cfg.lookup("embed.weight"));                       // kept by its own rule
        const auto attn = cfg.lookup("layers.0.attn.q.weight");
        ASSERT_TRUE(attn);
        EXPECT_EQ(attn->bits, 8);
        EXPECT_EQ(attn->group_size, 64);
        EXPECT_EQ(attn->mode, quant_mode::affine);
        const auto mlp = cfg.lookup("layers.0.mlp.up.weight");
        ASSERT_TRUE(mlp);
        EXPECT_EQ(mlp->bits, 4);
        EXPECT_EQ(mlp->group_size, 32);
        EXPECT_EQ(mlp->mode, quant_mode::symmetric);
        EXPECT_FALSE(cfg.lookup("layers.0.mlp.up.bias"));               // no rule
        ASSERT_NE(cfg.match("layers.0.attn.q.weight"), nullptr);
        EXPECT_EQ(cfg.match("layers.0.attn.q.weight")->pattern, "*.attn.*.weight");
        EXPECT_EQ(cfg.match("nothing"), nullptr);

        EXPECT_EQ(message_of([&] { cfg.add("*.bias", {4, 16}); }),
                  "xoptim::quant::quant_config: rule '*.bias': group_size must be one of 32, 64, 128 (got 16)");
    }

    TEST(quant_config_rules, quantize_parameter_applies_the_matching_rule)
    {
        quant_config cfg;
        cfg.keep("head.weight").add("*.weight", {4, 64});
        const std::vector<float> w = test_matrix(4, 128, 5), v(128, 1.f);
        const auto q = xoptim::quant::quantize_parameter("l1.weight", {4, 128}, w.data(), cfg);
        ASSERT_TRUE(q);
        EXPECT_EQ(q->bits, 4);
        EXPECT_EQ(q->group_size, 64);
        EXPECT_EQ(q->packed, xoptim::quant::quantize(w.data(), {4, 128}, {4, 64}).packed);
        EXPECT_FALSE(xoptim::quant::quantize_parameter("head.weight", {4, 128}, w.data(), cfg));
        EXPECT_FALSE(xoptim::quant::quantize_parameter("l1.bias", {128}, v.data(), cfg));
        // A norm's 1-D weight matches "*.weight" but stays float: MLX quantizes matrices only.
        EXPECT_FALSE(xoptim::quant::quantize_parameter("ln.weight", {128}, v.data(), cfg));
        EXPECT_EQ(message_of([&] { xoptim::quant::quantize_parameter("emb.weight", {2, 96}, w.data(), cfg); }),
                  "xoptim::quant::quantize_parameter: parameter 'emb.weight' (2, 96) matches rule '*.weight', "
                  "but its last dimension (96) is not a multiple of group_size (64); add a keep rule before "
                  "it or choose another group_size");
    }

    TEST(quant_config_rules, quantize_params_walks_a_named_set)
    {
        std::vector<float> w1 = test_matrix(2, 64, 1), b1(64, 0.5f), w2 = test_matrix(3, 128, 2);
        xoptim::tensor_view<float> v1(w1.data(), {2, 64}), v2(w2.data(), {3, 128});
        auto params = std::make_tuple(xoptim::named("l1.weight", v1), xoptim::named("l1.bias", b1),
                                      xoptim::named("head.weight", v2));
        quant_config cfg;
        cfg.add("head.*", {8, 128}).add("*.weight", {3, 32});
        const auto out = xoptim::quant::quantize_params(params, cfg);
        ASSERT_EQ(out.size(), 2u);
        EXPECT_EQ(out[0].first, "l1.weight");
        EXPECT_EQ(out[0].second.bits, 3);
        EXPECT_EQ(out[0].second.shape, (std::vector<std::size_t>{2, 64}));
        EXPECT_EQ(out[0].second.packed, xoptim::quant::quantize(w1.data(), {2, 64}, {3, 32}).packed);
        EXPECT_EQ(out[1].first, "head.weight");
        EXPECT_EQ(out[1].second.bits, 8);
        EXPECT_EQ(out[1].second.group_size, 128);
    }

    /*********************
     * Fake quantization *
     *********************/

    TEST(quant_fake, equals_dequantize_of_quantize_to_the_bit)
    {
        const std::size_t rows = 10, cols = 256;
        const std::vector<float> w = test_matrix(rows, cols, 13);
        for (const auto& f : all_formats())
        {
            SCOPED_TRACE(describe(f));
            std::vector<float> fake(w.size());
            xoptim::quant::fake_quantize(w.data(), fake.data(), rows, cols, f.bits, f.group_size, f.mode);
            const auto want = xoptim::quant::dequantize(
                xoptim::quant::quantize(w.data(), {rows, cols}, {f.bits, f.group_size, f.mode}));
            for (std::size_t i = 0; i < w.size(); ++i)
            {
                ASSERT_EQ(bits_of(fake[i]), bits_of(want[i])) << i;
            }
            // In place gives the same.
            std::vector<float> inplace = w;
            xoptim::quant::fake_quantize(inplace.data(), inplace.data(), rows, cols, f.bits, f.group_size, f.mode);
            ASSERT_EQ(inplace, fake);
        }
    }

    TEST(quant_fake, backward_is_the_identity)
    {
        const std::vector<float> g = {0.5f, -1.f, 0.f, 3.25f, -0.f, 1e-30f};
        std::vector<float> out(g.size(), 7.f);
        xoptim::quant::fake_quantize_backward(g.data(), out.data(), g.size());
        for (std::size_t i = 0; i < g.size(); ++i)
        {
            EXPECT_EQ(bits_of(out[i]), bits_of(g[i])) << i;
        }
        std::vector<float> same = g;
        xoptim::quant::fake_quantize_backward(same.data(), same.data(), same.size());
        EXPECT_EQ(same, g);
        xoptim::quant::fake_quantize_backward(nullptr, nullptr, 0);
    }
}
