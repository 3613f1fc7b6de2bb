// Group-wise quantization in MLX's layout (SPEC section 6; docs/quantization.md).
//
// A row-major (rows, cols) float matrix is cut along its last axis into groups of
// group_size values (32, 64 or 128). Each group gets a scale (and in affine mode a bias),
// each value a code of `bits` bits (2, 3, 4, 5, 6 or 8):
//
//   affine     w ~ scale * q + bias,           q in [0, 2^bits - 1]   as mlx.core.quantize
//   symmetric  w ~ scale * (c - 2^(bits-1)),   scale = absmax / (2^(bits-1) - 1), no bias
//
// The codes of a row form one bit stream, low bits first: element j occupies bits
// [j * bits, (j + 1) * bits), and word k of the row holds bits [32k, 32k + 32), bit 0 the
// least significant. For 3, 5 and 6 bits a code may straddle two words. This is what MLX
// writes (see docs/quantization.md for where), so `packed`, `scales` and `biases` load
// into mx.dequantize / mx.quantized_matmul unchanged:
//
//     packed  (rows, cols * bits / 32) uint32
//     scales  (rows, cols / group_size) float
//     biases  (rows, cols / group_size) float    (empty in symmetric mode)
//
//     std::vector<float> w(512 * 256);
//     auto q = xoptim::quant::quantize(w.data(), {512, 256}, {4, 64});   // 4 bits, groups of 64
//     std::vector<float> back = xoptim::quant::dequantize(q);
//
// Layer-wise configuration (quant_config: name patterns, first match wins), and fake
// quantization with its straight-through gradient for quantization-aware training, are at
// the end of the declarations.
#ifndef XOPTIM_QUANT_GROUPWISE_HPP
#define XOPTIM_QUANT_GROUPWISE_HPP

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "../engine/arch/arch.hpp"
#include "../optim/routing.hpp"
#include "../params/param_set.hpp"
#include "../params/tensor_traits.hpp"

namespace xoptim::quant
{
    /**********
     * Format *
     **********/

    enum class quant_mode
    {
        affine,     // scale and bias per group, unsigned codes (MLX's "affine")
        symmetric   // scale per group, codes offset by 2^(bits-1), no bias
    };

    const char* to_string(quant_mode mode) noexcept;

    // How one tensor is quantized. The defaults are MLX's (4 bits, groups of 64).
    struct quant_params
    {
        int bits = 4;
        int group_size = 64;
        quant_mode mode = quant_mode::affine;
    };

    // A quantized tensor: the float tensor's shape, grouped along its last axis.
    struct quantized_tensor
    {
        std::vector<std::uint32_t> packed;   // (rows, cols * bits / 32)
        std::vector<float> scales;           // (rows, cols / group_size)
        std::vector<float> biases;           // (rows, cols / group_size); empty when symmetric
        std::vector<std::size_t> shape;      // at least 2 dimensions; rows = all but the last
        int bits = 4;
        int group_size = 64;
        quant_mode mode = quant_mode::affine;

        std::size_t rows() const noexcept;
        std::size_t cols() const noexcept;

        quant_params params() const noexcept
        {
            return {bits, group_size, mode};
        }
    };

    // uint32 words per row of `cols` values at `bits` bits.
    constexpr std::size_t packed_cols(std::size_t cols, int bits) noexcept
    {
        return cols * static_cast<std::size_t>(bits) / 32;
    }

    /************************
     * Quantize, dequantize *
     ************************/

    // Quantizes the row-major (rows, cols) matrix w into packed, scales and biases (sized
    // as above; biases may be null in symmetric mode, where it is not written). Throws
    // std::invalid_argument for bits or group_size outside MLX's sets, cols not a
    // multiple of group_size, or a null pointer.
    void quantize(const float* w, std::uint32_t* packed, float* scales, float* biases, std::size_t rows,
                  std::size_t cols, int bits, int group_size, quant_mode mode = quant_mode::affine);

    // The inverse: out (rows, cols) from packed, scales and biases.
    void dequantize(const std::uint32_t* packed, const float* scales, const float* biases, float* out,
                    std::size_t rows, std::size_t cols, int bits, int group_size,
                    quant_mode mode = quant_mode::affine);

    // The same on owned storage; `shape` needs at least 2 dimensions, as MLX's.
    quantized_tensor quantize(const float* w, const std::vector<std::size_t>& shape, const quant_params& params = {});
    void dequantize(const quantized_tensor& q, float* out);
    std::vector<float> dequantize(const quantized_tensor& q);

