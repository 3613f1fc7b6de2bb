// Hyperparameter checks shared by the optimizers: each names the optimizer, the
// field and the rule, e.g. "xoptim::adamw: lr must be >= 0 (got -0.1)".
#ifndef XOPTIM_OPTIM_VALIDATE_HPP
#define XOPTIM_OPTIM_VALIDATE_HPP

#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>

namespace xoptim::detail
{
    // A number in a message: %g.
    inline std::string format_value(double x)
    {
        char value[32];
        std::snprintf(value, sizeof value, "%g", x);
        return value;
    }

    inline void require(bool ok, const char* optimizer, const char* field, const char* rule, double got)
    {
        if (!ok)
        {
            throw std::invalid_argument(std::string("xoptim::") + optimizer + ": " + field + " must be " + rule
                                        + " (got " + format_value(got) + ")");
        }
    }

    inline void require_finite(double x, const char* optimizer, const char* field)
    {
        require(std::isfinite(x), optimizer, field, "finite", x);
    }

    inline void require_non_negative(double x, const char* optimizer, const char* field)
    {
        require(std::isfinite(x) && x >= 0, optimizer, field, ">= 0 and finite", x);
    }

    inline void require_positive(double x, const char* optimizer, const char* field)
    {
        require(std::isfinite(x) && x > 0, optimizer, field, "> 0 and finite", x);
    }

    // Betas and momenta: a decay rate in [0, 1).
    inline void require_unit_interval(double x, const char* optimizer, const char* field)
    {
        require(x >= 0 && x < 1, optimizer, field, "in [0, 1)", x);
    }
}

#endif
