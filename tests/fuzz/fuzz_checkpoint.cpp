// libFuzzer target for the whole checkpoint load path: reading the file, its metadata,
// creating and taking back a fresh trainer's state, matching tensors, copying.
//
// Input: one selector byte, then the file. Selector bits 0-1 pick the trainer (AdamW with
// amsgrad and a schedule; the Muon + AdamW hybrid in a stepper accumulating 2; two SGD
// groups with bf16 states; AdamW with 8-bit states), bit 2 re-signs the file first
// (recomputes every tensor's checksum and the metadata's, so mutations reach the checks
// behind them), bit 3 loads into a trainer that already has state (another run's).
//
// Oracle: a load either
//   - throws std::runtime_error or std::invalid_argument, and then the parameters and
//     everything the trainer shows (state, step counts, options, schedules, counters,
//     routes) are byte for byte what they were; or
//   - succeeds, and then every tensor the file holds is what the trainer now holds (a
//     save gives it back byte for byte), the step counts and counters are the file's,
//     anything the file lacked is the zeros of a state never stepped, and the trainer
//     steps on.
// Anything else (another exception, a difference, a sanitizer report) is a crash.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "../support/fingerprint.hpp"
#include "../support/rewrite.hpp"
#include "../support/tiny_training.hpp"
#include "fuzz_support.hpp"

namespace
{
    using xoptim_test::tiny_model;

    [[noreturn]] void wrong(const std::string& what)
    {
        std::fprintf(stderr, "fuzz_checkpoint: %s\n", what.c_str());
        std::abort();
    }

    xoptim::adamw make_8bit()
    {
        xoptim::adamw opt;
        xoptim::storage_options s;
        s.states = xoptim::state_storage::blockwise_8bit;
        s.min_8bit_size = 1;
        opt.set_storage(s);
        return opt;
    }

    constexpr int kinds = 4;

    // Calls f with a fresh trainer of kind k.
    template <class F>
    void with_trainer(int k, F&& f)
    {
        switch (k)
        {
            case 0: { auto t = xoptim_test::make_adamw(); f(t); break; }
            case 1: { auto t = xoptim_test::make_stepper(); f(t); break; }
            case 2: { auto t = xoptim_test::make_groups(); f(t); break; }
            default: { auto t = make_8bit(); f(t); break; }
        }
    }

    // One call (or step) with finite gradients.
    template <class Trainer>
    void call(tiny_model& m, Trainer& trainer)
    {
        xoptim_test::tiny_grads g(2);
        if constexpr (xoptim::detail::is_stepper<Trainer>::value)
        {
            trainer(m.params(), g.tie());
        }
        else
        {
            trainer.step(m.params(), g.tie());
        }
    }

    // Checkpoints of each kind: trained 7 calls, and never stepped.
    template <class Trainer>
    std::string checkpoint_of(Trainer& trainer, int calls, double shift)
    {
        tiny_model m;
        m.fill(shift);
        xoptim_test::train(m, trainer, calls);
        const std::string path = (xoptim_fuzz::scratch() / "seed.safetensors").string();
        xoptim::save_checkpoint(path, m.params(), trainer);
        return xoptim_fuzz::read(path);
    }

    // What a trainer with state is loaded from before the input: another run, 3 calls in.
    std::string others[kinds];

    std::uint64_t count(const std::map<std::string, std::string>& meta, const std::string& key)
    {
        return std::strtoull(meta.at(key).c_str(), nullptr, 10);
    }

    bool is_counter(const std::string& key)
    {
        const auto ends = [&](const std::string& tail) {
            return key.size() >= tail.size() && key.compare(key.size() - tail.size(), tail.size(), tail) == 0;
        };
        return ends(".step") || key == "stepper.skipped_steps" || key == "stepper.pending_micro_batches";
    }

    // The file, its checksums recomputed; as it was where it is no safetensors file our
    // writer can write back.
    std::string resigned(const std::uint8_t* data, std::size_t size)
    {
        try
        {
            return xoptim_test::rewritten(std::vector<unsigned char>(data, data + size), [](xoptim_test::metadata&) {},
                                          {true, true});
        }
        catch (const std::exception&)
        {
            return std::string(reinterpret_cast<const char*>(data), size);
        }
    }

