// Data-parallel steps over a communicator (docs/distributed.md, docs/design.md section 7).
//
//     xoptim::dist::mpi_session session(argc, argv);
//     xoptim::dist::mpi_comm comm;
//     xoptim::dist::options o;
//     o.mode = xoptim::dist::mode::zero1;                    // sharded optimizer states
//     xoptim::dist::data_parallel dp(comm, xoptim::adamw(), o);
//     for (...) {
//         backward(local_batch);                            // optionally dp.grad_ready(name) per gradient
//         dp.step(model.params(), model.grads());           // averaged over ranks, then the fused step
//     }
//
// The trainer is an optimizer, a router (e.g. make_hybrid()), param_groups, or a stepper
// around one of them (its options give accumulation, global-norm and value clipping and
// the non-finite guard, all global: the norm is the averaged gradient's, and every rank
// skips or raises together). Every call is collective: every rank calls step() (or
// init()) the same number of times with the same parameter set. An error on any rank
// (a bad gradient, a refused shape, different parameter sets) is thrown on every rank,
// the same exception with the same message, before anything changed.
#ifndef XOPTIM_DIST_DATA_PARALLEL_HPP
#define XOPTIM_DIST_DATA_PARALLEL_HPP

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "../engine/reduce.hpp"
#include "../params/flat.hpp"
#include "agreement.hpp"
#include "comm.hpp"
#include "inner.hpp"
#include "plan.hpp"

namespace xoptim::dist
{
    struct options
    {
        dist::mode mode = dist::mode::data_parallel;
        // Gradients travel in flat buckets of at most this many bytes: one collective each.
        std::size_t bucket_bytes = std::size_t(32) << 20;
        // Every this many steps, check that every rank holds bit-identical parameters
        // (a checksum of each, compared across ranks); 0: never.
        std::size_t check_every = 0;
        // Run the gradients' collectives on a thread of their own, so that they progress
        // while grad_ready's caller computes (MPI progresses a collective only inside MPI
        // calls). Used where the communicator allows calls from several threads
        // (mpi_comm: MPI_THREAD_MULTIPLE, which mpi_session asks for).
        bool progress_thread = true;
    };

    // Where the last step's time went (seconds, this rank).
    struct step_timing
    {
        double pack = 0;         // gradients into the buckets, in step()
        double communicate = 0;  // waiting for the gradients' collectives
        double update = 0;       // the optimizers' checks and fused steps
        double gather = 0;       // ZeRO-1: the updated parameters to every rank
        double total = 0;        // the whole step() call
    };

    namespace detail
    {
        struct checkpoint_access_dist;

        // A communicator with settings the ranks must share (mpi_comm's reduce-scatter).
        template <class Comm, class = void>
        struct has_settings : std::false_type
        {
        };

        template <class Comm>
        struct has_settings<Comm, std::void_t<decltype(std::declval<const Comm&>().settings())>> : std::true_type
        {
        };

        inline double seconds_since(std::chrono::steady_clock::time_point t) noexcept
        {
            return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
        }

        // A communicator that takes calls from several threads at once says so with
        // `bool concurrent() const`.
        template <class Comm, class = void>
        struct has_concurrent : std::false_type
        {
        };

        template <class Comm>
        struct has_concurrent<Comm, std::void_t<decltype(std::declval<const Comm&>().concurrent())>> : std::true_type
        {
        };

        template <class Comm>
        bool concurrent(const Comm& comm)
        {
            if constexpr (has_concurrent<Comm>::value)
            {
                return comm.concurrent();
            }
            else
            {
                return false;
            }
        }

        // The most elements one call of the communicator moves: its `max_count` where it
        // has one (mpi_comm: MPI's int count), no limit otherwise.
        template <class Comm, class = void>
        struct max_count : std::integral_constant<std::size_t, std::size_t(-1)>
        {
        };

        template <class Comm>
        struct max_count<Comm, std::void_t<decltype(Comm::max_count)>>
            : std::integral_constant<std::size_t, Comm::max_count>
        {
        };

        // Runs jobs (blocking collectives) one after another, in the order pushed, on a
        // thread of its own.
        class collective_worker
        {
        public:

            explicit collective_worker(std::function<void(std::size_t)> run)
                : m_run(std::move(run)), m_thread([this] { loop(); })
            {
            }

            collective_worker(const collective_worker&) = delete;
            collective_worker& operator=(const collective_worker&) = delete;

            ~collective_worker()
            {
                {
                    std::lock_guard<std::mutex> lock(m_mutex);
                    m_stop = true;
                }
                m_wake.notify_one();
                m_thread.join();
            }

            void push(std::size_t job)
            {
                {
                    std::lock_guard<std::mutex> lock(m_mutex);
                    m_jobs.push_back(job);
                }
                m_wake.notify_one();
            }

            // Until every job pushed so far has run; the first exception one of them threw
            // (null if none), for the caller to report as its own.
            std::exception_ptr wait_all()
            {
                std::unique_lock<std::mutex> lock(m_mutex);
                m_idle.wait(lock, [this] { return m_done == m_jobs.size(); });
                m_jobs.clear();
                m_done = 0;
                return std::exchange(m_error, nullptr);
            }

        private:

            void loop()
            {
                std::unique_lock<std::mutex> lock(m_mutex);
                for (;;)
                {
                    m_wake.wait(lock, [this] { return m_stop || m_done < m_jobs.size(); });
                    if (m_done == m_jobs.size())
                    {
                        return;  // stopped with nothing left
                    }
                    const std::size_t job = m_jobs[m_done];
                    lock.unlock();
                    // A job that throws (a communicator's error) is the caller's: the
                    // jobs after it still run, as every rank runs what it started.
                    std::exception_ptr error;
                    try
                    {
                        m_run(job);
                    }
                    catch (...)
                    {
                        error = std::current_exception();
                    }
                    lock.lock();
                    if (error && !m_error)
                    {
                        m_error = error;
                    }
                    ++m_done;
                    m_idle.notify_all();
                }
            }

            std::function<void(std::size_t)> m_run;
            std::mutex m_mutex;
            std::condition_variable m_wake, m_idle;
            std::vector<std::size_t> m_jobs;  // keeps its capacity
            std::size_t m_done = 0;
            std::exception_ptr m_error;  // the first a job threw since wait_all
            bool m_stop = false;
            std::thread m_thread;  // last: starts once the rest is in place
        };

        inline std::size_t elements(const std::vector<std::size_t>& shape) noexcept
        {
            std::size_t n = 1;
            for (std::size_t d : shape)
            {
                n *= d;
            }
            return n;
        }

        // A zeroed, 64-byte aligned buffer.
        template <class T>
        struct aligned_buffer
        {
            struct release
            {
                void operator()(T* p) const noexcept
                {
                    std::free(p);
                }
            };

            std::unique_ptr<T, release> data;

            void resize(std::size_t n)
            {
                const std::size_t bytes = std::max<std::size_t>(64, (n * sizeof(T) + 63) / 64 * 64);
                void* raw = std::aligned_alloc(64, bytes);
                if (raw == nullptr)
                {
                    throw std::bad_alloc();
                }
                std::memset(raw, 0, bytes);
                data.reset(static_cast<T*>(raw));
            }
        };
    }

