// What a class deriving from optimizer<Self, Options> must declare, and the optional hooks
// it may declare (docs/design.md §3 lists them with an example each).
//
// Required, checked by detail::check_optimizer<D>() with a sentence each:
//   static constexpr const char* name;                        messages, checkpoints
//   static constexpr std::array<const char*, N> state_names;  one name per state tensor
//   static void check(const options_type&);                   throws, naming the field
//   std::size_t num_states(const options_type&) const;        state tensors per parameter
//   template <class Step> void update(const Step&, const options_type&);
//   and in the options struct: template <class O, class F> static void fields(O&, F&&),
//   every hyperparameter as f("name", o.name).
// Optional:
//   static constexpr std::array<bool, N> unsigned_states;     never negative: 8-bit unsigned map
//   static constexpr std::array<bool, N> wide_range_states;   divided by with no floor: bf16, never 8-bit
//   static constexpr std::size_t full_precision_states;       the first ones keep the math type
//   static constexpr std::size_t scratch_states;              the last ones live within a step
//   std::string unsupported_shape(const std::vector<std::size_t>&) const;  refuse a shape
//   std::string refuses_step() const;  why no step can be taken now (empty: none), asked
//                                      before anything changes, with the step's scheduled
//                                      options in force (Schedule-Free in eval mode, or
//                                      with an averaging weight that is not finite)
//   std::array<state_extent, N> state_extents(const options_type&, const std::vector<std::size_t>&) const;
//   static void host_fields(self, f): host numbers a checkpoint keeps (Schedule-Free).
//   shard_rule shards(const options_type&) const;  how a step may be split between processes
//   template <class Step> double whole_set_total(const Step&, const options_type&) const;
//       where shards() is whole_set: a number over all its tensors (LAMB: the gradients'
//       squared norm), computed before anything changes; the update reads it as
//       step.whole_set_total(). Over a param_groups it is every group's added, in group
//       order (apex's one norm over all groups), whatever each group's options.
#ifndef XOPTIM_OPTIM_CONTRACT_HPP
#define XOPTIM_OPTIM_CONTRACT_HPP

#include <algorithm>
#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace xoptim
{
    // How an optimizer's step may be split between processes (ZeRO-1 shards, dist/).
    enum class shard_rule
    {
        elements,       // element-wise: any piece of a tensor steps on its own (the default)
        whole_tensors,  // per-tensor numbers (a norm, a count, statistics): each tensor steps whole
        whole_set       // numbers over all its tensors (LAMB's max_grad_norm): all of them in one step
    };
}

namespace xoptim::detail
{
    template <class D, class = void>
    struct declares_name : std::false_type
    {
    };

    template <class D>
    struct declares_name<D, std::void_t<decltype(D::name)>> : std::is_convertible<decltype(D::name), const char*>
    {
    };

    template <class D, class = void>
    struct declares_state_names : std::false_type
    {
    };

    template <class D>
    struct declares_state_names<D, std::void_t<decltype(D::state_names.size()), decltype(D::state_names[0])>>
        : std::is_convertible<decltype(D::state_names[0]), const char*>
    {
    };

    template <class D, class = void>
    struct declares_check : std::false_type
    {
    };

    template <class D>
    struct declares_check<D, std::void_t<decltype(D::check(std::declval<const typename D::options_type&>()))>>
        : std::true_type
    {
    };

    template <class D, class = void>
    struct declares_num_states : std::false_type
    {
    };

    template <class D>
    struct declares_num_states<D, std::void_t<decltype(std::declval<const D&>().num_states(
                                      std::declval<const typename D::options_type&>()))>>
        : std::is_convertible<decltype(std::declval<const D&>().num_states(
                                  std::declval<const typename D::options_type&>())),
                              std::size_t>
    {
    };

    // Stands for the callback `fields` is given.
    struct field_probe
    {
        template <class T>
        void operator()(const char*, T&) const noexcept
        {
        }
    };

    template <class O, class = void>
    struct declares_fields : std::false_type
    {
    };

    template <class O>
    struct declares_fields<O, std::void_t<decltype(O::fields(std::declval<O&>(), field_probe{}))>> : std::true_type
    {
    };

    template <class D, class Step, class = void>
    struct declares_update : std::false_type
    {
    };

    template <class D, class Step>
    struct declares_update<D, Step,
                           std::void_t<decltype(std::declval<D&>().update(
                               std::declval<const Step&>(), std::declval<const typename D::options_type&>()))>>
        : std::true_type
    {
    };

