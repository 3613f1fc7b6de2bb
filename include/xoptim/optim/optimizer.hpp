// The step driver every optimizer shares. An optimizer (see sgd.hpp; its contract in
// contract.hpp) derives from optimizer<Self, Options>, which owns the options, and supplies
// its name, its state names and an `update(step, options)` that calls
// `step.run(assignments...)`; this base walks the parameters, checks everything, creates
// state on first use, and only then runs the fused program over all tensors.
#ifndef XOPTIM_OPTIM_OPTIMIZER_HPP
#define XOPTIM_OPTIM_OPTIMIZER_HPP

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "../engine/executor.hpp"
#include "../params/aliasing.hpp"
#include "../params/flat.hpp"
#include "../params/param_set.hpp"
#include "contract.hpp"
#include "hyperparameters.hpp"
#include "kinds.hpp"
#include "state.hpp"
#include "step_context.hpp"
#include "storage.hpp"

namespace xoptim
{
    namespace detail
    {
        struct checkpoint_access;
    }

    template <class Derived, class Options>
    class optimizer
    {
    public:

        using options_type = Options;

        const Options& options() const noexcept
        {
            return m_o;
        }

        // One step over `params` with gradients `grads`, two parameter sets of the same
        // structure, each gradient seen through `transform`. Throws
        // std::invalid_argument, before changing anything, if a gradient does not fit its
        // parameter or the parameters do not fit the state.
        template <class P, class G>
        void step(P&& params, G&& grads, const grad_transform& transform = {});

        // The same over lists a flat_params walk checked (the stepper's, a router's):
        // each parameter is checked against the state, but no leaf and no aliasing again.
        template <class P, class G>
        void step(P&& params, G&& grads, const grad_transform& transform, checked_walk);

        // A step in two phases, for running several optimizers as one (xoptim::router):
        // prepare checks everything and changes nothing but a first step's new state;
        // then either commit (the update, over float and double parameters) or
        // abandon (drops what prepare created). With a walk's checked_walk, prepare
        // checks the lists against the state only (as step does). A param_groups passes
        // `round` to sum its groups' whole-set totals (contract.hpp) before any updates.
        template <class P, class G>
        void prepare(P&& params, G&& grads);
        template <class P, class G>
        void prepare(P&& params, G&& grads, checked_walk);
        template <unsigned Types = detail::float_bit | detail::double_bit>
        void commit(const grad_transform& transform = {}, detail::whole_set_round* round = nullptr);
        void abandon() noexcept;

        // Creates the state for `params` now instead of on the first step.
        template <class P>
        void init(P&& params);

        // Takes back what init created (the state, the schedules' values it set): for a
        // router's init or a checkpoint load that failed after this optimizer's init.
        void forget_init() noexcept
        {
            m_state.truncate(0);
            m_alias.forget();
            restore_unscheduled();
        }

        // Steps taken so far.
        std::size_t step_count() const noexcept
        {
            return m_steps;
        }

        // Hyperparameter `field` follows `s` from now on: step k (k = 0, 1, 2, ...; the
        // k-th step taken) uses s(k). After a step, options() holds the values it used.
        // A value out of range is reported by that step, naming the field, before
        // anything changes.
        Derived& schedule(const std::string& field, xoptim::schedule s);

        // The same with the field named by a member pointer: schedule(&adamw_options::lr, s).
        Derived& schedule(double Options::*field, xoptim::schedule s);

        // A field of another options struct, or one that is not a number: refused with a
        // sentence.
        template <class Other, class Field>
        Derived& schedule(Field Other::*, xoptim::schedule)
        {
            constexpr bool own = std::is_same_v<Other, Options>;
            static_assert(own, "xoptim: schedule a field of this optimizer's own options struct");
            static_assert(!own || std::is_same_v<Field, double>,
                          "xoptim: only a number (double) field follows a schedule; an element of an array field "
                          "by its name: schedule(\"betas[1]\", s)");
            return derived();
        }

        const std::vector<schedule_binding>& schedules() const noexcept
        {
            return m_schedules;
        }

        // Another optimizer's options: refused with a sentence.
        template <class Other>
        void set_options(const Other&)
        {
            static_assert(std::is_same_v<Other, Options>, "xoptim: set_options takes this optimizer's own options struct");
        }

