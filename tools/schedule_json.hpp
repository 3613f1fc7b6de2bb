// Builds an xoptim::schedule from JSON, e.g.
//   {"kind": "warmup_cosine", "base": 1e-4, "warmup_steps": 2000, "total_steps": 10000, "min_ratio": 0.1}
// Keys are the C++ factories' argument names, with the factories' defaults; a plain number
// is a constant; {"kind": "join", "schedules": [...], "boundaries": [...]} and
// {"kind": "product", "factors": [...]} nest. Unknown or missing keys and values of the
// wrong type throw std::invalid_argument naming `what` (the hyperparameter, e.g. "lr")
// and the key; ranges are checked by the factories, whose messages get `what` in front.
// See docs/schedules.md.
#ifndef XOPTIM_TOOLS_SCHEDULE_JSON_HPP
#define XOPTIM_TOOLS_SCHEDULE_JSON_HPP

#include <cstddef>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <xoptim/schedule/schedule.hpp>

namespace xoptim::tools
{
    inline xoptim::schedule schedule_from_json(const nlohmann::json& j, const std::string& what);

    namespace detail
    {
        class schedule_reader
        {
        public:

            schedule_reader(const nlohmann::json& j, const std::string& what, const std::string& kind)
                : m_j(j), m_what(what), m_kind(kind)
            {
                m_read.insert("kind");
            }

            double number(const char* key)
            {
                const auto& v = at(key);
                require(v.is_number(), key, "a number");
                return v.get<double>();
            }

            double number(const char* key, double fallback)
            {
                return has(key) ? number(key) : fallback;
            }

            // Signed, so that a negative count reaches the factory and is reported by name.
            long long count(const char* key)
            {
                const auto& v = at(key);
                const auto most = static_cast<unsigned long long>(std::numeric_limits<long long>::max());
                require(v.is_number_integer() && (!v.is_number_unsigned() || v.get<unsigned long long>() <= most), key,
                        "an integer");
                return v.get<long long>();
            }

            long long count(const char* key, long long fallback)
            {
                return has(key) ? count(key) : fallback;
            }

            std::vector<std::size_t> boundaries(const char* key)
            {
                const auto& v = at(key);
                bool ok = v.is_array();
                for (std::size_t i = 0; ok && i < v.size(); ++i)
                {
                    ok = v[i].is_number_unsigned();
                }
                require(ok, key, "an array of non-negative integers");
                return v.get<std::vector<std::size_t>>();
            }

            std::vector<xoptim::schedule> schedules(const char* key)
            {
                const auto& v = at(key);
                require(v.is_array(), key, "an array of schedules");
                std::vector<xoptim::schedule> out;
                for (std::size_t i = 0; i < v.size(); ++i)
                {
                    out.push_back(schedule_from_json(v[i], m_what + "." + key + "[" + std::to_string(i) + "]"));
                }
                return out;
            }

            // Calls factory(arguments...) once every key is read (the arguments are), so that
            // a typo is reported as such rather than as a range error or a silent default.
            // The factory's messages get `what` in front.
            template <class Factory, class... Arguments>
            xoptim::schedule make(Factory factory, const Arguments&... arguments) const
            {
                finish();
                try
                {
                    return factory(arguments...);
                }
                catch (const std::invalid_argument& e)
                {
                    fail(e.what());
                }
            }

            [[noreturn]] void fail(const std::string& message) const
            {
                throw std::invalid_argument("schedule \"" + m_what + "\": " + message);
            }

        private:

            void finish() const
            {
                for (const auto& item : m_j.items())
                {
                    if (m_read.count(item.key()) == 0)
                    {
                        fail("unknown key \"" + item.key() + "\" for " + m_kind);
                    }
                }
            }

            bool has(const char* key) const
            {
                return m_j.contains(key);
            }

            const nlohmann::json& at(const char* key)
            {
                m_read.insert(key);
                if (!has(key))
                {
                    fail(m_kind + " needs \"" + key + "\"");
                }
                return m_j[key];
            }

            void require(bool ok, const char* key, const char* rule) const
            {
                if (!ok)
                {
                    fail("\"" + std::string(key) + "\" must be " + rule);
                }
            }

            const nlohmann::json& m_j;
            std::string m_what;
            std::string m_kind;
            std::set<std::string> m_read;
        };

        inline xoptim::schedule product(const std::vector<xoptim::schedule>& factors)
        {
            if (factors.empty())
            {
                throw std::invalid_argument("xoptim::product: factors must not be empty");
            }
            xoptim::schedule s = factors[0];
            for (std::size_t i = 1; i < factors.size(); ++i)
            {
                s = s * factors[i];
            }
            return s;
        }

        inline xoptim::schedule build_schedule(schedule_reader& r, const std::string& kind)
        {
            if (kind == "constant")
            {
                return r.make(xoptim::constant, r.number("value"));
            }
            if (kind == "linear")
            {
                return r.make(xoptim::linear, r.number("from"), r.number("to"), r.count("steps"));
            }
            if (kind == "cosine_decay")
            {
                return r.make(xoptim::cosine_decay, r.number("base"), r.count("steps"), r.number("min_ratio", 0));
            }
            if (kind == "warmup_cosine")
            {
                return r.make(xoptim::warmup_cosine, r.number("base"), r.count("total_steps"),
                              r.count("warmup_steps", 2000), r.number("min_ratio", 0.1));
            }
            if (kind == "step_decay")
            {
                return r.make(xoptim::step_decay, r.number("base"), r.count("step_size"), r.number("gamma"));
            }
            if (kind == "exponential_decay")
            {
                return r.make(xoptim::exponential_decay, r.number("base"), r.number("gamma"));
            }
            if (kind == "join")
            {
                return r.make(xoptim::join, r.schedules("schedules"), r.boundaries("boundaries"));
            }
            if (kind == "product")
            {
                return r.make(product, r.schedules("factors"));
            }
            r.fail("unknown kind \"" + kind
                   + "\" (expected constant, linear, cosine_decay, warmup_cosine, step_decay, exponential_decay, "
                     "join or product)");
        }
    }

    // `what` names the schedule in messages: "lr", or "lr.schedules[1]" inside a join.
    inline xoptim::schedule schedule_from_json(const nlohmann::json& j, const std::string& what)
    {
        if (j.is_number())
        {
            try
            {
                return xoptim::constant(j.get<double>());
            }
            catch (const std::invalid_argument& e)
            {
                throw std::invalid_argument("schedule \"" + what + "\": " + e.what());
            }
        }
        if (!j.is_object())
        {
            throw std::invalid_argument("schedule \"" + what + "\" must be a number or an object with a \"kind\"");
        }
        const auto kind = j.find("kind");
        if (kind == j.end() || !kind->is_string())
        {
            throw std::invalid_argument("schedule \"" + what + "\": \"kind\" must be given, as a string");
        }
        detail::schedule_reader r(j, what, kind->get<std::string>());
        return detail::build_schedule(r, kind->get<std::string>());
    }
}

#endif
