// Optimizer state: for every parameter, the optimizer's state tensors (m, v, ...),
// created once with the parameter's shape (or their own: state_extent), zero, 64-byte
// aligned (a big state's arrays at their own offsets within a page: detail::page_offset),
// kept in parameter order and known by the parameter's name. Each tensor is stored in its
// format: the parameter's math type (float or double), bf16, or 8-bit codes with a float
// absmax per block of 256 (engine/coded.hpp); a compensated bf16 parameter adds its low
// halves.
#ifndef XOPTIM_OPTIM_STATE_HPP
#define XOPTIM_OPTIM_STATE_HPP

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <ostream>
#include <string>
#include <vector>

#include "../engine/coded.hpp"
#include "../params/tensor_traits.hpp"

namespace xoptim
{
    // Element types of parameters. bf16 parameters are computed in float32.
    enum class dtype
    {
        float32,
        float64,
        bfloat16
    };

    template <class T>
    constexpr dtype dtype_of() noexcept
    {
        static_assert(std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, bfloat16>,
                      "xoptim: parameters must be float, double or xoptim::bfloat16");
        return std::is_same_v<T, float> ? dtype::float32 : std::is_same_v<T, double> ? dtype::float64 : dtype::bfloat16;
    }

    constexpr std::size_t dtype_size(dtype t) noexcept
    {
        return t == dtype::float32 ? 4 : t == dtype::float64 ? 8 : 2;
    }

    constexpr const char* dtype_name(dtype t) noexcept
    {
        return t == dtype::float32 ? "float32" : t == dtype::float64 ? "float64" : "bfloat16";
    }

    // The type the step computes a parameter in.
    constexpr dtype math_type(dtype t) noexcept
    {
        return t == dtype::float64 ? dtype::float64 : dtype::float32;
    }

    // Bytes held by an optimizer's state (with the array a step carries between its
    // passes: optimizer::report) beside the bytes of the parameters it serves,
    // and the kernels its steps run: the instruction set (xsimd's name: sse2,
    // fma3+avx2, avx512bw, arm64+neon, ...), floats per batch, and whether a fused
    // multiply-add is one instruction or its exact emulation.
    struct state_report
    {
        std::size_t state_bytes = 0;
        std::size_t param_bytes = 0;
        const char* simd_arch = xoptim::simd_arch();
        std::size_t simd_width = xoptim::simd_width();
        bool hardware_fma = xoptim::simd_hardware_fma();
        // The CBLAS the optimizer's matrix products run on (Muon, and routers holding
        // it): blas::library().text(). Empty for element-wise optimizers.
        std::string blas;

        double ratio() const noexcept
        {
            return param_bytes == 0 ? 0.0 : double(state_bytes) / double(param_bytes);
        }
    };

    // E.g. "state: 2048 bytes for 1024 parameter bytes (2x)
    //       simd: avx512bw, 16 floats per batch, fma in hardware"
    inline std::ostream& operator<<(std::ostream& os, const state_report& r)
    {
        return os << "state: " << r.state_bytes << " bytes for " << r.param_bytes << " parameter bytes (" << r.ratio()
                  << "x)\nsimd: " << r.simd_arch << ", " << r.simd_width << " floats per batch, fma "
                  << (r.hardware_fma ? "in hardware" : "emulated (exact)") << "\n";
    }

    namespace detail
    {
        struct free_deleter
        {
            void operator()(unsigned char* p) const noexcept
            {
                std::free(p);
            }
        };

        // Where the arrays of a big state start within a 4 KiB page. Streams whose
        // addresses agree in their low 12 bits stall each other (a load waits for an
        // earlier store to the same page offset: 4 KiB aliasing) and share cache sets;
        // a caller's big parameter and gradient sit a few bytes past a page, as malloc
        // returns big blocks. So a state with an array of at least staggered_bytes takes
        // an allocation aligned to a page, its array k starting page_offset(k) bytes past
        // one (a bf16 parameter's compensation is the array after the last state): 640
        // bytes apart from each other, none within 256 bytes of a page boundary
        // (docs/benchmarks.md, "Where the states sit within a page").
        inline constexpr std::size_t page_bytes = 4096;
        inline constexpr std::size_t staggered_bytes = std::size_t(1) << 20;

        constexpr std::size_t page_offset(std::size_t k) noexcept
        {
            return (k + 1) * 640 % page_bytes;
        }
    }

