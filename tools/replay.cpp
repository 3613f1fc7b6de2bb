// xoptim-replay CASE_DIR OUT_DIR: replays a recorded optimizer trajectory.
//
// Reads CASE_DIR/case.json, NAME.init.npy and NAME.grad.T.npy (T = 1..steps) for every
// parameter, runs one optimizer (or the Muon + AdamW hybrid) over all parameters
// together and writes OUT_DIR/NAME.final.npy (and routing.txt for the hybrid; NAME.ema.npy, the
// EMA of the weights, when case.json asks for one). The format is described in docs/replay.md.
// A case with "ranks": N runs distributed (mpiexec -n N xoptim-replay ...), each rank R
// reading NAME.grad.T.rR.npy; rank 0 writes.
//
// Exit codes: 0 done, 2 wrong usage or a malformed case, 1 the output could not be
// written. Every failure prints one line on stderr starting with "xoptim-replay: ".

#include <cstddef>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <set>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <xoptim/dist/data_parallel.hpp>
#include <xoptim/io/npy.hpp>
#include <xoptim/step/stepper.hpp>
#include <xoptim/xoptim.hpp>
#ifdef XOPTIM_REPLAY_MPI
#include <optional>

#include <xoptim/dist/mpi.hpp>
#endif

#include "optimizer_json.hpp"
#include "schedule_json.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace
{
    // A problem with the case: exit code 2.
    struct case_error : std::runtime_error
    {
        using std::runtime_error::runtime_error;
    };

    // A problem writing the results: exit code 1.
    struct output_error : std::runtime_error
    {
        using std::runtime_error::runtime_error;
    };

    // An owning row-major tensor. Its data()/size()/shape() members make it a tensor
    // for xoptim (the xtensor container protocol), so the optimizer keeps the shape.
    template <class T>
    struct host_tensor
    {
        std::vector<T> values;
        std::vector<std::size_t> dims;

        T* data() { return values.data(); }
        const T* data() const { return values.data(); }
        std::size_t size() const { return values.size(); }
        const std::vector<std::size_t>& shape() const { return dims; }
    };

    struct replay_case
    {
        fs::path dir;
        std::string optimizer;
        json hyper;
        json routing;   // the hybrid's routing entry; null for single optimizers
        json schedule;  // {"lr": {...}}, per group for the hybrid; null if none
        json ema;       // timm ModelEmaV3's options for an EMA of the weights; null if none
        xoptim::stepper_options around;  // clip_global_norm, accumulate
        std::size_t steps = 0;
        std::string dtype;
        std::vector<std::string> params;
        // Distributed: 0 for one process; else the ranks, each with its own gradients.
        std::size_t ranks = 0;
        xoptim::dist::mode mode = xoptim::dist::mode::data_parallel;
    };

    const json& require_key(const json& j, const char* key)
    {
        const auto it = j.find(key);
        if (it == j.end())
        {
            throw case_error(std::string("case.json: missing key \"") + key + "\"");
        }
        return *it;
    }

    void require_type(bool ok, const char* key, const char* what)
    {
        if (!ok)
        {
            throw case_error(std::string("case.json: \"") + key + "\" must be " + what);
        }
    }

    replay_case read_case(const fs::path& dir)
    {
        const fs::path file = dir / "case.json";
        std::error_code ec;
        if (!fs::exists(file, ec))
        {
            throw case_error("missing file " + file.string());
        }
        std::ifstream in(file);
        if (!in)
        {
            throw case_error("cannot open " + file.string());
        }
        json j;
        try
        {
            j = json::parse(in);
        }
        catch (const json::parse_error& e)
        {
            throw case_error(file.string() + ": not valid JSON: " + e.what());
        }
        if (!j.is_object())
        {
            throw case_error(file.string() + ": not a JSON object");
        }
        static const std::set<std::string> known = {"optimizer", "hyper",  "routing", "schedule", "clip_global_norm",
                                                    "accumulate", "steps",  "dtype",   "params",   "ranks",
                                                    "mode",       "ema"};
        for (const auto& item : j.items())
        {
            if (known.count(item.key()) == 0)
            {
                throw case_error("case.json: unknown key \"" + item.key() + "\"");
            }
        }

        replay_case c;
        c.dir = dir;

        const json& optimizer = require_key(j, "optimizer");
        require_type(optimizer.is_string(), "optimizer", "a string");
        c.optimizer = optimizer.get<std::string>();

        c.hyper = require_key(j, "hyper");
        require_type(c.hyper.is_object(), "hyper", "an object");

        // The hybrid needs its routing; a single optimizer has nothing to route.
        const bool hybrid = c.optimizer == "hybrid";
        if (hybrid != j.contains("routing"))
        {
            throw case_error(hybrid ? "case.json: missing key \"routing\" (required for the hybrid)"
                                    : "case.json: \"routing\" is only for the hybrid optimizer");
        }
        if (hybrid)
        {
            c.routing = j["routing"];
        }
        if (j.contains("schedule"))
        {
            c.schedule = j["schedule"];
            require_type(c.schedule.is_object(), "schedule", "an object");
        }
        if (j.contains("ema"))
        {
            c.ema = j["ema"];
            require_type(c.ema.is_object(), "ema", "an object");
        }
        // The replayed run is PyTorch's: a NaN goes through (no guard), as in torch.
        c.around.on_non_finite = xoptim::non_finite::ignore;
        if (j.contains("clip_global_norm"))
        {
            const json& clip = j["clip_global_norm"];
            require_type(clip.is_number() && clip.get<double>() > 0, "clip_global_norm", "a number > 0");
            c.around.clip_global_norm = clip.get<double>();
        }
        if (j.contains("accumulate"))
        {
            const json& k = j["accumulate"];
            require_type(k.is_number_unsigned() && k.get<std::size_t>() >= 1, "accumulate", "an integer >= 1");
            c.around.accumulate = k.get<std::size_t>();
        }

        if (j.contains("ranks"))
        {
            const json& ranks = j["ranks"];
            require_type(ranks.is_number_unsigned() && ranks.get<std::size_t>() >= 1, "ranks", "an integer >= 1");
            c.ranks = ranks.get<std::size_t>();
        }
        if (j.contains("mode"))
        {
            const json& mode = j["mode"];
            if (c.ranks == 0)
            {
                throw case_error("case.json: \"mode\" is only for a case with \"ranks\"");
            }
            require_type(mode.is_string() && (mode == "data_parallel" || mode == "zero1"), "mode",
                         "\"data_parallel\" or \"zero1\"");
            c.mode = mode == "zero1" ? xoptim::dist::mode::zero1 : xoptim::dist::mode::data_parallel;
        }
        if (c.ranks > 0 && !c.ema.is_null())
        {
            throw case_error("case.json: \"ema\" is not supported in a case with \"ranks\"");
        }

        const json& steps = require_key(j, "steps");
        require_type(steps.is_number_unsigned(), "steps", "an integer >= 0");
        c.steps = steps.get<std::size_t>();
        // Every step reads `accumulate` gradient files: their count must be a number.
        require_type(c.steps <= std::numeric_limits<std::size_t>::max() / c.around.accumulate, "steps",
                     "an integer whose product with \"accumulate\" fits in 64 bits");

        const json& dtype = require_key(j, "dtype");
        require_type(dtype.is_string(), "dtype", "a string");
        c.dtype = dtype.get<std::string>();
        if (c.dtype != "float32" && c.dtype != "float64")
        {
            throw case_error("case.json: unknown dtype \"" + c.dtype + "\" (expected float32 or float64)");
        }

        const json& params = require_key(j, "params");
        require_type(params.is_array() && !params.empty(), "params", "a non-empty array of names");
        for (const json& p : params)
        {
            require_type(p.is_string(), "params", "a non-empty array of names");
            const std::string name = p.get<std::string>();
            // Names become file names in CASE_DIR and OUT_DIR.
            if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos)
            {
                throw case_error("case.json: param name \"" + name + "\" is not a plain file name");
            }
            for (const std::string& seen : c.params)
            {
                if (seen == name)
                {
                    throw case_error("case.json: duplicate param name \"" + name + "\"");
                }
            }
            c.params.push_back(name);
        }
        return c;
    }

    template <class T>
    host_tensor<T> load(const fs::path& file, const std::string& dtype)
    {
        std::error_code ec;
        if (!fs::exists(file, ec))
        {
            throw case_error("missing file " + file.string());
        }
        xoptim::io::npy_array a = xoptim::io::read_npy(file.string());
        if (a.dtype != xoptim::io::detail::dtype_of<T>())
        {
            throw case_error(file.string() + ": dtype '" + a.dtype + "' does not match the case dtype " + dtype);
        }
        return {a.values<T>(), a.shape};
    }

    template <class Optimizer, class = void>
    struct has_routing_table : std::false_type
    {
    };

    template <class Optimizer>
    struct has_routing_table<Optimizer, std::void_t<decltype(std::declval<const Optimizer&>().routing_table())>>
        : std::true_type
    {
    };

    // Every scheduled hyperparameter of one optimizer: {"lr": schedule, ...}.
    template <class Optimizer>
    void add_schedules(Optimizer& opt, const json& schedules)
    {
        for (const auto& item : schedules.items())
        {
            opt.schedule(item.key(), xoptim::tools::schedule_from_json(item.value(), item.key()));
        }
    }

    void add_schedules(xoptim::hybrid& opt, const json& schedules)
    {
        for (const auto& item : schedules.items())
        {
            if (item.key() != "muon" && item.key() != "adamw")
            {
                throw case_error("case.json: \"schedule\" of the hybrid takes \"muon\" and \"adamw\" objects, not \""
                                 + item.key() + "\"");
            }
            require_type(item.value().is_object(), "schedule", "an object per optimizer for the hybrid");
            if (item.key() == "muon")
            {
                add_schedules(opt.optimizer<0>(), item.value());
            }
            else
            {
                add_schedules(opt.optimizer<1>(), item.value());
            }
        }
    }

    // Gradients of optimizer step (or micro-batch) t: NAME.grad.T.npy, or NAME.grad.T.rR.npy
    // for rank R of a distributed case.
    template <class T>
    void load_gradients(const replay_case& c, const std::vector<host_tensor<T>>& params, std::size_t t, int rank,
                        std::vector<host_tensor<T>>& grads)
    {
        for (std::size_t k = 0; k < params.size(); ++k)
        {
            const std::string suffix = c.ranks > 0 ? ".r" + std::to_string(rank) : "";
            const std::string file = c.params[k] + ".grad." + std::to_string(t) + suffix + ".npy";
            grads[k] = load<T>(c.dir / file, c.dtype);
            if (grads[k].dims != params[k].dims)
            {
                throw case_error("param \"" + c.params[k] + "\" step " + std::to_string(t) + ": gradient shape "
                                 + xoptim::format_shape(grads[k].dims) + " differs from init shape "
                                 + xoptim::format_shape(params[k].dims));
            }
        }
    }

    // Whether a case with "ranks" steps over Comm: with MPI, such a case runs over
    // MPI_COMM_WORLD, and the one-process communicator never steps one (its
    // data_parallel is not compiled); without, it steps "ranks": 1.
    template <class Comm>
    constexpr bool steps_distributed =