    /************************
     * Layer-wise selection *
     ************************/

    // One rule: parameters whose name matches `pattern` ('*' any run, '?' one character)
    // are quantized with `params`, or kept in float when it is empty.
    struct quant_rule
    {
        std::string pattern;
        std::optional<quant_params> params;
    };

    // Which parameters are quantized, and how. The first rule whose pattern matches a
    // parameter's name decides; a name no rule matches stays in float.
    //
    //     xoptim::quant::quant_config cfg;
    //     cfg.keep("embed.weight")                 // before the rule that would catch it
    //        .add("*.attn.*.weight", {8, 64})
    //        .add("*.weight", {4, 64});
    class quant_config
    {
    public:

        // Throws std::invalid_argument naming the pattern when params are not supported.
        quant_config& add(std::string pattern, const quant_params& params);
        quant_config& keep(std::string pattern);

        // The first rule matching `name`, or null.
        const quant_rule* match(std::string_view name) const noexcept;
        // What to do with `name`: its params, or empty to keep it in float.
        std::optional<quant_params> lookup(std::string_view name) const;

        const std::vector<quant_rule>& rules() const noexcept
        {
            return m_rules;
        }

    private:

        std::vector<quant_rule> m_rules;
    };

    // Quantizes one parameter if the config says so: empty when its rule keeps it in float,
    // no rule matches, or it has fewer than 2 dimensions (biases and norm gains: MLX
    // quantizes matrices only). A matched matrix whose last dimension is not a multiple of
    // the rule's group_size is an error naming the parameter and the rule, not a silent skip.
    std::optional<quantized_tensor> quantize_parameter(std::string_view name, const std::vector<std::size_t>& shape,
                                                       const float* data, const quant_config& config);

    // Every parameter of a parameter set (a named tuple, list or model, params/param_set.hpp)
    // that the config quantizes, with its dotted name, in walk order.
    template <class P>
    std::vector<std::pair<std::string, quantized_tensor>> quantize_params(P&& params, const quant_config& config);

    /****************************************************
     * Fake quantization (quantization-aware training) *
     ****************************************************/

    // out = dequantize(quantize(w)), bit for bit, without packing. out may be w.
    void fake_quantize(const float* w, float* out, std::size_t rows, std::size_t cols, int bits, int group_size,
                       quant_mode mode = quant_mode::affine);

    // The straight-through estimator: grad_in = grad_out (grad_in may be grad_out). No
    // gradient is zeroed for clamped values, unlike the clipped estimators of learned ranges
    // (PACT, LSQ): here a group's range comes from its own weights, so symmetric mode clamps
    // nothing, and affine mode only values within one step of the group's far edge (MLX
    // rounds the near edge onto a code, which can leave the far one short by up to a step).
    // Zeroing those would freeze each group's extreme weights for no reason.
    void fake_quantize_backward(const float* grad_out, float* grad_in, std::size_t n) noexcept;

    /******************
     * Implementation *
     ******************/

    namespace detail
    {
        using fbatch = xsimd::batch<float>;
        using ibatch = xsimd::batch<std::int32_t>;

        // Every group is a whole number of batches: no scalar tail, so fake_quantize and
        // dequantize run the very same arithmetic on every element.
        static_assert(32 % fbatch::size == 0, "xoptim::quant: the float batch must divide the group size 32");

        constexpr int max_group_size = 128;

        [[noreturn]] inline void fail(const char* who, const std::string& what)
        {
            throw std::invalid_argument(std::string("xoptim::quant::") + who + ": " + what);
        }

        // What is wrong with a format, or empty when MLX supports it.
        inline std::string format_problem(int bits, int group_size, quant_mode mode)
        {
            if (bits < 2 || bits > 8 || bits == 7)
            {
                return "bits must be one of 2, 3, 4, 5, 6, 8 (got " + std::to_string(bits) + ")";
            }
            if (group_size != 32 && group_size != 64 && group_size != 128)
            {
                return "group_size must be one of 32, 64, 128 (got " + std::to_string(group_size) + ")";
            }
            if (mode != quant_mode::affine && mode != quant_mode::symmetric)
            {
                return "mode must be affine or symmetric (got " + std::to_string(static_cast<int>(mode)) + ")";
            }
            return {};
        }

