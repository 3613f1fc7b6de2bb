// Parameter sets: what a step walks. A parameter set is
//   - a tensor (anything with tensor_traits),
//   - a named tensor or set: xoptim::named("w", w),
//   - a tuple or pair of parameter sets (walked at compile time),
//   - a runtime list of parameter sets: std::vector or std::array of them,
//   - a user's model struct, through the customization point found by lookup:
//
//         auto xoptim_params(mlp& m) {
//             return std::make_tuple(xoptim::named("w1", m.w1), xoptim::named("b1", m.b1));
//         }
//         auto xoptim_params(const mlp& m) {   // for gradients, usually passed const
//             return std::make_tuple(xoptim::named("w1", m.w1), xoptim::named("b1", m.b1));
//         }
//
//     (or one template for both; docs/guide.md has a complete program).
//
// Every parameter gets a dotted name from the path that reaches it: the given name,
// else its position ("layers.0.weight", "2"). Names are built only when needed (state
// creation, errors), so a steady-state step allocates nothing.
#ifndef XOPTIM_PARAMS_PARAM_SET_HPP
#define XOPTIM_PARAMS_PARAM_SET_HPP

#include <algorithm>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "tensor_traits.hpp"

namespace xoptim
{
    /*********
     * named *
     *********/

    // A parameter set with a name. The name is not copied: it must outlive the step
    // (a string literal, or a string owned by the model).
    template <class C>
    struct named_ref
    {
        std::string_view name;
        C& ref;
    };

    template <class C>
    named_ref<C> named(std::string_view name, C& c) noexcept
    {
        return {name, c};
    }

    /*************
     * Name path *
     *************/

    // A parameter's name as a chain of pieces on the walker's stack.
    struct name_path
    {
        const name_path* parent = nullptr;
        std::string_view piece;
        std::size_t index = 0;
        bool is_index = false;

        std::string str() const
        {
            std::string head = parent != nullptr ? parent->str() : std::string();
            if (!head.empty())
            {
                head += '.';
            }
            return is_index ? head + std::to_string(index) : head + std::string(piece);
        }

        // The name a parameter is known by: its path, or "0" for a lone tensor.
        std::string name() const
        {
            std::string s = str();
            return s.empty() ? std::string("0") : s;
        }
    };

    /****************
     * Set category *
     ****************/

    struct no_grads
    {
    };

    namespace detail
    {
        // What a step checks of one side of a leaf, whatever its type.
        struct leaf_facts
        {
            std::size_t size;
            shape_ref shape;
            bool contiguous;

            template <class C>
            static leaf_facts of(const C& c) noexcept
            {
                return {tensor::size(c), shape_ref::of(c), tensor::contiguous(c)};
            }
        };

        // A name that `name(k)` gives to two of parameters 0 .. n-1, or null: state and
        // checkpoints follow names, so each parameter needs its own (named("a.b", x)
        // beside named("a", named("b", y)), or named("1", x) beside the second unnamed
        // tensor, collide too). One sort, on a first walk only.
        template <class Name>
        const std::string* repeated_name(std::size_t n, const Name& name)
        {
            std::vector<const std::string*> sorted(n);
            for (std::size_t k = 0; k < n; ++k)
            {
                sorted[k] = &name(k);
            }
            std::sort(sorted.begin(), sorted.end(), [](const std::string* a, const std::string* b) { return *a < *b; });
            const auto twice = std::adjacent_find(sorted.begin(), sorted.end(),
                                                  [](const std::string* a, const std::string* b) { return *a == *b; });
            return twice == sorted.end() ? nullptr : *twice;
        }

        inline std::string repeated_name_problem(const std::string& name)
        {
            return "parameter '" + name + "': two parameters have this name (state follows names: give each its own)";
        }

