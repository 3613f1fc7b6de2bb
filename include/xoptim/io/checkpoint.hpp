// Checkpoints: parameters and everything an optimizer, a router or a stepper keeps
// (state tensors, step counts and with them the schedules' positions, skipped-step
// counters, pending accumulated gradients), by name, in a safetensors file (SPEC
// section 5) that Python reads with numpy and json alone.
//
//     xoptim::save_checkpoint("run/step_1000.safetensors", model, opt);
//     xoptim::load_checkpoint("run/step_1000.safetensors", model, opt);  // resumes bit for bit
//
// The file holds
//   param/NAME                      every parameter
//   state/KEY/NAME/STATE            every optimizer state tensor (KEY: "optimizer", or
//                                   "optimizer.K" for the K-th optimizer of a router or
//                                   the K-th of param_groups), as stored: F32/F64, BF16,
//                                   or U8 codes of 8-bit states
//   state/KEY/NAME/STATE.absmax     an 8-bit state's scales, F32, one per 256 elements
//   accumulator/NAME                a stepper's gradient sums, when micro-batches are pending
// and string metadata: format, format_version, per KEY its optimizer, step, how its
// states are stored,
// hyperparameters and schedules (JSON text), the stepper's counters and options, an
// XXH64 checksum per tensor (key "xxh64/TENSOR", 16 hex digits) and one of all the
// other metadata ("xxh64/__metadata__", format version 2). A load needs the live
// optimizer to store its states as the saved one did (set_storage first).
//
// Saving is atomic (a temporary file renamed over the target after fsync): a failed
// save leaves the previous file as it was (unless only the final directory flush
// failed, when the new file is already in place; the message says so). Loading reads
// the header first and the data only once every tensor in it is one the trainer
// expects, checks everything (format, version, the metadata's checksum, names, dtypes,
// shapes, counters, the tensors' checksums) and changes the live parameters and state
// only when all of it holds; on any error it throws std::runtime_error naming the file
// and the problem (file text in it quoted by io::quote), and nothing observable has
// changed. The live optimizer's own hyperparameters and schedules are used after a
// load: the saved ones are a record.
#ifndef XOPTIM_IO_CHECKPOINT_HPP
#define XOPTIM_IO_CHECKPOINT_HPP

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "../optim/kinds.hpp"
#include "../optim/optimizer.hpp"
#include "../optim/router.hpp"
#include "../step/stepper.hpp"
#include "json.hpp"
#include "quote.hpp"
#include "safetensors.hpp"
#include "separate.hpp"
#include "xxh64.hpp"

namespace xoptim
{
    // 2: the metadata carries a checksum of its own ("xxh64/__metadata__"). Files of
    // version 1 are refused with a pointer to upgrade_checkpoint.
    inline constexpr int checkpoint_format_version = 2;

    template <class P, class Trainer>
    void save_checkpoint(const std::string& path, P&& params, const Trainer& trainer);

    template <class P, class Trainer>
    void load_checkpoint(const std::string& path, P&& params, Trainer& trainer);

    namespace detail
    {
        // The two above once their trainer is known to be one.
        template <class P, class Trainer>
        void save_trainer(const std::string& path, P&& params, const Trainer& trainer);

        template <class P, class Trainer>
        void load_trainer(const std::string& path, P&& params, Trainer& trainer);
    }

    // Rewrites a checkpoint of format version 1 at `from` as version 2 at `to` (which may
    // be `from`), adding the checksum of its metadata, after checking its tensors against
    // their checksums. A version-1 file's metadata (step counts, counters) has nothing to
    // check it by: upgrade files that loaded as expected before. A version-2 file is
    // written back as it is. std::runtime_error naming the file on any problem.
    void upgrade_checkpoint(const std::string& from, const std::string& to);

    namespace detail
    {
        // The private parts a checkpoint reads and restores.
        struct checkpoint_access
        {
            template <class O>
            static auto& state(O& o) noexcept
            {
                return o.m_state;
            }

            template <class O>
            static auto& steps(O& o) noexcept
            {
                return o.m_steps;
            }

            template <class S>
            static auto& inner(S& s) noexcept
            {
                return s.m_opt;
            }

            template <class S>
            static auto& micro(S& s) noexcept
            {
                return s.m_micro;
            }

            template <class S>
            static auto& skipped(S& s) noexcept
            {
                return s.m_skipped;
            }

            template <class S>
            static auto& accumulators(S& s) noexcept
            {
                return s.m_acc;
            }