        inline void check_format(const char* who, int bits, int group_size, quant_mode mode)
        {
            const std::string problem = format_problem(bits, group_size, mode);
            if (!problem.empty())
            {
                fail(who, problem);
            }
        }

        inline void check_cols(const char* who, std::size_t cols, int group_size)
        {
            if (cols % static_cast<std::size_t>(group_size) != 0)
            {
                fail(who, "cols (" + std::to_string(cols) + ") must be a multiple of group_size ("
                              + std::to_string(group_size) + ")");
            }
        }

        inline void check_pointer(const char* who, const void* p, const char* name)
        {
            if (p == nullptr)
            {
                fail(who, std::string(name) + " must not be null");
            }
        }

        inline void check_matrix(const char* who, const std::vector<std::size_t>& shape, int group_size)
        {
            if (shape.size() < 2)
            {
                fail(who, "shape must have at least 2 dimensions, as MLX's (got " + format_shape(shape) + ")");
            }
            check_cols(who, shape.back(), group_size);
        }

        inline std::size_t rows_of(const std::vector<std::size_t>& shape) noexcept
        {
            std::size_t r = 1;
            for (std::size_t d = 0; d + 1 < shape.size(); ++d)
            {
                r *= shape[d];
            }
            return shape.empty() ? 0 : r;
        }

        inline float hmin(fbatch b) noexcept
        {
            float lanes[fbatch::size];
            b.store_unaligned(lanes);
            float m = lanes[0];
            for (std::size_t i = 1; i < fbatch::size; ++i)
            {
                m = std::min(m, lanes[i]);
            }
            return m;
        }

        inline float hmax(fbatch b) noexcept
        {
            float lanes[fbatch::size];
            b.store_unaligned(lanes);
            float m = lanes[0];
            for (std::size_t i = 1; i < fbatch::size; ++i)
            {
                m = std::max(m, lanes[i]);
            }
            return m;
        }

        // One group's scale and bias (bias 0 in symmetric mode).
        struct group_coder
        {
            float scale = 0;
            float bias = 0;
        };

        // MLX's affine scale and bias (mlx/ops.cpp, affine_quantize; the same steps in
        // mlx/backend/cpu/quantized.cpp), in float as MLX computes them. The edge of larger
        // magnitude becomes the bias and is rounded onto a code, which makes 0 a code too
        // (q = -q0); the scale is negative when that edge is the maximum. 1e-7 keeps a
        // constant group's scale off zero.
        inline group_coder affine_coder(float w_min, float w_max, int bits) noexcept
        {
            const float n_bins = static_cast<float>((1 << bits) - 1);
            const bool min_is_edge = std::abs(w_min) > std::abs(w_max);
            float scale = std::max((w_max - w_min) / n_bins, 1e-7f);
            scale = min_is_edge ? scale : -scale;
            const float edge = min_is_edge ? w_min : w_max;
            const float q0 = std::nearbyint(edge / scale);
            group_coder c;
            c.scale = scale;
            if (q0 != 0)
            {
                c.scale = edge / q0;
                c.bias = edge;
            }
            return c;
        }

        // Codes of one group (each already masked to `bits` bits) and its coder.
        inline group_coder encode_group(const float* w, int group_size, int bits, quant_mode mode, std::int32_t* codes)
        {
            const auto g = static_cast<std::size_t>(group_size);
            constexpr std::size_t n = fbatch::size;
            const ibatch mask((1 << bits) - 1);
            group_coder c;
            if (mode == quant_mode::affine)
            {
                fbatch lo = fbatch::load_unaligned(w);
                fbatch hi = lo;
                for (std::size_t i = n; i < g; i += n)
                {
                    const fbatch x = fbatch::load_unaligned(w + i);
                    lo = arch::min(lo, x);
                    hi = arch::max(hi, x);
                }
                c = affine_coder(hmin(lo), hmax(hi), bits);
                const fbatch scale(c.scale), bias(c.bias), zero(0.f), top(static_cast<float>((1 << bits) - 1));
                for (std::size_t i = 0; i < g; i += n)
                {
                    // Divide, not multiply by a reciprocal: the codes must be MLX's.
                    fbatch q = xsimd::nearbyint(arch::div(fbatch::load_unaligned(w + i) - bias, scale));
                    q = arch::min(arch::max(q, zero), top);
                    // The mask only matters for NaN, whose conversion is out of range.
                    (xsimd::to_int(q) & mask).store_unaligned(codes + i);
                }
                return c;
            }
            fbatch amax = xsimd::abs(fbatch::load_unaligned(w));
            for (std::size_t i = n; i < g; i += n)
            {
                amax = arch::max(amax, xsimd::abs(fbatch::load_unaligned(w + i)));
            }
            const int qmax = (1 << (bits - 1)) - 1;
            const ibatch offset(1 << (bits - 1));
            c.scale = hmax(amax) / static_cast<float>(qmax);
            if (!(c.scale > 0))
            {
                // An all-zero group (or one whose scale underflows to 0): every q is 0.
                for (std::size_t i = 0; i < g; i += n)
                {
                    offset.store_unaligned(codes + i);
                }
                return c;
            }
            const fbatch scale(c.scale), lo(static_cast<float>(-qmax)), hi(static_cast<float>(qmax));
            for (std::size_t i = 0; i < g; i += n)
            {
                fbatch q = xsimd::nearbyint(arch::div(fbatch::load_unaligned(w + i), scale));
                q = arch::min(arch::max(q, lo), hi);
                ((xsimd::to_int(q) + offset) & mask).store_unaligned(codes + i);
            }
            return c;
        }