#ifdef XOPTIM_REPLAY_MPI
        !std::is_same_v<Comm, xoptim::dist::local_comm>;
#else
        true;
#endif

    template <class T, class Optimizer, class Comm>
    void replay(Optimizer& optimizer, const replay_case& c, const fs::path& out, const Comm& comm)
    {
        namespace dist = xoptim::dist;
        if (!c.schedule.is_null())
        {
            add_schedules(optimizer, c.schedule);
        }
        // Accumulation and clipping around the optimizer; with neither, the very same step.
        xoptim::stepper<Optimizer&> opt(optimizer, c.around);
        std::vector<host_tensor<T>> params;
        // Named, so that the optimizer's state is known by the parameter names.
        std::vector<xoptim::named_ref<host_tensor<T>>> named;
        std::vector<host_tensor<T>> grads(c.params.size());
        // Distributed: every rank reads its own files; a rank's problem is every rank's.
        const auto on_every_rank = [&](auto&& f) {
            c.ranks > 0 ? dist::agree(comm, dist::capture(f)) : f();
        };
        on_every_rank([&] {
            for (const std::string& name : c.params)
            {
                params.push_back(load<T>(c.dir / (name + ".init.npy"), c.dtype));
            }
        });
        for (std::size_t k = 0; k < params.size(); ++k)
        {
            named.push_back(xoptim::named(c.params[k], params[k]));
        }

        // The EMA of the weights, updated after every step taken (its options checked first).
        xoptim::ema average(xoptim::tools::detail::read_options<xoptim::ema_options>(
            "ema", c.ema.is_null() ? json::object() : c.ema));
        std::size_t taken = 0;

        std::string table;
        if (c.ranks == 0)
        {
            for (std::size_t t = 1; t <= c.steps * c.around.accumulate; ++t)
            {
                load_gradients(c, params, t, 0, grads);
                if (opt(named, grads) && !c.ema.is_null())
                {
                    average.update(named, ++taken);
                }
            }
            if constexpr (has_routing_table<Optimizer>::value)
            {
                table = optimizer.routing_table();
            }
        }
        else if constexpr (steps_distributed<Comm>)
        {
            dist::options o;
            o.mode = c.mode;
            dist::data_parallel dp(comm, std::move(opt), o);
            for (std::size_t t = 1; t <= c.steps * c.around.accumulate; ++t)
            {
                on_every_rank([&] { load_gradients(c, params, t, comm.rank(), grads); });
                dp.step(named, grads);
            }
            if constexpr (has_routing_table<Optimizer>::value)
            {
                table = dp.routing_table();
            }
        }
        else
        {
            throw std::logic_error("xoptim-replay: a case with \"ranks\" runs over MPI");
        }
        if (comm.rank() != 0)
        {
            return;  // rank 0 writes
        }
        // The shadows (the initial parameters if no step was taken).
        std::vector<host_tensor<T>> shadows;
        if (!c.ema.is_null())
        {
            shadows = params;
        }
        if (taken > 0)
        {
            std::vector<xoptim::named_ref<host_tensor<T>>> named_shadows;
            for (std::size_t k = 0; k < shadows.size(); ++k)
            {
                named_shadows.push_back(xoptim::named(c.params[k], shadows[k]));
            }
            average.copy_to(named_shadows);
        }
        try
        {
            fs::create_directories(out);
            for (std::size_t k = 0; k < params.size(); ++k)
            {
                const fs::path file = out / (c.params[k] + ".final.npy");
                xoptim::io::write_npy(file.string(), params[k].data(), params[k].dims);
                if (!c.ema.is_null())
                {
                    const fs::path ema_file = out / (c.params[k] + ".ema.npy");
                    xoptim::io::write_npy(ema_file.string(), shadows[k].data(), shadows[k].dims);
                }
            }
            if constexpr (has_routing_table<Optimizer>::value)
            {
                std::ofstream routing(out / "routing.txt");
                routing << table;
                if (!routing.flush())
                {
                    throw std::runtime_error("cannot write " + (out / "routing.txt").string());
                }
            }
        }
        catch (const std::exception& e)
        {
            throw output_error(e.what());
        }
    }

    // One line on stderr, whatever the message holds.
    int fail(int code, std::string message)
    {
        for (char& ch : message)
        {
            if (ch == '\n' || ch == '\r')
            {
                ch = ' ';
            }
        }
        std::cerr << "xoptim-replay: " << message << '\n';
        return code;
    }
}