        // What is wrong with a parameter and its gradient (none: a walk without
        // gradients) for a step that writes the one and reads the other in place, or
        // nothing: the run-time checks of every walk that takes them (optimizers, the
        // stepper, routers, checkpoints), in one place.
        inline std::string leaf_problem(const leaf_facts& param, const leaf_facts* grad)
        {
            if (!param.contiguous)
            {
                return "parameter is not contiguous (a strided view cannot be stepped in place)";
            }
            if (grad == nullptr)
            {
                return {};
            }
            if (grad->size != param.size)
            {
                return "gradient has " + std::to_string(grad->size) + " elements, parameter has "
                       + std::to_string(param.size);
            }
            if (!detail::same_shape(param.shape, grad->shape))
            {
                return "gradient shape " + format_shape(grad->shape.vector()) + " differs from parameter shape "
                       + format_shape(param.shape.vector());
            }
            if (!grad->contiguous)
            {
                return "gradient is not contiguous";
            }
            return {};
        }

        template <class P, class G>
        std::string leaf_problem(const P& param, const G& grad)
        {
            if constexpr (std::is_same_v<std::remove_const_t<G>, no_grads>)
            {
                return leaf_problem(leaf_facts::of(param), static_cast<const leaf_facts*>(nullptr));
            }
            else
            {
                const leaf_facts g = leaf_facts::of(grad);
                return leaf_problem(leaf_facts::of(param), &g);
            }
        }
    }

    namespace detail
    {
        template <class T>
        struct is_named : std::false_type
        {
        };

        template <class C>
        struct is_named<named_ref<C>> : std::true_type
        {
        };

        template <class T>
        struct is_tuple : std::false_type
        {
        };

        template <class... T>
        struct is_tuple<std::tuple<T...>> : std::true_type
        {
        };

        template <class A, class B>
        struct is_tuple<std::pair<A, B>> : std::true_type
        {
        };

        template <class T>
        struct is_list : std::false_type
        {
        };

        template <class T, class A>
        struct is_list<std::vector<T, A>> : std::bool_constant<!is_element_v<T>>
        {
        };

        template <class T, std::size_t N>
        struct is_list<std::array<T, N>> : std::bool_constant<!is_element_v<T>>
        {
        };

        template <class T, class = void>
        struct has_xoptim_params : std::false_type
        {
        };

        template <class T>
        struct has_xoptim_params<T, std::void_t<decltype(xoptim_params(std::declval<T&>()))>> : std::true_type
        {
        };

        // A model: none of the other kinds, with an xoptim_params. xoptim_params is asked
        // last, only of such types: a user's unconstrained template <class M> auto
        // xoptim_params(M&) would otherwise be instantiated for a tuple or a tensor, and
        // its body fail there.
        template <class T>
        struct is_model : std::conjunction<std::negation<is_tensor<T>>, std::negation<is_tuple<T>>,
                                           std::negation<is_list<T>>, std::negation<is_named<T>>, has_xoptim_params<T>>
        {
        };

        template <class T>
        using bare = std::remove_cv_t<std::remove_reference_t<T>>;

        // A model reached through a const reference, as gradients usually are, needs the
        // const overload too: said in words here rather than as a failed reference binding.
        template <class M>
        constexpr bool check_model_const() noexcept
        {
            constexpr bool listed = is_model<std::remove_reference_t<M>>::value;
            static_assert(listed, "xoptim: a const model (gradients are usually passed const) needs "
                                  "xoptim_params(const M&) too; add one that lists the same named members, or "
                                  "write xoptim_params as one template for both");
            return listed;
        }

        // Both sides of a leaf give their elements: a const tensor needs its trait's
        // data(const C&) (tensor::check_data), checked before the visitor sees the leaf.
        template <class P, class G>
        constexpr bool check_leaf_data() noexcept
        {
            if constexpr (std::is_same_v<bare<G>, no_grads>)
            {
                return tensor::check_data<std::remove_reference_t<P>>();
            }
            else
            {
                constexpr bool param = tensor::check_data<std::remove_reference_t<P>>();
                constexpr bool grad = tensor::check_data<std::remove_reference_t<G>>();
                return param && grad;
            }
        }

        template <class T>
        const auto& unwrap(const T& t) noexcept
        {
            return t;
        }

        template <class C>
        C& unwrap(const named_ref<C>& n) noexcept
        {
            return n.ref;
        }