            // What init created, so that a failed load can take back exactly that.
            struct created
            {
                bool optimizers = false;    // routes and state of a trainer that had none
                bool accumulators = false;  // a stepper's gradient sums
                bool walk = false;          // a stepper's first walk of the parameters
            };

            // Creates what a fresh trainer lacks for `params`: routes, state, a
            // stepper's accumulators.
            template <class X, class P>
            static void init(X& x, P& params, created& c)
            {
                if constexpr (is_stepper<X>::value)
                {
                    // The optimizer inside sees the parameters as the stepper hands them
                    // over (float parameters first, then double), so its state is made
                    // in that order too.
                    c.walk = x.m_flat.size() == 0;
                    x.m_flat.collect(params, no_grads{}, "xoptim::load_checkpoint");
                    auto flat = x.m_flat.params();
                    init(x.m_opt, flat, c);
                    if (x.m_o.accumulate > 1 && !x.m_o.caller_accumulates && x.m_acc.empty())
                    {
                        x.make_accumulators();
                        c.accumulators = true;
                    }
                }
                else if constexpr (is_router<X>::value)
                {
                    if (x.m_routes.empty())
                    {
                        c.optimizers = true;
                        x.init(params);
                    }
                }
                else if (x.m_state.empty())
                {
                    c.optimizers = true;
                    x.init(params);
                }
            }

            // Takes back what init created.
            template <class X>
            static void forget(X& x, const created& c)
            {
                if constexpr (is_stepper<X>::value)
                {
                    forget(x.m_opt, c);
                    if (c.accumulators)
                    {
                        x.m_acc.truncate(0);
                    }
                    if (c.walk)
                    {
                        x.m_flat.reset();
                    }
                }
                else if constexpr (is_router<X>::value)
                {
                    if (c.optimizers)
                    {
                        x.m_routes.clear();
                        x.m_flat.reset();
                        x.each([&](std::size_t, auto& o) { forget(o, c); });
                    }
                }
                else if (c.optimizers)
                {
                    x.forget_init();
                }
            }
        };

        // Calls f(key, optimizer) for every optimizer in a trainer (const or not).
        template <class X, class F>
        void for_each_optimizer(X& x, const std::string& key, F&& f)
        {
            using B = std::remove_const_t<X>;
            if constexpr (is_stepper<B>::value)
            {
                for_each_optimizer(checkpoint_access::inner(x), key, f);
            }
            else if constexpr (is_router<B>::value)
            {
                x.each([&](std::size_t k, auto& o) { for_each_optimizer(o, key + "." + std::to_string(k), f); });
            }
            else
            {
                static_assert(derives_from_optimizer<B>::value,
                              "xoptim: a checkpoint holds an optimizer, a router or a stepper");
                f(key, static_cast<optimizer_of<X>&>(x));  // a user's class derived from one: its optimizer
            }
        }

        /*******************
         * Metadata (JSON) *
         *******************/

        template <class F>
        struct is_optional : std::false_type
        {
        };

        template <class F>
        struct is_optional<std::optional<F>> : std::true_type
        {
        };

        template <class F>
        std::string json_value(const F& field)
        {
            if constexpr (is_optional<F>::value)
            {
                return field ? json_value(*field) : "null";
            }
            else if constexpr (std::is_same_v<F, bool>)
            {
                return field ? "true" : "false";
            }
            else if constexpr (std::is_enum_v<F>)
            {
                return io::json_string(to_string(field));  // found next to the enum
            }
            else if constexpr (std::is_arithmetic_v<F>)
            {
                return io::json_number(double(field));
            }
            else
            {
                std::string out = "[";
                for (std::size_t k = 0; k < field.size(); ++k)
                {
                    out += (k ? ", " : "") + json_value(field[k]);  // numbers, or rows of numbers
                }
                return out + "]";
            }
        }

        template <class Options>
        std::string options_json(const Options& o)
        {
            std::string out = "{";
            Options::fields(o, [&](const char* key, const auto& field) {
                out += (out.size() > 1 ? ", " : "") + io::json_string(key) + ": " + json_value(field);
            });
            return out + "}";
        }

        std::string schedules_json(const std::vector<schedule_binding>& schedules);

        std::string stepper_json(const stepper_options& o);

        /***********
         * Tensors *
         ***********/

        // One tensor of the file as the live side sees it: where its bytes go or come from.
        struct checkpoint_tensor
        {
            std::string name;
            io::st_dtype dtype;
            std::vector<std::size_t> shape;
            void* data;
            std::size_t bytes;
            std::string owner;           // "parameter 'w'", for messages
            std::uint8_t zero_byte = 0;  // what a fresh state holds (the signed map's zero code)
        };

