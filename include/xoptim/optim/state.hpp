// Optimizer state: for every parameter, the optimizer's state tensors (m, v, ...),
// created once with the parameter's shape and element type, zero-filled, 64-byte
// aligned, kept in parameter order and known by the parameter's name.
#ifndef XOPTIM_OPTIM_STATE_HPP
#define XOPTIM_OPTIM_STATE_HPP

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "../params/tensor_traits.hpp"

namespace xoptim
{
    enum class dtype
    {
        float32,
        float64
    };

    template <class T>
    constexpr dtype dtype_of() noexcept
    {
        static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                      "xoptim: parameters must be float or double");
        return std::is_same_v<T, float> ? dtype::float32 : dtype::float64;
    }

    constexpr std::size_t dtype_size(dtype t) noexcept
    {
        return t == dtype::float32 ? 4 : 8;
    }

    constexpr const char* dtype_name(dtype t) noexcept
    {
        return t == dtype::float32 ? "float32" : "float64";
    }

    // Bytes held by an optimizer's state beside the bytes of the parameters it serves.
    struct state_report
    {
        std::size_t state_bytes = 0;
        std::size_t param_bytes = 0;

        double ratio() const noexcept
        {
            return param_bytes == 0 ? 0.0 : double(state_bytes) / double(param_bytes);
        }
    };

    namespace detail
    {
        struct free_deleter
        {
            void operator()(unsigned char* p) const noexcept
            {
                std::free(p);
            }
        };
    }

    class state_store
    {
    public:

        struct entry
        {
            std::string name;
            dtype type;
            std::vector<std::size_t> shape;
            std::size_t size;
            std::size_t count;   // number of state tensors
            std::size_t stride;  // elements from one state tensor to the next (padded to 64 bytes)
            std::unique_ptr<unsigned char, detail::free_deleter> data;

            template <class T>
            T* state(std::size_t k) const noexcept
            {
                return reinterpret_cast<T*>(data.get()) + k * stride;
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

        // Read-only view of state tensor k of a parameter, e.g. state<float>("w", 0).
        template <class T>
        tensor_view<const T> view(const std::string& name, std::size_t k) const
        {
            const entry& e = at(name);
            if (e.type != dtype_of<T>() || k >= e.count)
            {
                throw std::out_of_range("xoptim: parameter '" + name + "' has no " + dtype_name(dtype_of<T>())
                                        + " state number " + std::to_string(k));
            }
            return {e.state<T>(k), e.size};
        }

        template <class C>
        const entry& add(std::string name, const C& param, std::size_t count)
        {
            using T = tensor::value_type<C>;
            const std::size_t n = tensor::size(param);
            const std::size_t per_line = 64 / sizeof(T);
            const std::size_t stride = (n + per_line - 1) / per_line * per_line;
            const std::size_t bytes = std::max<std::size_t>(64, count * stride * sizeof(T));
            void* raw = std::aligned_alloc(64, bytes);
            if (raw == nullptr)
            {
                throw std::bad_alloc();
            }
            std::memset(raw, 0, bytes);
            std::unique_ptr<unsigned char, detail::free_deleter> data(static_cast<unsigned char*>(raw));
            m_entries.push_back(entry{std::move(name), dtype_of<T>(), tensor::shape(param), n, count, stride, std::move(data)});
            return m_entries.back();
        }

        // Drops entries from `n` on: undoes a first step that failed halfway.
        void truncate(std::size_t n)
        {
            m_entries.erase(m_entries.begin() + static_cast<std::ptrdiff_t>(std::min(n, m_entries.size())),
                            m_entries.end());
        }

        state_report report() const noexcept
        {
            state_report r;
            for (const auto& e : m_entries)
            {
                r.state_bytes += e.count * e.size * dtype_size(e.type);
                r.param_bytes += e.size * dtype_size(e.type);
            }
            return r;
        }

    private:

        std::vector<entry> m_entries;
    };
}

#endif
