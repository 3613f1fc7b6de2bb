// Muon (Jordan et al. 2024; the "original" and Moonlight "match_rms_adamw" scalings):
//   m = mu * m + (1 - mu) * g
//   u = nesterov ? (1 - mu) * g + mu * m : m
//   O = NS(u)                          u viewed as (shape[0], rest), see newton_schulz.hpp
//   p = p * (1 - lr * wd) - lr * s * O
//   s = sqrt(max(1, rows / cols))      "original"
//   s = 0.2 * sqrt(max(rows, cols))    "match_rms_adamw" (reuses AdamW's lr and wd)
// The two element-wise lines are fused passes of the engine; s is folded into the last
// BLAS product of NS. Matrices only: 0-D and 1-D parameters are refused by name.
//
// Newer iterations, as options:
// - momentum_form lerp: torch.optim.Muon's and NorMuon's forms of the same momentum,
//   m = lerp(m, g, 1 - mu), u = lerp(g, m, mu) (torch's lerp: start + w (end - start) for
//   w < 0.5, else end - (end - start)(1 - w)); they round differently from the SPEC's;
// - per-step coefficients (ns_coefficient_table; Polar Express, Amsel et al. 2025:
//   muon_options::polar_express()), the normalization (ns_norm, ns_norm_scale) and the
//   precision of the products (ns_precision bf16: torch.optim.Muon's bf16 iteration),
//   see linalg/newton_schulz.hpp;
// - NorMuon (Li et al. 2025, zichongli5/NorMuon normuon.py), after NS, per row i of the
//   (rows, cols) view:
//     v_i = lerp(v_i, mean_j O_ij^2, 1 - beta2)          torch's lerp
//     O_hat = O / (sqrt(v_i) + normuon_eps)
//     "preserve_norm": O = O_hat * (||O|| / (||O_hat|| + normuon_eps)) * s
//     "rms":           O = O_hat * 0.2 sqrt(rows cols) / ||O_hat||   (s unused; 0 if O_hat = 0)
//   then p = p * (1 - lr * wd) - lr * O. v is the state second_momentum_buffer, one value
//   per row (state_extent::first_axis: the reference's (rows, 1) tensor), kept in the
//   working type whatever the state storage.
// Needs a CBLAS at link time (not included by xoptim.hpp for that reason).
#ifndef XOPTIM_OPTIM_MUON_HPP
#define XOPTIM_OPTIM_MUON_HPP

#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "../engine/host_arithmetic.hpp"
#include "../linalg/newton_schulz.hpp"
#include "muon_options.hpp"
#include "optimizer.hpp"
#include "validate.hpp"

namespace xoptim
{
    class muon : public optimizer<muon, muon_options>
    {
    public:

        static constexpr const char* name = "muon";
        // The last tensor holds u, then NS(u), between the passes of one step: scratch,
        // left out of checkpoints. NorMuon's second moment comes before it.
        static constexpr std::array<const char*, 3> state_names = {"momentum_buffer", "second_momentum_buffer",
                                                                   "update"};
        static constexpr std::size_t scratch_states = 1;

        // The base checks the options before the Newton-Schulz members see them, so a bad
        // eps is reported as Muon's.
        explicit muon(const muon_options& o = {})
            : optimizer(o)
        {
            fill(m_ns, o);
            m_ns_float.set_options(m_ns);
            m_ns_double.set_options(m_ns);
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
            for (std::size_t r = 0; r < o.ns_coefficient_table.size(); ++r)
            {
                for (std::size_t k = 0; k < 3; ++k)
                {
                    const std::string field = "ns_coefficient_table[" + std::to_string(r) + "][" + std::to_string(k) + "]";
                    detail::require_finite(o.ns_coefficient_table[r][k], name, field.c_str());
                }
            }
            detail::require_positive(o.ns_norm_scale, name, "ns_norm_scale");
            // Only add_eps scales the norm: a scale given with clamp_eps would be ignored.
            detail::require(o.ns_norm == ns_norm::add_eps || o.ns_norm_scale == 1, name, "ns_norm_scale",
                            "1 under ns_norm clamp_eps", o.ns_norm_scale);
            // bf16 products divide by bf16(eps), 0 below bf16's smallest value.
            detail::require(o.ns_precision == ns_precision::working || o.eps >= smallest_bf16, name, "eps",
                            ">= 2^-133 (the smallest bf16) under ns_precision bf16", o.eps);
            detail::require_unit_interval(o.beta2, name, "beta2");
            detail::require_positive(o.normuon_eps, name, "normuon_eps");
        }

        static std::size_t num_states(const muon_options& o) noexcept
        {
            return o.normuon ? 3 : 2;
        }

        // NorMuon's second moment: one value per row.
        static std::array<state_extent, 3> state_extents(const muon_options& o, const std::vector<std::size_t>&) noexcept
        {
            if (o.normuon)
            {
                return {state_extent::elements, state_extent::first_axis, state_extent::elements};
            }
            return {state_extent::elements, state_extent::elements, state_extent::elements};
        }

        // Newton-Schulz orthogonalizes each matrix whole.
        static shard_rule shards(const muon_options&) noexcept
        {
            return shard_rule::whole_tensors;
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
            return options().lr_adjust == muon_lr_adjust::original
                       ? std::sqrt(std::max(1.0, double(rows) / double(cols)))
                       : 0.2 * std::sqrt(double(std::max(rows, cols)));
        }

        // The state's bytes, and the CBLAS the Newton-Schulz products run on.
        state_report report() const
        {
            state_report r = optimizer::report();
            r.blas = blas::library().text();
            return r;
        }