        inline io::st_dtype st_dtype_of(dtype t) noexcept
        {
            return t == dtype::float32 ? io::st_dtype::F32 : t == dtype::float64 ? io::st_dtype::F64 : io::st_dtype::BF16;
        }

        // The parameters' tensors (param/NAME), float then double, in the set's order.
        void add_param_tensors(std::vector<checkpoint_tensor>& out, flat_params& flat);

        // A store's tensors as stored: float or double, bf16, or 8-bit codes (U8) with
        // their per-block scales (NAME.absmax, F32). NAME is prefix + the entry's name, then
        // "/" + names[s] where names is not null; of each entry's states the first `keep`,
        // and never its last `scratch` (Muon's update: the last of the states its options
        // create). `what` names them in messages ("optimizer state").
        void add_state_tensors(std::vector<checkpoint_tensor>& out, const state_store& store, const std::string& prefix,
                               const char* const* names, std::size_t keep, std::size_t scratch, const char* what);

        // Every tensor a checkpoint of (params, trainer) holds, in a fixed order. With
        // `pending`, the stepper's accumulators are included. (A load writes through the
        // pointers of its trainer's tensors: the trainer it passes is not const.)
        template <class Trainer>
        std::vector<checkpoint_tensor> checkpoint_tensors(flat_params& flat, const Trainer& trainer, bool pending)
        {
            std::vector<checkpoint_tensor> out;
            add_param_tensors(out, flat);
            for_each_optimizer(trainer, "optimizer", [&](const std::string& key, const auto& o) {
                using O = std::remove_const_t<std::remove_reference_t<decltype(o)>>;
                add_state_tensors(out, checkpoint_access::state(o), "state/" + key + "/",
                                  O::state_names.empty() ? nullptr : &O::state_names[0], kept_states(o),
                                  scratch_states<O>::value, "optimizer state");
            });
            if constexpr (is_stepper<Trainer>::value)
            {
                if (pending)
                {
                    add_state_tensors(out, checkpoint_access::accumulators(trainer), "accumulator/", nullptr, 1, 0,
                                      "gradient accumulator");
                }
            }
            return out;
        }

        [[noreturn]] inline void checkpoint_error(const std::string& path, const std::string& problem)
        {
            throw std::runtime_error(path + ": " + problem);
        }

        std::size_t parse_count(const std::string& path, const std::map<std::string, std::string>& meta,
                                const std::string& key);

        // The parameters a checkpoint is saved from or loaded into, against `stores` (the
        // trainer's optimizers' stores): where they keep state, an entry for each
        // parameter, of its shape, and none for another (a save of another set would write
        // a file no load accepts; a load replaces the state, and cannot replace state kept
        // for another set). Their names are unique already (flat_params' first walk).
        void check_parameters(const std::string& path, const flat_params& flat,
                              const std::vector<const state_store*>& stores);

        template <class Trainer>
        std::vector<const state_store*> state_stores(const Trainer& trainer)
        {
            std::vector<const state_store*> out;
            for_each_optimizer(trainer, "optimizer",
                               [&](const std::string&, const auto& o) { out.push_back(&checkpoint_access::state(o)); });
            return out;
        }

        // An optimizer that keeps numbers on the host beyond its step count (Schedule-Free:
        // lr_max, weight_sum, the eval/train mode) lists them with
        // `template <class O, class F> static void host_fields(O& o, F&& f)`, f(name, double&):
        // saved as metadata KEY.host.NAME (%.17g: the same double back), restored by a load.
        template <class O, class = void>
        struct has_host_fields : std::false_type
        {
        };

        template <class O>
        struct has_host_fields<O, std::void_t<decltype(O::host_fields(std::declval<O&>(),
                                                                      std::declval<void (*)(const char*, double&)>()))>>
            : std::true_type
        {
        };

        double parse_host_number(const std::string& path, const std::map<std::string, std::string>& meta,
                                 const std::string& key);

        // The metadata key of a tensor's checksum: one key each, so a load finds every
        // checksum in the parsed metadata map instead of searching one long string.
        inline std::string checksum_key(const std::string& tensor)
        {
            return "xxh64/" + tensor;
        }

        std::string hex(std::uint64_t x);

        using checkpoint_metadata = std::map<std::string, std::string>;

        // The checksum of the metadata itself (format version 2): a tensor name cannot be
        // "__metadata__", so the key is no tensor's.
        inline const std::string metadata_checksum_key = checksum_key("__metadata__");