        // New hyperparameters, checked as the constructor checks them. Options that need
        // a state tensor the existing state was made without (amsgrad switched on, SGD's
        // momentum leaving 0), or that shape a state otherwise (NorMuon's per-row second
        // moment), are refused: the state is made on the first step.
        void set_options(const Options& o)
        {
            Derived::check(o);
            const std::size_t needed = derived().num_states(o);
            if (!m_state.empty() && needed > m_state[0].count)
            {
                throw std::invalid_argument(std::string("xoptim::") + Derived::name + ": these options need "
                                            + std::to_string(needed) + " state tensors per parameter, the state was "
                                            + "made with " + std::to_string(m_state[0].count)
                                            + " (options that start a state, such as amsgrad or momentum leaving 0, "
                                              "must hold from the first step; a schedule from step 0)");
            }
            if constexpr (detail::declares_extents<Derived>::value)
            {
                for (std::size_t e = 0; e < m_state.size(); ++e)
                {
                    const auto extents = derived().state_extents(o, m_state[e].shape);
                    if (!std::equal(extents.begin(), extents.begin() + std::min(needed, extents.size()),
                                    m_state[e].extents.begin()))
                    {
                        throw std::invalid_argument(std::string("xoptim::") + Derived::name
                                                    + ": these options shape the state of parameter '"
                                                    + m_state[e].name + "' otherwise than it was made on the first "
                                                    + "step (options that shape a state, such as normuon, must hold "
                                                      "from the first step)");
                    }
                }
            }
            m_o = o;
        }

        const state_store& state() const noexcept
        {
            return m_state;
        }

        // How states and bf16 parameters are stored; set before the state exists (the
        // first step or init), refused after. The kernels for bf16 and 8-bit states are
        // compiled where this is called (a program that never calls it compiles only the
        // float and double ones); a step reaches them through m_coded_commit.
        Derived& set_storage(const storage_options& s)
        {
            if (!m_state.empty())
            {
                throw std::logic_error(std::string("xoptim::") + Derived::name
                                       + ": set_storage after the state exists (set it before the first step)");
            }
            m_storage = s;
            constexpr unsigned all = detail::float_bit | detail::double_bit | detail::coded_bit;
            if constexpr (detail::declares_update<Derived, step_context<all>>::value)  // not the EMA: it never steps
            {
                m_coded_commit = &optimizer::commit<all>;
            }
            return derived();
        }

        const storage_options& storage() const noexcept
        {
            return m_storage;
        }

        state_report report() const noexcept
        {
            state_report r = m_state.report();
            // The array a step carries between its passes (run_carrying: LAMB's update,
            // for its tensors of more than one unit), kept across steps.
            r.state_bytes += m_floats.carried().capacity() * sizeof(float) +
                             m_doubles.carried().capacity() * sizeof(double);
            return r;
        }

    protected:

        // Checks the contract (contract.hpp) and the options.
        explicit optimizer(const Options& o)
            : m_o(checked(o))
        {
        }

        // Runs `assignments`, which read no gradient, over `params` (the parameters the
        // state was made for, checked as a step checks them) in one fused pass: work
        // between steps, such as Schedule-Free's eval() and train(). Before the first step
        // (no state) it runs nothing.
        template <class P, class... A>
        void run_without_grads(P&& params, A&&... assignments);

    private:

        friend struct detail::checkpoint_access;
        template <class>
        friend class compiled;  // puts a state made by a direct walk in its lists' order
        class visitor;

        // Sets every scheduled field to its value at step k, keeping the values it
        // replaced, which restore_unscheduled puts back when the step does not happen.
        void apply_schedules(std::size_t k);
        void restore_unscheduled() noexcept;

        // `checked`: by a flat_params walk (no leaf_problem, no alias check). With
        // `jobs_without_grads`, a set without gradients is prepared to run as well.
        template <class P, class G>
        void collect(P&& params, G&& grads, bool checked, bool jobs_without_grads = false);

        template <class P, class G>
        void step_walk(P&& params, G&& grads, const grad_transform& transform, bool checked);
        template <class P, class G>
        void prepare_walk(P&& params, G&& grads, bool checked);