    template <class Trainer, class Comm = local_comm>
    class data_parallel
    {
    public:

        // Trainer may be a reference type: data_parallel<adamw&, mpi_comm> steps an
        // optimizer owned elsewhere. Throws std::invalid_argument for bad options.
        data_parallel(Comm comm, Trainer trainer, const options& o = {});

        // Not copied or moved: its worker thread refers to it.
        data_parallel(const data_parallel&) = delete;
        data_parallel& operator=(const data_parallel&) = delete;

        // One micro-batch of this rank's gradients. Returns true when the optimizers
        // stepped (on every rank), false when the call only accumulated or every rank
        // skipped a non-finite step.
        template <class P, class G>
        bool step(P&& params, G&& grads);

        template <class P, class G>
        bool operator()(P&& params, G&& grads)
        {
            return step(std::forward<P>(params), std::forward<G>(grads));
        }

        // Parameter `index` (walk order) or `name` has its final gradient for this step,
        // in the same buffer as at the last step: it is packed now, and a bucket whose
        // gradients are all packed starts its collective (in the fixed bucket order).
        // Does nothing before the first step, on micro-batches that do not communicate,
        // or for a gradient already packed.
        void grad_ready(std::size_t index);
        void grad_ready(std::string_view name);

        // Agrees on the parameters, plans, and creates this rank's optimizer state now
        // instead of at the first step. Collective.
        template <class P>
        void init(P&& params);

        Trainer& trainer() noexcept
        {
            return m_trainer;
        }

        const Trainer& trainer() const noexcept
        {
            return m_trainer;
        }

        const Comm& comm() const noexcept
        {
            return m_comm;
        }

        const options& dist_options() const noexcept
        {
            return m_o;
        }

        // The around-step options in force (the stepper's, if the trainer is one).
        const stepper_options& around() const noexcept
        {
            return m_around;
        }

        std::size_t skipped_steps() const noexcept
        {
            return m_skipped;
        }

        std::size_t pending_micro_batches() const noexcept
        {
            return m_micro;
        }

        // Global norm of the averaged gradient at the last step, before clipping; NaN if
        // not computed (no clipping and no guard).
        double last_norm() const noexcept
        {
            return m_last_norm;
        }

        const step_timing& last_timing() const noexcept
        {
            return m_timing;
        }

        // Whether the plan exists (after the first step or init).
        bool planned() const noexcept
        {
            return m_ready;
        }

        const dist::plan& plan() const noexcept
        {
            return m_plan;
        }

        // This rank's state bytes beside the whole model's parameter bytes.
        state_report report() const;

        // Who steps what: one line per parameter, `name (shape) -> optimizer, ...`, and
        // one line per rank with its share (elements, Newton-Schulz work).
        std::string assignment() const;

        // `name (shape) -> optimizer`, one line per parameter, as a router prints it.
        std::string routing_table() const
        {
            std::string out;
            for (std::size_t i = 0; i < m_route.size(); ++i)
            {
                out += m_flat.name(i) + " " + format_shape(m_flat.shape(i)) + " -> " + m_optimizer_names[m_route[i]] + "\n";
            }
            return out;
        }

        // Parameter names in walk order (after the first step or init).
        const std::string& name(std::size_t index) const noexcept
        {
            return m_flat.name(index);
        }

        std::size_t size() const noexcept
        {
            return m_flat.size();
        }

    private:

        friend struct detail::checkpoint_access_dist;

        using clock = std::chrono::steady_clock;
        using request = typename Comm::request;

        template <class T>
        using buffer = detail::aligned_buffer<T>;

        // One optimizer's views of this step (rebuilt per step; vectors keep capacity).
        template <class T>
        struct share
        {
            std::vector<std::size_t> tensors;
            std::vector<std::size_t> pieces;  // index in m_mine
            std::vector<tensor_view<T>> params;
            std::vector<named_ref<tensor_view<T>>> named;
            std::vector<tensor_view<const T>> grads;
        };

        // Walks the user's set (`checked` again, if given, without checking each leaf
        // twice); the optimizers take their shares with what it returns.
        template <class P, class G, class... Checked>
        checked_walk walk(P&& params, G&& grads, Checked... checked);

        // Collective, at the first step or init: routes, fingerprints, the plan, buffers.
        void setup();
        // The first walk's agreement; on an error anywhere the walk is forgotten.
        void agree_first(const status& local);

        // The options and the trainer's optimizers together: throws what no step could take.
        void check_options(const options& o);
        void describe(std::vector<std::string>& params, std::vector<std::string>& config);

        // No buffers: one rank, nothing to accumulate; the optimizers read the gradients.
        bool direct() const noexcept
        {
            return m_comm.size() == 1 && (m_around.accumulate == 1 || m_around.caller_accumulates);
        }

        bool zero1() const noexcept
        {
            return m_o.mode == mode::zero1;
        }

        // The work of stepping tensor i whole, by which ZeRO-1 balances owners:
        // Newton-Schulz flops per iteration for Muon's tensors, the element count for others.
        double owned_cost(std::size_t i) const
        {
            return m_newton_schulz[m_route[i]] ? detail::newton_schulz_cost(m_flat.shape(i))
                                               : double(detail::elements(m_flat.shape(i)));
        }

        // ZeRO-1 over several ranks: a bucket that is one run of a tensor is reduced from
        // its gradient and gathered into its parameter in place.
        bool in_place(const bucket& b) const noexcept
        {
            return zero1() && b.contiguous && m_comm.size() > 1;
        }

        // The gradients' collectives on a thread of their own (blocking calls there).
        bool use_worker() const
        {
            return m_o.progress_thread && m_comm.size() > 1 && detail::concurrent(m_comm);
        }

        // Bucket b's collective, blocking (on the worker) or started.
        void run_collective(std::size_t b, bool blocking);

        template <class T>
        buffer<T>& flat_buffer() noexcept
        {
            return xoptim::detail::by_type<T>(m_flat_float, m_flat_double);
        }

        template <class T>
        buffer<T>& shard_buffer() noexcept
        {
            return xoptim::detail::by_type<T>(m_shard_float, m_shard_double);
        }

        template <class T>
        std::vector<share<T>>& shares() noexcept
        {
            return xoptim::detail::by_type<T>(m_float_shares, m_double_shares);
        }

        template <class T>
        job_list<T>& jobs() noexcept
        {
            return xoptim::detail::by_type<T>(m_float_jobs, m_double_jobs);
        }

        template <class T>
        T* param_data(std::size_t tensor) noexcept
        {
            return m_flat.share<T>().params[m_slot[tensor]].data();
        }

        template <class T>
        const T* grad_data(std::size_t tensor) noexcept
        {
            return m_flat.share<T>().grads[m_slot[tensor]].data();
        }