        // Values of one group from its codes: q * scale + bias as MLX writes it, rounded
        // twice as MLX's CPU path does (arch::mul: never contracted into an fma, so the
        // bits are the same on every build). This is the one decoder for dequantize and
        // fake_quantize, so those two always agree to the bit.
        inline void decode_group(const std::int32_t* codes, int group_size, int bits, quant_mode mode,
                                 const group_coder& c, float* out)
        {
            const auto g = static_cast<std::size_t>(group_size);
            constexpr std::size_t n = fbatch::size;
            const fbatch scale(c.scale);
            if (mode == quant_mode::affine)
            {
                const fbatch bias(c.bias);
                for (std::size_t i = 0; i < g; i += n)
                {
                    const fbatch q = xsimd::to_float(ibatch::load_unaligned(codes + i));
                    (arch::mul(q, scale) + bias).store_unaligned(out + i);
                }
                return;
            }
            const ibatch offset(1 << (bits - 1));
            for (std::size_t i = 0; i < g; i += n)
            {
                const fbatch q = xsimd::to_float(ibatch::load_unaligned(codes + i) - offset);
                (q * scale).store_unaligned(out + i);
            }
        }

        // Appends the group's codes to the row's bit stream. A group always fills whole
        // words (group_size * bits is a multiple of 32), so groups pack independently.
        inline void pack_group(const std::int32_t* codes, int group_size, int bits, std::uint32_t* words) noexcept
        {
            std::uint64_t pending = 0;
            int filled = 0;
            for (int i = 0; i < group_size; ++i)
            {
                pending |= static_cast<std::uint64_t>(static_cast<std::uint32_t>(codes[i])) << filled;
                filled += bits;
                if (filled >= 32)
                {
                    *words++ = static_cast<std::uint32_t>(pending);
                    pending >>= 32;
                    filled -= 32;
                }
            }
        }

        inline void unpack_group(const std::uint32_t* words, int group_size, int bits, std::int32_t* codes) noexcept
        {
            const std::uint64_t mask = (std::uint64_t(1) << bits) - 1;
            std::uint64_t pending = 0;
            int available = 0;
            for (int i = 0; i < group_size; ++i)
            {
                if (available < bits)
                {
                    pending |= static_cast<std::uint64_t>(*words++) << available;
                    available += 32;
                }
                codes[i] = static_cast<std::int32_t>(pending & mask);
                pending >>= bits;
                available -= bits;
            }
        }

        inline void check_raw(const char* who, std::size_t cols, int bits, int group_size, quant_mode mode)
        {
            check_format(who, bits, group_size, mode);
            check_cols(who, cols, group_size);
        }

        class quantize_visitor
        {
        public:

            quantize_visitor(const quant_config& config, std::vector<std::pair<std::string, quantized_tensor>>& out)
                : m_config(config), m_out(out)
            {
            }

            [[noreturn]] void mismatch(const name_path& path, const std::string& what) const
            {
                fail("quantize_params", "parameter '" + path.name() + "': " + what);
            }

            template <class T, class G>
            void leaf(const name_path& path, T& param, G&)
            {
                static_assert(std::is_same_v<tensor::value_type<T>, float>,
                              "xoptim::quant::quantize_params: quantization reads float tensors");
                const std::string name = path.name();
                if (!tensor::contiguous(param))
                {
                    mismatch(path, "parameter is not contiguous");
                }
                auto q = quantize_parameter(name, tensor::shape(param), tensor::data(param), m_config);
                if (q)
                {
                    m_out.emplace_back(name, std::move(*q));
                }
            }