        // XXH64 of every other entry in key order (bytewise, as std::map and Python's
        // sorted() order them), each key and value preceded by its length in bytes as 8
        // little-endian bytes. It covers the step counts, counters, options and the
        // tensors' checksums, so no bit of the metadata changes unnoticed.
        std::string metadata_checksum(const checkpoint_metadata& meta);

        // Sets the metadata's checksum (after every other entry).
        inline void sign_metadata(checkpoint_metadata& meta)
        {
            meta[metadata_checksum_key] = metadata_checksum(meta);
        }

        [[noreturn]] inline void old_format(const std::string& path)
        {
            checkpoint_error(path, "format version 1 has no checksum of its metadata (step counts, counters); "
                                   "rewrite it once with xoptim::upgrade_checkpoint (docs/checkpoints.md)");
        }

        // The checks every load makes first: a checkpoint, of a version this reads, whose
        // metadata is as it was written. Returns the version.
        std::size_t check_metadata(const std::string& path, const checkpoint_metadata& meta);
    }

    // What was passed as the trainer is checked first, in one sentence, and nothing else
    // is compiled if it is not one (the arguments swapped, options, a compiled<O>).
    template <class P, class Trainer>
    void save_checkpoint(const std::string& path, P&& params, const Trainer& trainer)
    {
        static_assert(!detail::is_compiled<Trainer>::value,
                      "xoptim::save_checkpoint(path, params, trainer) saves the optimizer of a compiled<O> "
                      "(pass opt.optimizer())");
        static_assert(detail::is_compiled<Trainer>::value || detail::is_trainer<Trainer>::value,
                      "xoptim::save_checkpoint(path, params, trainer) saves an optimizer, a router, param_groups "
                      "or a stepper");
        if constexpr (detail::is_trainer<Trainer>::value)
        {
            detail::save_trainer(path, std::forward<P>(params), trainer);
        }
    }

    template <class P, class Trainer>
    void load_checkpoint(const std::string& path, P&& params, Trainer& trainer)
    {
        using T = std::remove_const_t<Trainer>;
        static_assert(!detail::is_compiled<T>::value,
                      "xoptim::load_checkpoint(path, params, trainer) loads the optimizer of a compiled<O> "
                      "(pass opt.optimizer())");
        static_assert(detail::is_compiled<T>::value || detail::is_trainer<T>::value,
                      "xoptim::load_checkpoint(path, params, trainer) loads an optimizer, a router, param_groups "
                      "or a stepper");
        static_assert(!detail::is_trainer<T>::value || !std::is_const_v<Trainer>,
                      "xoptim::load_checkpoint writes the trainer: pass it non-const");
        if constexpr (detail::is_trainer<T>::value && !std::is_const_v<Trainer>)
        {
            detail::load_trainer(path, std::forward<P>(params), trainer);
        }
    }

    template <class P, class Trainer>
    void detail::save_trainer(const std::string& path, P&& params, const Trainer& trainer)
    {
        flat_params flat;
        flat.collect(std::forward<P>(params), no_grads{}, "xoptim::save_checkpoint");
        detail::check_parameters(path, flat, detail::state_stores(trainer));
        detail::checkpoint_metadata meta;
        meta["format"] = "xoptim.checkpoint";
        meta["format_version"] = std::to_string(checkpoint_format_version);
        meta["parameters"] = std::to_string(flat.size());
        detail::for_each_optimizer(trainer, "optimizer", [&](const std::string& key, const auto& o) {
            using O = std::remove_const_t<std::remove_reference_t<decltype(o)>>;
            meta[key + ".optimizer"] = O::name;
            meta[key + ".step"] = std::to_string(o.step_count());
            meta[key + ".storage"] = to_string(o.storage().states);
            meta[key + ".hyperparameters"] = detail::options_json(o.options());
            meta[key + ".schedules"] = detail::schedules_json(o.schedules());
            if constexpr (detail::has_host_fields<O>::value)
            {
                O::host_fields(const_cast<O&>(o), [&](const char* name, double& x) {
                    meta[key + ".host." + name] = io::json_number(x);
                });
            }
        });
        bool pending = false;
        if constexpr (detail::is_stepper<Trainer>::value)
        {
            pending = trainer.pending_micro_batches() > 0;
            if (pending && trainer.options().caller_accumulates)
            {
                // No load could resume it: the sums are in the caller's buffers.
                checkpoint_error(path, std::to_string(trainer.pending_micro_batches())
                                           + " micro-batches are pending, summed in the caller's gradient buffers "
                                             "(caller_accumulates), which a checkpoint does not hold: save after "
                                             "the cycle's step (nothing was written)");
            }
            meta["stepper.skipped_steps"] = std::to_string(trainer.skipped_steps());
            meta["stepper.pending_micro_batches"] = std::to_string(trainer.pending_micro_batches());
            meta["stepper.options"] = detail::stepper_json(trainer.options());
        }
        io::safetensors_writer writer;
        for (const auto& t : detail::checkpoint_tensors(flat, trainer, pending))
        {
            meta[detail::checksum_key(t.name)] = detail::hex(io::xxh64(t.data, t.bytes));
            writer.add(t.name, t.dtype, t.shape, t.data, t.bytes);
        }
        detail::sign_metadata(meta);
        for (auto& [key, value] : meta)
        {
            writer.metadata(key, std::move(value));
        }
        writer.write(path);
    }