        // Gradients into the buckets, segment by segment (those of tensors grad_ready has
        // not packed), added to what the buckets hold when `add`.
        template <class T>
        void pack_segments(const std::vector<segment>& segments, bool add);
        void pack_segments(dtype type, const std::vector<segment>& segments, bool add);
        // The last micro-batch: each bucket not started is packed, then started at once,
        // so its communication runs while the next one is packed.
        void pack_and_start_remaining();
        void accumulate();

        void start(std::size_t b);
        void start_next_ready();
        void start_remaining();
        void wait_started();

        void build_shares(bool with_grads);
        template <class T>
        void add_piece(std::size_t k, bool with_grads);

        // Every optimizer over its share: prepare (all), commit, abandon, init.
        template <class F>
        void each_share(F&& f);
        void prepare(checked_walk walked);
        void commit(const grad_transform& t);
        void abandon() noexcept;

        // Sum of squares and finiteness of the averaged gradient, the same on every rank.
        grad_stats statistics();
        template <class T>
        grad_stats local_statistics();
        std::string first_non_finite();

        void gather_parameters();
        template <class T>
        void copy_region(const bucket& b, bool own, bool out);

        void check_consistency();
        void end_cycle() noexcept;

        Comm m_comm;
        Trainer m_trainer;
        options m_o;
        stepper_options m_around;
        std::size_t m_optimizers = 0;

        flat_params m_flat;
        bool m_ready = false;
        dist::plan m_plan;
        std::vector<piece> m_mine;
        // The name each piece is stepped under: its tensor's, or "NAME[a:b]" where this
        // rank steps several pieces of a tensor (one per chunk of a large one).
        std::vector<std::string> m_piece_names;
        // Per tensor: its gradient is read in place by the collectives (not packed).
        std::vector<char> m_in_place;
        bool m_walk_failed = false;  // this step's walk threw on this rank (until the cycle ends)
        // Per tensor (walk order).
        std::vector<std::size_t> m_route;
        std::vector<std::size_t> m_slot;                // position in its element type's share
        std::vector<dtype> m_type;
        std::vector<std::vector<segment>> m_segments;   // where its elements travel
        std::vector<const void*> m_grad_at;             // its gradient at the last walk
        std::vector<char> m_packed;
        std::vector<std::pair<std::string_view, std::size_t>> m_by_name;  // sorted: grad_ready(name)
        // Per optimizer.
        std::vector<std::string> m_optimizer_names;
        std::vector<char> m_whole;           // steps whole tensors (shard_rule::whole_tensors)
        std::vector<char> m_newton_schulz;   // its owned tensors cost Newton-Schulz flops (Muon)
        std::vector<std::size_t> m_min_piece;
        // Per bucket (launch order).
        std::vector<request> m_requests;
        std::vector<std::size_t> m_missing;  // gradients not yet packed
        std::vector<char> m_started;
        std::size_t m_next = 0;              // next bucket to start

        buffer<float> m_flat_float;
        buffer<double> m_flat_double;
        buffer<float> m_shard_float;
        buffer<double> m_shard_double;
        std::vector<share<float>> m_float_shares;
        std::vector<share<double>> m_double_shares;
        job_list<float> m_float_jobs;
        job_list<double> m_double_jobs;
        std::vector<double> m_partials;

        std::size_t m_micro = 0;
        std::size_t m_skipped = 0;
        std::size_t m_steps = 0;
        double m_last_norm = std::numeric_limits<double>::quiet_NaN();
        step_timing m_timing;
        // Last: stopped (joined) before anything it uses goes.
        std::unique_ptr<detail::collective_worker> m_worker;
    };

    template <class Comm, class Trainer>
    data_parallel(Comm, Trainer&&, const options&) -> data_parallel<Trainer, Comm>;

    template <class Comm, class Trainer>
    data_parallel(Comm, Trainer&&) -> data_parallel<Trainer, Comm>;

    /******************
     * Implementation *
     ******************/


    template <class Trainer, class Comm>
    data_parallel<Trainer, Comm>::data_parallel(Comm comm, Trainer trainer, const options& o)
        : m_comm(std::move(comm)), m_trainer(std::forward<Trainer>(trainer)), m_o(o), m_around(detail::around(m_trainer))
    {
        // Every rank constructs its data_parallel: a refusal on one is every rank's (the
        // others would wait in the first step's collectives for ever).
        agree(m_comm, capture([&] { check_options(o); }));
        detail::for_each_inner(detail::inner(m_trainer), [&](std::size_t k, const std::string&, auto& opt) {
            using O = std::remove_reference_t<decltype(opt)>;
            m_optimizer_names.push_back(detail::optimizer_name(detail::inner(m_trainer), k));
            const shard_rule rule = xoptim::detail::shard_rule_of(opt);
            m_whole.push_back(rule == shard_rule::whole_tensors ? 1 : 0);
            m_newton_schulz.push_back(detail::costs_newton_schulz<O>::value ? 1 : 0);
            const storage_options& s = opt.storage();
            m_min_piece.push_back(s.states == state_storage::blockwise_8bit ? std::max<std::size_t>(1, s.min_8bit_size) : 0);
            ++m_optimizers;
        });
        m_float_shares.resize(m_optimizers);
        m_double_shares.resize(m_optimizers);
    }

    template <class Trainer, class Comm>
    void data_parallel<Trainer, Comm>::check_options(const options& o)
    {
        xoptim::detail::require(o.bucket_bytes >= 1 && o.bucket_bytes <= (std::size_t(1) << 30), "dist",
                                "bucket_bytes", "in [1, 2^30]", double(o.bucket_bytes));
        detail::for_each_inner(detail::inner(m_trainer), [&](std::size_t k, const std::string&, auto& opt) {
            using O = std::remove_reference_t<decltype(opt)>;
            if (xoptim::detail::shard_rule_of(opt) == shard_rule::whole_set && o.mode == mode::zero1)
            {
                throw std::invalid_argument(
                    "xoptim::dist: " + detail::optimizer_name(detail::inner(m_trainer), k) + " (" + O::name
                    + ") steps with a number over all its tensors (lamb: max_grad_norm), which ZeRO-1 splits between "
                      "ranks: set max_grad_norm to none and clip with the stepper's clip_global_norm (global across "
                      "ranks), or use mode::data_parallel");
            }
        });
    }

    /*********
     * Setup *
     *********/