        const Derived& derived() const noexcept
        {
            return static_cast<const Derived&>(*this);
        }

        // Non-const: an update may keep workspace (Muon's Newton-Schulz).
        Derived& derived() noexcept
        {
            return static_cast<Derived&>(*this);
        }

        state_layout layout_for(dtype type, const std::vector<std::size_t>& shape, std::size_t size) const;

        static const Options& checked(const Options& o)
        {
            if constexpr (detail::check_optimizer<Derived>())  // a sentence for each member missing
            {
                Derived::check(o);
            }
            return o;
        }

        Options m_o;
        // The step with the coded kernels, for states set_storage made coded.
        void (optimizer::*m_coded_commit)(const grad_transform&, detail::whole_set_round*) = nullptr;
        state_store m_state;
        storage_options m_storage;
        job_list<float> m_floats;
        job_list<double> m_doubles;
        coded_job_list m_coded;
        // Where this step's tensors live, and where they lived at the last step that
        // passed the alias check. Reused: no allocation in steady state.
        detail::alias_check m_alias;
        std::vector<schedule_binding> m_schedules;
        std::vector<double> m_unscheduled;
        std::size_t m_steps = 0;
        bool m_prepared = false;
        bool m_prepared_first = false;
    };

    /******************
     * Implementation *
     ******************/

    template <class Derived, class Options>
    state_layout optimizer<Derived, Options>::layout_for(dtype type, const std::vector<std::size_t>& shape,
                                                std::size_t size) const
    {
        state_layout layout;
        layout.count = derived().num_states(m_o);
        if constexpr (detail::declares_extents<Derived>::value)
        {
            const auto extents = derived().state_extents(m_o, shape);
            std::copy(extents.begin(), extents.end(), layout.extents.begin());
        }
        const std::size_t kept = detail::kept_states(derived());
        const bool narrow = type != dtype::float64;
        // Beside row statistics, an element state is run a row at a time (Adafactor's row
        // jobs): 8-bit only where every row is whole blocks, as its block scales are.
        const bool rows_split_blocks = std::find(layout.extents.begin(), layout.extents.end(), state_extent::rows)
                                           != layout.extents.end()
                                       && !shape.empty() && shape.back() % codec_block != 0;
        for (std::size_t k = detail::full_precision_states<Derived>::value; k < kept && narrow; ++k)
        {
            if (layout.extents[k] != state_extent::elements)
            {
                continue;  // statistics stay in the math type
            }
            bool non_negative = false;
            if constexpr (detail::declares_unsigned<Derived>::value)
            {
                non_negative = k < Derived::unsigned_states.size() && Derived::unsigned_states[k];
            }
            // A state 8-bit cannot hold (its zero code would be divided by; rows that split
            // blocks) is bf16 under blockwise_8bit.
            bool wide_range = rows_split_blocks;
            if constexpr (detail::declares_wide_range<Derived>::value)
            {
                wide_range = wide_range || (k < Derived::wide_range_states.size() && Derived::wide_range_states[k]);
            }
            switch (m_storage.states)
            {
                case state_storage::bf16: layout.formats[k] = slot_format::bf16; break;
                case state_storage::blockwise_8bit:
                    layout.formats[k] = size < m_storage.min_8bit_size ? slot_format::native
                                        : wide_range                   ? slot_format::bf16
                                        : non_negative                 ? slot_format::q8_unsigned
                                                                       : slot_format::q8_signed;
                    break;
                default: break;
            }
        }
        if (type == dtype::bfloat16)
        {
            layout.param = m_storage.parameters == bf16_rounding::stochastic    ? slot_format::bf16_stochastic
                           : m_storage.parameters == bf16_rounding::compensated ? slot_format::bf16_compensated
                                                                                : slot_format::bf16;
        }
        return layout;
    }

    template <class Derived, class Options>
    class optimizer<Derived, Options>::visitor
    {
    public:

        visitor(optimizer& o, bool with_jobs, bool checked) noexcept
            : m_opt(o), m_with_jobs(with_jobs), m_creating(o.m_state.empty()), m_checked(checked)
        {
        }

        [[noreturn]] void mismatch(const name_path& path, const std::string& what) const
        {
            throw std::invalid_argument(std::string("xoptim::") + Derived::name + ": parameter '" + path.name()
                                        + "': " + what);
        }

