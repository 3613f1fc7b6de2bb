// What xoptim needs from a tensor: a pointer to contiguous elements, their count and
// (when it has one) a shape. tensor_traits<C> says how to get them from a type C.
//
// Provided: std::vector, std::array, std::span (C++20), xoptim::tensor_view (raw
// pointer + size + shape), and every type with the xtensor container protocol
// (`data()`, `size()`, `shape()`, optionally `data_offset()` and `strides()`), which
// covers xt::xtensor, xt::xarray, xt::xtensor_fixed, adaptors and strided views,
// without including xtensor here.
//
// A user's own tensor type plugs in with a specialization (docs/guide.md has a
// complete program). Gradients are usually passed const, so `data` needs both
// overloads:
//
//     template <> struct xoptim::tensor_traits<my::tensor> {
//         using value_type = float;
//         static float* data(my::tensor& t) { return t.ptr(); }
//         static const float* data(const my::tensor& t) { return t.ptr(); }
//         static std::size_t size(const my::tensor& t) { return t.numel(); }
//         static std::size_t rank(const my::tensor& t) { return t.dims(); }                 // optional
//         static std::size_t extent(const my::tensor& t, std::size_t d) { return t.dim(d); }  // optional
//     };
#ifndef XOPTIM_PARAMS_TENSOR_TRAITS_HPP
#define XOPTIM_PARAMS_TENSOR_TRAITS_HPP

#include <algorithm>
#include <array>
#include <cstddef>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "../engine/bfloat16.hpp"

#if __has_include(<span>) && __cplusplus > 201703L
#include <span>
#endif

namespace xt
{
    template <std::size_t... X>
    class fixed_shape;
}

namespace xoptim
{
    namespace detail
    {
        struct shape_ref;
    }

    // Rank of the shapes a tensor_view can carry.
    inline constexpr std::size_t max_rank = 8;

    // A non-owning view of contiguous elements, with an optional row-major shape.
    template <class T>
    class tensor_view
    {
    public:

        using value_type = std::remove_const_t<T>;

        tensor_view(T* data, std::size_t size) noexcept
            : m_data(data), m_size(size), m_rank(1)
        {
            m_shape[0] = size;
        }

        tensor_view(T* data, std::initializer_list<std::size_t> shape)
            : tensor_view(data, shape.begin(), shape.end())
        {
        }

        tensor_view(T* data, const std::vector<std::size_t>& shape)
            : tensor_view(data, shape.begin(), shape.end())
        {
        }

        // A view of any contiguous tensor of at most max_rank dimensions, with its shape
        // (allocates nothing).
        template <class C>
        static tensor_view of(C& c);

        // The same of a tensor's elements, `size` of them, read through its shape_ref.
        static tensor_view of(T* data, std::size_t size, const detail::shape_ref& shape);

        T* data() const noexcept
        {
            return m_data;
        }

        std::size_t size() const noexcept
        {
            return m_size;
        }

        std::size_t rank() const noexcept
        {
            return m_rank;
        }

        std::size_t extent(std::size_t d) const noexcept
        {
            return m_shape[d];
        }

    private:

        template <class It>
        tensor_view(T* data, It first, It last);

        static std::size_t checked_rank(std::size_t rank)
        {
            if (rank > max_rank)
            {
                throw std::invalid_argument("xoptim::view: at most " + std::to_string(max_rank) + " dimensions (got "
                                            + std::to_string(rank) + ")");
            }
            return rank;
        }

        T* m_data;
        std::size_t m_size;
        std::size_t m_rank;
        std::array<std::size_t, max_rank> m_shape{};
    };

    template <class T>
    tensor_view<T> view(T* data, std::size_t size) noexcept
    {
        return {data, size};
    }

    template <class T>
    tensor_view<T> view(T* data, std::initializer_list<std::size_t> shape)
    {
        return {data, shape};
    }

    /******************
     * tensor_traits  *
     ******************/

