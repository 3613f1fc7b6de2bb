// Agreement between ranks: an error on one rank becomes the same error on every rank
// (never a rank throwing while the others wait in a collective), and lists that every
// rank must hold alike (parameters, options, checksums) are compared, naming the first
// difference and the ranks that differ.
//
//     const dist::status s = dist::capture([&] { check_my_inputs(); });
//     dist::agree(comm, s);   // every rank: returns, or throws the same exception
//
// All functions here are collective: every rank calls them, in the same order.
#ifndef XOPTIM_DIST_AGREEMENT_HPP
#define XOPTIM_DIST_AGREEMENT_HPP

#include <algorithm>
#include <cstdint>
#include <exception>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "../io/xxh64.hpp"
#include "../step/stepper.hpp"
#include "comm.hpp"

namespace xoptim::dist
{
    // How a failure is rethrown on every rank: the exception type it had.
    enum class error_kind : std::uint64_t
    {
        none,
        invalid_argument,  // std::invalid_argument: bad input
        non_finite,        // xoptim::non_finite_error
        logic,             // std::logic_error
        length,            // std::length_error
        runtime            // std::runtime_error and anything else
    };

    struct status
    {
        error_kind kind = error_kind::none;
        std::string message;

        bool ok() const noexcept
        {
            return kind == error_kind::none;
        }
    };

    // Runs f; an exception becomes a status (what it was and its message).
    template <class F>
    status capture(F&& f) noexcept;

    // The status of the exception being handled (call inside a catch block).
    status current_status() noexcept;

    [[noreturn]] void rethrow(error_kind kind, const std::string& message);

    // Every rank's `value`, in rank order.
    template <class Comm>
    std::vector<std::uint64_t> allgather_value(const Comm& comm, std::uint64_t value);

    // Every rank's list of n values (n may differ), concatenated in rank order; `counts`
    // gets each rank's n.
    template <class T, class Comm>
    std::vector<T> allgather_lists(const Comm& comm, const T* mine, std::size_t n, std::vector<std::size_t>& counts);

    // Every rank's string, in rank order.
    template <class Comm>
    std::vector<std::string> allgather_strings(const Comm& comm, const std::string& s);

    // Returns when every rank's status is ok; otherwise every rank throws the failure of
    // the lowest failing rank, "xoptim::dist: rank R of N: MESSAGE" (plus how many other
    // ranks failed), as the exception type it had there.
    template <class Comm>
    void agree(const Comm& comm, const status& mine);

    // Compares `items` (one line per thing every rank must hold alike, e.g. one per
    // parameter) across ranks; on any difference every rank throws (std::invalid_argument
    // unless `kind` says otherwise) "xoptim::dist: the ranks hold different WHAT: WHAT_ONE K is
    // ... on rank 0, ... on ranks 1, 3" for the first differing item K (0-based).
    template <class Comm>
    void agree_on(const Comm& comm, const std::vector<std::string>& items, const std::string& what,
                  const std::string& what_one, error_kind kind = error_kind::invalid_argument);

    /******************
     * Implementation *
     ******************/

    template <class F>
    status capture(F&& f) noexcept
    {
        try
        {
            f();
            return {};
        }
        catch (...)
        {
            return current_status();
        }
    }

    inline status current_status() noexcept
    {
        try
        {
            throw;
        }
        catch (const non_finite_error& e)
        {
            return {error_kind::non_finite, e.what()};
        }
        catch (const std::invalid_argument& e)
        {
            return {error_kind::invalid_argument, e.what()};
        }
        catch (const std::length_error& e)
        {
            return {error_kind::length, e.what()};
        }
        catch (const std::logic_error& e)
        {
            return {error_kind::logic, e.what()};
        }
        catch (const std::exception& e)
        {
            return {error_kind::runtime, e.what()};
        }
        catch (...)
        {
            return {error_kind::runtime, "unknown exception"};
        }
    }

    [[noreturn]] inline void rethrow(error_kind kind, const std::string& message)
    {
        switch (kind)
        {
            case error_kind::invalid_argument: throw std::invalid_argument(message);
            case error_kind::non_finite: throw non_finite_error(message);
            case error_kind::logic: throw std::logic_error(message);
            case error_kind::length: throw std::length_error(message);
            default: throw std::runtime_error(message);
        }
    }

    template <class Comm>
    std::vector<std::uint64_t> allgather_value(const Comm& comm, std::uint64_t value)
    {
        const auto n = static_cast<std::size_t>(comm.size());
        std::vector<std::uint64_t> all(n, 0);
        all[static_cast<std::size_t>(comm.rank())] = value;
        const std::vector<std::size_t> counts(n, 1);
        comm.allgather(all.data(), counts.data());
        return all;
    }