    template <class Trainer, class Comm>
    template <class P, class G, class... Checked>
    checked_walk data_parallel<Trainer, Comm>::walk(P&& params, G&& grads, Checked... checked)
    {
        // The walk lists the gradients anew: until it has recorded where each is (a walk
        // without gradients, an init or a checkpoint's, or one that fails, records none),
        // grad_ready has nothing to read. A tensor it packed already keeps its place, for
        // the check below.
        for (std::size_t i = 0; i < m_grad_at.size(); ++i)
        {
            if (!m_packed[i])
            {
                m_grad_at[i] = nullptr;
            }
        }
        const checked_walk walked = m_flat.collect(std::forward<P>(params), std::forward<G>(grads),
                                                   "xoptim::dist::data_parallel", checked...);
        // The plan (buckets, shards, packing) is the first call's: a parameter of another
        // shape now would be packed past its end.
        const auto same_shapes = [&](const auto& s) {
            for (std::size_t j = 0; j < s.params.size(); ++j)
            {
                const auto& v = s.params[j];
                const std::vector<std::size_t>& first = m_flat.shape(s.leaves[j]);
                bool same = v.rank() == first.size();
                for (std::size_t d = 0; same && d < first.size(); ++d)
                {
                    same = v.extent(d) == first[d];
                }
                if (!same)
                {
                    std::vector<std::size_t> shape(v.rank());
                    for (std::size_t d = 0; d < shape.size(); ++d)
                    {
                        shape[d] = v.extent(d);
                    }
                    throw std::invalid_argument("xoptim::dist::data_parallel: parameter '" + m_flat.name(s.leaves[j])
                                                + "' is " + format_shape(shape) + ", the first call passed "
                                                + format_shape(first));
                }
            }
        };
        same_shapes(m_flat.share<float>());
        same_shapes(m_flat.share<double>());
        if constexpr (!std::is_same_v<xoptim::detail::bare<G>, no_grads>)
        {
            const auto record = [&](auto& s) {
                for (std::size_t j = 0; j < s.grads.size(); ++j)
                {
                    const std::size_t i = s.leaves[j];
                    if (m_ready && m_packed[i] && m_grad_at[i] != s.grads[j].data())
                    {
                        throw std::invalid_argument("xoptim::dist::data_parallel: parameter '" + m_flat.name(i)
                                                    + "': its gradient is not where it was when grad_ready packed it");
                    }
                    if (m_ready)
                    {
                        m_grad_at[i] = s.grads[j].data();
                    }
                }
            };
            record(m_flat.share<float>());
            record(m_flat.share<double>());
        }
        return walked;
    }

    template <class Trainer, class Comm>
    void data_parallel<Trainer, Comm>::describe(std::vector<std::string>& params, std::vector<std::string>& config)
    {
        const auto& inner = detail::inner(m_trainer);
        for (std::size_t i = 0; i < m_flat.size(); ++i)
        {
            params.push_back("'" + m_flat.name(i) + "' " + dtype_name(m_type[i]) + " " + format_shape(m_flat.shape(i))
                             + " -> " + m_optimizer_names[m_route[i]]);
        }
        detail::for_each_inner(inner, [&](std::size_t, const std::string& key, const auto& o) {
            using O = std::remove_cv_t<std::remove_reference_t<decltype(o)>>;
            config.push_back(key + ": " + O::name + " " + xoptim::detail::options_json(o.options()) + ", schedules "
                             + xoptim::detail::schedules_json(o.schedules()) + ", storage "
                             + to_string(o.storage().states) + " (min_8bit_size "
                             + std::to_string(o.storage().min_8bit_size) + ")");
        });
        config.push_back("stepper: " + xoptim::detail::stepper_json(m_around));
        std::string comm_settings;
        if constexpr (detail::has_settings<Comm>::value)
        {
            comm_settings = ", " + m_comm.settings();
        }
        config.push_back(std::string("dist: mode ") + to_string(m_o.mode) + ", bucket_bytes "
                         + std::to_string(m_o.bucket_bytes) + ", check_every " + std::to_string(m_o.check_every)
                         + ", collectives " + (use_worker() ? "on a thread" : "non-blocking") + comm_settings);
    }

    template <class Trainer, class Comm>
    void data_parallel<Trainer, Comm>::agree_first(const status& local)
    {
        try
        {
            agree(m_comm, local);
        }
        catch (...)
        {
            m_flat.reset();
            throw;
        }
    }

    template <class Trainer, class Comm>
    void data_parallel<Trainer, Comm>::setup()
    {
        try
        {
            const std::size_t n = m_flat.size();
            m_type.assign(n, dtype::float32);
            m_slot.assign(n, 0);
            const auto slots = [&](const auto& s, dtype t) {
                for (std::size_t j = 0; j < s.leaves.size(); ++j)
                {
                    m_type[s.leaves[j]] = t;
                    m_slot[s.leaves[j]] = j;
                }
            };
            slots(m_flat.share<float>(), dtype::float32);
            slots(m_flat.share<double>(), dtype::float64);
            // Routes may fail on one rank only (a name no rule takes): agreed.
            m_route.assign(n, 0);
            agree(m_comm, capture([&] {
                      for (std::size_t i = 0; i < n; ++i)
                      {
                          m_route[i] = detail::route(detail::inner(m_trainer), m_flat.name(i), m_flat.shape(i));
                      }
                  }));
            std::vector<std::string> params, config;
            describe(params, config);
            agree_on(m_comm, params, "parameters", "parameter");
            agree_on(m_comm, config, "optimizers or options", "setting");
            // From here on every rank holds the same set: refusals are the same everywhere.
            detail::for_each_inner(detail::inner(m_trainer), [&](std::size_t k, const std::string&, const auto& o) {
                using O = std::remove_cv_t<std::remove_reference_t<decltype(o)>>;
                if constexpr (xoptim::detail::has_shape_check<O>::value)
                {
                    for (std::size_t i = 0; i < n; ++i)
                    {
                        const std::string problem = m_route[i] == k ? o.unsupported_shape(m_flat.shape(i)) : "";
                        if (!problem.empty())
                        {
                            throw std::invalid_argument(std::string("xoptim::") + O::name + ": parameter '"
                                                        + m_flat.name(i) + "': " + problem);
                        }
                    }
                }
            });
            std::vector<tensor_desc> tensors(n);
            for (std::size_t i = 0; i < n; ++i)
            {
                tensor_desc& t = tensors[i];
                t.size = detail::elements(m_flat.shape(i));
                t.type = m_type[i];
                t.owned = zero1() && m_whole[m_route[i]];
                t.cost = t.owned ? owned_cost(i) : 0;
                if (t.owned && t.size > detail::max_count<Comm>::value)
                {
                    throw std::invalid_argument("xoptim::dist::data_parallel: parameter '" + m_flat.name(i) + "' has "
                                                + std::to_string(t.size)
                                                + " elements: under ZeRO-1 a tensor one rank steps whole goes in one "
                                                  "collective, and the communicator moves at most "
                                                + std::to_string(detail::max_count<Comm>::value)
                                                + " elements in one call (mode::data_parallel cuts it into buckets)");
                }
                const std::size_t min_piece = m_min_piece[m_route[i]];
                t.min_piece = t.type == dtype::float32 && min_piece > 0 && t.size >= min_piece ? min_piece : 0;
            }
            m_plan = make_plan(tensors, std::size_t(m_comm.size()), m_o.mode, m_o.bucket_bytes);
            m_mine = m_plan.pieces_of(m_comm.rank());
            m_piece_names.clear();
            for (std::size_t k = 0; k < m_mine.size(); ++k)
            {
                const piece& p = m_mine[k];
                const bool several = (k > 0 && m_mine[k - 1].tensor == p.tensor)
                                     || (k + 1 < m_mine.size() && m_mine[k + 1].tensor == p.tensor);
                m_piece_names.push_back(several ? m_flat.name(p.tensor) + "[" + std::to_string(p.offset) + ":"
                                                      + std::to_string(p.offset + p.length) + "]"
                                                : m_flat.name(p.tensor));
            }
            // A tensor whose buckets are all runs of it: its collectives read its gradient
            // in place, unless the buckets accumulate micro-batches.
            m_in_place.assign(n, 0);
            const bool accumulating = m_around.accumulate > 1 && !m_around.caller_accumulates;
            for (std::size_t i = 0; i < n; ++i)
            {
                const auto& of = m_plan.buckets_of[i];
                m_in_place[i] = !accumulating && !of.empty()
                                && std::all_of(of.begin(), of.end(), [&](std::size_t b) { return in_place(m_plan.buckets[b]); });
            }
            m_segments.assign(n, {});
            for (const bucket& b : m_plan.buckets)
            {
                for (const segment& s : b.segments)
                {
                    m_segments[s.tensor].push_back(s);
                }
            }
            m_grad_at.assign(n, nullptr);
            m_packed.assign(n, 0);
            m_by_name.clear();
            for (std::size_t i = 0; i < n; ++i)
            {
                m_by_name.emplace_back(m_flat.name(i), i);
            }
            std::sort(m_by_name.begin(), m_by_name.end());
            m_requests = std::vector<request>(m_plan.buckets.size());
            m_missing.assign(m_plan.buckets.size(), 0);
            m_started.assign(m_plan.buckets.size(), 0);
            if (!direct())
            {
                m_flat_float.resize(m_plan.flat[0]);
                m_flat_double.resize(m_plan.flat[1]);
                if (zero1())
                {
                    const auto rank = std::size_t(m_comm.rank());
                    m_shard_float.resize(m_plan.shard[rank][0]);
                    m_shard_double.resize(m_plan.shard[rank][1]);
                }
            }
            if (use_worker() && !m_worker)
            {
                m_worker = std::make_unique<detail::collective_worker>([this](std::size_t b) { run_collective(b, true); });
            }
            m_ready = true;
            end_cycle();
        }
        catch (...)
        {
            m_flat.reset();  // the next call walks afresh
            throw;
        }
    }