        // Type errors a leaf can have; each is one static_assert, and the body below is
        // not instantiated after one, so the message comes alone.
        template <class P, class G>
        static constexpr bool leaf_types_ok()
        {
            using T = tensor::value_type<P>;
            constexpr bool number
                = std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, bfloat16>;
            static_assert(number, "xoptim: parameters must be float, double or xoptim::bfloat16 tensors");
            constexpr bool mutable_param = detail::check_mutable_param<P>();
            if constexpr (std::is_same_v<detail::bare<G>, no_grads>)
            {
                return number && mutable_param;
            }
            else
            {
                constexpr bool same_type = std::is_same_v<T, tensor::value_type<G>>;
                constexpr std::size_t ps = tensor::static_size<P>;
                constexpr std::size_t gs = tensor::static_size<G>;
                constexpr bool same_size = ps == 0 || gs == 0 || ps == gs;
                static_assert(same_type, "xoptim: a gradient must have the same element type as its parameter");
                static_assert(same_size, "xoptim: gradient and parameter have different (compile-time) sizes");
                return number && mutable_param && same_type && same_size;
            }
        }

        template <class P, class G>
        void leaf(const name_path& path, P& param, G& grad)
        {
            if constexpr (leaf_types_ok<P, G>())
            {
                checked_leaf(path, param, grad);
            }
        }

        template <class P, class G>
        [[gnu::noinline]] void checked_leaf(const name_path& path, P& param, G& grad)
        {
            using T = tensor::value_type<P>;
            if (!m_checked)
            {
                if (const std::string problem = detail::leaf_problem(param, grad); !problem.empty())
                {
                    mismatch(path, problem);
                }
            }
            const T* grad_data = nullptr;
            if constexpr (!std::is_same_v<detail::bare<G>, no_grads>)
            {
                grad_data = tensor::data(grad);
            }
            take<T>(path, tensor::data(param), grad_data, tensor::size(param), detail::shape_ref::of(param));
        }

        // The rest of a leaf, which depends on its element type alone (compiled once per
        // type, and once per project with <xoptim/instances.hpp>): its state, where it
        // lives, its job.
        template <class T>
        void take(const name_path& path, T* param, const T* grad, std::size_t size, const detail::shape_ref& shape);

        // The parameter's tensors in the list its storage needs: float and double ones
        // in the simple lists, anything coded (bf16, 8-bit) in the coded one.
        template <class T>
        void add_job(const state_store::entry& e, T* param, const T* grad)
        {
            if constexpr (!std::is_same_v<T, bfloat16>)
            {
                if (e.plain())
                {
                    tensor_slots<T> slots;
                    slots.param = param;
                    slots.grad = grad;
                    slots.size = e.size;
                    for (std::size_t k = 0; k < e.count; ++k)
                    {
                        slots.states[k] = e.template state<T>(k);
                    }
                    jobs<T>().push_back(slots);
                    return;
                }
            }
            if constexpr (!std::is_same_v<T, double>)
            {
                coded_slots c;
                c.plain.size = e.size;
                if constexpr (std::is_same_v<T, float>)
                {
                    c.plain.param = param;
                    c.plain.grad = grad;
                }
                else
                {
                    c.format[param_slot] = e.param_format;
                    c.source[param_slot] = param;
                    c.target[param_slot] = param;
                    c.format[grad_slot] = slot_format::bf16;
                    c.source[grad_slot] = grad;
                    c.compensation = e.compensation;
                    c.key = codec::stream_key(m_opt.m_storage.seed, m_opt.m_steps, m_index);
                }
                for (std::size_t k = 0; k < e.count; ++k)
                {
                    const state_store::state_tensor& st = e.states[k];
                    const std::size_t slot = first_state + k;
                    c.format[slot] = st.format;
                    if (st.format == slot_format::native)
                    {
                        c.plain.states[k] = static_cast<float*>(st.data);
                    }
                    c.source[slot] = st.data;
                    c.target[slot] = st.data;
                    c.absmax[slot] = st.absmax;
                }
                m_opt.m_coded.push_back(c);
            }
        }

        // A step must see exactly the parameters the state was made for, and no tensor
        // it writes may share memory with another it touches.
        void finish();

