// Command-line options of the examples: "--name value" pairs and "--flag"s.
#ifndef XOPTIM_EXAMPLES_OPTIONS_HPP
#define XOPTIM_EXAMPLES_OPTIONS_HPP

#include <functional>
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
}

#endif