    template <class P, class Trainer>
    void detail::load_trainer(const std::string& path, P&& params, Trainer& trainer)
    {
        detail::require_stepped_in_place<P>();
        using detail::checkpoint_error;
        // The header first: the data is read only once every tensor in it is known to be
        // one this trainer expects, so a load never allocates more than the model's size.
        io::safetensors_file file = io::safetensors_file::read_header(path);
        const auto& meta = file.metadata();
        const auto text = [&](const std::string& key) {
            const auto it = meta.find(key);
            if (it == meta.end())
            {
                checkpoint_error(path, "metadata has no \"" + key + "\"");
            }
            return it->second;
        };
        if (detail::check_metadata(path, meta) < 2)
        {
            detail::old_format(path);
        }

        // The optimizers: kind and step count, checked before anything is created.
        std::vector<std::size_t> steps;
        std::vector<double> host;  // every optimizer's host fields, in order
        std::vector<std::string> unstepped;  // "state/KEY/" of optimizers saved before a step
        std::set<std::string> absent;        // those of them whose state the file lacks
        detail::for_each_optimizer(trainer, "optimizer", [&](const std::string& key, auto& o) {
            using O = std::remove_reference_t<decltype(o)>;
            const std::string saved = text(key + ".optimizer");
            if (saved != O::name)
            {
                checkpoint_error(path, "'" + key + "' was " + io::quote(saved) + " in the checkpoint, it is " + O::name
                                           + " here");
            }
            // Files written before storage options have native states. (Which tensors
            // are 8-bit also depends on min_8bit_size: the tensors' dtypes check that.)
            const auto saved_storage = meta.find(key + ".storage");
            const std::string storage = to_string(o.storage().states);
            const std::string recorded =
                saved_storage != meta.end() ? saved_storage->second : to_string(state_storage::native);
            if (recorded != storage)
            {
                checkpoint_error(path, "'" + key + "' stored its states as " + io::quote(recorded)
                                           + " in the checkpoint, here as " + storage
                                           + (std::is_same_v<O, ema> ? " (an average's shadow_dtype is its "
                                                                       "constructor's: make it with the file's)"
                                                                     : " (call set_storage before loading)"));
            }
            steps.push_back(detail::parse_count(path, meta, key + ".step"));
            if constexpr (detail::has_host_fields<O>::value)
            {
                O::host_fields(o, [&](const char* name, double&) {
                    host.push_back(detail::parse_host_number(path, meta, key + ".host." + name));
                });
            }
            if (steps.back() == 0)
            {
                unstepped.push_back("state/" + key + "/");
            }
        });
        std::size_t pending = 0, skipped = 0;
        if constexpr (detail::is_stepper<Trainer>::value)
        {
            pending = detail::parse_count(path, meta, "stepper.pending_micro_batches");
            skipped = detail::parse_count(path, meta, "stepper.skipped_steps");
            const stepper_options& o = trainer.options();
            const std::size_t cycle = o.accumulate;
            if (pending > 0 && (pending >= cycle || o.caller_accumulates))
            {
                checkpoint_error(path, std::to_string(pending) + " micro-batches are pending, this stepper "
                                           + (o.caller_accumulates ? "keeps no accumulators"
                                                                   : "accumulates " + std::to_string(cycle)));
            }
        }

        flat_params flat;
        flat.collect(params, no_grads{}, "xoptim::load_checkpoint");
        // A trainer that stepped already keeps its state for these parameters: a load
        // replaces that state, and cannot replace state kept for other ones.
        detail::check_parameters(path, flat, detail::state_stores(trainer));
        detail::checkpoint_access::created created;
        // The file's step counts first: state a load creates is made with the schedules'
        // values at the step the run resumes, not at step 0. Swapped, so that `steps` keeps
        // the trainer's own counts for a refused load to put back.
        const auto swap_steps = [&] {
            std::size_t k = 0;
            detail::for_each_optimizer(trainer, "optimizer", [&](const std::string&, auto& o) {
                std::swap(detail::checkpoint_access::steps(o), steps[k++]);
            });
        };
        swap_steps();
        try
        {
            detail::checkpoint_access::init(trainer, params, created);
            const auto tensors = detail::checkpoint_tensors(flat, trainer, pending > 0);
            std::set<std::string> expected;
            std::vector<std::pair<const detail::checkpoint_tensor*, const io::st_tensor_info*>> copies;
            std::vector<const detail::checkpoint_tensor*> zeros;  // the state of an unstepped optimizer
            for (const auto& t : tensors)
            {
                expected.insert(t.name);
                const io::st_tensor_info* info = file.find(t.name);
                // An optimizer saved before its first step may have had no state yet:
                // its state is the zeros a first step starts from (whatever state a
                // trainer that stepped before had).
                const auto lacking = std::find_if(unstepped.begin(), unstepped.end(), [&](const std::string& prefix) {
                    return t.name.compare(0, prefix.size(), prefix) == 0;
                });
                if (info == nullptr && lacking != unstepped.end())
                {
                    zeros.push_back(&t);
                    absent.insert(*lacking);
                    continue;
                }
                if (info == nullptr)
                {
                    checkpoint_error(path, "no tensor '" + t.name + "' for the " + t.owner);
                }
                if (info->dtype != t.dtype || info->shape != t.shape)
                {
                    checkpoint_error(path, "tensor '" + t.name + "' is " + io::st_dtype_name(info->dtype) + " "
                                               + format_shape(info->shape) + ", the " + t.owner + " is "
                                               + io::st_dtype_name(t.dtype) + " " + format_shape(t.shape));
                }
                if (meta.count(detail::checksum_key(t.name)) == 0)
                {
                    checkpoint_error(path, "no checksum for tensor '" + t.name + "'");
                }
                copies.emplace_back(&t, info);
            }
            for (const auto& info : file.tensors())
            {
                if (expected.count(info.name) == 0)
                {
                    checkpoint_error(path, "unexpected tensor " + io::quote(info.name)
                                               + " (no such parameter or optimizer state here)");
                }
            }
            file.read_data();
            for (const auto& [t, info] : copies)
            {
                if (meta.at(detail::checksum_key(t->name)) != detail::hex(io::xxh64(file.data(*info), info->bytes())))
                {
                    checkpoint_error(path, "tensor '" + t->name + "' is damaged (its checksum does not match)");
                }
            }
            // Everything holds: restore.
            for (const auto& [t, info] : copies)
            {
                if (t->bytes > 0)  // an empty tensor may have no storage at all
                {
                    std::memcpy(t->data, file.data(*info), t->bytes);
                }
            }
            for (const detail::checkpoint_tensor* t : zeros)
            {
                if (t->bytes > 0)
                {
                    std::memset(t->data, t->zero_byte, t->bytes);
                }
            }
        }
        catch (...)
        {
            detail::checkpoint_access::forget(trainer, created);
            swap_steps();
            throw;
        }
        std::size_t h = 0;
        detail::for_each_optimizer(trainer, "optimizer", [&](const std::string& key, auto& o) {
            using O = std::remove_reference_t<decltype(o)>;
            if constexpr (std::is_same_v<O, ema>)
            {
                // Saved before its first update: no average, not one of zeros.
                if (absent.count("state/" + key + "/") > 0)
                {
                    o.forget_init();
                }
            }
            if constexpr (detail::has_host_fields<O>::value)
            {
                O::host_fields(o, [&](const char*, double& x) { x = host[h++]; });
            }
        });
        if constexpr (detail::is_stepper<Trainer>::value)
        {
            detail::checkpoint_access::micro(trainer) = pending;
            detail::checkpoint_access::skipped(trainer) = skipped;
            if (pending == 0)
            {
                // No sums in the file: those of the run this one replaces go too.
                const state_store& sums = detail::checkpoint_access::accumulators(trainer);
                for (std::size_t i = 0; i < sums.size(); ++i)
                {
                    std::memset(sums[i].data.get(), 0, sums[i].bytes);
                }
            }
        }
    }