    private:

        template <class T>
        job_list<T>& jobs() noexcept
        {
            return detail::by_type<T>(m_opt.m_floats, m_opt.m_doubles);
        }

        // Records where this parameter and its gradient live (checked lists too: the
        // places tell which moved). A parameter found at a new address must still carry
        // the name its state was made for: state follows names, so reordered named
        // parameters are an error, not a silent swap of their moments (unnamed ones are
        // named by position: for them a new order is new buffers).
        template <class T>
        void track_memory(const name_path& path, const state_store::entry& e, const T* param, const T* grad)
        {
            const bool moved = m_opt.m_alias.track(param, grad, e.size, m_index);
            if (moved && !m_creating && path.name() != e.name)
            {
                mismatch(path, "the optimizer state at this position belongs to '" + e.name
                                   + "' (parameters must keep their order)");
            }
        }

        template <class T>
        const state_store::entry& state_for(const name_path& path, std::size_t size, const detail::shape_ref& shape)
        {
            state_store& store = m_opt.m_state;
            if (m_creating)
            {
                std::vector<std::size_t> extents = shape.vector();
                if constexpr (detail::has_shape_check<Derived>::value)
                {
                    const std::string problem = m_opt.derived().unsupported_shape(extents);
                    if (!problem.empty())
                    {
                        mismatch(path, problem);
                    }
                }
                const state_layout layout = m_opt.layout_for(dtype_of<T>(), extents, size);
                return store.add(path.name(), dtype_of<T>(), std::move(extents), size, layout);
            }
            if (m_index >= store.size())
            {
                mismatch(path, "the optimizer state holds only " + std::to_string(store.size()) + " parameters");
            }
            const state_store::entry& e = store[m_index];
            if (e.type != dtype_of<T>() || e.size != size || !detail::same_shape(shape, e.shape))
            {
                mismatch(path, std::string("parameter is ") + dtype_name(dtype_of<T>()) + " "
                                   + format_shape(shape.vector()) + ", its optimizer state (made for '" + e.name
                                   + "') is " + dtype_name(e.type) + " " + format_shape(e.shape));
            }
            return e;
        }

        optimizer& m_opt;
        bool m_with_jobs;
        bool m_creating;
        bool m_checked;
        std::size_t m_index = 0;
    };

    template <class Derived, class Options>
    template <class T>
    void optimizer<Derived, Options>::visitor::take(const name_path& path, T* param, const T* grad, std::size_t size,
                                                    const detail::shape_ref& shape)
    {
        const state_store::entry& e = state_for<T>(path, size, shape);
        track_memory(path, e, param, grad);
        if (m_with_jobs)
        {
            add_job(e, param, grad);
        }
        ++m_index;
    }

    // Checked in full only when some tensor moved since the last step that passed (always
    // on the first), and not at all over lists a flat_params walk checked: its check
    // covered them.
    template <class Derived, class Options>
    void optimizer<Derived, Options>::visitor::finish()
    {
        if (m_index != m_opt.m_state.size())
        {
            throw std::invalid_argument(std::string("xoptim::") + Derived::name + ": this step passed "
                                        + std::to_string(m_index) + " parameters, the optimizer state holds "
                                        + std::to_string(m_opt.m_state.size()));
        }
        const auto name = [&](std::size_t k) -> const std::string& { return m_opt.m_state[k].name; };
        if (m_creating)
        {
            if (const std::string* twice = detail::repeated_name(m_opt.m_state.size(), name))
            {
                throw std::invalid_argument(std::string("xoptim::") + Derived::name + ": "
                                            + detail::repeated_name_problem(*twice));
            }
        }
        if (m_checked)
        {
            m_opt.m_alias.passed();
            return;
        }
        m_opt.m_alias.check([] { return std::string("xoptim::") + Derived::name; }, name);
    }

    template <class Derived, class Options>
    template <class P, class G>
    void optimizer<Derived, Options>::collect(P&& params, G&& grads, bool checked, bool jobs_without_grads)
    {
        const std::size_t before = m_state.size();
        m_floats.clear();
        m_doubles.clear();
        m_coded.clear();
        m_alias.clear();
        visitor v(*this, jobs_without_grads || !std::is_same_v<detail::bare<G>, no_grads>, checked);
        try
        {
            walk_params(v, std::forward<P>(params), std::forward<G>(grads));
            v.finish();
        }
        catch (...)
        {
            m_state.truncate(before);
            throw;
        }
    }