    // A load that succeeded: the trainer holds what the file holds.
    template <class Trainer>
    void check_loaded(const std::string& path, tiny_model& m, Trainer& trainer)
    {
        const std::string again = (xoptim_fuzz::scratch() / "again.safetensors").string();
        xoptim::save_checkpoint(again, m.params(), trainer);
        const auto in = xoptim::io::safetensors_file::read(path);
        const auto out = xoptim::io::safetensors_file::read(again);
        for (const auto& t : in.tensors())
        {
            const auto* u = out.find(t.name);
            if (u == nullptr || u->dtype != t.dtype || u->shape != t.shape || u->bytes() != t.bytes()
                || (t.bytes() != 0 && std::memcmp(in.data(t), out.data(*u), t.bytes()) != 0))
            {
                wrong("loaded, but tensor '" + t.name + "' is not what the file holds");
            }
        }
        for (const auto& u : out.tensors())
        {
            if (in.find(u.name) == nullptr)
            {
                // Zeros: every byte 0, or for 8-bit codes every code the zero of one map
                // (the signed map's is 127; test_checkpoint checks which state has which).
                const unsigned char* p = out.data(u);
                const unsigned char zero = u.dtype == xoptim::io::st_dtype::U8 && u.bytes() > 0 ? p[0] : 0;
                const bool a_zero_code = zero == 0 || zero == xoptim::dynamic_map::signed_zero;
                for (std::size_t i = 0; i < u.bytes(); ++i)
                {
                    if (p[i] != zero || !a_zero_code)
                    {
                        wrong("loaded, and tensor '" + u.name + "', not in the file, is not a fresh state's zeros");
                    }
                }
            }
        }
        for (const auto& [key, value] : out.metadata())
        {
            if (is_counter(key) && count(in.metadata(), key) != count(out.metadata(), key))
            {
                wrong("loaded, but '" + key + "' is " + value + ", the file says " + in.metadata().at(key));
            }
        }
        call(m, trainer);  // a trainer that loaded steps on
    }
}

extern "C" int LLVMFuzzerInitialize(int*, char***)
{
    for (int k = 0; k < kinds; ++k)
    {
        with_trainer(k, [&](auto& t) { others[k] = checkpoint_of(t, 3, 1.0); });
    }
    if (!xoptim_fuzz::seeds_dir().empty())
    {
        for (int k = 0; k < kinds; ++k)
        {
            std::string trained, fresh;
            with_trainer(k, [&](auto& t) { trained = checkpoint_of(t, 7, 0.0); });
            with_trainer(k, [&](auto& t) { fresh = checkpoint_of(t, 0, 0.0); });
            const std::string n = std::to_string(k);
            xoptim_fuzz::write_seed("kind" + n + "_trained", std::string(1, char(k)) + trained);
            xoptim_fuzz::write_seed("kind" + n + "_trained_resigned", std::string(1, char(k | 4)) + trained);
            xoptim_fuzz::write_seed("kind" + n + "_trained_into_state", std::string(1, char(k | 8)) + trained);
            xoptim_fuzz::write_seed("kind" + n + "_fresh_resigned", std::string(1, char(k | 4)) + fresh);
            xoptim_fuzz::write_seed("kind" + n + "_fresh_into_state", std::string(1, char(k | 12)) + fresh);
        }
        std::exit(0);
    }
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    if (size == 0)
    {
        return 0;
    }
    const int selector = data[0];
    const std::string file = selector & 4 ? resigned(data + 1, size - 1)
                                          : std::string(reinterpret_cast<const char*>(data + 1), size - 1);
    const std::string path =
        xoptim_fuzz::write("input.safetensors", reinterpret_cast<const std::uint8_t*>(file.data()), file.size());
    const int k = selector & 3;
    with_trainer(k, [&](auto& trainer) {
        tiny_model m;
        if (selector & 8)
        {
            const std::string other = xoptim_fuzz::write(
                "other.safetensors", reinterpret_cast<const std::uint8_t*>(others[k].data()), others[k].size());
            xoptim::load_checkpoint(other, m.params(), trainer);
        }
        const std::string before = m.bytes() + xoptim_test::fingerprint_of(trainer);
        std::string refused;
        try
        {
            xoptim::load_checkpoint(path, m.params(), trainer);
        }
        catch (const std::runtime_error& e)
        {
            refused = e.what();
        }
        catch (const std::invalid_argument& e)
        {
            refused = e.what();
        }
        if (refused.empty())
        {
            check_loaded(path, m, trainer);
        }
        else if (m.bytes() + xoptim_test::fingerprint_of(trainer) != before)
        {
            wrong("a refused load changed the trainer or the parameters: " + refused);
        }
        else if (refused.rfind(path + ": ", 0) != 0)
        {
            wrong("a refused load does not name the file: " + refused);
        }
    });
    return 0;
}