    // The definitions: in every unit, or in the instantiation unit only (io/separate.hpp).
#if XOPTIM_IO_DEFINE
    XOPTIM_IO_INLINE void detail::add_param_tensors(std::vector<checkpoint_tensor>& out, flat_params& flat)
    {
        const auto add = [&](auto& share) {
            for (std::size_t i = 0; i < share.params.size(); ++i)
            {
                auto& v = share.params[i];
                using T = tensor::value_type<std::decay_t<decltype(v)>>;
                const std::string& name = flat.name(share.leaves[i]);
                out.push_back({"param/" + name, io::st_dtype_of<T>(), flat.shape(share.leaves[i]), v.data(),
                               v.size() * sizeof(T), "parameter '" + name + "'"});
            }
        };
        add(flat.share<float>());
        add(flat.share<double>());
    }

    XOPTIM_IO_INLINE void detail::add_state_tensors(std::vector<checkpoint_tensor>& out, const state_store& store,
                                                    const std::string& prefix, const char* const* names,
                                                    std::size_t keep, std::size_t scratch, const char* what)
    {
        for (std::size_t k = 0; k < store.size(); ++k)
        {
            const state_store::entry& e = store[k];
            const std::string owner = std::string(what) + " of parameter '" + e.name + "'";
            for (std::size_t s = 0; s < std::min(keep, e.count - std::min(e.count, scratch)); ++s)
            {
                const state_store::state_tensor& t = e.states[s];
                const std::string name = prefix + e.name + (names == nullptr ? "" : "/" + std::string(names[s]));
                const io::st_dtype type = t.format == slot_format::native ? st_dtype_of(math_type(e.type))
                                          : is_8bit(t.format)            ? io::st_dtype::U8
                                                                         : io::st_dtype::BF16;
                if (e.extents[s] == state_extent::none)
                {
                    continue;  // a state this parameter does not have (Adafactor's vector moments of a matrix)
                }
                out.push_back({name, type, e.state_shape(s), t.data, e.state_size(s) * e.element_bytes(s), owner,
                               t.format == slot_format::q8_signed ? dynamic_map::signed_zero : std::uint8_t(0)});
                if (is_8bit(t.format))
                {
                    out.push_back({name + ".absmax", io::st_dtype::F32, {e.blocks()}, t.absmax,
                                   e.blocks() * sizeof(float), owner + " (8-bit block scales)"});
                }
            }
        }
    }

