// An optimizer's hyperparameters by name: the numbers its options struct lists with
// `fields(o, f)` ("lr", "betas[1]"), and the schedules bound to them. A name is resolved
// once, when the schedule is set; a step finds its number by position, without text.
#ifndef XOPTIM_OPTIM_HYPERPARAMETERS_HPP
#define XOPTIM_OPTIM_HYPERPARAMETERS_HPP

#include <array>
#include <cstddef>
#include <string>
#include <type_traits>

#include "../schedule/schedule.hpp"

namespace xoptim
{
    // A hyperparameter that follows a schedule: `field` is its name in the options
    // ("lr", "weight_decay", "momentum", or an element such as "betas[1]"), `number` its
    // position among the options' numbers (detail::number_at).
    struct schedule_binding
    {
        std::string field;
        xoptim::schedule value;
        std::size_t number = 0;
    };

    namespace detail
    {
        template <class F>
        struct is_double_array : std::false_type
        {
        };

        template <std::size_t N>
        struct is_double_array<std::array<double, N>> : std::true_type
        {
        };

        // Calls f(key, index, element, x) for every number of `o` in the order `fields`
        // lists them: a double (element false) or each element of a std::array<double, N>.
        template <class Options, class F>
        void for_each_number(Options& o, F&& f)
        {
            Options::fields(o, [&](const char* key, auto& field) {
                using T = std::decay_t<decltype(field)>;
                if constexpr (std::is_same_v<T, double>)
                {
                    f(key, std::size_t{0}, false, field);
                }
                else if constexpr (is_double_array<T>::value)
                {
                    for (std::size_t k = 0; k < field.size(); ++k)
                    {
                        f(key, k, true, field[k]);
                    }
                }
            });
        }

        inline std::string number_name(const char* key, std::size_t index, bool element)
        {
            return element ? std::string(key) + "[" + std::to_string(index) + "]" : std::string(key);
        }

        // The position of the number called `name` in `o`, or `npos`; `names` receives every
        // number's name (for the error message).
        constexpr std::size_t npos = static_cast<std::size_t>(-1);

        template <class Options>
        std::size_t number_position(Options o, const std::string& name, std::string& names)
        {
            std::size_t found = npos;
            std::size_t position = 0;
            for_each_number(o, [&](const char* key, std::size_t index, bool element, double&) {
                const std::string text = number_name(key, index, element);
                names += (names.empty() ? "" : ", ") + text;
                found = found == npos && text == name ? position : found;
                ++position;
            });
            return found;
        }

        // The number at `position` (from number_position) in `o`.
        template <class Options>
        double& number_at(Options& o, std::size_t position)
        {
            double* found = nullptr;
            std::size_t k = 0;
            for_each_number(o, [&](const char*, std::size_t, bool, double& x) {
                found = k++ == position ? &x : found;
            });
            return *found;
        }

        // The name of the double member `field` points to in `o` (empty if none).
        template <class Options>
        std::string number_name_of(Options o, double Options::*field)
        {
            std::string name;
            for_each_number(o, [&](const char* key, std::size_t index, bool element, double& x) {
                name = &x == &(o.*field) ? number_name(key, index, element) : name;
            });
            return name;
        }
    }
}

#endif