    /************
     * Buckets *
     ************/

    template <class Trainer, class Comm>
    template <class T>
    void data_parallel<Trainer, Comm>::pack_segments(const std::vector<segment>& segments, bool add)
    {
        job_list<T>& list = jobs<T>();
        list.clear();
        T* flat = flat_buffer<T>().data.get();
        for (const segment& s : segments)
        {
            if (!m_packed[s.tensor] && !m_in_place[s.tensor])
            {
                tensor_slots<T> slots;
                slots.param = flat + s.at;
                slots.grad = grad_data<T>(s.tensor) + s.offset;
                slots.size = s.length;
                list.push_back(slots);
            }
        }
        using sym::g;
        using sym::p;
        if (add)
        {
            run_program(fuse(p = p + g), list);
        }
        else
        {
            run_program(fuse(p = g), list);
        }
    }

    template <class Trainer, class Comm>
    void data_parallel<Trainer, Comm>::pack_segments(dtype type, const std::vector<segment>& segments, bool add)
    {
        if (type == dtype::float64)
        {
            pack_segments<double>(segments, add);
        }
        else
        {
            pack_segments<float>(segments, add);
        }
    }

    // Micro-batches before the last: the buckets are the accumulators.
    template <class Trainer, class Comm>
    void data_parallel<Trainer, Comm>::accumulate()
    {
        if (direct() || m_around.caller_accumulates)
        {
            return;
        }
        for (const bucket& b : m_plan.buckets)
        {
            pack_segments(b.type, b.segments, m_micro > 0);
        }
    }

    template <class Trainer, class Comm>
    void data_parallel<Trainer, Comm>::pack_and_start_remaining()
    {
        if (direct())
        {
            return;
        }
        const bool add = m_micro > 0 && !m_around.caller_accumulates;
        while (m_next < m_plan.buckets.size())
        {
            const auto start = clock::now();
            const bucket& b = m_plan.buckets[m_next];
            pack_segments(b.type, b.segments, add);
            m_timing.pack += detail::seconds_since(start);
            this->start(m_next++);
        }
        std::fill(m_packed.begin(), m_packed.end(), 1);
    }

    template <class Trainer, class Comm>
    void data_parallel<Trainer, Comm>::run_collective(std::size_t b, bool blocking)
    {
        const bucket& bk = m_plan.buckets[b];
        const auto go = [&](auto* flat, auto* shard) {
            using T = std::remove_pointer_t<decltype(flat)>;
            const std::size_t rank = std::size_t(m_comm.rank());
            // After a walk that failed on this rank its gradients are not all listed: the
            // collective (whose result every rank then drops) sends the bucket's buffer.
            const bool gradient_in_place = !bk.segments.empty() && m_in_place[bk.segments[0].tensor] && !m_walk_failed;
            const T* send = gradient_in_place ? grad_data<T>(bk.segments[0].tensor) + bk.segments[0].offset
                                              : flat + bk.begin;
            if (zero1() && blocking)
            {
                m_comm.reduce_scatter_sum(send, shard + bk.shard_at[rank], bk.counts.data());
            }
            else if (zero1())
            {
                m_comm.ireduce_scatter_sum(send, shard + bk.shard_at[rank], bk.counts.data(), m_requests[b]);
            }
            else if (blocking)
            {
                m_comm.allreduce_sum(flat + bk.begin, bk.length);
            }
            else
            {
                m_comm.iallreduce_sum(flat + bk.begin, bk.length, m_requests[b]);
            }
        };
        if (bk.type == dtype::float64)
        {
            go(m_flat_double.data.get(), m_shard_double.data.get());
        }
        else
        {
            go(m_flat_float.data.get(), m_shard_float.data.get());
        }
    }

    template <class Trainer, class Comm>
    void data_parallel<Trainer, Comm>::start(std::size_t b)
    {
        if (m_worker)
        {
            m_worker->push(b);
        }
        else
        {
            run_collective(b, false);
        }
        m_started[b] = 1;
    }

    // Starts buckets in launch order as long as the next one has all its gradients.
    template <class Trainer, class Comm>
    void data_parallel<Trainer, Comm>::start_next_ready()
    {
        while (m_next < m_plan.buckets.size() && m_missing[m_next] == 0)
        {
            start(m_next++);
        }
        // Drives MPI's progress on what is in flight (the worker's calls progress by themselves).
        for (std::size_t b = 0; b < m_next && !m_worker; ++b)
        {
            m_comm.test(m_requests[b]);
        }
    }

    template <class Trainer, class Comm>
    void data_parallel<Trainer, Comm>::start_remaining()
    {
        if (direct())
        {
            return;
        }
        while (m_next < m_plan.buckets.size())
        {
            start(m_next++);
        }
    }

