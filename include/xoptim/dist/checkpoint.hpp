// Checkpoints of distributed training (docs/distributed.md), all collective:
//
//     xoptim::dist::save_checkpoint("run/step_1000.safetensors", model, dp);  // rank 0 writes
//     xoptim::dist::load_checkpoint("run/step_1000.safetensors", model, dp);  // any number of ranks
//     xoptim::dist::save_sharded("run/step_1000", model, dp);                 // one file per rank
//     xoptim::dist::load_sharded("run/step_1000", model, dp);                 // the same ranks
//
// A gathered checkpoint *is* a one-process checkpoint (io/checkpoint.hpp): rank 0
// gathers every rank's pieces of every optimizer state into a fresh copy of the trainer
// and writes it with xoptim::save_checkpoint, so xoptim::load_checkpoint reads it in one
// process and dist::load_checkpoint on any number of ranks: every rank reads it with
// xoptim::load_checkpoint into a fresh copy (every check of the one-process loader
// applies), the ranks agree, and each keeps its pieces. The whole state passes through
// rank 0's memory on a save and every rank's on a load.
//
// A sharded checkpoint is a directory: each rank's pieces and their state as a
// one-process checkpoint of their own (shard-R-of-N-step-S.safetensors; data-parallel
// mode writes rank 0's only, every rank holding the same), then index.safetensors
// (metadata only: ranks, mode, the plan's fingerprint, the step, the shards), written
// last. It loads with the same ranks, mode and parameters.
//
// A save refuses while micro-batches are pending (save after a step). A failure on any
// rank (an unreadable file, a check) is the same error on every rank; nothing changed.
#ifndef XOPTIM_DIST_CHECKPOINT_HPP
#define XOPTIM_DIST_CHECKPOINT_HPP

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "../io/checkpoint.hpp"
#include "data_parallel.hpp"

namespace xoptim::dist
{
    template <class P, class Trainer, class Comm>
    void save_checkpoint(const std::string& path, P&& params, data_parallel<Trainer, Comm>& dp);

    template <class P, class Trainer, class Comm>
    void load_checkpoint(const std::string& path, P&& params, data_parallel<Trainer, Comm>& dp);

    template <class P, class Trainer, class Comm>
    void save_sharded(const std::string& directory, P&& params, data_parallel<Trainer, Comm>& dp);

    template <class P, class Trainer, class Comm>
    void load_sharded(const std::string& directory, P&& params, data_parallel<Trainer, Comm>& dp);

    inline constexpr int sharded_format_version = 1;

    namespace detail
    {
        // A tensor owning its values (the container protocol): a load's staging copy.
        template <class T>
        struct owned_tensor
        {
            std::vector<T> values;
            std::vector<std::size_t> dims;

            T* data() noexcept { return values.data(); }
            const T* data() const noexcept { return values.data(); }
            std::size_t size() const noexcept { return values.size(); }
            const std::vector<std::size_t>& shape() const noexcept { return dims; }
        };

        // Named staging tensors of both element types, as a parameter set.
        struct staging
        {
            std::vector<std::string> float_names, double_names;
            std::vector<owned_tensor<float>> floats;
            std::vector<owned_tensor<double>> doubles;
            std::vector<named_ref<owned_tensor<float>>> named_floats;
            std::vector<named_ref<owned_tensor<double>>> named_doubles;

            template <class T>
            void add(const std::string& name, std::vector<std::size_t> shape, std::size_t size)
            {
                owned_tensor<T> t{std::vector<T>(size), std::move(shape)};
                if constexpr (std::is_same_v<T, double>)
                {
                    double_names.push_back(name);
                    doubles.push_back(std::move(t));
                }
                else
                {
                    float_names.push_back(name);
                    floats.push_back(std::move(t));
                }
            }

            auto params()
            {
                named_floats.clear();
                named_doubles.clear();
                for (std::size_t k = 0; k < floats.size(); ++k)
                {
                    named_floats.push_back(named(float_names[k], floats[k]));
                }
                for (std::size_t k = 0; k < doubles.size(); ++k)
                {
                    named_doubles.push_back(named(double_names[k], doubles[k]));
                }
                return std::make_tuple(named("", named_floats), named("", named_doubles));
            }
        };

        // Bytes of state `s` of entry `e`: values (or codes), then 8-bit block scales.
        inline std::size_t state_bytes(const state_store::entry& e, std::size_t s) noexcept
        {
            return e.state_size(s) * e.element_bytes(s);
        }

