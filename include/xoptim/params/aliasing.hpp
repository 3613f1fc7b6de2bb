// The one check that no memory is written twice, or written while it is read, in one
// step. An optimizer runs it over the parameters and gradients it is given; flat_params
// runs it over everything a router, param_groups, the stepper or a checkpoint load
// touches (every optimizer's share at once, the gradients the stepper reads before it
// hands sums on), which no optimizer alone can see, and the optimizers those hand the
// lists on to do not run it again (they record the places as passed).
//
// Where the tensors lived when the check last passed is kept: the full check (a sort)
// runs only when something moved, so a steady-state step compares pointers and
// allocates nothing.
#ifndef XOPTIM_PARAMS_ALIASING_HPP
#define XOPTIM_PARAMS_ALIASING_HPP

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace xoptim::detail
{
    // A tensor's memory: bytes [begin, end) of parameter `index`, written by the step
    // (the parameter) or only read (its gradient).
    struct memory_span
    {
        std::uintptr_t begin;
        std::uintptr_t end;
        std::size_t index;
        bool written;
    };

    template <class T>
    memory_span span_of(const T* p, std::size_t n, std::size_t index, bool written) noexcept
    {
        const auto begin = reinterpret_cast<std::uintptr_t>(p);
        return {begin, begin + n * sizeof(T), index, written};
    }

    class alias_check
    {
    public:

        // A new walk.
        void clear() noexcept
        {
            m_memory.clear();
            m_moved = false;
        }

        // Forgets what passed: the next check is a full one.
        void forget() noexcept
        {
            m_checked.clear();
        }

        // Records parameter `index` (n elements at `param`, its gradient at `grad` or
        // none); true where either does not span what it spanned at the last check that
        // passed (another start, or another size from the same start).
        template <class T>
        bool track(const T* param, const T* grad, std::size_t n, std::size_t index)
        {
            const std::size_t k = m_memory.size();
            m_memory.push_back(span_of(param, n, index, true));
            m_memory.push_back(span_of(grad, grad == nullptr ? 0 : n, index, false));
            const auto same = [&](std::size_t j) {
                return m_checked[j].begin == m_memory[j].begin && m_checked[j].end == m_memory[j].end;
            };
            const bool moved = k + 1 >= m_checked.size() || !same(k) || !same(k + 1);
            m_moved = m_moved || moved;
            return moved;
        }

        // Records this walk as passed: a check over a set holding it ran elsewhere
        // (flat_params', for the lists it hands on), so this one need not.
        void passed()
        {
            if (m_moved || m_memory.size() != m_checked.size())
            {
                m_checked = m_memory;
            }
        }

        // Throws std::invalid_argument "WHO: parameter 'B': parameter 'B' shares memory
        // with parameter 'A'" (or "the gradient of 'A'", or "gradient and parameter share
        // memory") for the first overlap, `who()` giving WHO and `name(index)` naming
        // parameters (called only then). Runs in full only when something moved since
        // the last check that passed.
        template <class Who, class Name>
        void check(const Who& who, const Name& name)
        {
            if (!m_moved && m_memory.size() == m_checked.size())
            {
                return;
            }
            m_sorted = m_memory;
            // By address; at one address written before read, then in walk order, so the
            // message does not depend on the sort.
            std::sort(m_sorted.begin(), m_sorted.end(), [](const memory_span& a, const memory_span& b) {
                return a.begin != b.begin ? a.begin < b.begin
                                          : a.written != b.written ? a.written : a.index < b.index;
            });
            const memory_span* reach = nullptr;    // earlier span reaching furthest
            const memory_span* written = nullptr;  // earlier written span reaching furthest
            for (const memory_span& s : m_sorted)
            {
                if (s.begin == s.end)
                {
                    continue;
                }
                const memory_span* other = written != nullptr && s.begin < written->end         ? written
                                           : s.written && reach != nullptr && s.begin < reach->end ? reach
                                                                                                    : nullptr;
                if (other != nullptr)
                {
                    report(who, s, *other, name);
                }
                reach = reach == nullptr || s.end > reach->end ? &s : reach;
                written = s.written && (written == nullptr || s.end > written->end) ? &s : written;
            }
            m_checked = m_memory;
        }

    private:

        template <class Who, class Name>
        [[noreturn]] static void report(const Who& who, const memory_span& a, const memory_span& b, const Name& name)
        {
            const auto what = [&](const memory_span& s) {
                return std::string(s.written ? "parameter '" : "the gradient of '") + name(s.index) + "'";
            };
            const std::string message = a.index == b.index ? "gradient and parameter share memory"
                                                           : what(a) + " shares memory with " + what(b);
            throw std::invalid_argument(std::string(who()) + ": parameter '" + name(std::max(a.index, b.index)) + "': " + message);
        }

        std::vector<memory_span> m_memory;   // this walk's tensors
        std::vector<memory_span> m_checked;  // where they were at the last check that passed
        std::vector<memory_span> m_sorted;   // scratch
        bool m_moved = false;
    };
}

#endif