        private:

            const quant_config& m_config;
            std::vector<std::pair<std::string, quantized_tensor>>& m_out;
        };
    }

    inline const char* to_string(quant_mode mode) noexcept
    {
        return mode == quant_mode::affine ? "affine" : mode == quant_mode::symmetric ? "symmetric" : "unknown";
    }

    inline std::size_t quantized_tensor::rows() const noexcept
    {
        return detail::rows_of(shape);
    }

    inline std::size_t quantized_tensor::cols() const noexcept
    {
        return shape.empty() ? 0 : shape.back();
    }

    inline void quantize(const float* w, std::uint32_t* packed, float* scales, float* biases, std::size_t rows,
                         std::size_t cols, int bits, int group_size, quant_mode mode)
    {
        detail::check_raw("quantize", cols, bits, group_size, mode);
        const auto g = static_cast<std::size_t>(group_size);
        const std::size_t groups = rows * (cols / g);
        if (groups == 0)
        {
            return;
        }
        detail::check_pointer("quantize", w, "w");
        detail::check_pointer("quantize", packed, "packed");
        detail::check_pointer("quantize", scales, "scales");
        if (mode == quant_mode::affine)
        {
            detail::check_pointer("quantize", biases, "biases (affine mode)");
        }
        const std::size_t words = packed_cols(static_cast<std::size_t>(group_size), bits);
        alignas(64) std::int32_t codes[detail::max_group_size];
        for (std::size_t k = 0; k < groups; ++k)
        {
            const auto c = detail::encode_group(w + k * g, group_size, bits, mode, codes);
            detail::pack_group(codes, group_size, bits, packed + k * words);
            scales[k] = c.scale;
            if (mode == quant_mode::affine)
            {
                biases[k] = c.bias;
            }
        }
    }

    inline void dequantize(const std::uint32_t* packed, const float* scales, const float* biases, float* out,
                           std::size_t rows, std::size_t cols, int bits, int group_size, quant_mode mode)
    {
        detail::check_raw("dequantize", cols, bits, group_size, mode);
        const auto g = static_cast<std::size_t>(group_size);
        const std::size_t groups = rows * (cols / g);
        if (groups == 0)
        {
            return;
        }
        detail::check_pointer("dequantize", packed, "packed");
        detail::check_pointer("dequantize", scales, "scales");
        detail::check_pointer("dequantize", out, "out");
        if (mode == quant_mode::affine)
        {
            detail::check_pointer("dequantize", biases, "biases (affine mode)");
        }
        const std::size_t words = packed_cols(static_cast<std::size_t>(group_size), bits);
        alignas(64) std::int32_t codes[detail::max_group_size];
        for (std::size_t k = 0; k < groups; ++k)
        {
            detail::unpack_group(packed + k * words, group_size, bits, codes);
            detail::group_coder c;
            c.scale = scales[k];
            c.bias = mode == quant_mode::affine ? biases[k] : 0.f;
            detail::decode_group(codes, group_size, bits, mode, c, out + k * g);
        }
    }

    inline quantized_tensor quantize(const float* w, const std::vector<std::size_t>& shape, const quant_params& params)
    {
        detail::check_format("quantize", params.bits, params.group_size, params.mode);
        detail::check_matrix("quantize", shape, params.group_size);
        quantized_tensor q;
        q.shape = shape;
        q.bits = params.bits;
        q.group_size = params.group_size;
        q.mode = params.mode;
        const std::size_t rows = q.rows(), cols = q.cols();
        const std::size_t groups = rows * (cols / static_cast<std::size_t>(params.group_size));
        q.packed.resize(rows * packed_cols(cols, params.bits));
        q.scales.resize(groups);
        if (params.mode == quant_mode::affine)
        {
            q.biases.resize(groups);
        }
        quantize(w, q.packed.data(), q.scales.data(), q.biases.data(), rows, cols, params.bits, params.group_size,
                 params.mode);
        return q;
    }