    // Element types a tensor may hold: numbers, and bfloat16 (stored, computed in float).
    template <class T>
    inline constexpr bool is_element_v = std::is_arithmetic_v<T> || std::is_same_v<T, bfloat16>;

    // The primary template knows no type; `is_tensor` tells whether a specialization
    // (or the xtensor protocol below) applies.
    template <class C, class = void>
    struct tensor_traits
    {
    };

    namespace detail
    {
        // Of two members kept per element type, the one for T (float or double).
        template <class T, class F, class D>
        constexpr auto& by_type(F& for_float, D& for_double) noexcept
        {
            if constexpr (std::is_same_v<T, float>)
            {
                return for_float;
            }
            else
            {
                return for_double;
            }
        }

        template <class C, class = void>
        struct has_container_protocol : std::false_type
        {
        };

        template <class C>
        struct has_container_protocol<C, std::void_t<decltype(std::declval<C&>().data()),
                                                    decltype(std::declval<C&>().size()),
                                                    decltype(std::declval<C&>().shape())>>
            : std::bool_constant<is_element_v<std::remove_const_t<std::remove_pointer_t<decltype(std::declval<C&>().data())>>>>
        {
        };

        template <class C, class = void>
        struct has_data_offset : std::false_type
        {
        };

        template <class C>
        struct has_data_offset<C, std::void_t<decltype(std::declval<const C&>().data_offset())>> : std::true_type
        {
        };

        template <class C, class = void>
        struct has_strides : std::false_type
        {
        };

        template <class C>
        struct has_strides<C, std::void_t<decltype(std::declval<const C&>().strides())>> : std::true_type
        {
        };

        template <class S>
        struct fixed_shape_size
        {
            static constexpr std::size_t value = 0;
        };

        template <std::size_t... X>
        struct fixed_shape_size<xt::fixed_shape<X...>>
        {
            static constexpr std::size_t value = (std::size_t(1) * ... * X);
        };

        template <class C, class = void>
        struct shape_type_of
        {
            using type = void;
        };

        template <class C>
        struct shape_type_of<C, std::void_t<typename C::shape_type>>
        {
            using type = typename C::shape_type;
        };
    }

    // std::vector<T>: flat, dynamic size.
    template <class T, class A>
    struct tensor_traits<std::vector<T, A>, std::enable_if_t<is_element_v<T>>>
    {
        using value_type = T;

        static T* data(std::vector<T, A>& c) noexcept
        {
            return c.data();
        }

        static const T* data(const std::vector<T, A>& c) noexcept
        {
            return c.data();
        }

        static std::size_t size(const std::vector<T, A>& c) noexcept
        {
            return c.size();
        }
    };

    // std::array<T, N>: flat, size known at compile time.
    template <class T, std::size_t N>
    struct tensor_traits<std::array<T, N>, std::enable_if_t<is_element_v<T>>>
    {
        using value_type = T;
        static constexpr std::size_t static_size = N;

        static T* data(std::array<T, N>& c) noexcept
        {
            return c.data();
        }

        static const T* data(const std::array<T, N>& c) noexcept
        {
            return c.data();
        }

        static constexpr std::size_t size(const std::array<T, N>&) noexcept
        {
            return N;
        }
    };

#if defined(__cpp_lib_span)
    template <class T, std::size_t E>
    struct tensor_traits<std::span<T, E>, std::enable_if_t<is_element_v<std::remove_const_t<T>>>>
    {
        using value_type = std::remove_const_t<T>;
        static constexpr std::size_t static_size = E == std::dynamic_extent ? 0 : E;

        static T* data(const std::span<T, E>& c) noexcept
        {
            return c.data();
        }

        static std::size_t size(const std::span<T, E>& c) noexcept
        {
            return c.size();
        }
    };
#endif

    template <class T>
    struct tensor_traits<tensor_view<T>>
    {
        using value_type = std::remove_const_t<T>;