    // The requirements every optimizer meets, each a static_assert with its sentence.
    template <class D>
    constexpr bool check_optimizer()
    {
        constexpr bool name = declares_name<D>::value;
        constexpr bool state_names = declares_state_names<D>::value;
        constexpr bool check = declares_check<D>::value;
        constexpr bool num_states = declares_num_states<D>::value;
        constexpr bool fields = declares_fields<typename D::options_type>::value;
        static_assert(name, "xoptim: an optimizer declares `static constexpr const char* name` (its name in "
                            "messages and checkpoints)");
        static_assert(state_names, "xoptim: an optimizer declares `static constexpr std::array<const char*, N> "
                                   "state_names` (one name per state tensor; N = 0 for none)");
        static_assert(check, "xoptim: an optimizer declares `static void check(const options_type&)` (throws "
                             "std::invalid_argument naming a field out of range)");
        static_assert(num_states, "xoptim: an optimizer declares `std::size_t num_states(const options_type&) "
                                  "const` (the state tensors per parameter under these options)");
        static_assert(fields, "xoptim: an optimizer's options struct declares `template <class O, class F> static "
                              "void fields(O& o, F&& f)` calling f(\"name\", o.name) for every hyperparameter");
        return name && state_names && check && num_states && fields;
    }

    template <class D, class Step>
    constexpr bool check_update()
    {
        constexpr bool update = declares_update<D, Step>::value;
        static_assert(update, "xoptim: an optimizer declares `template <class Step> void update(const Step& step, "
                              "const options_type& o)` (runs the step's fused passes)");
        return update;
    }

    // Optional hooks: each detector says whether D declares it.
    template <class D, class = void>
    struct has_shape_check : std::false_type
    {
    };

    template <class D>
    struct has_shape_check<D, std::void_t<decltype(std::declval<const D&>().unsupported_shape(
                                  std::declval<const std::vector<std::size_t>&>()))>> : std::true_type
    {
    };

    template <class D, class = void>
    struct has_step_refusal : std::false_type
    {
    };

    template <class D>
    struct has_step_refusal<D, std::void_t<decltype(std::declval<const D&>().refuses_step())>> : std::true_type
    {
    };

    template <class D, class = void>
    struct declares_unsigned : std::false_type
    {
    };

    template <class D>
    struct declares_unsigned<D, std::void_t<decltype(D::unsigned_states)>> : std::true_type
    {
    };

    template <class D, class = void>
    struct declares_wide_range : std::false_type
    {
    };

    template <class D>
    struct declares_wide_range<D, std::void_t<decltype(D::wide_range_states)>> : std::true_type
    {
    };

    template <class D, class = void>
    struct full_precision_states : std::integral_constant<std::size_t, 0>
    {
    };

    template <class D>
    struct full_precision_states<D, std::void_t<decltype(D::full_precision_states)>>
        : std::integral_constant<std::size_t, D::full_precision_states>
    {
    };

    template <class D, class = void>
    struct declares_extents : std::false_type
    {
    };

    template <class D>
    struct declares_extents<D, std::void_t<decltype(std::declval<const D&>().state_extents(
                                   std::declval<const typename D::options_type&>(),
                                   std::declval<const std::vector<std::size_t>&>()))>> : std::true_type
    {
    };

    template <class D, class = void>
    struct scratch_states : std::integral_constant<std::size_t, 0>
    {
    };

    template <class D>
    struct scratch_states<D, std::void_t<decltype(D::scratch_states)>>
        : std::integral_constant<std::size_t, D::scratch_states>
    {
    };

    template <class D, class = void>
    struct declares_shards : std::false_type
    {
    };

    template <class D>
    struct declares_shards<D, std::void_t<decltype(std::declval<const D&>().shards(
                                  std::declval<const typename D::options_type&>()))>> : std::true_type
    {
    };

    template <class D, class Step, class = void>
    struct declares_whole_set_total : std::false_type
    {
    };

    template <class D, class Step>
    struct declares_whole_set_total<D, Step,
                                    std::void_t<decltype(std::declval<const D&>().whole_set_total(
                                        std::declval<const Step&>(), std::declval<const typename D::options_type&>()))>>
        : std::true_type
    {
    };

    // How a commit has the whole-set total (whole_set_total above): from the optimizer's
    // own tensors (alone), only added to `value` with nothing changed (summing: a
    // param_groups' first round over its groups), or taken from `value` (given: the
    // second round).
    struct whole_set_round
    {
        enum class phase
        {
            alone,
            summing,
            given
        };
        phase how = phase::alone;
        double value = 0;
    };

    template <class D>
    shard_rule shard_rule_of(const D& d) noexcept
    {
        if constexpr (declares_shards<D>::value)
        {
            return d.shards(d.options());
        }
        else
        {
            return shard_rule::elements;
        }
    }

    // How many states a checkpoint saves (the first ones, at most): all the optimizer
    // creates under its options but the scratch ones (Muon's update; NorMuon's second
    // moment comes before Muon's scratch).
    template <class D>
    std::size_t kept_states(const D& d) noexcept
    {
        const std::size_t all = d.num_states(d.options());
        return all - std::min(all, scratch_states<D>::value);
    }
}

#endif