        /*****************************************
         * Element types present, at compile time *
         *****************************************/

        inline constexpr unsigned float_bit = 1;
        inline constexpr unsigned double_bit = 2;
        // Coded tensors (bf16, 8-bit) may be stepped: their kernels are compiled. bf16
        // parameters bring it; 8-bit and bf16 states bring it where set_storage is called.
        inline constexpr unsigned coded_bit = 4;

        // Unknown kinds contribute nothing; the walker rejects them with a message.
        template <class P, class = void>
        struct element_types : std::integral_constant<unsigned, 0>
        {
        };

        template <class P>
        inline constexpr unsigned element_types_v = element_types<bare<P>>::value;

        template <class P>
        struct element_types<P, std::enable_if_t<is_tensor_v<P>>>
        {
            using value_type = tensor::value_type<P>;
            // bf16 parameters are computed in float, through the coded kernels.
            static constexpr unsigned value = std::is_same_v<value_type, float>      ? float_bit
                                              : std::is_same_v<value_type, bfloat16> ? float_bit | coded_bit
                                              : std::is_same_v<value_type, double>   ? double_bit
                                                                                     : 0;
        };

        template <class C>
        struct element_types<named_ref<C>> : std::integral_constant<unsigned, element_types_v<C>>
        {
        };

        template <class... T>
        struct element_types<std::tuple<T...>> : std::integral_constant<unsigned, (0u | ... | element_types_v<T>)>
        {
        };

        template <class A, class B>
        struct element_types<std::pair<A, B>>
            : std::integral_constant<unsigned, element_types_v<A> | element_types_v<B>>
        {
        };

        template <class P>
        struct element_types<P, std::enable_if_t<!is_tensor_v<P> && is_list<P>::value>>
            : std::integral_constant<unsigned, element_types_v<typename P::value_type>>
        {
        };

        template <class P>
        struct element_types<P, std::enable_if_t<!is_tensor_v<P> && !is_list<P>::value && is_model<P>::value>>
            : std::integral_constant<unsigned, element_types_v<decltype(xoptim_params(std::declval<P&>()))>>
        {
        };

        /**********
         * Walker *
         **********/

        template <class V, class P, class G>
        void walk(V& visitor, P&& params, G&& grads, const name_path& path);

        template <class G>
        decltype(auto) grad_item(G& grads, std::size_t k)
        {
            if constexpr (std::is_same_v<bare<G>, no_grads>)
            {
                return (grads);
            }
            else
            {
                return grads[k];
            }
        }

        template <std::size_t K, class G>
        decltype(auto) grad_element(G& grads)
        {
            if constexpr (std::is_same_v<bare<G>, no_grads>)
            {
                return (grads);
            }
            else
            {
                return std::get<K>(grads);
            }
        }

        // Whether the tensors a parameter set reaches own their elements: through names,
        // tuples, lists and a model's xoptim_params, to the tensors at the end.
        template <class P, class = void>
        struct reaches_owners : owns_elements<P>
        {
        };

        template <class C>
        struct reaches_owners<named_ref<C>> : reaches_owners<bare<C>>
        {
        };

        template <class... T>
        struct reaches_owners<std::tuple<T...>> : std::disjunction<reaches_owners<bare<T>>...>
        {
        };

        template <class A, class B>
        struct reaches_owners<std::pair<A, B>> : std::disjunction<reaches_owners<bare<A>>, reaches_owners<bare<B>>>
        {
        };

        template <class P>
        struct reaches_owners<P, std::enable_if_t<!is_tensor_v<P> && is_list<P>::value>>
            : reaches_owners<typename P::value_type>
        {
        };

        template <class P>
        struct reaches_owners<P, std::enable_if_t<!is_tensor_v<P> && !is_list<P>::value && is_model<P>::value>>
            : reaches_owners<bare<decltype(xoptim_params(std::declval<P&>()))>>
        {
        };

