// The options of Muon (muon.hpp, whose comment gives their formulas): the SPEC's and
// torch.optim.Muon's names and defaults; here apart, with the optimizer declared, so
// compiled.hpp offers it without the engine and without BLAS.
#ifndef XOPTIM_OPTIM_MUON_OPTIONS_HPP
#define XOPTIM_OPTIM_MUON_OPTIONS_HPP

#include <array>
#include <cstddef>
#include <vector>

#include "../linalg/ns_options.hpp"

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

    // How the momentum is written (muon.hpp): the SPEC's, or torch's lerp.
    enum class muon_momentum_form
    {
        ema,
        lerp
    };

    inline const char* to_string(muon_momentum_form f) noexcept
    {
        return f == muon_momentum_form::ema ? "ema" : "lerp";
    }

    // NorMuon's final scaling (muon.hpp).
    enum class normuon_scale
    {
        preserve_norm,
        rms
    };

    inline const char* to_string(normuon_scale s) noexcept
    {
        return s == normuon_scale::preserve_norm ? "preserve_norm" : "rms";
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
        // Per-step (a, b, c): row k for iteration k, the last repeating; empty: ns_coefficients.
        std::vector<ns_coefficient_row> ns_coefficient_table;
        xoptim::ns_norm ns_norm = xoptim::ns_norm::add_eps;
        double ns_norm_scale = 1;
        xoptim::ns_precision ns_precision = xoptim::ns_precision::working;
        bool normuon = false;
        double beta2 = 0.95;
        double normuon_eps = 1e-10;
        xoptim::normuon_scale normuon_scale = xoptim::normuon_scale::preserve_norm;
        muon_momentum_form momentum_form = muon_momentum_form::ema;

        // Polar Express as its paper's code runs it: the published table and
        // X / (||X|| 1.01 + 1e-7).
        static muon_options polar_express()
        {
            muon_options o;
            o.ns_coefficient_table = polar_express_coefficients();
            o.ns_norm_scale = 1.01;
            return o;
        }

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
            f("ns_coefficient_table", o.ns_coefficient_table);
            f("ns_norm", o.ns_norm);
            f("ns_norm_scale", o.ns_norm_scale);
            f("ns_precision", o.ns_precision);
            f("normuon", o.normuon);
            f("beta2", o.beta2);
            f("normuon_eps", o.normuon_eps);
            f("normuon_scale", o.normuon_scale);
            f("momentum_form", o.momentum_form);
        }
    };

    class muon;
}

#endif