        // Where elements [offset, offset + length) of a parameter lie in its state `s`
        // (first, count): the same range for an element-wise state; the whole state for
        // one of its own shape (per-row statistics), whose parameter is never cut
        // (shard_rule::whole_tensors).
        inline std::pair<std::size_t, std::size_t> state_range(const state_store::entry& e, std::size_t s,
                                                               std::size_t offset, std::size_t length) noexcept
        {
            if (e.extents[s] == state_extent::elements)
            {
                return {offset, length};
            }
            return {0, e.state_size(s)};
        }

        inline std::size_t scale_bytes(const state_store::entry& e, std::size_t s) noexcept
        {
            return is_8bit(e.states[s].format) ? e.blocks() * sizeof(float) : 0;
        }

        // What the checkpoint functions reach inside a data_parallel.
        struct checkpoint_access_dist
        {
            // The set is walked and agreed on, planned if it never was, and every
            // optimizer without state gets its state (init). With `who`, pending
            // micro-batches are an error (a save).
            template <class DP, class P>
            static void attach(DP& dp, P&& params, const char* who)
            {
                if (who != nullptr)
                {
                    status local;
                    if (dp.m_micro > 0)
                    {
                        local = {error_kind::logic, std::string(who) + ": " + std::to_string(dp.m_micro)
                                                        + " micro-batches are pending (save after a step)"};
                    }
                    agree(dp.m_comm, local);
                }
                dp.init(params);
            }

            // A load's read agreed on. Where it failed on any rank, a data_parallel that
            // the load planned (it had never been) is put back as it was: unplanned, its
            // optimizers without state, so that the next step or init plans for the set
            // it is given, not for the refused one.
            template <class DP>
            static void agree_read(DP& dp, bool was_planned, const status& read)
            {
                try
                {
                    agree(dp.m_comm, read);
                }
                catch (...)
                {
                    if (!was_planned)
                    {
                        for_each_inner(inner(dp.m_trainer),
                                       [](std::size_t, const std::string&, auto& o) { drop_state(o); });
                        dp.m_flat.reset();
                        dp.m_ready = false;
                    }
                    throw;
                }
            }

            // A fresh copy of the trainer: options, storage, schedules, routes; no state.
            template <class DP>
            static auto fresh(DP& dp)
            {
                // Routed by name: the parameters', and the names of this rank's pieces.
                std::vector<std::set<std::string>> names(dp.m_optimizers);
                for (std::size_t i = 0; i < dp.m_flat.size(); ++i)
                {
                    names[dp.m_route[i]].insert(dp.m_flat.name(i));
                }
                for (std::size_t k = 0; k < dp.m_mine.size(); ++k)
                {
                    names[dp.m_route[dp.m_mine[k].tensor]].insert(dp.m_piece_names[k]);
                }
                using I = bare<decltype(inner(dp.m_trainer))>;
                I copy = fresh_inner(inner(dp.m_trainer), names);
                if constexpr (is_stepper<bare<decltype(dp.m_trainer)>>::value)
                {
                    return stepper<I>(std::move(copy), dp.m_around);
                }
                else
                {
                    return copy;
                }
            }

            // This rank's pieces stepped by optimizer k, in the order of its state (the
            // float ones, then the double ones, each in walk order).
            template <class DP>
            static std::vector<piece> pieces_of(const DP& dp, const std::vector<piece>& pieces, std::size_t k)
            {
                std::vector<piece> out;
                for (const dtype type : {dtype::float32, dtype::float64})
                {
                    for (const piece& p : pieces)
                    {
                        if (dp.m_route[p.tensor] == k && dp.m_type[p.tensor] == type)
                        {
                            out.push_back(p);
                        }
                    }
                }
                return out;
            }

            // This rank's pieces (whole tensors with their shape, shards 1-D, under the
            // names the optimizers know them by) or every parameter whole, as staging
            // tensors.
            template <class DP>
            static staging stage(const DP& dp, bool pieces_only)
            {
                staging s;
                const auto add = [&](std::size_t i, const std::string& name, std::vector<std::size_t> shape, std::size_t n) {
                    if (dp.m_type[i] == dtype::float64)
                    {
                        s.template add<double>(name, std::move(shape), n);
                    }
                    else
                    {
                        s.template add<float>(name, std::move(shape), n);
                    }
                };
                if (pieces_only)
                {
                    for (std::size_t k = 0; k < dp.m_mine.size(); ++k)
                    {
                        const piece& p = dp.m_mine[k];
                        const bool whole = !dp.zero1() || dp.m_plan.owner[p.tensor] >= 0;
                        add(p.tensor, dp.m_piece_names[k],
                            whole ? dp.m_flat.shape(p.tensor) : std::vector<std::size_t>{p.length}, p.length);
                    }
                }
                else
                {
                    for (std::size_t i = 0; i < dp.m_flat.size(); ++i)
                    {
                        add(i, dp.m_flat.name(i), dp.m_flat.shape(i), elements(dp.m_flat.shape(i)));
                    }
                }
                return s;
            }