    inline void dequantize(const quantized_tensor& q, float* out)
    {
        detail::check_format("dequantize", q.bits, q.group_size, q.mode);
        detail::check_matrix("dequantize", q.shape, q.group_size);
        const std::size_t rows = q.rows(), cols = q.cols();
        const std::size_t groups = rows * (cols / static_cast<std::size_t>(q.group_size));
        const auto sizes = [&](const char* field, std::size_t got, std::size_t want, const char* unit) {
            if (got != want)
            {
                detail::fail("dequantize", std::string(field) + " has " + std::to_string(got) + " " + unit
                                               + ", expected " + std::to_string(want) + " for shape "
                                               + format_shape(q.shape) + ", " + std::to_string(q.bits)
                                               + " bits, group_size " + std::to_string(q.group_size) + ", "
                                               + to_string(q.mode));
            }
        };
        sizes("packed", q.packed.size(), rows * packed_cols(cols, q.bits), "words");
        sizes("scales", q.scales.size(), groups, "values");
        sizes("biases", q.biases.size(), q.mode == quant_mode::affine ? groups : 0, "values");
        dequantize(q.packed.data(), q.scales.data(), q.biases.data(), out, rows, cols, q.bits, q.group_size, q.mode);
    }

    inline std::vector<float> dequantize(const quantized_tensor& q)
    {
        std::vector<float> out(q.shape.size() < 2 ? 0 : q.rows() * q.cols());
        dequantize(q, out.data());
        return out;
    }

    inline quant_config& quant_config::add(std::string pattern, const quant_params& params)
    {
        const std::string problem = detail::format_problem(params.bits, params.group_size, params.mode);
        if (!problem.empty())
        {
            detail::fail("quant_config", "rule '" + pattern + "': " + problem);
        }
        m_rules.push_back({std::move(pattern), params});
        return *this;
    }

    inline quant_config& quant_config::keep(std::string pattern)
    {
        m_rules.push_back({std::move(pattern), std::nullopt});
        return *this;
    }

    inline const quant_rule* quant_config::match(std::string_view name) const noexcept
    {
        for (const auto& r : m_rules)
        {
            if (glob_match(r.pattern, name))
            {
                return &r;
            }
        }
        return nullptr;
    }

    inline std::optional<quant_params> quant_config::lookup(std::string_view name) const
    {
        const quant_rule* r = match(name);
        return r ? r->params : std::nullopt;
    }

    inline std::optional<quantized_tensor> quantize_parameter(std::string_view name,
                                                              const std::vector<std::size_t>& shape,
                                                              const float* data, const quant_config& config)
    {
        const quant_rule* rule = config.match(name);
        if (rule == nullptr || !rule->params || shape.size() < 2)
        {
            return std::nullopt;
        }
        const quant_params& p = *rule->params;
        if (shape.back() % static_cast<std::size_t>(p.group_size) != 0)
        {
            detail::fail("quantize_parameter",
                         "parameter '" + std::string(name) + "' " + format_shape(shape) + " matches rule '"
                             + rule->pattern + "', but its last dimension (" + std::to_string(shape.back())
                             + ") is not a multiple of group_size (" + std::to_string(p.group_size)
                             + "); add a keep rule before it or choose another group_size");
        }
        return quantize(data, shape, p);
    }

    template <class P>
    std::vector<std::pair<std::string, quantized_tensor>> quantize_params(P&& params, const quant_config& config)
    {
        std::vector<std::pair<std::string, quantized_tensor>> out;
        detail::quantize_visitor v(config, out);
        walk_params(v, std::forward<P>(params), no_grads{});
        return out;
    }

    inline void fake_quantize(const float* w, float* out, std::size_t rows, std::size_t cols, int bits,
                              int group_size, quant_mode mode)
    {
        detail::check_raw("fake_quantize", cols, bits, group_size, mode);
        const auto g = static_cast<std::size_t>(group_size);
        const std::size_t groups = rows * (cols / g);
        if (groups == 0)
        {
            return;
        }
        detail::check_pointer("fake_quantize", w, "w");
        detail::check_pointer("fake_quantize", out, "out");
        alignas(64) std::int32_t codes[detail::max_group_size];
        for (std::size_t k = 0; k < groups; ++k)
        {
            // The group is read whole (its range) before any of it is written: out may be w.
            const auto c = detail::encode_group(w + k * g, group_size, bits, mode, codes);
            detail::decode_group(codes, group_size, bits, mode, c, out + k * g);
        }
    }

    inline void fake_quantize_backward(const float* grad_out, float* grad_in, std::size_t n) noexcept
    {
        if (grad_in != grad_out && n > 0)
        {
            std::memmove(grad_in, grad_out, n * sizeof(float));
        }
    }
}

#endif
