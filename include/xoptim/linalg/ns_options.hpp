// The options of the Newton-Schulz iteration (newton_schulz.hpp): the normalization, the
// precision of the products and the coefficients, Polar Express's table among them; here
// apart, so Muon's options (optim/muon_options.hpp) need no BLAS and no engine.
#ifndef XOPTIM_LINALG_NS_OPTIONS_HPP
#define XOPTIM_LINALG_NS_OPTIONS_HPP

#include <algorithm>
#include <array>
#include <cstddef>
#include <vector>

namespace xoptim
{
    // How the input is normalized before the first iteration (newton_schulz.hpp).
    enum class ns_norm
    {
        add_eps,
        clamp_eps
    };

    inline const char* to_string(ns_norm n) noexcept
    {
        return n == ns_norm::add_eps ? "add_eps" : "clamp_eps";
    }

    // The precision of the products: the working type (float or double), or bf16.
    enum class ns_precision
    {
        working,
        bf16
    };

    inline const char* to_string(ns_precision p) noexcept
    {
        return p == ns_precision::working ? "working" : "bf16";
    }

    // The smallest positive bf16, 2^-133 (its smallest subnormal): an eps below it is 0 in
    // bf16.
    inline constexpr double smallest_bf16 = 0x1p-133;

    using ns_coefficient_row = std::array<double, 3>;

    // Polar Express's published table (Amsel, Persson, Musco, Gower 2025, arXiv 2505.16932;
    // NoahAmsel/PolarExpress polar_express/basic.py at 7f0fb573: optimal_composition(l=1e-3,
    // num_iters=8, safety_factor_eps=1e-2, cushion=0.02)), every row but the last divided
    // by (1.01, 1.01^3, 1.01^5) as that file does. Use it with norm_scale 1.01
    // (X / (||X|| 1.01 + 1e-7)), as the paper's code does.
    inline std::vector<ns_coefficient_row> polar_express_coefficients()
    {
        return {{8.205160414005574, -22.90193498705605, 16.460724910180314},
                {4.066395159942775, -2.8611540867551426, 0.5183995226694741},
                {3.9095949044379155, -2.823351735039516, 0.5250369769390025},
                {3.2855640171986153, -2.415301959635945, 0.48529406552790866},
                {2.277873287083977, -1.619821765265441, 0.39848078704168355},
                {1.8725756512746514, -1.2307042574884297, 0.35851616209511666},
                {1.856437109755889, -1.2132392819185351, 0.35679978941375945},
                {1.875, -1.25, 0.375}};
    }

    struct newton_schulz_options
    {
        std::size_t steps = 5;
        ns_coefficient_row coefficients = {3.4445, -4.7750, 2.0315};
        // Per-iteration coefficients: row k for iteration k, the last row repeating. Empty:
        // `coefficients` every iteration.
        std::vector<ns_coefficient_row> table;
        double eps = 1e-7;
        double norm_scale = 1;
        ns_norm norm = ns_norm::add_eps;
        ns_precision precision = ns_precision::working;

        const ns_coefficient_row& row(std::size_t k) const noexcept
        {
            return table.empty() ? coefficients : table[std::min(k, table.size() - 1)];
        }
    };

}

#endif