            // Copies between the parameters and `s` (as stage() made it).
            template <class DP>
            static void copy_staged(DP& dp, staging& s, bool pieces_only, bool into_staging)
            {
                std::size_t nf = 0, nd = 0;
                const auto copy = [&](std::size_t i, std::size_t offset, auto* param, auto& staged) {
                    auto* live = param + offset;
                    if (into_staging)
                    {
                        std::copy(live, live + staged.values.size(), staged.values.begin());
                    }
                    else
                    {
                        std::copy(staged.values.begin(), staged.values.end(), live);
                    }
                    (void)i;
                };
                const auto one = [&](std::size_t i, std::size_t offset) {
                    if (dp.m_type[i] == dtype::float64)
                    {
                        copy(i, offset, dp.template param_data<double>(i), s.doubles[nd++]);
                    }
                    else
                    {
                        copy(i, offset, dp.template param_data<float>(i), s.floats[nf++]);
                    }
                };
                if (pieces_only)
                {
                    for (const piece& p : dp.m_mine)
                    {
                        one(p.tensor, p.offset);
                    }
                }
                else
                {
                    for (std::size_t i = 0; i < dp.m_flat.size(); ++i)
                    {
                        one(i, 0);
                    }
                }
            }

            // Rank 0 gets every rank's pieces of state s of optimizer k (`live`, this
            // rank's) and puts them into `whole` (which holds every tensor whole).
            // Collective in ZeRO-1 over several ranks; rank 0's own pieces otherwise.
            template <class DP, class O>
            static void gather_state(DP& dp, std::size_t k, const O& live, std::size_t s, O* whole)
            {
                const auto& comm = dp.m_comm;
                const bool gathered = dp.zero1() && comm.size() > 1;
                if (!gathered && comm.rank() != 0)
                {
                    return;
                }
                // Per piece its values (codes), then its block scales, in state order.
                std::vector<char> mine;
                const state_store& store = live.state();
                for (std::size_t e = 0; e < store.size(); ++e)
                {
                    const state_store::entry& en = store[e];
                    const auto* values = static_cast<const char*>(en.states[s].data);
                    mine.insert(mine.end(), values, values + state_bytes(en, s));
                    const auto* scales = reinterpret_cast<const char*>(en.states[s].absmax);
                    mine.insert(mine.end(), scales, scales + scale_bytes(en, s));
                }
                std::vector<char> all;
                std::vector<std::vector<piece>> sources;
                if (gathered)
                {
                    const std::vector<std::uint64_t> sizes = allgather_value(comm, mine.size());
                    const std::vector<std::size_t> counts(sizes.begin(), sizes.end());
                    std::size_t total = 0;
                    for (std::size_t c : counts)
                    {
                        total += c;
                    }
                    all.resize(comm.rank() == 0 ? total : 0);
                    comm.gather(mine.data(), mine.size(), all.data(), counts.data(), 0);
                    for (int r = 0; r < comm.size(); ++r)
                    {
                        sources.push_back(pieces_of(dp, dp.m_plan.pieces_of(r), k));
                    }
                }
                else
                {
                    all = std::move(mine);
                    sources.push_back(pieces_of(dp, dp.m_mine, k));
                }
                if (comm.rank() != 0)
                {
                    return;
                }
                std::size_t at = 0;
                for (const auto& pieces : sources)
                {
                    for (const piece& p : pieces)
                    {
                        const state_store::entry& to = whole->state().at(dp.m_flat.name(p.tensor));
                        const std::size_t element = to.element_bytes(s);
                        const auto [first, count] = state_range(to, s, p.offset, p.length);
                        std::memcpy(static_cast<char*>(to.states[s].data) + first * element, all.data() + at,
                                    count * element);
                        at += count * element;
                        if (is_8bit(to.states[s].format))
                        {
                            const std::size_t blocks = (p.length + codec_block - 1) / codec_block;
                            std::memcpy(to.states[s].absmax + p.offset / codec_block, all.data() + at,
                                        blocks * sizeof(float));
                            at += blocks * sizeof(float);
                        }
                    }
                }
                if (at != all.size())
                {
                    throw std::logic_error("xoptim::dist::save_checkpoint: the gathered state of optimizer "
                                           + std::to_string(k) + " does not fit its layout (" + std::to_string(at) + " of " + std::to_string(all.size()) + " bytes)");
                }
            }

