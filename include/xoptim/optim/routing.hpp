// Routing rules: which optimizer takes which parameter. A rule pairs an optimizer's
// name with a predicate on the parameter's (name, shape); the first rule that matches
// wins, and a fallback rule, if given, takes everything else. Decided once per
// parameter (on the first step), so predicates may be as slow as they like.
//
//     xoptim::routing r;
//     r.add("muon", xoptim::hidden_matrix({"*embed*", "*head*"}));  // ndim >= 2, not embedding/head
//     r.fallback("adamw");
//     r.table(...)  ->  "embedding.weight (100, 64) -> adamw" ...
//
// This is the decision part of routing; stepping several optimizers over one
// parameter set builds on it.
#ifndef XOPTIM_OPTIM_ROUTING_HPP
#define XOPTIM_OPTIM_ROUTING_HPP

#include <functional>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "../params/tensor_traits.hpp"

namespace xoptim
{
    using param_predicate = std::function<bool(std::string_view name, const std::vector<std::size_t>& shape)>;

    // Shell-style pattern: '*' any run of characters, '?' any one character.
    inline bool glob_match(std::string_view pattern, std::string_view text)
    {
        std::size_t p = 0, t = 0, star = std::string_view::npos, resume = 0;
        while (t < text.size())
        {
            // A '*' first: it matches a run even where the name has a '*' of its own.
            if (p < pattern.size() && pattern[p] == '*')
            {
                star = p++;
                resume = t;
            }
            else if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t]))
            {
                ++p;
                ++t;
            }
            else if (star != std::string_view::npos)
            {
                p = star + 1;
                t = ++resume;
            }
            else
            {
                return false;
            }
        }
        while (p < pattern.size() && pattern[p] == '*')
        {
            ++p;
        }
        return p == pattern.size();
    }

    // Parameters whose name matches any of the patterns (labels are exact names).
    inline param_predicate name_matches(std::vector<std::string> patterns)
    {
        return [patterns = std::move(patterns)](std::string_view name, const std::vector<std::size_t>&) {
            for (const auto& p : patterns)
            {
                if (glob_match(p, name))
                {
                    return true;
                }
            }
            return false;
        };
    }

    inline param_predicate min_ndim(std::size_t n)
    {
        return [n](std::string_view, const std::vector<std::size_t>& shape) { return shape.size() >= n; };
    }

    namespace detail
    {
        // An empty std::function would throw bad_function_call, naming nothing, at the
        // first step.
        inline void require_predicate(const param_predicate& f, const std::string& what)
        {
            if (!f)
            {
                throw std::invalid_argument("xoptim::routing: " + what + " is an empty param_predicate");
            }
        }
    }

    // Both predicates hold.
    inline param_predicate all_of(param_predicate a, param_predicate b)
    {
        detail::require_predicate(a, "all_of's first predicate");
        detail::require_predicate(b, "all_of's second predicate");
        return [a = std::move(a), b = std::move(b)](std::string_view name, const std::vector<std::size_t>& shape) {
            return a(name, shape) && b(name, shape);
        };
    }

    // The predicate does not hold.
    inline param_predicate none_of(param_predicate a)
    {
        detail::require_predicate(a, "none_of's predicate");
        return [a = std::move(a)](std::string_view name, const std::vector<std::size_t>& shape) {
            return !a(name, shape);
        };
    }

    // Muon's share of a hybrid: matrices (ndim >= 2) whose name matches none of the
    // excluded patterns (embeddings, the output head; see hybrid.hpp for the defaults).
    inline param_predicate hidden_matrix(std::vector<std::string> excluded)
    {
        return all_of(min_ndim(2), none_of(name_matches(std::move(excluded))));
    }

    class routing
    {
    public:

        // A rule: parameters for which `match` holds go to `optimizer` (unless an earlier
        // rule took them).
        routing& add(std::string optimizer, param_predicate match)
        {
            if (m_has_fallback)
            {
                throw std::logic_error("xoptim::routing: rule for '" + optimizer + "' added after the fallback");
            }
            detail::require_predicate(match, "the rule for '" + optimizer + "'");
            m_rules.push_back({std::move(optimizer), std::move(match)});
            return *this;
        }

        // The last rule: every parameter no earlier rule took.
        routing& fallback(std::string optimizer)
        {
            add(std::move(optimizer), [](std::string_view, const std::vector<std::size_t>&) { return true; });
            m_has_fallback = true;
            return *this;
        }

        std::size_t size() const noexcept
        {
            return m_rules.size();
        }

        const std::string& optimizer(std::size_t index) const
        {
            return m_rules.at(index).optimizer;
        }

        // Index of the first rule matching the parameter; an error naming it if none does.
        std::size_t route(std::string_view name, const std::vector<std::size_t>& shape) const
        {
            for (std::size_t k = 0; k < m_rules.size(); ++k)
            {
                if (m_rules[k].match(name, shape))
                {
                    return k;
                }
            }
            throw std::invalid_argument("xoptim::routing: parameter '" + std::string(name) + "' "
                                        + format_shape(shape) + " matches no rule and there is no fallback");
        }

        // One line per parameter: `name (shape) -> optimizer`.
        std::string table(const std::vector<std::string>& names, const std::vector<std::vector<std::size_t>>& shapes) const
        {
            std::string out;
            for (std::size_t k = 0; k < names.size(); ++k)
            {
                out += names[k] + " " + format_shape(shapes[k]) + " -> " + optimizer(route(names[k], shapes[k]))
                       + "\n";
            }
            return out;
        }

    private:

        struct rule
        {
            std::string optimizer;
            param_predicate match;
        };

        std::vector<rule> m_rules;
        bool m_has_fallback = false;
    };
}

#endif
