// Everything a trainer shows from outside, as one string, to tell "changed nothing"
// from "changed something" after a checkpoint load: the parameters' bytes and, per
// optimizer, its step count, options, schedules and state bytes; a stepper's counters
// and accumulators; a router's routing table.
#ifndef XOPTIM_TESTS_SUPPORT_FINGERPRINT_HPP
#define XOPTIM_TESTS_SUPPORT_FINGERPRINT_HPP

#include <cstring>
#include <string>
#include <type_traits>

#include <xoptim/io/checkpoint.hpp>

namespace xoptim_test
{
    // The state tensors of every entry but its last `scratch` (scratch states, which live
    // within one step, are not part of what a trainer keeps), as checkpoints save them.
    inline void append_store(std::string& out, const xoptim::state_store& store, std::size_t scratch)
    {
        for (std::size_t k = 0; k < store.size(); ++k)
        {
            const auto& e = store[k];
            out += "[" + e.name + "]";
            for (std::size_t s = 0; s < e.count - std::min(e.count, scratch); ++s)
            {
                out.append(static_cast<const char*>(e.states[s].data), e.size * e.element_bytes(s));
                if (e.states[s].absmax != nullptr)
                {
                    out.append(reinterpret_cast<const char*>(e.states[s].absmax), e.blocks() * sizeof(float));
                }
            }
        }
        out += "|" + std::to_string(store.size());
    }

    // With `options` false, the options (the live trainer's own, kept by a load) are
    // left out.
    template <class Trainer>
    std::string fingerprint_of(const Trainer& trainer, bool options = true)
    {
        std::string out;
        if constexpr (xoptim::detail::is_stepper<Trainer>::value)
        {
            out += "skipped " + std::to_string(trainer.skipped_steps()) + " pending "
                   + std::to_string(trainer.pending_micro_batches()) + " accumulators ";
            append_store(out, trainer.accumulators(), 0);
            return out + " " + fingerprint_of(trainer.optimizer(), options);
        }
        xoptim::detail::for_each_optimizer(trainer, "optimizer", [&](const std::string& key, const auto& o) {
            using O = std::remove_cv_t<std::remove_reference_t<decltype(o)>>;
            out += key + " step " + std::to_string(o.step_count()) + " "
                   + (options ? xoptim::detail::options_json(o.options()) : "") + " "
                   + xoptim::detail::schedules_json(o.schedules()) + " state ";
            append_store(out, o.state(), xoptim::detail::scratch_states<O>::value);
        });
        if constexpr (xoptim::detail::is_router<Trainer>::value)
        {
            out += " routes " + trainer.routing_table();
        }
        return out;
    }

    // The parameters' bytes, in the order given.
    template <class... V>
    std::string bytes_of(const V&... tensors)
    {
        std::string out;
        (out.append(reinterpret_cast<const char*>(tensors.data()), tensors.size() * sizeof(tensors[0])), ...);
        return out;
    }
}

#endif