            // This rank's pieces of every state of `from` into the live optimizer k, and its
            // step count. `from` holds every tensor whole (a gathered load) or exactly
            // this rank's pieces (a sharded load).
            template <class DP, class O>
            static void take_state(DP& dp, std::size_t k, const O& from, O& to, bool from_pieces)
            {
                const state_store& live = to.state();
                const std::vector<piece> pieces = pieces_of(dp, dp.m_mine, k);
                std::map<std::string, std::size_t> index;
                for (std::size_t e = 0; e < from.state().size(); ++e)
                {
                    index.emplace(from.state()[e].name, e);
                }
                for (std::size_t e = 0; e < live.size() && e < pieces.size(); ++e)
                {
                    const state_store::entry& mine = live[e];
                    const state_store::entry& src = from.state()[index.at(from_pieces ? mine.name : dp.m_flat.name(pieces[e].tensor))];
                    const std::size_t offset = from_pieces ? 0 : pieces[e].offset;
                    for (std::size_t s = 0; s < mine.count; ++s)
                    {
                        if (src.states[s].format != mine.states[s].format)
                        {
                            throw std::logic_error("xoptim::dist: the state of '" + mine.name
                                                   + "' is stored differently in the checkpoint's layout");
                        }
                        const std::size_t element = mine.element_bytes(s);
                        const std::size_t first = state_range(mine, s, offset, mine.size).first;
                        std::memcpy(mine.states[s].data, static_cast<const char*>(src.states[s].data) + first * element,
                                    state_bytes(mine, s));
                        if (is_8bit(mine.states[s].format))
                        {
                            std::memcpy(mine.states[s].absmax, src.states[s].absmax + offset / codec_block,
                                        scale_bytes(mine, s));
                        }
                    }
                }
                set_step_count(to, from.step_count());
            }

            template <class DP>
            static auto flat_params(DP& dp)
            {
                return dp.m_flat.params();
            }

            template <class DP>
            static std::size_t& skipped(DP& dp) noexcept
            {
                return dp.m_skipped;
            }

            template <class DP>
            static std::size_t& steps(DP& dp) noexcept
            {
                return dp.m_steps;
            }

            template <class DP>
            static void finish_load(DP& dp)
            {
                if (dp.zero1() && dp.m_comm.size() > 1)
                {
                    dp.gather_parameters();
                }
                dp.end_cycle();
            }

            // What the plan depends on: ranks, mode, buckets, the parameters and routes.
            template <class DP>
            static std::string plan_fingerprint(DP& dp)
            {
                std::vector<std::string> params, config;
                dp.describe(params, config);
                std::string all = std::to_string(dp.m_comm.size()) + " ranks, " + to_string(dp.m_o.mode) + ", bucket_bytes "
                                  + std::to_string(dp.m_o.bucket_bytes) + "\n";
                for (const auto& p : params)
                {
                    all += p + "\n";
                }
                return xoptim::detail::hex(io::xxh64(all.data(), all.size()));
            }
        };

        // Runs f on rank 0 only; every rank learns how it went.
        template <class Comm, class F>
        void on_rank0(const Comm& comm, F&& f)
        {
            status s;
            if (comm.rank() == 0)
            {
                s = capture(std::forward<F>(f));
            }
            agree(comm, s);
        }

        // Calls f(k, live optimizer k, the copy's optimizer k).
        template <class Live, class Copy, class F>
        void each_pair(Live& live, Copy& copy, F&& f)
        {
            std::vector<void*> copies;
            for_each_inner(inner(copy), [&](std::size_t, const std::string&, auto& o) { copies.push_back(&o); });
            for_each_inner(inner(live), [&](std::size_t k, const std::string&, auto& o) {
                f(k, o, *static_cast<std::remove_reference_t<decltype(o)>*>(copies[k]));
            });
        }

        using xoptim::detail::kept_states;
    }