    XOPTIM_IO_INLINE std::string detail::schedules_json(const std::vector<schedule_binding>& schedules)
    {
        std::string out = "{";
        for (const auto& b : schedules)
        {
            out += (out.size() > 1 ? ", " : "") + io::json_string(b.field) + ": " + io::json_string(b.value.describe());
        }
        return out + "}";
    }

    XOPTIM_IO_INLINE std::string detail::stepper_json(const stepper_options& o)
    {
        const char* policy = o.on_non_finite == non_finite::skip    ? "skip"
                             : o.on_non_finite == non_finite::raise ? "raise"
                                                                    : "ignore";
        return "{\"clip_global_norm\": " + io::json_number(o.clip_global_norm)
               + ", \"clip_value\": " + io::json_number(o.clip_value) + ", \"on_non_finite\": \"" + policy
               + "\", \"accumulate\": " + std::to_string(o.accumulate)
               + ", \"caller_accumulates\": " + (o.caller_accumulates ? "true" : "false") + "}";
    }

    XOPTIM_IO_INLINE std::size_t detail::parse_count(const std::string& path,
                                                     const std::map<std::string, std::string>& meta,
                                                     const std::string& key)
    {
        const auto it = meta.find(key);
        if (it == meta.end())
        {
            checkpoint_error(path, "metadata has no \"" + key + "\"");
        }
        const std::string& s = it->second;
        std::size_t value = 0;
        const bool digits = !s.empty() && s.size() <= 18
                            && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
        if (!digits)
        {
            checkpoint_error(path, "metadata \"" + key + "\" is not a count: " + io::quote(s));
        }
        for (const char c : s)
        {
            value = value * 10 + std::size_t(c - '0');
        }
        return value;
    }

    XOPTIM_IO_INLINE void detail::check_parameters(const std::string& path, const flat_params& flat,
                                                   const std::vector<const state_store*>& stores)
    {
        std::map<std::string, std::size_t> leaf;  // by name (unique: flat's first walk refuses a name twice)
        for (std::size_t i = 0; i < flat.size(); ++i)
        {
            leaf.emplace(flat.name(i), i);
        }
        std::vector<bool> kept(flat.size(), false);
        bool any = false;
        for (const state_store* store : stores)
        {
            for (std::size_t k = 0; k < store->size(); ++k)
            {
                const state_store::entry& e = (*store)[k];
                any = true;
                const auto it = leaf.find(e.name);
                if (it == leaf.end())
                {
                    checkpoint_error(path, "the trainer keeps state for a parameter '" + e.name
                                               + "', which is not among the parameters given");
                }
                if (e.shape != flat.shape(it->second))
                {
                    checkpoint_error(path, "the trainer's state of parameter '" + e.name + "' is for shape "
                                               + format_shape(e.shape) + ", the parameter is "
                                               + format_shape(flat.shape(it->second)));
                }
                kept[it->second] = true;
            }
        }
        for (std::size_t i = 0; any && i < flat.size(); ++i)
        {
            if (!kept[i])
            {
                checkpoint_error(path, "the trainer keeps no state for parameter '" + flat.name(i)
                                           + "' (it was stepped with other parameters)");
            }
        }
    }