        static T* data(const tensor_view<T>& c) noexcept
        {
            return c.data();
        }

        static std::size_t size(const tensor_view<T>& c) noexcept
        {
            return c.size();
        }

        static std::size_t rank(const tensor_view<T>& c) noexcept
        {
            return c.rank();
        }

        static std::size_t extent(const tensor_view<T>& c, std::size_t d) noexcept
        {
            return c.extent(d);
        }
    };

    // The xtensor container protocol: containers, adaptors, fixed-size tensors and
    // views with a data interface. Strided views are accepted only when contiguous.
    template <class C>
    struct tensor_traits<C, std::enable_if_t<detail::has_container_protocol<C>::value>>
    {
        using value_type = std::remove_const_t<std::remove_pointer_t<decltype(std::declval<C&>().data())>>;
        static constexpr std::size_t static_size = detail::fixed_shape_size<typename detail::shape_type_of<C>::type>::value;

        template <class D>
        static auto data(D& c) noexcept
        {
            if constexpr (detail::has_data_offset<C>::value)
            {
                return c.data() + c.data_offset();
            }
            else
            {
                return c.data();
            }
        }

        static std::size_t size(const C& c) noexcept
        {
            return static_cast<std::size_t>(c.size());
        }

        static std::size_t rank(const C& c) noexcept
        {
            return static_cast<std::size_t>(c.shape().size());
        }

        static std::size_t extent(const C& c, std::size_t d) noexcept
        {
            return static_cast<std::size_t>(c.shape()[d]);
        }

        // Row-major and dense, ignoring the strides of extents of one; an empty tensor
        // has no element out of place.
        static bool contiguous(const C& c) noexcept
        {
            if constexpr (detail::has_strides<C>::value)
            {
                for (std::size_t d = 0; d < rank(c); ++d)
                {
                    if (c.shape()[d] == 0)
                    {
                        return true;
                    }
                }
                std::ptrdiff_t expected = 1;
                for (std::size_t d = rank(c); d-- > 0;)
                {
                    const auto e = static_cast<std::ptrdiff_t>(c.shape()[d]);
                    if (e != 1 && static_cast<std::ptrdiff_t>(c.strides()[d]) != expected)
                    {
                        return false;
                    }
                    expected *= e;
                }
            }
            return true;
        }
    };

    /*******************************
     * Uniform access to any tensor *
     *******************************/

    template <class C, class = void>
    struct is_tensor : std::false_type
    {
    };

    template <class C>
    struct is_tensor<C, std::void_t<typename tensor_traits<std::remove_cv_t<C>>::value_type>> : std::true_type
    {
    };

    template <class C>
    inline constexpr bool is_tensor_v = is_tensor<std::remove_reference_t<C>>::value;

    namespace detail
    {
        // Whether tensor_traits<C> say if C owns its elements, and what they say.
        template <class C, class = void>
        struct declares_owning : std::false_type
        {
        };

        template <class C>
        struct declares_owning<C, std::void_t<decltype(tensor_traits<C>::owns_elements)>> : std::true_type
        {
        };

        template <class C>
        struct declared_owning : std::bool_constant<tensor_traits<C>::owns_elements>
        {
        };

        // An xtensor container's temporary type is the type itself (an adaptor's or a
        // view's is not).
        template <class C, class = void>
        struct own_temporary : std::false_type
        {
        };

        template <class C>
        struct own_temporary<C, std::void_t<typename C::temporary_type>> : std::is_same<typename C::temporary_type, C>
        {
        };
    }

    // Whether a tensor type owns its elements, so that a copy of it is a different
    // tensor: what its tensor_traits say (`static constexpr bool owns_elements`) where
    // they say it; otherwise std::vector, std::array and xtensor containers do, and other
    // types count as views.
    template <class C, class = void>
    struct owns_elements
        : std::conditional_t<detail::declares_owning<C>::value, detail::declared_owning<C>, detail::own_temporary<C>>
    {
    };