    template <class P, class Trainer, class Comm>
    void save_checkpoint(const std::string& path, P&& params, data_parallel<Trainer, Comm>& dp)
    {
        using access = detail::checkpoint_access_dist;
        access::attach(dp, params, "xoptim::dist::save_checkpoint");
        const auto& comm = dp.comm();
        auto whole = access::fresh(dp);
        detail::on_rank0(comm, [&] {
            auto flat = access::flat_params(dp);
            detail::inner(whole).init(flat);
        });
        detail::each_pair(dp.trainer(), whole, [&](std::size_t k, const auto& live, auto& copy) {
            for (std::size_t s = 0; s < detail::kept_states(live); ++s)
            {
                agree(comm, capture([&] { access::gather_state(dp, k, live, s, &copy); }));
            }
            detail::set_step_count(copy, live.step_count());
            // The values the live step ran with (the copy's init applied its schedules at step 0).
            copy.set_options(live.options());
        });
        detail::on_rank0(comm, [&] {
            if constexpr (detail::is_stepper<detail::bare<decltype(whole)>>::value)
            {
                xoptim::detail::checkpoint_access::skipped(whole) = dp.skipped_steps();
            }
            xoptim::save_checkpoint(path, params, whole);
        });
    }

    template <class P, class Trainer, class Comm>
    void load_checkpoint(const std::string& path, P&& params, data_parallel<Trainer, Comm>& dp)
    {
        xoptim::detail::require_stepped_in_place<P>();
        using access = detail::checkpoint_access_dist;
        const bool was_planned = dp.planned();
        access::attach(dp, params, nullptr);
        // Every rank reads and checks the whole file into a copy.
        auto whole = access::fresh(dp);
        detail::staging staged = access::stage(dp, false);
        status read = capture([&] {
            xoptim::load_checkpoint(path, staged.params(), whole);
            if constexpr (detail::is_stepper<detail::bare<decltype(whole)>>::value)
            {
                if (whole.pending_micro_batches() > 0)
                {
                    throw std::runtime_error(path + ": " + std::to_string(whole.pending_micro_batches())
                                             + " micro-batches are pending in the checkpoint; distributed training "
                                               "resumes at a step boundary");
                }
            }
        });
        access::agree_read(dp, was_planned, read);
        access::copy_staged(dp, staged, false, false);
        std::size_t steps = 0;
        detail::each_pair(dp.trainer(), whole, [&](std::size_t k, auto& live, const auto& copy) {
            access::take_state(dp, k, copy, live, false);
            steps = copy.step_count();
        });
        access::steps(dp) = steps;
        if constexpr (detail::is_stepper<detail::bare<decltype(whole)>>::value)
        {
            access::skipped(dp) = whole.skipped_steps();
        }
        access::finish_load(dp);
    }

    namespace detail
    {
        inline std::string shard_name(std::size_t rank, std::size_t ranks, std::size_t step)
        {
            return "shard-" + std::to_string(rank) + "-of-" + std::to_string(ranks) + "-step-" + std::to_string(step)
                   + ".safetensors";
        }

        // The index of a sharded checkpoint, or an empty map where there is none.
        inline std::map<std::string, std::string> read_index(const std::filesystem::path& directory, bool required)
        {
            const std::filesystem::path file = directory / "index.safetensors";
            std::error_code ec;
            if (!required && !std::filesystem::exists(file, ec))
            {
                return {};
            }
            return io::safetensors_file::read(file.string()).metadata();
        }
    }