    XOPTIM_IO_INLINE double detail::parse_host_number(const std::string& path,
                                                      const std::map<std::string, std::string>& meta,
                                                      const std::string& key)
    {
        const auto it = meta.find(key);
        if (it == meta.end())
        {
            checkpoint_error(path, "metadata has no \"" + key + "\"");
        }
        double x = 0;
        if (!io::parse_number(it->second, x) || !std::isfinite(x))
        {
            checkpoint_error(path, "\"" + key + "\" is " + io::quote(it->second) + ", not a finite number");
        }
        return x;
    }

    XOPTIM_IO_INLINE std::string detail::hex(std::uint64_t x)
    {
        char buffer[20];
        std::snprintf(buffer, sizeof buffer, "%016llx", static_cast<unsigned long long>(x));
        return buffer;
    }

    XOPTIM_IO_INLINE std::string detail::metadata_checksum(const checkpoint_metadata& meta)
    {
        std::string text;
        const auto append = [&](const std::string& s) {
            for (int i = 0; i < 8; ++i)
            {
                text += static_cast<char>((std::uint64_t(s.size()) >> (8 * i)) & 0xff);
            }
            text += s;
        };
        for (const auto& [key, value] : meta)
        {
            if (key != metadata_checksum_key)
            {
                append(key);
                append(value);
            }
        }
        return hex(io::xxh64(text.data(), text.size()));
    }

    XOPTIM_IO_INLINE std::size_t detail::check_metadata(const std::string& path, const checkpoint_metadata& meta)
    {
        const auto format = meta.find("format");
        if (format == meta.end())
        {
            checkpoint_error(path, "metadata has no \"format\"");
        }
        if (format->second != "xoptim.checkpoint")
        {
            checkpoint_error(path, "not an xoptim checkpoint (format " + io::quote(format->second) + ")");
        }
        const std::size_t version = parse_count(path, meta, "format_version");
        if (version > std::size_t(checkpoint_format_version))
        {
            checkpoint_error(path, "format version " + std::to_string(version) + " is newer than this xoptim reads ("
                                       + std::to_string(checkpoint_format_version) + ")");
        }
        if (version < 1)
        {
            checkpoint_error(path, "format version 0 does not exist");
        }
        if (version >= 2)
        {
            const auto sum = meta.find(metadata_checksum_key);
            if (sum == meta.end())
            {
                checkpoint_error(path, "no checksum of the metadata (\"" + metadata_checksum_key + "\")");
            }
            if (sum->second != metadata_checksum(meta))
            {
                checkpoint_error(path, "the metadata is damaged (its checksum does not match)");
            }
        }
        return version;
    }

    XOPTIM_IO_INLINE void upgrade_checkpoint(const std::string& from, const std::string& to)
    {
        const io::safetensors_file file = io::safetensors_file::read(from);
        detail::checkpoint_metadata meta = file.metadata();
        detail::check_metadata(from, meta);
        io::safetensors_writer writer;
        for (const auto& t : file.tensors())
        {
            const auto sum = meta.find(detail::checksum_key(t.name));
            if (sum == meta.end() || sum->second != detail::hex(io::xxh64(file.data(t), t.bytes())))
            {
                detail::checkpoint_error(from, "tensor " + io::quote(t.name)
                                                   + " is damaged (its checksum does not match), not upgraded");
            }
            if (t.name.empty())
            {
                // The reader takes it; no writer writes it, and no checkpoint has one.
                detail::checkpoint_error(from, "a tensor has an empty name, not upgraded");
            }
            writer.add(t.name, t.dtype, t.shape, file.data(t), t.bytes());
        }
        meta["format_version"] = std::to_string(checkpoint_format_version);
        detail::sign_metadata(meta);
        for (auto& [key, value] : meta)
        {
            writer.metadata(key, std::move(value));
        }
        writer.write(to);
    }
#endif
}

#endif