    template <class Trainer, class Comm>
    void data_parallel<Trainer, Comm>::wait_started()
    {
        const std::exception_ptr error = m_worker ? m_worker->wait_all() : nullptr;
        for (std::size_t b = 0; b < m_plan.buckets.size(); ++b)
        {
            if (m_started[b] && !m_worker)
            {
                m_comm.wait(m_requests[b]);
            }
            m_started[b] = 0;
        }
        if (error)
        {
            std::rethrow_exception(error);
        }
    }

    template <class Trainer, class Comm>
    void data_parallel<Trainer, Comm>::end_cycle() noexcept
    {
        m_walk_failed = false;
        m_micro = 0;
        m_next = 0;
        std::fill(m_packed.begin(), m_packed.end(), 0);
        for (std::size_t b = 0; b < m_plan.buckets.size(); ++b)
        {
            std::size_t tensors = 0;
            std::size_t last = std::numeric_limits<std::size_t>::max();
            for (const segment& s : m_plan.buckets[b].segments)
            {
                tensors += s.tensor != last ? 1 : 0;
                last = s.tensor;
            }
            m_missing[b] = tensors;
        }
    }

    template <class Trainer, class Comm>
    void data_parallel<Trainer, Comm>::grad_ready(std::size_t index)
    {
        if (!m_ready || direct() || m_micro + 1 < m_around.accumulate || index >= m_packed.size() || m_packed[index]
            || m_grad_at[index] == nullptr)
        {
            return;
        }
        const auto start = clock::now();
        pack_segments(m_type[index], m_segments[index], m_micro > 0 && !m_around.caller_accumulates);
        m_packed[index] = 1;
        for (const std::size_t b : m_plan.buckets_of[index])
        {
            --m_missing[b];
        }
        start_next_ready();
        m_timing.pack += detail::seconds_since(start);
    }

    template <class Trainer, class Comm>
    void data_parallel<Trainer, Comm>::grad_ready(std::string_view name)
    {
        const auto it = std::lower_bound(m_by_name.begin(), m_by_name.end(), name,
                                         [](const auto& entry, std::string_view n) { return entry.first < n; });
        if (it != m_by_name.end() && it->first == name)
        {
            grad_ready(it->second);
        }
    }

    /**********
     * Shares *
     **********/

    template <class Trainer, class Comm>
    template <class T>
    void data_parallel<Trainer, Comm>::add_piece(std::size_t k, bool with_grads)
    {
        const piece& p = m_mine[k];
        share<T>& s = shares<T>()[m_route[p.tensor]];
        s.pieces.push_back(k);
        // Whole tensors keep their shape (Muon needs it); shards are 1-D runs.
        const bool whole = !zero1() || m_plan.owner[p.tensor] >= 0;
        const auto view_of = [&](auto* first) {
            using V = tensor_view<std::remove_pointer_t<decltype(first)>>;
            return whole ? V(first, m_flat.shape(p.tensor)) : V(first, p.length);
        };
        s.tensors.push_back(p.tensor);
        s.params.push_back(view_of(param_data<T>(p.tensor) + p.offset));
        if (with_grads)
        {
            const T* g = direct()  ? grad_data<T>(p.tensor) + p.offset
                         : zero1() ? shard_buffer<T>().data.get() + p.at
                                   : flat_buffer<T>().data.get() + p.at;
            s.grads.push_back(view_of(g));
        }
    }

    template <class Trainer, class Comm>
    void data_parallel<Trainer, Comm>::build_shares(bool with_grads)
    {
        const auto clear = [](auto& all) {
            for (auto& s : all)
            {
                s.tensors.clear();
                s.pieces.clear();
                s.params.clear();
                s.named.clear();
                s.grads.clear();
            }
        };
        clear(m_float_shares);
        clear(m_double_shares);
        for (std::size_t k = 0; k < m_mine.size(); ++k)
        {
            if (m_type[m_mine[k].tensor] == dtype::float64)
            {
                add_piece<double>(k, with_grads);
            }
            else
            {
                add_piece<float>(k, with_grads);
            }
        }
        // Named once the views are in place (the names refer to them).
        const auto name_all = [&](auto& all) {
            for (auto& s : all)
            {
                for (std::size_t j = 0; j < s.params.size(); ++j)
                {
                    s.named.push_back(named(m_piece_names[s.pieces[j]], s.params[j]));
                }
            }
        };
        name_all(m_float_shares);
        name_all(m_double_shares);
    }

    template <class Trainer, class Comm>
    template <class F>
    void data_parallel<Trainer, Comm>::each_share(F&& f)
    {
        detail::for_each_inner(detail::inner(m_trainer), [&](std::size_t k, const std::string&, auto& o) {
            f(o, std::make_tuple(named("", m_float_shares[k].named), named("", m_double_shares[k].named)),
              std::forward_as_tuple(m_float_shares[k].grads, m_double_shares[k].grads));
        });
    }

    // The shares are views into the parameters the walk checked and into buffers of
    // their own sizes: the optimizers check them against their state only.
    template <class Trainer, class Comm>
    void data_parallel<Trainer, Comm>::prepare(checked_walk walked)
    {
        build_shares(true);
        try
        {
            each_share([&](auto& o, auto params, auto grads) { o.prepare(params, grads, walked); });
        }
        catch (...)
        {
            abandon();
            throw;
        }
    }

    template <class Trainer, class Comm>
    void data_parallel<Trainer, Comm>::commit(const grad_transform& t)
    {
        // The trainer's own commit: a param_groups sums its groups' whole-set totals first.
        detail::inner(m_trainer).commit(t);
    }

    template <class Trainer, class Comm>
    void data_parallel<Trainer, Comm>::abandon() noexcept
    {
        detail::for_each_inner(detail::inner(m_trainer), [](std::size_t, const std::string&, auto& o) { o.abandon(); });
    }

    /********
     * Step *
     ********/