    template <class P, class Trainer, class Comm>
    void save_sharded(const std::string& directory, P&& params, data_parallel<Trainer, Comm>& dp)
    {
        using access = detail::checkpoint_access_dist;
        access::attach(dp, params, "xoptim::dist::save_sharded");
        const auto& comm = dp.comm();
        const std::filesystem::path dir(directory);
        detail::on_rank0(comm, [&] { std::filesystem::create_directories(dir); });
        // Data parallel: every rank holds the same, rank 0 writes it.
        const bool sharded = dp.dist_options().mode == mode::zero1;
        const std::size_t shards = sharded ? std::size_t(comm.size()) : 1;
        const std::size_t step = access::steps(dp);
        std::map<std::string, std::string> before;
        const status previous = capture([&] { before = detail::read_index(dir, false); });
        const std::string mine = detail::shard_name(std::size_t(comm.rank()), shards, step);
        status written;
        if (std::size_t(comm.rank()) < shards)
        {
            written = capture([&] {
                detail::staging staged = access::stage(dp, true);
                access::copy_staged(dp, staged, true, true);
                xoptim::save_checkpoint((dir / mine).string(), staged.params(), detail::inner(dp.trainer()));
            });
        }
        agree(comm, written);
        // The index last: until it is in place, the previous checkpoint stands.
        detail::on_rank0(comm, [&] {
            io::safetensors_writer index;
            index.metadata("format", "xoptim.sharded_checkpoint");
            index.metadata("format_version", std::to_string(sharded_format_version));
            index.metadata("ranks", std::to_string(comm.size()));
            index.metadata("shards", std::to_string(shards));
            index.metadata("mode", to_string(dp.dist_options().mode));
            index.metadata("plan", access::plan_fingerprint(dp));
            index.metadata("step", std::to_string(step));
            index.metadata("skipped_steps", std::to_string(dp.skipped_steps()));
            for (std::size_t r = 0; r < shards; ++r)
            {
                index.metadata("shard." + std::to_string(r), detail::shard_name(r, shards, step));
            }
            index.write((dir / "index.safetensors").string());
        });
        // The previous save's shard of this rank, if it had another name, goes.
        const auto old = before.find("shard." + std::to_string(comm.rank()));
        if (previous.ok() && old != before.end() && old->second != mine && old->second.find('/') == std::string::npos)
        {
            std::error_code ec;
            std::filesystem::remove(dir / old->second, ec);
        }
    }

    template <class P, class Trainer, class Comm>
    void load_sharded(const std::string& directory, P&& params, data_parallel<Trainer, Comm>& dp)
    {
        xoptim::detail::require_stepped_in_place<P>();
        using access = detail::checkpoint_access_dist;
        const bool was_planned = dp.planned();
        access::attach(dp, params, nullptr);
        const auto& comm = dp.comm();
        const std::filesystem::path dir(directory);
        auto copy = access::fresh(dp);
        detail::staging staged = access::stage(dp, true);
        std::size_t step = 0, skipped = 0;
        const status read = capture([&] {
            const auto index = detail::read_index(dir, true);
            const std::string where = (dir / "index.safetensors").string();
            const auto text = [&](const std::string& key) {
                const auto it = index.find(key);
                if (it == index.end())
                {
                    throw std::runtime_error(where + ": metadata has no \"" + key + "\"");
                }
                return it->second;
            };
            if (text("format") != "xoptim.sharded_checkpoint")
            {
                throw std::runtime_error(where + ": not an xoptim sharded checkpoint (format \"" + text("format") + "\")");
            }
            if (xoptim::detail::parse_count(where, index, "format_version") > std::size_t(sharded_format_version))
            {
                throw std::runtime_error(where + ": format version " + text("format_version")
                                         + " is newer than this xoptim reads (" + std::to_string(sharded_format_version) + ")");
            }
            const std::size_t ranks = xoptim::detail::parse_count(where, index, "ranks");
            if (ranks != std::size_t(comm.size()) || text("mode") != to_string(dp.dist_options().mode))
            {
                throw std::runtime_error(where + ": saved by " + std::to_string(ranks) + " ranks in " + text("mode")
                                         + " mode; this run has " + std::to_string(comm.size()) + " in "
                                         + to_string(dp.dist_options().mode)
                                         + " (load a gathered checkpoint to change either)");
            }
            if (text("plan") != access::plan_fingerprint(dp))
            {
                throw std::runtime_error(where + ": saved with other parameters, routes or bucket_bytes (its plan "
                                         + text("plan") + ", this run's " + access::plan_fingerprint(dp) + ")");
            }
            step = xoptim::detail::parse_count(where, index, "step");
            skipped = xoptim::detail::parse_count(where, index, "skipped_steps");
            const std::size_t shards = xoptim::detail::parse_count(where, index, "shards");
            const std::string shard = text("shard." + std::to_string(shards == 1 ? 0 : comm.rank()));
            if (shard.find('/') != std::string::npos)
            {
                throw std::runtime_error(where + ": shard name \"" + shard + "\" is not a file name");
            }
            xoptim::load_checkpoint((dir / shard).string(), staged.params(), detail::inner(copy));
        });
        access::agree_read(dp, was_planned, read);
        access::copy_staged(dp, staged, true, false);
        detail::each_pair(dp.trainer(), copy, [&](std::size_t k, auto& live, const auto& from) {
            access::take_state(dp, k, from, live, true);
        });
        access::steps(dp) = step;
        access::skipped(dp) = skipped;
        access::finish_load(dp);
    }
}

#endif