    template <class Derived, class Options>
    template <class P, class G>
    void optimizer<Derived, Options>::step(P&& params, G&& grads, const grad_transform& transform)
    {
        step_walk(std::forward<P>(params), std::forward<G>(grads), transform, false);
    }

    template <class Derived, class Options>
    template <class P, class G>
    void optimizer<Derived, Options>::step(P&& params, G&& grads, const grad_transform& transform, checked_walk)
    {
        step_walk(std::forward<P>(params), std::forward<G>(grads), transform, true);
    }

    template <class Derived, class Options>
    template <class P, class G>
    void optimizer<Derived, Options>::step_walk(P&& params, G&& grads, const grad_transform& transform, bool checked)
    {
        detail::require_gradients<G>();
        detail::require_stepped_in_place<P>();
        prepare_walk(std::forward<P>(params), std::forward<G>(grads), checked);
        commit<detail::element_types_v<P>>(transform);
    }

    template <class Derived, class Options>
    Derived& optimizer<Derived, Options>::schedule(const std::string& field, xoptim::schedule s)
    {
        std::string names;
        const std::size_t number = detail::number_position(m_o, field, names);
        if (number == detail::npos)
        {
            throw std::invalid_argument(std::string("xoptim::") + Derived::name + ": no numeric hyperparameter '"
                                        + field + "' to schedule (expected one of " + names + ")");
        }
        for (auto& b : m_schedules)
        {
            if (b.field == field)
            {
                b.value = std::move(s);
                return derived();
            }
        }
        m_schedules.push_back({field, std::move(s), number});
        return derived();
    }

    template <class Derived, class Options>
    Derived& optimizer<Derived, Options>::schedule(double Options::*field, xoptim::schedule s)
    {
        return schedule(detail::number_name_of(m_o, field), std::move(s));
    }

    template <class Derived, class Options>
    void optimizer<Derived, Options>::apply_schedules(std::size_t k)
    {
        Options o = m_o;
        m_unscheduled.clear();
        for (const auto& b : m_schedules)
        {
            double& field = detail::number_at(o, b.number);
            m_unscheduled.push_back(field);
            field = b.value(k);
        }
        try
        {
            set_options(o);
        }
        catch (const std::invalid_argument& e)
        {
            throw std::invalid_argument(std::string(e.what()) + " (the schedules' values for step "
                                        + std::to_string(k) + ")");
        }
    }

    template <class Derived, class Options>
    void optimizer<Derived, Options>::restore_unscheduled() noexcept
    {
        if (m_unscheduled.size() != m_schedules.size())
        {
            return;
        }
        for (std::size_t i = 0; i < m_schedules.size(); ++i)
        {
            detail::number_at(m_o, m_schedules[i].number) = m_unscheduled[i];  // they passed their checks then
        }
        m_unscheduled.clear();
    }

    template <class Derived, class Options>
    template <class P, class G>
    void optimizer<Derived, Options>::prepare(P&& params, G&& grads)
    {
        prepare_walk(std::forward<P>(params), std::forward<G>(grads), false);
    }

    template <class Derived, class Options>
    template <class P, class G>
    void optimizer<Derived, Options>::prepare(P&& params, G&& grads, checked_walk)
    {
        prepare_walk(std::forward<P>(params), std::forward<G>(grads), true);
    }

    template <class Derived, class Options>
    template <class P, class G>
    void optimizer<Derived, Options>::prepare_walk(P&& params, G&& grads, bool checked)
    {
        m_prepared = false;
        if (!m_schedules.empty())
        {
            apply_schedules(m_steps);  // throws with the options unchanged
        }
        if constexpr (detail::has_step_refusal<Derived>::value)
        {
            if (const std::string why = derived().refuses_step(); !why.empty())
            {
                restore_unscheduled();
                throw std::logic_error(std::string("xoptim::") + Derived::name + ": " + why);
            }
        }
        m_prepared_first = m_state.empty();
        try
        {
            collect(std::forward<P>(params), std::forward<G>(grads), checked);
        }
        catch (...)
        {
            restore_unscheduled();
            throw;
        }
        m_prepared = true;
    }