        template <class Step>
        void update(const Step& step, const muon_options& o)
        {
            if (o.normuon)
            {
                update_with(step, o, sym::state<2>);
            }
            else
            {
                update_with(step, o, sym::state<1>);
            }
        }

    private:

        // u is the scratch state: state<1>, or state<2> after NorMuon's second moment.
        template <class Step, class U>
        void update_with(const Step& step, const muon_options& o, const U& u)
        {
            using namespace sym;
            const auto& m = sym::state<0>;
            const double mu = o.momentum;
            const double lr = o.lr;
            if (o.momentum_form == muon_momentum_form::lerp)
            {
                lerp_momentum(step, m, u);
            }
            else if (o.nesterov)
            {
                step.run(m = mu * m + (1 - mu) * g, u = (1 - mu) * g + mu * m);
            }
            else
            {
                step.run(m = mu * m + (1 - mu) * g, u = m);
            }
            fill(m_ns, o);  // a schedule may have changed eps or a coefficient
            step.for_each_parameter([&](const state_store::entry& e, const auto& slots) {
                const auto [rows, cols] = matrix_view(e.shape);
                auto* update = slots.states[o.normuon ? 2 : 1];
                auto& ns = ns_for(update);
                ns.set_options(m_ns);
                if (o.normuon)
                {
                    ns(update, update, rows, cols, 1);
                    normalize_rows(update, slots.states[1], rows, cols);
                }
                else
                {
                    ns(update, update, rows, cols, scale(rows, cols));
                }
            });
            step.run(p = p * (1 - arch::product(lr, o.weight_decay)) - lr * u);
        }

        // m = lerp(m, g, 1 - mu); u = lerp(g, m, mu) or m; torch's lerp picks its form by
        // the weight, here known before the pass, and computes 1 - w in the tensor's type
        // (one_minus(w): w rounded to the type, then 1 - w in the pass).
        static auto one_minus(double w) noexcept
        {
            using scalar = literal;  // the engine's leaf
            return 1.0 - scalar{w};
        }

        template <class Step, class M, class U>
        void lerp_momentum(const Step& step, const M& m, const U& u) const
        {
            using namespace sym;
            const double w = 1 - options().momentum;
            const double mu = options().momentum;
            const auto advance = [&](const auto& next) {
                if (w < 0.5)
                {
                    step.run(m = m + w * (g - m), next);
                }
                else
                {
                    step.run(m = g - (g - m) * one_minus(w), next);
                }
            };
            if (!options().nesterov)
            {
                advance(u = m);
            }
            else if (mu < 0.5)
            {
                advance(u = g + mu * (m - g));
            }
            else
            {
                advance(u = m - (m - g) * one_minus(mu));
            }
        }

        // NorMuon on O = NS(u), rows x cols, in place; v holds v_i of row i.
        // Sums in double, every other operation rounded to T as the reference's tensors are.
        template <class T>
        void normalize_rows(T* o, T* v, std::size_t rows, std::size_t cols) const
        {
            const auto norm = [&] { return static_cast<T>(std::sqrt(detail::rounded_square_sum(o, rows * cols))); };
            const T before = norm();
            const T w = static_cast<T>(1 - options().beta2);
            const T eps = static_cast<T>(options().normuon_eps);
            for (std::size_t i = 0; i < rows; ++i)
            {
                T* row = o + i * cols;
                double sum = 0;
                for (std::size_t j = 0; j < cols; ++j)
                {
                    sum += double(detail::rounded<T>(row[j] * row[j]));
                }
                const T mean = static_cast<T>(sum / double(cols));
                const T vi = v[i] = detail::aten_lerp(v[i], mean, w);
                const T step = static_cast<T>(T(1) / static_cast<T>(static_cast<T>(std::sqrt(vi)) + eps));
                for (std::size_t j = 0; j < cols; ++j)
                {
                    row[j] = static_cast<T>(row[j] * step);
                }
            }
            const T after = norm();
            T factor = 0;
            if (options().normuon_scale == normuon_scale::preserve_norm)
            {
                const T ratio = static_cast<T>(before / static_cast<T>(after + eps));
                const T s = static_cast<T>(scale(rows, cols));
                for (std::size_t i = 0; i < rows * cols; ++i)
                {
                    o[i] = static_cast<T>(static_cast<T>(o[i] * ratio) * s);
                }
                return;
            }
            factor = after > 0 ? static_cast<T>(0.2 * std::sqrt(double(rows) * double(cols)) / double(after)) : T(0);
            for (std::size_t i = 0; i < rows * cols; ++i)
            {
                o[i] = static_cast<T>(o[i] * factor);
            }
        }

        // Muon's options as Newton-Schulz's, written into n (no allocation once its table
        // has the capacity).
        static void fill(newton_schulz_options& n, const muon_options& o)
        {
            n.steps = o.ns_steps;
            n.coefficients = o.ns_coefficients;
            n.table = o.ns_coefficient_table;
            n.eps = o.eps;
            n.norm_scale = o.ns_norm_scale;
            n.norm = o.ns_norm;
            n.precision = o.ns_precision;
        }

        newton_schulz<float>& ns_for(float*) noexcept
        {
            return m_ns_float;
        }

        newton_schulz<double>& ns_for(double*) noexcept
        {
            return m_ns_double;
        }

        newton_schulz_options m_ns;
        newton_schulz<float> m_ns_float;
        newton_schulz<double> m_ns_double;
    };
}

#endif