    // Bytes per element of a tensor stored in format f (8-bit scales not counted).
    constexpr std::size_t format_bytes(slot_format f, dtype math) noexcept
    {
        return f == slot_format::native ? dtype_size(math) : is_8bit(f) ? 1 : 2;
    }

    // The extent of a state tensor. Most states are shaped like their parameter; a
    // factored optimizer (Adafactor) keeps statistics of a matrix view instead, the
    // parameter seen as a stack of (shape[-2], shape[-1]) matrices (leading dimensions
    // batch): one value per row of every matrix (shape[:-1]) or per column
    // (shape[:-2] + shape[-1:]), or nothing for a parameter that does not need the state.
    // first_axis: one value per index of the first dimension, the rows of the
    // (shape[0], rest) matrix Muon orthogonalizes, saved as (shape[0], 1) (NorMuon's
    // second moment, as its reference keeps it). Statistics are always stored in the
    // parameter's math type.
    enum class state_extent
    {
        elements,
        rows,
        cols,
        none,
        first_axis
    };

    // The (rows, cols) of one matrix of a parameter's matrix view, and how many matrices.
    struct matrix_view
    {
        std::size_t batches = 1;
        std::size_t rows = 1;
        std::size_t cols = 1;

        static matrix_view of(const std::vector<std::size_t>& shape) noexcept
        {
            matrix_view v;
            const std::size_t rank = shape.size();
            v.cols = rank >= 1 ? shape[rank - 1] : 1;
            v.rows = rank >= 2 ? shape[rank - 2] : 1;
            for (std::size_t k = 0; k + 2 < rank; ++k)
            {
                v.batches *= shape[k];
            }
            return v;
        }
    };

    // How the tensors of one parameter's entry are stored: the parameter's own format
    // (a bf16 parameter's rounding) and each state's.
    struct state_layout
    {
        std::size_t count = 0;  // state tensors
        std::array<slot_format, max_states> formats{};
        slot_format param = slot_format::native;
        std::array<state_extent, max_states> extents{};
    };

    class state_store
    {
    public:

        // A state belongs to one optimizer (or stepper): copying it, or what holds it, is
        // refused at the caller's line ("use of deleted function"); moves are cheap.
        state_store() = default;
        state_store(const state_store&) = delete;
        state_store& operator=(const state_store&) = delete;
        state_store(state_store&&) noexcept = default;
        state_store& operator=(state_store&&) noexcept = default;

        struct state_tensor
        {
            slot_format format = slot_format::native;
            void* data = nullptr;
            float* absmax = nullptr;  // 8-bit formats: one scale per codec_block elements
        };

        struct entry
        {
            std::string name;
            dtype type;  // the parameter's
            std::vector<std::size_t> shape;
            std::size_t size;
            std::size_t count;  // number of state tensors
            std::array<state_tensor, max_states> states;
            slot_format param_format;       // how the step writes a bf16 parameter
            std::uint16_t* compensation;    // bf16_compensated: the parameter's low halves
            std::size_t bytes;              // of `data`, every tensor of the entry
            std::unique_ptr<unsigned char, detail::free_deleter> data;
            std::array<state_extent, max_states> extents{};

            // Elements and shape of state k (state_extent).
            std::size_t state_size(std::size_t k) const noexcept
            {
                const matrix_view v = matrix_view::of(shape);
                switch (extents[k])
                {
                    case state_extent::rows: return v.batches * v.rows;
                    case state_extent::cols: return v.batches * v.cols;
                    case state_extent::none: return 0;
                    case state_extent::first_axis: return shape.empty() ? 1 : shape[0];
                    default: return size;
                }
            }

            std::vector<std::size_t> state_shape(std::size_t k) const
            {
                std::vector<std::size_t> out = shape;
                switch (extents[k])
                {
                    case state_extent::rows: out.pop_back(); break;
                    case state_extent::cols: out.erase(out.end() - 2); break;
                    case state_extent::none: out = {0}; break;
                    case state_extent::first_axis: out = {shape.empty() ? 1 : shape[0], 1}; break;
                    default: break;
                }
                return out;
            }

            // A state tensor stored in the parameter's math type (float or double).
            template <class T>
            T* state(std::size_t k) const noexcept
            {
                return static_cast<T*>(states[k].data);
            }

            std::size_t blocks() const noexcept
            {
                return (size + codec_block - 1) / codec_block;
            }