    template <class Derived, class Options>
    template <unsigned Types>
    void optimizer<Derived, Options>::commit(const grad_transform& transform, detail::whole_set_round* round)
    {
        if (!m_prepared)
        {
            return;  // nothing prepared (or already committed): no step
        }
        if constexpr ((Types & detail::coded_bit) == 0)
        {
            if (!m_coded.empty())
            {
                if (m_coded_commit == nullptr)  // only a bug of ours: coded states come from set_storage
                {
                    abandon();
                    throw std::logic_error(std::string("xoptim::") + Derived::name
                                           + ": coded states without the step that runs them");
                }
                (this->*m_coded_commit)(transform, round);
                return;
            }
        }
        if constexpr (detail::check_update<Derived, step_context<Types>>())  // else its sentence, alone
        {
            using phase = detail::whole_set_round::phase;
            const phase how = round != nullptr ? round->how : phase::alone;
            step_context<Types> ctx(m_steps + 1, derived().num_states(m_o), m_state, m_floats, m_doubles, m_coded,
                                    transform);
            try
            {
                if constexpr (detail::declares_whole_set_total<Derived, step_context<Types>>::value)
                {
                    if (how == phase::summing)
                    {
                        round->value += derived().whole_set_total(ctx, m_o);
                        return;  // still prepared: the given round updates
                    }
                    if (how == phase::given)
                    {
                        ctx.set_whole_set_total(round->value);
                    }
                    else if (detail::shard_rule_of(derived()) == shard_rule::whole_set)
                    {
                        ctx.set_whole_set_total(derived().whole_set_total(ctx, m_o));
                    }
                }
                else if (how == phase::summing)
                {
                    return;
                }
                derived().update(ctx, m_o);
            }
            catch (...)
            {
                // Only an optimizer's own bug or a failure to start threads gets here; at
                // least the state a first step created goes with it.
                abandon();
                throw;
            }
            m_prepared = false;
            m_floats.clear();
            m_doubles.clear();
            m_coded.clear();
            m_unscheduled.clear();
            ++m_steps;
        }
    }

    template <class Derived, class Options>
    void optimizer<Derived, Options>::abandon() noexcept
    {
        if (m_prepared && m_prepared_first)
        {
            m_state.truncate(0);
        }
        if (m_prepared)
        {
            restore_unscheduled();
        }
        m_prepared = false;
        m_floats.clear();
        m_doubles.clear();
        m_coded.clear();
    }

    template <class Derived, class Options>
    template <class P, class... A>
    void optimizer<Derived, Options>::run_without_grads(P&& params, A&&... assignments)
    {
        detail::require_stepped_in_place<P>();
        if (m_state.empty())
        {
            return;
        }
        collect(std::forward<P>(params), no_grads{}, false, true);
        // Work between steps is rare (Schedule-Free's eval and train, the EMA): compiled
        // for coded states always.
        const step_context<detail::element_types_v<P> | detail::coded_bit> ctx(m_steps, derived().num_states(m_o), m_state, m_floats,
                                                           m_doubles, m_coded, grad_transform{});
        try
        {
            ctx.run(std::forward<A>(assignments)...);
        }
        catch (...)
        {
            m_floats.clear();
            m_doubles.clear();
            m_coded.clear();
            throw;
        }
        m_floats.clear();
        m_doubles.clear();
        m_coded.clear();
    }

    template <class Derived, class Options>
    template <class P>
    void optimizer<Derived, Options>::init(P&& params)
    {
        if (!m_state.empty())
        {
            throw std::logic_error(std::string("xoptim::") + Derived::name + ": init after the state exists");
        }
        // The state the next step needs: with the schedules' values at that step. The
        // values they replaced are kept, for a checkpoint load that is refused after
        // init to put back (restore_unscheduled); the next step replaces them.
        if (!m_schedules.empty())
        {
            apply_schedules(m_steps);
        }
        try
        {
            collect(std::forward<P>(params), no_grads{}, false);
        }
        catch (...)
        {
            restore_unscheduled();
            throw;
        }
    }
}

#endif