    template <class T, class A>
    struct owns_elements<std::vector<T, A>> : std::true_type
    {
    };

    template <class T, std::size_t N>
    struct owns_elements<std::array<T, N>> : std::true_type
    {
    };

    namespace tensor
    {
        namespace detail
        {
            // How a trait declares rank, extent or contiguous (each one function, not
            // overloaded as data is): not at all, `static`, or without `static` (callable
            // only on an object, which the library never has: check_static says so).
            enum class declared
            {
                no,
                as_static,
                on_object
            };

            template <class F>
            inline constexpr declared declared_as = std::is_member_function_pointer_v<F> ? declared::on_object
                                                                                         : declared::as_static;

            template <class Tr, class = void>
            struct declares_rank : std::integral_constant<declared, declared::no>
            {
            };

            template <class Tr>
            struct declares_rank<Tr, std::void_t<decltype(&Tr::rank)>>
                : std::integral_constant<declared, declared_as<decltype(&Tr::rank)>>
            {
            };

            template <class Tr, class = void>
            struct declares_extent : std::integral_constant<declared, declared::no>
            {
            };

            template <class Tr>
            struct declares_extent<Tr, std::void_t<decltype(&Tr::extent)>>
                : std::integral_constant<declared, declared_as<decltype(&Tr::extent)>>
            {
            };

            template <class Tr, class = void>
            struct declares_contiguous : std::integral_constant<declared, declared::no>
            {
            };

            template <class Tr>
            struct declares_contiguous<Tr, std::void_t<decltype(&Tr::contiguous)>>
                : std::integral_constant<declared, declared_as<decltype(&Tr::contiguous)>>
            {
            };

            template <class Tr, class = void>
            struct static_size_of : std::integral_constant<std::size_t, 0>
            {
            };

            template <class Tr>
            struct static_size_of<Tr, std::void_t<decltype(Tr::static_size)>>
                : std::integral_constant<std::size_t, Tr::static_size>
            {
            };

            template <class C, class = void>
            struct has_data : std::false_type
            {
            };

            template <class C>
            struct has_data<C, std::void_t<decltype(tensor_traits<std::remove_cv_t<C>>::data(std::declval<C&>()))>>
                : std::true_type
            {
            };

            template <class C, class = void>
            struct has_size : std::false_type
            {
            };

            template <class C>
            struct has_size<C,
                            std::void_t<decltype(tensor_traits<std::remove_cv_t<C>>::size(std::declval<const C&>()))>>
                : std::true_type
            {
            };

            // The same functions called on a trait object: what a trait whose functions
            // are not `static` has (and static ones too: read with the forms above).
            template <class C>
            using trait_object = tensor_traits<std::remove_cv_t<C>>&;

            template <class C, class = void>
            struct has_object_data : std::false_type
            {
            };

            template <class C>
            struct has_object_data<C, std::void_t<decltype(std::declval<trait_object<C>>().data(std::declval<C&>()))>>
                : std::true_type
            {
            };

            template <class C, class = void>
            struct has_object_size : std::false_type
            {
            };

            template <class C>
            struct has_object_size<
                C, std::void_t<decltype(std::declval<trait_object<C>>().size(std::declval<const C&>()))>>
                : std::true_type
            {
            };

            // Whether every function the trait has can be called as tensor_traits<C>::f(...),
            // as the library calls them (once per type, const or not).
            template <class C>
            constexpr bool check_static() noexcept
            {
                using tr = tensor_traits<C>;
                constexpr bool ok = (has_data<C>::value || !has_object_data<C>::value)
                                    && (has_size<C>::value || !has_object_size<C>::value)
                                    && declares_rank<tr>::value != declared::on_object
                                    && declares_extent<tr>::value != declared::on_object
                                    && declares_contiguous<tr>::value != declared::on_object;
                static_assert(ok, "xoptim: tensor_traits<C>'s functions are called without an object: declare "
                                  "data, size, rank, extent and contiguous `static`");
                return ok;
            }
        }