            // Bytes of one element of state k, and of all of it (scales included).
            std::size_t element_bytes(std::size_t k) const noexcept
            {
                return format_bytes(states[k].format, math_type(type));
            }

            std::size_t state_bytes(std::size_t k) const noexcept
            {
                return state_size(k) * element_bytes(k) + (is_8bit(states[k].format) ? blocks() * sizeof(float) : 0);
            }

            // Everything of this entry in the step's simple path: the parameter and its
            // states in the math type.
            bool plain() const noexcept
            {
                return type != dtype::bfloat16
                       && std::all_of(states.begin(), states.begin() + static_cast<std::ptrdiff_t>(count),
                                      [](const state_tensor& s) { return s.format == slot_format::native; });
            }
        };

        std::size_t size() const noexcept
        {
            return m_entries.size();
        }

        bool empty() const noexcept
        {
            return m_entries.empty();
        }

        const entry& operator[](std::size_t k) const noexcept
        {
            return m_entries[k];
        }

        // The entry of the parameter called `name`; throws std::out_of_range if none.
        const entry& at(const std::string& name) const
        {
            for (const auto& e : m_entries)
            {
                if (e.name == name)
                {
                    return e;
                }
            }
            throw std::out_of_range("xoptim: no optimizer state for parameter '" + name + "'");
        }

        // Read-only view of state tensor k of a parameter, e.g. view<float>("w", 0), for
        // states kept in the parameter's math type; values() reads any format.
        template <class T>
        tensor_view<const T> view(const std::string& name, std::size_t k) const
        {
            const entry& e = at(name);
            if (k < e.count && math_type(e.type) == dtype_of<T>() && e.states[k].format != slot_format::native)
            {
                throw std::out_of_range("xoptim: state number " + std::to_string(k) + " of parameter '" + name
                                        + "' is stored as " + (is_8bit(e.states[k].format) ? "8-bit codes" : "bf16")
                                        + ": read it decoded with values()");
            }
            if (math_type(e.type) != dtype_of<T>() || k >= e.count)
            {
                throw std::out_of_range("xoptim: parameter '" + name + "' has no " + dtype_name(dtype_of<T>())
                                        + " state number " + std::to_string(k));
            }
            return {e.state<T>(k), e.state_size(k)};
        }

        // State tensor k of a parameter as the step sees it (decoded), in double.
        std::vector<double> values(const std::string& name, std::size_t k) const
        {
            const entry& e = at(name);
            if (k >= e.count)
            {
                throw std::out_of_range("xoptim: parameter '" + name + "' has no state number " + std::to_string(k));
            }
            const state_tensor& s = e.states[k];
            const std::size_t size = e.state_size(k);
            std::vector<double> out(size);
            alignas(64) float block[codec_block];
            for (std::size_t b = 0; b < size; b += codec_block)
            {
                const std::size_t n = std::min(codec_block, size - b);
                if (s.format == slot_format::native)
                {
                    if (e.type == dtype::float64)
                    {
                        std::copy(e.state<double>(k) + b, e.state<double>(k) + b + n, out.begin() + std::ptrdiff_t(b));
                    }
                    else
                    {
                        std::copy(e.state<float>(k) + b, e.state<float>(k) + b + n, out.begin() + std::ptrdiff_t(b));
                    }
                    continue;
                }
                codec::decode<xsimd::default_arch>(s.format, s.data, s.absmax, nullptr, b, n, block);
                std::copy(block, block + n, out.begin() + std::ptrdiff_t(b));
            }
            return out;
        }

