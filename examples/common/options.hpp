// Command-line options of the examples: "--name value" pairs and "--flag"s, and the checked
// conversions of their values (counts and numbers) that every example shares.
#ifndef XOPTIM_EXAMPLES_OPTIONS_HPP
#define XOPTIM_EXAMPLES_OPTIONS_HPP

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

namespace examples
{
    // Calls on(name, value) for every argument; value() takes the argument after it (an
    // error naming the option if there is none). `on` returns false for an unknown name.
    inline void for_each_option(int argc, char** argv,
                                const std::function<bool(const std::string&, const std::function<std::string()>&)>& on,
                                const std::string& usage)
    {
        for (int i = 1; i < argc; ++i)
        {
            const std::string name = argv[i];
            const std::function<std::string()> value = [&]() -> std::string {
                if (i + 1 >= argc)
                {
                    throw std::invalid_argument(name + " needs a value");
                }
                return argv[++i];
            };
            if (!on(name, value))
            {
                throw std::invalid_argument("unknown argument " + name + " (expected " + usage + ")");
            }
        }
    }

    // The value of `option` as a count: decimal digits and nothing else (no sign, no spaces,
    // so "-1" is an error rather than 2^64 - 1), small enough for a std::size_t, and at
    // least `at_least`. Every error names the option and the value.
    inline std::size_t count(const std::string& option, const std::string& value, std::size_t at_least = 0)
    {
        constexpr std::size_t most = std::numeric_limits<std::size_t>::max();
        if (value.empty() || value.find_first_not_of("0123456789") != std::string::npos)
        {
            throw std::invalid_argument(option + ": '" + value + "' is not a count (a whole number, e.g. 10)");
        }
        std::size_t v = 0;
        for (const char c : value)
        {
            const std::size_t digit = std::size_t(c - '0');
            if (v > (most - digit) / 10)
            {
                throw std::invalid_argument(option + ": '" + value + "' is too large (at most " + std::to_string(most)
                                            + ")");
            }
            v = v * 10 + digit;
        }
        if (v < at_least)
        {
            throw std::invalid_argument(option + " must be at least " + std::to_string(at_least) + " (got " + value
                                        + ")");
        }
        return v;
    }

    // The value of `option` as a finite number in [low, high]: the whole string is one
    // decimal number as strtod reads it (no leading spaces, nothing after it; "nan" and
    // "inf" are errors). Every error names the option and the value.
    inline double number(const std::string& option, const std::string& value,
                         double low = std::numeric_limits<double>::lowest(),
                         double high = std::numeric_limits<double>::max())
    {
        const char* begin = value.c_str();
        char* end = nullptr;
        const double v = value.empty() || std::isspace(static_cast<unsigned char>(value[0])) != 0
                             ? std::nan("")
                             : std::strtod(begin, &end);
        if (end != begin + value.size() || !std::isfinite(v))
        {
            throw std::invalid_argument(option + ": '" + value + "' is not a finite number");
        }
        if (v < low || v > high)
        {
            // The bounds as a reader wrote them: 0 and 1, not 0.000000 and 1.000000.
            const auto text = [](double x) {
                std::ostringstream s;
                s << x;
                return s.str();
            };
            const bool has_low = low > std::numeric_limits<double>::lowest();
            const bool has_high = high < std::numeric_limits<double>::max();
            const std::string range = has_low && has_high ? "between " + text(low) + " and " + text(high)
                                      : has_low           ? "at least " + text(low)
                                                          : "at most " + text(high);
            throw std::invalid_argument(option + " must be " + range + " (got " + value + ")");
        }
        return v;
    }
}

#endif