        template <class C>
        using traits = tensor_traits<std::remove_cv_t<std::remove_reference_t<C>>>;

        template <class C>
        using value_type = typename traits<C>::value_type;

        // Number of elements known at compile time, 0 when only known at run time.
        template <class C>
        inline constexpr std::size_t static_size = detail::static_size_of<traits<C>>::value;

        // Whether the trait gives C's elements when C is const, as a gradient usually is:
        // a trait with only `data(C&)` is the mistake this names, in one message.
        template <class C>
        constexpr bool check_data() noexcept
        {
            if constexpr (!detail::check_static<std::remove_cv_t<C>>())
            {
                return false;  // after that message: no second one
            }
            else
            {
                constexpr bool readable = detail::has_data<C>::value;
                static_assert(readable, "xoptim: a const tensor (gradients are usually passed const) needs "
                                        "tensor_traits<C>::data(const C&) too; add `static const T* data(const C& "
                                        "c)` beside `T* data(C& c)`");
                return readable;
            }
        }

        template <class C>
        auto data(C& c) noexcept
        {
            // After a message below: a pointer of the right kind, so that no second error follows.
            using fallback = std::conditional_t<std::is_const_v<C>, const value_type<C>*, value_type<C>*>;
            if constexpr (check_data<C>())
            {
                using pointer = decltype(traits<C>::data(c));
                using element = std::remove_cv_t<std::remove_pointer_t<pointer>>;
                constexpr bool typed = std::is_pointer<pointer>::value && std::is_same<element, value_type<C>>::value;
                static_assert(typed, "xoptim: tensor_traits<C>::data must return a pointer to its value_type "
                                     "(value_type* from C&, const value_type* from const C&)");
                if constexpr (typed)
                {
                    return traits<C>::data(c);
                }
                else
                {
                    return fallback(nullptr);
                }
            }
            else
            {
                return fallback(nullptr);
            }
        }

        template <class C>
        std::size_t size(const C& c) noexcept
        {
            constexpr bool sized = detail::has_size<C>::value;
            // A size that is not static has its message from check_static.
            static_assert(sized || detail::has_object_size<C>::value,
                          "xoptim: tensor_traits<C> needs `static std::size_t size(const C& c)`, the number "
                          "of elements");
            if constexpr (sized)
            {
                return traits<C>::size(c);
            }
            else
            {
                return 0;  // after the message: no second error
            }
        }

        // A flat container (std::vector, ...) reports rank 1.
        template <class C>
        std::size_t rank(const C& c) noexcept
        {
            if constexpr (detail::declares_rank<traits<C>>::value == detail::declared::as_static)
            {
                return traits<C>::rank(c);
            }
            else
            {
                return 1;
            }
        }

        template <class C>
        std::size_t extent(const C& c, std::size_t d) noexcept
        {
            if constexpr (detail::declares_rank<traits<C>>::value == detail::declared::as_static)
            {
                constexpr detail::declared how = detail::declares_extent<traits<C>>::value;
                constexpr bool extents = how != detail::declared::no;
                static_assert(extents, "xoptim: tensor_traits<C> has `rank`, so it needs `static std::size_t "
                                       "extent(const C& c, std::size_t d)` too, the length of dimension d");
                if constexpr (how == detail::declared::as_static)
                {
                    return traits<C>::extent(c, d);
                }
                else
                {
                    return 0;  // after a message: no second error
                }
            }
            else
            {
                return tensor::size(c);
            }
        }

        template <class C>
        bool contiguous(const C& c) noexcept
        {
            if constexpr (detail::declares_contiguous<traits<C>>::value == detail::declared::as_static)
            {
                return traits<C>::contiguous(c);
            }
            else
            {
                return true;
            }
        }