        // Whether a value of P (held by value, not by reference) has its own copy of the
        // tensors it stands for: an owning tensor, a list or tuple holding one, a model
        // (its xoptim_params names its members) whose tensors own their elements. A step
        // through such a temporary would update the copy, which dies with it.
        template <class P, class = void>
        struct owns_copy : std::disjunction<owns_elements<P>, std::conjunction<is_model<P>, reaches_owners<P>>>
        {
        };

        template <class... T>
        struct owns_copy<std::tuple<T...>>
            : std::disjunction<std::conjunction<std::negation<std::is_reference<T>>, owns_copy<bare<T>>>...>
        {
        };

        template <class A, class B>
        struct owns_copy<std::pair<A, B>> : owns_copy<std::tuple<A, B>>
        {
        };

        template <class P>
        struct owns_copy<P, std::enable_if_t<!is_tensor_v<P> && is_list<P>::value>> : owns_copy<typename P::value_type>
        {
        };

        // A parameter held by value (std::make_tuple(w) instead of std::tie(w) or
        // xoptim::named, a model by value) would step a copy that dies with its holder.
        template <class E>
        inline constexpr bool holds_copy_v = !std::is_reference_v<E> && owns_copy<bare<E>>::value;

        // A step's parameters, passed as P&&, must not be a temporary that owns them.
        template <class P>
        constexpr void require_stepped_in_place()
        {
            static_assert(std::is_lvalue_reference_v<P> || !holds_copy_v<P>,
                          "xoptim: the parameters are a temporary, so a step would update a copy; pass the "
                          "tensors themselves");
        }

        // A model's xoptim_params must list references to its tensors: tensors it returns
        // by value (one tensor, or a tuple built with std::make_tuple) are copies, and a
        // step would update them.
        template <class M>
        constexpr bool check_model_lists_references() noexcept
        {
            constexpr bool references = !holds_copy_v<decltype(xoptim_params(std::declval<M&>()))>;
            static_assert(references, "xoptim: xoptim_params returns tensors (or a model) by value, so a step "
                                      "would update a copy; return references: std::tie(m.w, m.b), or xoptim::named "
                                      "for each");
            return references;
        }

        // A tuple of n parameters and its gradients (none: no_grads).
        template <std::size_t N, class G>
        constexpr bool check_tuple_length() noexcept
        {
            if constexpr (std::is_same_v<G, no_grads>)
            {
                return true;
            }
            else
            {
                constexpr bool same = N == std::tuple_size<G>::value;
                static_assert(same, "xoptim: parameter and gradient tuples differ in length");
                return same;
            }
        }

        // A step's gradients: no_grads is for walks that step nothing.
        template <class G>
        constexpr void require_gradients()
        {
            static_assert(!std::is_same_v<bare<G>, no_grads>, "xoptim: step needs gradients");
        }

        // Whether a tensor's elements can be written through it.
        template <class P>
        inline constexpr bool mutable_tensor_v =
            !std::is_const_v<std::remove_pointer_t<decltype(tensor::data(std::declval<P&>()))>>;

        // A parameter is written by the step: a const one is refused in words (the
        // optimizers' walk and the stepper's, routers' and checkpoints' flat one).
        template <class P>
        constexpr bool check_mutable_param() noexcept
        {
            constexpr bool writable = mutable_tensor_v<P>;
            static_assert(writable, "xoptim: parameters must be mutable (got a const tensor; a model lists its "
                                    "parameters through a non-const xoptim_params(M&))");
            return writable;
        }

        template <class V, class P, class G, std::size_t... K>
        void walk_tuple(V& visitor, P& params, G& grads, const name_path& path, std::index_sequence<K...>)
        {
            static_assert(!(holds_copy_v<std::tuple_element_t<K, bare<P>>> || ...),
                          "xoptim: this tuple holds a parameter by value, so a step would update a copy; "
                          "build it with std::tie or xoptim::named");
            (walk(visitor, std::get<K>(params), grad_element<K>(grads), name_path{&path, {}, K, true}), ...);
        }