    template <class Trainer, class Comm>
    template <class P, class G>
    bool data_parallel<Trainer, Comm>::step(P&& params, G&& grads)
    {
        static_assert(!std::is_same_v<xoptim::detail::bare<G>, no_grads>, "xoptim::dist: step needs gradients");
        xoptim::detail::require_stepped_in_place<P>();
        const auto start = clock::now();
        const step_timing early{m_timing.pack};  // packing done by grad_ready since the last step
        m_timing = early;
        std::optional<checked_walk> walked;
        status local = capture([&] { walked = walk(params, grads); });
        m_walk_failed = !local.ok();
        if (m_walk_failed)
        {
            std::fill(m_grad_at.begin(), m_grad_at.end(), nullptr);  // the lists are partial: nothing to read
        }
        bool agreed = false;
        if (!m_ready)
        {
            agree_first(local);
            setup();
            walk(params, grads, *walked);  // records the gradients' places now that the plan exists
            agreed = true;
        }
        if (m_micro + 1 < m_around.accumulate)
        {
            if (!agreed)
            {
                agree(m_comm, local);
            }
            accumulate();
            ++m_micro;
            m_timing.total = detail::seconds_since(start);
            return false;
        }
        // Every rank starts every collective of this step, whatever its own checks found,
        // so that no rank waits for a collective another never starts.
        if (local.ok())
        {
            local = capture([&] { pack_and_start_remaining(); });
        }
        // What is left after an error: every rank starts every collective. One that
        // throws (a communicator's error) is this rank's error, and the rest still start.
        for (status started = capture([&] { start_remaining(); }); !started.ok();
             started = capture([&] { start_remaining(); }))
        {
            local = local.ok() ? started : local;
        }
        const auto update_start = clock::now();
        if (local.ok())
        {
            local = capture([&] { prepare(*walked); });
        }
        m_timing.update += detail::seconds_since(update_start);
        const auto wait_start = clock::now();
        if (m_worker)
        {
            // No other collective while the worker's run on this communicator; an error of
            // one of them is this rank's, agreed on as a walk's would be.
            const status waited = capture([&] { wait_started(); });
            local = local.ok() ? waited : local;
        }
        const status all = capture([&] { agree(m_comm, local); });
        if (!all.ok())
        {
            wait_started();
            abandon();
            end_cycle();
            rethrow(all.kind, all.message);
        }
        wait_started();
        m_timing.communicate = detail::seconds_since(wait_start);

        const double mean = 1.0 / (double(m_comm.size()) * double(m_around.accumulate));
        grad_transform t;
        t.clip = m_around.clip_value > 0 ? m_around.clip_value : std::numeric_limits<double>::infinity();
        if (m_around.clip_global_norm > 0 || m_around.on_non_finite != non_finite::ignore)
        {
            const grad_stats s = statistics();
            m_last_norm = s.norm() * mean;
            if (!s.finite && m_around.on_non_finite != non_finite::ignore)
            {
                abandon();
                const bool raise = m_around.on_non_finite == non_finite::raise;
                const std::string message = raise ? first_non_finite() : "";
                end_cycle();
                if (raise)
                {
                    throw non_finite_error(message);
                }
                ++m_skipped;
                m_timing.total = detail::seconds_since(start);
                return false;
            }
            if (m_around.clip_global_norm > 0)
            {
                t.scale = xoptim::detail::clip_factor(m_around.clip_global_norm, m_last_norm);
            }
        }
        t.scale *= mean;
        const auto commit_start = clock::now();
        commit(t);
        m_timing.update += detail::seconds_since(commit_start);
        if (zero1() && m_comm.size() > 1)
        {
            const auto gather_start = clock::now();
            gather_parameters();
            m_timing.gather = detail::seconds_since(gather_start);
        }
        end_cycle();
        ++m_steps;
        if (m_o.check_every > 0 && m_steps % m_o.check_every == 0)
        {
            check_consistency();
        }
        m_timing.total = detail::seconds_since(start);
        return true;
    }

    template <class Trainer, class Comm>
    template <class P>
    void data_parallel<Trainer, Comm>::init(P&& params)
    {
        xoptim::detail::require_stepped_in_place<P>();
        const status local = capture([&] { walk(params, no_grads{}); });
        if (!m_ready)
        {
            agree_first(local);
            setup();
        }
        else
        {
            agree(m_comm, local);
        }
        build_shares(false);
        std::vector<char> created(m_optimizers, 0);
        const status made = capture([&] {
            detail::for_each_inner(detail::inner(m_trainer), [&](std::size_t k, const std::string&, auto& o) {
                if (o.state().empty())
                {
                    o.init(std::make_tuple(named("", m_float_shares[k].named), named("", m_double_shares[k].named)));
                    created[k] = 1;
                }
            });
        });
        try
        {
            agree(m_comm, made);
        }
        catch (...)
        {
            detail::for_each_inner(detail::inner(m_trainer), [&](std::size_t k, const std::string&, auto& o) {
                if (created[k])
                {
                    detail::drop_state(o);
                }
            });
            throw;
        }
    }

    /**************
     * Statistics *
     **************/

    template <class Trainer, class Comm>
    template <class T>
    grad_stats data_parallel<Trainer, Comm>::local_statistics()
    {
        job_list<T>& list = jobs<T>();
        list.clear();
        for (const auto& s : shares<T>())
        {
            for (const auto& g : s.grads)
            {
                tensor_slots<T> slots;
                slots.grad = g.data();
                slots.size = g.size();
                list.push_back(slots);
            }
        }
        return reduce_gradients(list, m_partials);
    }

    // Data parallel: every rank reads the same summed gradients and gets the same bits.
    // ZeRO-1: each rank reads its shard; the partial sums are added in rank order.
    template <class Trainer, class Comm>
    grad_stats data_parallel<Trainer, Comm>::statistics()
    {
        grad_stats local = local_statistics<float>() + local_statistics<double>();
        if (!zero1() || m_comm.size() == 1)
        {
            return local;
        }
        const auto n = std::size_t(m_comm.size());
        std::vector<double> all(2 * n, 0.0);
        all[2 * std::size_t(m_comm.rank())] = local.sum_squares;
        all[2 * std::size_t(m_comm.rank()) + 1] = local.finite ? 0.0 : 1.0;
        const std::vector<std::size_t> counts(n, 2);
        m_comm.allgather(all.data(), counts.data());
        grad_stats total;
        for (std::size_t r = 0; r < n; ++r)
        {
            total.sum_squares += all[2 * r];
            total.finite = total.finite && all[2 * r + 1] == 0.0;
        }
        return total;
    }

    // Only on the error path (every rank is on it): the first parameter whose averaged
    // gradient holds NaN or Inf, and the ranks whose own gradient of it did.
    template <class Trainer, class Comm>
    std::string data_parallel<Trainer, Comm>::first_non_finite()
    {
        std::size_t first = m_flat.size();
        const auto scan = [&](const auto& all) {
            for (const auto& s : all)
            {
                for (std::size_t j = 0; j < s.grads.size(); ++j)
                {
                    const auto* g = s.grads[j].data();
                    for (std::size_t e = 0; e < s.grads[j].size() && s.tensors[j] < first; ++e)
                    {
                        first = std::isfinite(g[e]) ? first : s.tensors[j];
                    }
                }
            }
        };
        scan(m_float_shares);
        scan(m_double_shares);
        std::uint64_t lowest = first;
        for (const std::uint64_t f : allgather_value(m_comm, first))
        {
            lowest = std::min(lowest, f);
        }
        first = std::size_t(lowest);
        if (first >= m_flat.size())
        {
            return "xoptim::dist: the averaged gradient holds NaN or Inf; step not taken on any rank";
        }
        bool mine = false;
        const auto own = [&](const auto* g) {
            for (std::size_t e = 0; e < detail::elements(m_flat.shape(first)); ++e)
            {
                mine = mine || !std::isfinite(g[e]);
            }
        };
        if (m_type[first] == dtype::float64)
        {
            own(grad_data<double>(first));
        }
        else
        {
            own(grad_data<float>(first));
        }
        std::vector<std::size_t> ranks;
        const std::vector<std::uint64_t> flags = allgather_value(m_comm, mine ? 1 : 0);
        for (std::size_t r = 0; r < flags.size(); ++r)
        {
            if (flags[r])
            {
                ranks.push_back(r);
            }
        }
        // No rank's gradient of this call: the sum over the ranks overflowed (it is taken
        // before the 1/N scaling), or a micro-batch the buckets summed earlier held one.
        const bool summed_earlier = m_around.accumulate > 1 && !m_around.caller_accumulates;
        const std::string from
            = !ranks.empty()   ? "the gradient of " + detail::rank_list(ranks) + " did"
              : summed_earlier ? "no rank's gradient of this call did: an earlier micro-batch's did, or the sum over "
                                 "the ranks overflowed"
                               : "every rank's gradient of it is finite: their sum over the ranks overflowed";
        return "xoptim::dist: parameter '" + m_flat.name(first) + "': the averaged gradient holds NaN or Inf (" + from
               + "); step not taken on any rank";
    }