        template <class C>
        std::vector<std::size_t> shape(const C& c)
        {
            std::vector<std::size_t> s(tensor::rank(c));
            for (std::size_t d = 0; d < s.size(); ++d)
            {
                s[d] = tensor::extent(c, d);
            }
            return s;
        }
    }

    // A shape as numpy prints it: (3, 4), (4,), (); at most 8 dimensions, then "...)"
    // (a shape read from a file may have millions).
    inline std::string format_shape(const std::vector<std::size_t>& shape)
    {
        constexpr std::size_t shown = 8;
        std::string s = "(";
        for (std::size_t d = 0; d < shape.size() && d < shown; ++d)
        {
            s += (d == 0 ? "" : ", ") + std::to_string(shape[d]);
        }
        return s + (shape.size() > shown ? ", ...)" : shape.size() == 1 ? ",)" : ")");
    }

    template <class T>
    template <class It>
    tensor_view<T>::tensor_view(T* data, It first, It last)
        : m_data(data), m_size(1), m_rank(checked_rank(static_cast<std::size_t>(last - first)))
    {
        for (std::size_t d = 0; first != last; ++first, ++d)
        {
            m_shape[d] = *first;
            m_size *= *first;
        }
    }

    namespace detail
    {
        // A tensor's shape read through the tensor, whatever its type (allocates nothing):
        // what the type-independent part of a step (the checks, the state) needs of a leaf.
        struct shape_ref
        {
            const void* tensor;
            std::size_t rank;
            std::size_t (*extent_of)(const void*, std::size_t) noexcept;

            template <class C>
            static shape_ref of(const C& c) noexcept
            {
                return {std::addressof(c), tensor::rank(c),
                        [](const void* t, std::size_t d) noexcept { return tensor::extent(*static_cast<const C*>(t), d); }};
            }

            std::size_t extent(std::size_t d) const noexcept
            {
                return extent_of(tensor, d);
            }

            std::vector<std::size_t> vector() const
            {
                std::vector<std::size_t> s(rank);
                for (std::size_t d = 0; d < rank; ++d)
                {
                    s[d] = extent(d);
                }
                return s;
            }
        };
    }

    template <class T>
    tensor_view<T> tensor_view<T>::of(T* data, std::size_t size, const detail::shape_ref& shape)
    {
        tensor_view v(data, size);
        v.m_rank = checked_rank(shape.rank);
        for (std::size_t d = 0; d < v.m_rank; ++d)
        {
            v.m_shape[d] = shape.extent(d);
        }
        return v;
    }

    template <class T>
    template <class C>
    tensor_view<T> tensor_view<T>::of(C& c)
    {
        return of(tensor::data(c), tensor::size(c), detail::shape_ref::of(c));
    }

    namespace detail
    {
        // Shapes must agree when both sides carry one; a flat container (std::vector,
        // rank 1) only needs the same number of elements.
        inline bool same_shape(const shape_ref& a, const shape_ref& b) noexcept
        {
            if (a.rank == 1 || b.rank == 1)
            {
                return true;
            }
            if (a.rank != b.rank)
            {
                return false;
            }
            for (std::size_t d = 0; d < a.rank; ++d)
            {
                if (a.extent(d) != b.extent(d))
                {
                    return false;
                }
            }
            return true;
        }

        // Exactly `shape` (a state's).
        inline bool same_shape(const shape_ref& a, const std::vector<std::size_t>& shape) noexcept
        {
            if (a.rank != shape.size())
            {
                return false;
            }
            for (std::size_t d = 0; d < shape.size(); ++d)
            {
                if (a.extent(d) != shape[d])
                {
                    return false;
                }
            }
            return true;
        }

        template <class C>
        bool same_shape(const C& c, const std::vector<std::size_t>& shape) noexcept
        {
            return same_shape(shape_ref::of(c), shape);
        }
    }
}

#endif
