// Muon (Jordan et al. 2024; the "original" and Moonlight "match_rms_adamw" scalings):
//   m = mu * m + (1 - mu) * g
//   u = nesterov ? (1 - mu) * g + mu * m : m
//   O = NS(u)                          u viewed as (shape[0], rest), see newton_schulz.hpp
//   p = p * (1 - lr * wd) - lr * s * O
//   s = sqrt(max(1, rows / cols))      "original"
//   s = 0.2 * sqrt(max(rows, cols))    "match_rms_adamw" (reuses AdamW's lr and wd)
// The two element-wise lines are fused passes of the engine; s is folded into the last
// BLAS product of NS. Matrices only: 0-D and 1-D parameters are refused by name.
// Needs a CBLAS at link time (not included by xoptim.hpp for that reason).
#ifndef XOPTIM_OPTIM_MUON_HPP
#define XOPTIM_OPTIM_MUON_HPP

#include <cmath>
#include <string>

#include "../linalg/newton_schulz.hpp"
#include "optimizer.hpp"
#include "validate.hpp"

namespace xoptim
{
    enum class muon_lr_adjust
    {
        original,
        match_rms_adamw
    };

    inline const char* to_string(muon_lr_adjust a) noexcept
    {
        return a == muon_lr_adjust::original ? "original" : "match_rms_adamw";
    }

    struct muon_options
    {
        double lr = 0.02;
        double momentum = 0.95;
        bool nesterov = true;
        double weight_decay = 0;
        std::size_t ns_steps = 5;
        std::array<double, 3> ns_coefficients = {3.4445, -4.7750, 2.0315};
        double eps = 1e-7;
        muon_lr_adjust lr_adjust = muon_lr_adjust::original;

        template <class O, class F>
        static void fields(O& o, F&& f)
        {
            f("lr", o.lr);
            f("momentum", o.momentum);
            f("nesterov", o.nesterov);
            f("weight_decay", o.weight_decay);
            f("ns_steps", o.ns_steps);
            f("ns_coefficients", o.ns_coefficients);
            f("eps", o.eps);
            f("lr_adjust", o.lr_adjust);
        }
    };

    class muon : public optimizer<muon>
    {
    public:

        using options_type = muon_options;
        static constexpr const char* name = "muon";
        // The second tensor holds u, then NS(u), between the passes of one step: scratch,
        // left out of checkpoints.
        static constexpr std::array<const char*, 2> state_names = {"momentum_buffer", "update"};
        static constexpr std::size_t scratch_states = 1;

        // The options are checked before the Newton-Schulz members see them, so a bad
        // eps is reported as Muon's.
        explicit muon(const muon_options& o = {})
            : m_o(checked(o)), m_ns_float(ns_options(o)), m_ns_double(ns_options(o))
        {
        }

        static void check(const muon_options& o)
        {
            detail::require_non_negative(o.lr, name, "lr");
            detail::require_unit_interval(o.momentum, name, "momentum");
            detail::require_non_negative(o.weight_decay, name, "weight_decay");
            detail::require(o.ns_steps >= 1, name, "ns_steps", ">= 1", double(o.ns_steps));
            detail::require_positive(o.eps, name, "eps");
            // Any finite triple is a valid iteration (Polar Express tables differ); a NaN or
            // Inf would turn every parameter into NaN on the first step.
            static constexpr const char* coefficient[] = {"ns_coefficients[0]", "ns_coefficients[1]",
                                                          "ns_coefficients[2]"};
            for (std::size_t k = 0; k < o.ns_coefficients.size(); ++k)
            {
                detail::require_finite(o.ns_coefficients[k], name, coefficient[k]);
            }
        }

        const muon_options& options() const noexcept
        {
            return m_o;
        }

        std::size_t num_states() const noexcept
        {
            return 2;
        }

        std::string unsupported_shape(const std::vector<std::size_t>& shape) const
        {
            if (shape.size() >= 2)
            {
                return {};
            }
            return "Muon orthogonalizes matrices; this parameter is " + std::to_string(shape.size())
                   + "-D " + format_shape(shape) + " (give it to AdamW)";
        }

        // Rows and columns of the 2-D view (shape[0], rest).
        static std::pair<std::size_t, std::size_t> matrix_view(const std::vector<std::size_t>& shape) noexcept
        {
            std::size_t rest = 1;
            for (std::size_t d = 1; d < shape.size(); ++d)
            {
                rest *= shape[d];
            }
            return {shape[0], rest};
        }

        double scale(std::size_t rows, std::size_t cols) const noexcept
        {
            return m_o.lr_adjust == muon_lr_adjust::original
                       ? std::sqrt(std::max(1.0, double(rows) / double(cols)))
                       : 0.2 * std::sqrt(double(std::max(rows, cols)));
        }

        // The state's bytes, and the CBLAS the Newton-Schulz products run on.
        state_report report() const
        {
            state_report r = optimizer<muon>::report();
            r.blas = blas::library().text();
            return r;
        }

        template <class Step>
        void update(const Step& step)
        {
            using namespace sym;
            const auto& m = sym::state<0>;
            const auto& u = sym::state<1>;
            const double mu = m_o.momentum;
            const double lr = m_o.lr;
            if (m_o.nesterov)
            {
                step.run(m = mu * m + (1 - mu) * g, u = (1 - mu) * g + mu * m);
            }
            else
            {
                step.run(m = mu * m + (1 - mu) * g, u = m);
            }
            step.for_each_parameter([&](const state_store::entry& e, const auto& slots) {
                const auto [rows, cols] = matrix_view(e.shape);
                auto* update = slots.states[1];
                auto& ns = ns_for(update);
                ns.set_options(ns_options(m_o));  // a schedule may have changed eps
                ns(update, update, rows, cols, scale(rows, cols));
            });
            step.run(p = p * (1 - arch::product(lr, m_o.weight_decay)) - lr * u);
        }

    private:

        friend class optimizer<muon>;

        static const muon_options& checked(const muon_options& o)
        {
            check(o);
            return o;
        }

        static newton_schulz_options ns_options(const muon_options& o) noexcept
        {
            newton_schulz_options n;
            n.steps = o.ns_steps;
            n.coefficients = o.ns_coefficients;
            n.eps = o.eps;
            return n;
        }

        newton_schulz<float>& ns_for(float*) noexcept
        {
            return m_ns_float;
        }

        newton_schulz<double>& ns_for(double*) noexcept
        {
            return m_ns_double;
        }

        muon_options m_o;
        newton_schulz<float> m_ns_float;
        newton_schulz<double> m_ns_double;
    };
}

#endif