        // The state of a parameter of `type`, `shape` and `n` elements.
        const entry& add(std::string name, dtype type, std::vector<std::size_t> shape, std::size_t n,
                         const state_layout& layout)
        {
            const auto padded = [](std::size_t bytes, std::size_t to) { return (bytes + to - 1) / to * to; };
            entry e{std::move(name), type, std::move(shape), n, layout.count, {}, layout.param, nullptr, 0, nullptr,
                    layout.extents};
            const auto array_bytes = [&](std::size_t k) {
                return k < layout.count ? e.state_size(k) * format_bytes(layout.formats[k], math_type(type))
                                        : layout.param == slot_format::bf16_compensated ? n * 2 : 0;
            };
            bool staggered = false;
            for (std::size_t k = 0; k <= layout.count; ++k)
            {
                staggered = staggered || array_bytes(k) >= detail::staggered_bytes;
            }
            // Array k (the compensation last) from `bytes` on, or from its page offset.
            std::size_t bytes = 0;
            const auto place = [&](std::size_t k) {
                const std::size_t at =
                    staggered ? bytes + (detail::page_offset(k) + detail::page_bytes - bytes % detail::page_bytes) %
                                            detail::page_bytes
                              : bytes;
                bytes = at + padded(array_bytes(k), 64);
                return at;
            };
            std::vector<std::size_t> offsets;
            for (std::size_t k = 0; k < layout.count; ++k)
            {
                e.states[k].format = layout.formats[k];
                offsets.push_back(place(k));
                offsets.push_back(bytes);
                bytes += is_8bit(layout.formats[k]) ? padded(e.blocks() * sizeof(float), 64) : 0;
            }
            const std::size_t compensation = layout.param == slot_format::bf16_compensated ? place(layout.count) : 0;
            const std::size_t alignment = staggered ? detail::page_bytes : 64;
            e.bytes = padded(std::max<std::size_t>(64, bytes), alignment);
            void* raw = std::aligned_alloc(alignment, e.bytes);
            if (raw == nullptr)
            {
                throw std::bad_alloc();
            }
            std::memset(raw, 0, e.bytes);
            e.data.reset(static_cast<unsigned char*>(raw));
            for (std::size_t k = 0; k < layout.count; ++k)
            {
                e.states[k].data = e.data.get() + offsets[2 * k];
                if (layout.formats[k] == slot_format::q8_signed)
                {
                    std::memset(e.states[k].data, dynamic_map::signed_zero, n);
                }
                e.states[k].absmax = is_8bit(layout.formats[k]) ? reinterpret_cast<float*>(e.data.get() + offsets[2 * k + 1])
                                                                : nullptr;
            }
            if (layout.param == slot_format::bf16_compensated)
            {
                e.compensation = reinterpret_cast<std::uint16_t*>(e.data.get() + compensation);
            }
            m_entries.push_back(std::move(e));
            return m_entries.back();
        }

        // A state of `count` tensors in the parameter's math type.
        template <class C>
        const entry& add(std::string name, const C& param, std::size_t count)
        {
            state_layout layout;
            layout.count = count;
            return add(std::move(name), dtype_of<tensor::value_type<C>>(), tensor::shape(param), tensor::size(param),
                       layout);
        }

        // Drops entries from `n` on: undoes a first step that failed halfway.
        void truncate(std::size_t n)
        {
            m_entries.erase(m_entries.begin() + static_cast<std::ptrdiff_t>(std::min(n, m_entries.size())),
                            m_entries.end());
        }

        // Puts the entries in the order name(0), name(1), ... name(n - 1) where those are
        // the entries' own names in another order (a state made by a walk of the same
        // parameters in another order); anything else leaves them as they are. One pass
        // over the names where they already are in that order.
        template <class Name>
        void reorder(std::size_t n, Name&& name)
        {
            std::size_t k = 0;
            while (k < n && k < m_entries.size() && m_entries[k].name == name(k))
            {
                ++k;
            }
            if (n != m_entries.size() || k == n)
            {
                return;
            }
            std::vector<std::size_t> order;
            for (std::size_t i = 0; i < n; ++i)
            {
                const auto at = std::find_if(m_entries.begin(), m_entries.end(),
                                             [&](const entry& e) { return e.name == name(i); });
                const std::size_t found = std::size_t(at - m_entries.begin());
                if (at == m_entries.end() || std::find(order.begin(), order.end(), found) != order.end())
                {
                    return;
                }
                order.push_back(found);
            }
            std::vector<entry> ordered;
            ordered.reserve(n);
            for (const std::size_t from : order)
            {
                ordered.push_back(std::move(m_entries[from]));
            }
            m_entries = std::move(ordered);
        }

        state_report report() const noexcept
        {
            state_report r;
            for (const auto& e : m_entries)
            {
                for (std::size_t k = 0; k < e.count; ++k)
                {
                    r.state_bytes += e.state_bytes(k);
                }
                r.state_bytes += e.compensation != nullptr ? e.size * 2 : 0;
                r.param_bytes += e.size * dtype_size(e.type);
            }
            return r;
        }

    private:

        std::vector<entry> m_entries;
    };
}

#endif