int main(int argc, char** argv)
{
    if (argc != 3)
    {
        std::cerr << "usage: xoptim-replay CASE_DIR OUT_DIR\n"
                     "Replays CASE_DIR/case.json and writes OUT_DIR/NAME.final.npy per parameter "
                     "(see docs/replay.md); a case with \"ranks\": N runs as mpiexec -n N xoptim-replay ...\n";
        return 2;
    }
    int rank = 0;  // errors are reported by rank 0
#ifdef XOPTIM_REPLAY_MPI
    // MPI only for a distributed case: every other case runs without it. Started in the
    // try block, ended after the catch blocks (they still need it).
    std::optional<xoptim::dist::mpi_session> session;
#endif
    try
    {
        const replay_case c = read_case(argv[1]);
        const fs::path out = argv[2];
        const auto with_comm = [&](const auto& comm) {
            rank = comm.rank();
            if (c.ranks > 0 && std::size_t(comm.size()) != c.ranks)
            {
                throw case_error("the case needs " + std::to_string(c.ranks) + " ranks, this run has "
                                 + std::to_string(comm.size()) + " (mpiexec -n " + std::to_string(c.ranks)
                                 + " xoptim-replay ...)");
            }
            const auto run = [&](auto& opt) {
                if (c.dtype == "float32")
                {
                    replay<float>(opt, c, out, comm);
                }
                else
                {
                    replay<double>(opt, c, out, comm);
                }
            };
            // Parse the hyperparameters and construct the optimizer; both throw
            // std::invalid_argument naming the key or field.
            if (c.optimizer == "hybrid")
            {
                xoptim::tools::with_hybrid(c.hyper, c.routing, run);
            }
            else
            {
                xoptim::tools::with_optimizer(c.optimizer, c.hyper, run);
            }
        };
#ifdef XOPTIM_REPLAY_MPI
        if (c.ranks > 0)
        {
            session.emplace(argc, argv);
            with_comm(xoptim::dist::mpi_comm(MPI_COMM_WORLD));
            return 0;
        }
#else
        if (c.ranks > 1)
        {
            throw case_error("the case needs " + std::to_string(c.ranks)
                             + " ranks: this xoptim-replay is built without MPI");
        }
#endif
        with_comm(xoptim::dist::local_comm{});
        return 0;
    }
    catch (const output_error& e)
    {
        return rank == 0 ? fail(1, e.what()) : 1;
    }
    catch (const std::exception& e)
    {
        const int code = rank == 0 ? fail(2, e.what()) : 2;
#ifdef XOPTIM_REPLAY_MPI
        // Every rank is here with the same error (xoptim::dist's failures are collective,
        // and so are this tool's checks). The others wait until rank 0 has written its
        // line and leave the exit code to it: a rank ending first with a code makes
        // mpiexec end the job, which could cut rank 0's line off.
        int size = 1;
        if (session)
        {
            MPI_Comm_size(MPI_COMM_WORLD, &size);
        }
        if (size > 1)
        {
            MPI_Barrier(MPI_COMM_WORLD);
            return rank == 0 ? code : 0;
        }
#endif
        return code;
    }
}