    template <class T, class Comm>
    std::vector<T> allgather_lists(const Comm& comm, const T* mine, std::size_t n, std::vector<std::size_t>& counts)
    {
        const std::vector<std::uint64_t> sizes = allgather_value(comm, n);
        counts.assign(sizes.begin(), sizes.end());
        std::size_t total = 0;
        std::size_t at = 0;
        for (std::size_t r = 0; r < counts.size(); ++r)
        {
            at = r == std::size_t(comm.rank()) ? total : at;
            total += counts[r];
        }
        std::vector<T> all(total);
        std::copy(mine, mine + n, all.begin() + std::ptrdiff_t(at));
        if (total > 0)
        {
            comm.allgather(all.data(), counts.data());
        }
        return all;
    }

    template <class Comm>
    std::vector<std::string> allgather_strings(const Comm& comm, const std::string& s)
    {
        std::vector<std::size_t> counts;
        const std::vector<char> all = allgather_lists(comm, s.data(), s.size(), counts);
        std::vector<std::string> out;
        std::size_t at = 0;
        for (std::size_t c : counts)
        {
            out.emplace_back(all.data() + at, c);
            at += c;
        }
        return out;
    }

    template <class Comm>
    void agree(const Comm& comm, const status& mine)
    {
        const std::vector<std::uint64_t> kinds = allgather_value(comm, static_cast<std::uint64_t>(mine.kind));
        std::size_t first = kinds.size();
        std::size_t failed = 0;
        for (std::size_t r = 0; r < kinds.size(); ++r)
        {
            if (kinds[r] != std::uint64_t(error_kind::none))
            {
                first = std::min(first, r);
                ++failed;
            }
        }
        if (failed == 0)
        {
            return;
        }
        // The lowest failing rank's message, sent to all.
        std::uint64_t length = comm.rank() == int(first) ? mine.message.size() : 0;
        comm.broadcast(&length, 1, int(first));
        std::string message(length, '\0');
        if (comm.rank() == int(first))
        {
            message = mine.message;
        }
        if (length > 0)
        {
            comm.broadcast(message.data(), length, int(first));
        }
        std::string text = "xoptim::dist: rank " + std::to_string(first) + " of " + std::to_string(kinds.size()) + ": "
                           + message;
        if (failed > 1)
        {
            text += " (and " + std::to_string(failed - 1) + " other rank" + (failed > 2 ? "s" : "") + " failed)";
        }
        rethrow(static_cast<error_kind>(kinds[first]), text);
    }

    namespace detail
    {
        inline std::uint64_t hash_of(const std::string& s) noexcept
        {
            return io::xxh64(s.data(), s.size());
        }

        // "rank 2", "ranks 1, 3"
        inline std::string rank_list(const std::vector<std::size_t>& ranks)
        {
            std::string out = ranks.size() == 1 ? "rank " : "ranks ";
            for (std::size_t k = 0; k < ranks.size(); ++k)
            {
                out += (k > 0 ? ", " : "") + std::to_string(ranks[k]);
            }
            return out;
        }
    }

    template <class Comm>
    void agree_on(const Comm& comm, const std::vector<std::string>& items, const std::string& what,
                  const std::string& what_one, error_kind kind)
    {
        // One hash of everything per rank first: the common case costs one small allgather.
        std::vector<std::uint64_t> hashes;
        for (const std::string& s : items)
        {
            hashes.push_back(detail::hash_of(s));
        }
        hashes.push_back(items.size());
        const std::uint64_t all_hash = io::xxh64(hashes.data(), hashes.size() * sizeof(std::uint64_t));
        hashes.pop_back();
        const std::vector<std::uint64_t> alls = allgather_value(comm, all_hash);
        if (std::all_of(alls.begin(), alls.end(), [&](std::uint64_t h) { return h == alls[0]; }))
        {
            return;
        }
        // Every rank's hashes, to find the first item that differs.
        std::vector<std::size_t> counts;
        const std::vector<std::uint64_t> every = allgather_lists(comm, hashes.data(), hashes.size(), counts);
        std::size_t longest = *std::max_element(counts.begin(), counts.end());
        std::size_t first = longest;
        for (std::size_t k = 0; k < longest && first == longest; ++k)
        {
            std::size_t at = 0;
            for (std::size_t r = 0; r < counts.size(); ++r)
            {
                const bool differs = k >= counts[r] || k >= counts[0] || every[at + k] != every[k];
                first = differs ? k : first;
                at += counts[r];
            }
        }
        // Each rank's item `first`, grouped by text.
        const std::string own = first < items.size() ? items[first] : "(none: " + std::to_string(items.size()) + " "
                                                                         + what + ")";
        const std::vector<std::string> texts = allgather_strings(comm, own);
        std::vector<std::pair<std::string, std::vector<std::size_t>>> groups;
        for (std::size_t r = 0; r < texts.size(); ++r)
        {
            auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == texts[r]; });
            if (it == groups.end())
            {
                groups.push_back({texts[r], {r}});
            }
            else
            {
                it->second.push_back(r);
            }
        }
        std::string message = "xoptim::dist: the ranks hold different " + what + ": " + what_one + " "
                              + std::to_string(first) + " is ";
        for (std::size_t g = 0; g < groups.size(); ++g)
        {
            message += (g > 0 ? ", " : "") + groups[g].first + " on " + detail::rank_list(groups[g].second);
        }
        rethrow(kind, message);
    }
}

#endif