    /**********************
     * Parameters, checks *
     **********************/

    // Copies between a bucket's region(s) and the parameters: the own region (`own`) or
    // every other one; `out`: parameters into the bucket, else the bucket into them.
    template <class Trainer, class Comm>
    template <class T>
    void data_parallel<Trainer, Comm>::copy_region(const bucket& b, bool own, bool out)
    {
        job_list<T>& list = jobs<T>();
        list.clear();
        const auto rank = std::size_t(m_comm.rank());
        std::size_t lo = b.begin;
        for (std::size_t r = 0; r < rank; ++r)
        {
            lo += b.counts[r];
        }
        const std::size_t hi = lo + b.counts[rank];
        T* flat = flat_buffer<T>().data.get();
        for (const segment& s : b.segments)
        {
            if ((s.at >= lo && s.at < hi) != own)
            {
                continue;
            }
            tensor_slots<T> slots;
            slots.param = out ? flat + s.at : param_data<T>(s.tensor) + s.offset;
            slots.grad = out ? param_data<T>(s.tensor) + s.offset : flat + s.at;
            slots.size = s.length;
            list.push_back(slots);
        }
        using sym::g;
        using sym::p;
        run_program(fuse(p = g), list);
    }

    // ZeRO-1: every rank's updated pieces to every rank, bucket by bucket; a bucket that
    // is one run of a tensor straight into the parameter (each rank's piece is in place).
    template <class Trainer, class Comm>
    void data_parallel<Trainer, Comm>::gather_parameters()
    {
        const auto each_typed = [&](const bucket& bk, auto f) {
            if (bk.type == dtype::float64)
            {
                f(m_flat_double.data.get(), static_cast<double*>(nullptr));
            }
            else
            {
                f(m_flat_float.data.get(), static_cast<float*>(nullptr));
            }
        };
        for (std::size_t b = 0; b < m_plan.buckets.size(); ++b)
        {
            const bucket& bk = m_plan.buckets[b];
            each_typed(bk, [&](auto* flat, auto* type) {
                using T = std::remove_pointer_t<decltype(type)>;
                if (in_place(bk))
                {
                    T* param = param_data<T>(bk.segments[0].tensor) + bk.segments[0].offset;
                    m_comm.iallgather(param, bk.counts.data(), m_requests[b]);
                    return;
                }
                copy_region<T>(bk, true, true);
                m_comm.iallgather(flat + bk.begin, bk.counts.data(), m_requests[b]);
            });
        }
        for (std::size_t b = 0; b < m_plan.buckets.size(); ++b)
        {
            const bucket& bk = m_plan.buckets[b];
            m_comm.wait(m_requests[b]);
            each_typed(bk, [&](auto*, auto* type) {
                using T = std::remove_pointer_t<decltype(type)>;
                if (!in_place(bk))
                {
                    copy_region<T>(bk, false, false);
                }
            });
        }
    }

    template <class Trainer, class Comm>
    void data_parallel<Trainer, Comm>::check_consistency()
    {
        std::vector<std::string> items;
        const auto sums = [&](auto& s) {
            using T = typename std::decay_t<decltype(s.params)>::value_type::value_type;
            for (std::size_t j = 0; j < s.params.size(); ++j)
            {
                items.push_back("'" + m_flat.name(s.leaves[j]) + "' (xxh64 "
                                + xoptim::detail::hex(io::xxh64(s.params[j].data(), s.params[j].size() * sizeof(T)))
                                + ")");
            }
        };
        sums(m_flat.share<float>());
        sums(m_flat.share<double>());
        agree_on(m_comm, items, "parameter values after step " + std::to_string(m_steps) + " (check_every)",
                 "parameter", error_kind::runtime);
    }

    /*************
     * Reporting *
     *************/

    template <class Trainer, class Comm>
    state_report data_parallel<Trainer, Comm>::report() const
    {
        state_report r;
        detail::for_each_inner(detail::inner(m_trainer), [&](std::size_t, const std::string&, const auto& o) {
            r.state_bytes += o.report().state_bytes;
        });
        for (std::size_t i = 0; i < m_flat.size(); ++i)
        {
            r.param_bytes += detail::elements(m_flat.shape(i)) * dtype_size(m_type[i]);
        }
        return r;
    }

    template <class Trainer, class Comm>
    std::string data_parallel<Trainer, Comm>::assignment() const
    {
        std::string out;
        const std::size_t ranks = m_plan.ranks;
        std::vector<std::size_t> elements(ranks, 0);
        std::vector<double> work(ranks, 0.0);
        char text[64];
        for (std::size_t i = 0; i < m_flat.size(); ++i)
        {
            out += m_flat.name(i) + " " + format_shape(m_flat.shape(i)) + " -> " + m_optimizer_names[m_route[i]];
            if (!zero1())
            {
                out += ", every rank\n";
                continue;
            }
            if (m_plan.owner[i] >= 0)
            {
                const double cost = owned_cost(i);
                std::snprintf(text, sizeof text, "%.3g", cost);
                out += ", rank " + std::to_string(m_plan.owner[i])
                       + (m_newton_schulz[m_route[i]] ? " (Newton-Schulz " + std::string(text) + " flops per iteration)\n"
                                                     : " (whole)\n");
                work[std::size_t(m_plan.owner[i])] += m_newton_schulz[m_route[i]] ? cost : 0.0;
                elements[std::size_t(m_plan.owner[i])] += detail::elements(m_flat.shape(i));
                continue;
            }
            std::string parts;
            for (const piece& p : m_plan.pieces)
            {
                if (p.tensor == i)
                {
                    parts += std::string(parts.empty() ? "" : ", ") + std::to_string(p.rank) + " ["
                             + std::to_string(p.offset) + ", " + std::to_string(p.offset + p.length) + ")";
                    elements[std::size_t(p.rank)] += p.length;
                }
            }
            out += ", ranks " + (parts.empty() ? std::string("none (empty)") : parts) + "\n";
        }
        if (zero1())
        {
            for (std::size_t r = 0; r < ranks; ++r)
            {
                std::snprintf(text, sizeof text, "%.3g", work[r]);
                out += "rank " + std::to_string(r) + ": " + std::to_string(elements[r]) + " elements, Newton-Schulz "
                       + text + " flops per iteration\n";
            }
        }
        return out;
    }
}

#endif