        template <class V, class P, class G>
        void walk(V& visitor, P&& params, G&& grads, const name_path& path)
        {
            using p_type = bare<P>;
            using g_type = bare<G>;
            constexpr bool has_grads = !std::is_same_v<g_type, no_grads>;
            if constexpr (is_named<p_type>::value)
            {
                if constexpr (is_named<g_type>::value)
                {
                    if (grads.name != params.name)
                    {
                        visitor.mismatch(path, "gradient is named '" + std::string(grads.name) + "'");
                    }
                }
                // The name replaces the position the walker gave this entry (or the
                // root's empty name); under another name it nests: named("enc",
                // named("w", w)) is "enc.w".
                const bool replaces = path.is_index || path.piece.empty();
                walk(visitor, params.ref, unwrap(grads),
                     name_path{replaces ? path.parent : &path, params.name, 0, false});
            }
            else if constexpr (is_named<g_type>::value)
            {
                walk(visitor, params, grads.ref, path);
            }
            // After a failed check of the gradient's kind nothing more is compiled: one
            // sentence, not that one and the errors of reading the wrong kind.
            else if constexpr (is_tensor_v<p_type>)
            {
                constexpr bool matched = !has_grads || is_tensor_v<g_type>;
                static_assert(matched, "xoptim: a tensor parameter needs a tensor gradient at the same position "
                                       "(an xtensor expression such as a + b is lazy: evaluate it into a container)");
                if constexpr (matched)
                {
                    if constexpr (check_leaf_data<P, G>())
                    {
                        visitor.leaf(path, params, grads);
                    }
                }
            }
            else if constexpr (is_tuple<p_type>::value)
            {
                constexpr bool matched = !has_grads || is_tuple<g_type>::value;
                static_assert(matched, "xoptim: a tuple of parameters needs a tuple of gradients");
                if constexpr (matched)
                {
                    constexpr std::size_t n = std::tuple_size<p_type>::value;
                    if constexpr (check_tuple_length<n, g_type>())
                    {
                        walk_tuple(visitor, params, grads, path, std::make_index_sequence<n>{});
                    }
                }
            }
            else if constexpr (is_list<p_type>::value)
            {
                constexpr bool matched = !has_grads || is_list<g_type>::value;
                static_assert(matched, "xoptim: a list of parameters needs a list of gradients");
                if constexpr (matched)
                {
                    if constexpr (has_grads)
                    {
                        if (grads.size() != params.size())
                        {
                            visitor.mismatch(path, "parameter list has " + std::to_string(params.size())
                                                       + " entries, gradient list " + std::to_string(grads.size()));
                            return;
                        }
                    }
                    for (std::size_t k = 0; k < params.size(); ++k)
                    {
                        walk(visitor, params[k], grad_item(grads, k), name_path{&path, {}, k, true});
                    }
                }
            }
            else if constexpr (is_model<p_type>::value)
            {
                if constexpr (!check_model_lists_references<p_type>())
                {
                    return;
                }
                else if constexpr (has_grads)
                {
                    static_assert(is_model<g_type>::value, "xoptim: a model needs gradients of a model type "
                                                           "(a struct with xoptim_params)");
                    if constexpr (!is_model<g_type>::value)
                    {
                        return;
                    }
                    else if constexpr (check_model_const<P>() && check_model_const<G>())
                    {
                        walk(visitor, xoptim_params(params), xoptim_params(grads), path);
                    }
                }
                else if constexpr (check_model_const<P>())
                {
                    walk(visitor, xoptim_params(params), grads, path);
                }
            }
            else
            {
                static_assert(is_tensor_v<p_type>,
                              "xoptim: not a parameter set. Expected a tensor (see tensor_traits), "
                              "xoptim::named, a tuple, a std::vector/std::array of them, or a "
                              "model with an xoptim_params(model&) function");
            }
        }
    }

    // Calls visitor.leaf(path, param, grad) for every tensor, in order; visitor.mismatch
    // (path, what) for a structural mismatch. `grads` may be no_grads{}.
    template <class V, class P, class G>
    void walk_params(V& visitor, P&& params, G&& grads)
    {
        const name_path root{};
        detail::walk(visitor, std::forward<P>(params), std::forward<G>(grads), root);
    }
}

#endif
