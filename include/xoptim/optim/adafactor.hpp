// Adafactor (Shazeer & Stern 2018), as torch.optim.Adafactor computes it (PyTorch >= 2.5,
// torch/optim/_adafactor.py, `_single_tensor_adafactor`):
//   g' = maximize ? -g : g;   w = t^beta2_decay;   rho = min(lr, 1 / sqrt(t))
//   alpha = max(eps2, RMS(p)) * rho                       (before the decay)
//   p = p * (1 - lr * wd)
//   matrices (the last two dimensions; leading ones batch):
//     row_var = lerp(row_var, mean over columns of g'^2, w)    one value per row
//     col_var = lerp(col_var, mean over rows of g'^2, w)       one value per column
//     v = row_var * col_var / max(mean(row_var), eps1)         per matrix
//   vectors: variance = lerp(variance, g'^2, w);  v = variance
//   u = rsqrt(max(v, eps1^2)) * g'
//   p = p - alpha / max(1, RMS(u) / d) * u
// eps1 none is the element type's machine epsilon. Every product, quotient and lerp is
// rounded as ATen rounds it (lerp in its two forms; rsqrt = 1 / sqrt).
//
// Passes over memory, matrices: p g (||p|| and the row sums, one fused pass over rows),
// g (the column sums), g (the update's norm), p g -> p: 6 reads and a write of a
// parameter-sized tensor, against a floor of 2 reads and a write (the reference's
// semantics need all of g before the statistics and the whole update before p is
// written); vectors: p g v -> v (with ||p|| and ||u||), p g v -> p. The statistics are
// R + C values per matrix.
#ifndef XOPTIM_OPTIM_ADAFACTOR_HPP
#define XOPTIM_OPTIM_ADAFACTOR_HPP

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <optional>
#include <stdexcept>
#include <vector>

#include "../engine/reduce.hpp"
#include "optimizer.hpp"
#include "validate.hpp"

namespace xoptim
{
    struct adafactor_options
    {
        double lr = 1e-2;
        double beta2_decay = -0.8;
        std::array<std::optional<double>, 2> eps = {std::nullopt, 1e-3};  // eps1 (none: machine epsilon), eps2
        double d = 1.0;
        double weight_decay = 0.0;
        bool maximize = false;

        // Every hyperparameter with torch.optim.Adafactor's name.
        template <class O, class F>
        static void fields(O& o, F&& f)
        {
            f("lr", o.lr);
            f("beta2_decay", o.beta2_decay);
            f("eps", o.eps);
            f("d", o.d);
            f("weight_decay", o.weight_decay);
            f("maximize", o.maximize);
        }
    };

    namespace detail
    {
        // x rounded to T on its own: host arithmetic on the statistics is never contracted.
        template <class T>
        T rounded(T x) noexcept
        {
            volatile T v = x;
            return v;
        }

        // ATen's lerp(start, end, weight) in T, in its two forms.
        template <class T>
        T aten_lerp(T start, T end, T weight) noexcept
        {
            const T diff = rounded<T>(end - start);
            if (std::abs(weight) < T(0.5))
            {
                return rounded<T>(start + rounded<T>(weight * diff));
            }
            return rounded<T>(end - rounded<T>(diff * rounded<T>(T(1) - weight)));
        }

        // The rows of a step's matrix parameters as jobs (one per row: the parameter's and
        // the gradient's row, state 1 the matrix's column statistics, scalars the row's
        // statistic), and its vectors as jobs of their own.
        template <class T>
        struct factored_workspace
        {
            struct tensor
            {
                std::size_t first_job;  // in rows (matrices) or vectors
                matrix_view view;
                std::size_t size;
                T* row_var;
                T* col_var;
                const T* grad;
            };

            job_list<T> rows;
            job_list<T> vectors;
            std::vector<tensor> matrices;
            std::vector<tensor> plain;
            std::vector<double> column_sums;
            std::vector<T> row_means;  // per matrix of a tensor

            void clear() noexcept
            {
                rows.clear();
                vectors.clear();
                matrices.clear();
                plain.clear();
            }
        };
    }

    class adafactor : public optimizer<adafactor>
    {
    public:

        using options_type = adafactor_options;
        static constexpr const char* name = "adafactor";
        static constexpr std::array<const char*, 3> state_names = {"row_var", "col_var", "variance"};

        explicit adafactor(const adafactor_options& o = {})
            : m_o(o)
        {
            check(o);
        }

        static void check(const adafactor_options& o)
        {
            detail::require_non_negative(o.lr, name, "lr");
            detail::require(std::isfinite(o.beta2_decay) && o.beta2_decay <= 0, name, "beta2_decay", "<= 0 and finite",
                            o.beta2_decay);
            if (o.eps[0])
            {
                detail::require_non_negative(*o.eps[0], name, "eps[0]");
            }
            detail::require(o.eps[1].has_value(), name, "eps[1]", "a number (eps2 has no default)",
                            std::numeric_limits<double>::quiet_NaN());
            detail::require_non_negative(*o.eps[1], name, "eps[1]");
            detail::require(std::isfinite(o.d) && o.d >= 1, name, "d", ">= 1 and finite", o.d);
            detail::require_non_negative(o.weight_decay, name, "weight_decay");
        }

        const adafactor_options& options() const noexcept
        {
            return m_o;
        }

        std::size_t num_states() const noexcept
        {
            return 3;
        }

        // Matrices (rank >= 2) keep row and column statistics, vectors an element-wise
        // second moment.
        static std::array<state_extent, 3> state_extents(const std::vector<std::size_t>& shape) noexcept
        {
            if (shape.size() >= 2)
            {
                return {state_extent::rows, state_extent::cols, state_extent::none};
            }
            return {state_extent::none, state_extent::none, state_extent::elements};
        }

        template <class Step>
        void update(const Step& step)
        {
            m_floats.clear();
            m_doubles.clear();
            step.for_each_parameter([&](const state_store::entry& e, const auto& slots) {
                using T = std::remove_const_t<std::remove_pointer_t<decltype(slots.param)>>;
                if (!e.plain() || slots.param == nullptr)
                {
                    throw std::logic_error("xoptim::adafactor: parameter '" + e.name
                                           + "' is bf16 or has 8-bit/bf16 states; Adafactor steps float and double "
                                             "parameters with native states");
                }
                collect(detail::by_type<T>(m_floats, m_doubles), e, slots);
            });
            run_type(step, m_floats);
            run_type(step, m_doubles);
        }

    private:

        friend class optimizer<adafactor>;

        template <class T>
        static void collect(detail::factored_workspace<T>& w, const state_store::entry& e, const tensor_slots<T>& s)
        {
            typename detail::factored_workspace<T>::tensor t{0, matrix_view::of(e.shape), e.size, s.states[0],
                                                             s.states[1], s.grad};
            if (e.shape.size() < 2)
            {
                t.first_job = w.vectors.size();
                w.vectors.push_back(s);
                w.plain.push_back(t);
                return;
            }
            t.first_job = w.rows.size();
            const matrix_view& v = t.view;
            for (std::size_t b = 0; b < v.batches; ++b)
            {
                for (std::size_t r = 0; r < v.rows; ++r)
                {
                    tensor_slots<T> row;
                    const std::size_t at = (b * v.rows + r) * v.cols;
                    row.param = s.param + at;
                    row.grad = s.grad + at;
                    row.states[1] = s.states[1] + b * v.cols;  // col_var, read by column
                    row.size = v.cols;
                    w.rows.push_back(row);
                }
            }
            w.matrices.push_back(t);
        }

        // The scalar inputs of a step, for element type T.
        template <class T>
        struct step_scalars
        {
            double t, w, w_complement, rho, sign, decay, eps1, eps1_squared, eps2;
        };

        template <class T>
        step_scalars<T> scalars_at(std::size_t count) const noexcept
        {
            step_scalars<T> s{};
            s.t = static_cast<double>(count);
            s.w = std::pow(s.t, m_o.beta2_decay);
            s.w_complement = 1 - double(T(s.w));  // ATen's 1 - weight in T (exact)
            s.rho = std::min(m_o.lr, 1 / std::sqrt(s.t));
            s.sign = m_o.maximize ? -1 : 1;
            s.decay = 1 - m_o.lr * m_o.weight_decay;
            s.eps1 = m_o.eps[0] ? *m_o.eps[0] : double(std::numeric_limits<T>::epsilon());
            s.eps1_squared = s.eps1 * s.eps1;
            s.eps2 = *m_o.eps[1];
            return s;
        }

        // alpha = max(eps2, RMS(p)) * rho, the norm rounded to T as torch's .item() of it.
        template <class T>
        static double alpha(double param_squares, std::size_t n, const step_scalars<T>& s) noexcept
        {
            const double norm = double(T(std::sqrt(param_squares)));
            return std::max(s.eps2, norm / std::sqrt(double(n))) * s.rho;
        }

        // -alpha / max(1, RMS(u) / d)
        template <class T>
        double step_size(double alpha, double update_squares, std::size_t n) const noexcept
        {
            const double norm = double(T(std::sqrt(update_squares)));
            return -alpha / std::max(1.0, norm / (std::sqrt(double(n)) * m_o.d));
        }

        template <class Step, class T>
        void run_type(const Step& step, detail::factored_workspace<T>& w) const
        {
            const step_scalars<T> s = scalars_at<T>(step.count());
            if (!w.matrices.empty())
            {
                run_matrices(step, w, s);
            }
            if (!w.plain.empty())
            {
                if (std::abs(double(T(s.w))) < 0.5)
                {
                    run_vectors(step, w, s, [&](const auto& v, const auto& target) { return v + s.w * (target - v); });
                }
                else
                {
                    run_vectors(step, w, s,
                                [&](const auto& v, const auto& target) { return target - (target - v) * s.w_complement; });
                }
            }
        }

        // Sum over a tensor's jobs [first, first + n) of scalar K, in job order.
        template <class T>
        static double job_sum(const job_list<T>& jobs, std::size_t first, std::size_t n, std::size_t K) noexcept
        {
            double sum = 0;
            for (std::size_t k = first; k < first + n; ++k)
            {
                sum += jobs.scalars(k)[K];
            }
            return sum;
        }

        template <class Step, class T>
        void run_matrices(const Step& step, detail::factored_workspace<T>& w, const step_scalars<T>& s) const
        {
            using namespace sym;
            const auto& grad = sym::local<0>;
            const auto& col_var = sym::state<1>;
            const auto& row_var = sym::scalar<0>;
            const auto& row_mean = sym::scalar<1>;
            const auto& step_scale = sym::scalar<3>;
            const auto g_ = grad = s.sign * g;
            const auto update = (1 / sqrt(max((row_var * col_var) / row_mean, s.eps1_squared))) * grad;

            // Pass 1: ||p||^2 and the row sums of g'^2 (scalars 0 and 1 of each row).
            step.run_on(w.rows, g_, scalar<0> = sum_squares(p), scalar<1> = sum_squares(grad));
            const detail::prepared_transform<xsimd::batch<T>> transform(step.transform());
            std::vector<double> param_squares(w.matrices.size());
            for (std::size_t k = 0; k < w.matrices.size(); ++k)
            {
                auto& t = w.matrices[k];
                const matrix_view& v = t.view;
                param_squares[k] = job_sum(w.rows, t.first_job, v.batches * v.rows, 0);
                w.row_means.resize(v.batches);
                for (std::size_t b = 0; b < v.batches; ++b)
                {
                    // Pass 2 (per matrix): the column sums of g'^2, rows in order.
                    w.column_sums.assign(v.cols, 0.0);
                    for (std::size_t r = 0; r < v.rows; ++r)
                    {
                        add_column_squares(t.grad + (b * v.rows + r) * v.cols, v.cols, w.column_sums.data(), transform);
                    }
                    // The statistics, as torch: norm rounded to T, squared, divided by the count.
                    const T weight = T(s.w);
                    double row_total = 0;
                    for (std::size_t r = 0; r < v.rows; ++r)
                    {
                        const T norm = T(std::sqrt(w.rows.scalars(t.first_job + b * v.rows + r)[1]));
                        const T mean = detail::rounded<T>(detail::rounded<T>(norm * norm) / T(v.cols));
                        T& x = t.row_var[b * v.rows + r];
                        x = detail::aten_lerp<T>(x, mean, weight);
                        row_total += double(x);
                    }
                    for (std::size_t j = 0; j < v.cols; ++j)
                    {
                        const T norm = T(std::sqrt(w.column_sums[j]));
                        const T mean = detail::rounded<T>(detail::rounded<T>(norm * norm) / T(v.rows));
                        T& x = t.col_var[b * v.cols + j];
                        x = detail::aten_lerp<T>(x, mean, weight);
                    }
                    w.row_means[b] = std::max(T(row_total / double(v.rows)), T(s.eps1));
                    for (std::size_t r = 0; r < v.rows; ++r)
                    {
                        auto& scalars = w.rows.scalars(t.first_job + b * v.rows + r);
                        scalars[0] = double(t.row_var[b * v.rows + r]);
                        scalars[1] = double(w.row_means[b]);
                    }
                }
            }
            // Pass 3: ||u||^2 per row (scalar 2).
            step.run_on(w.rows, g_, scalar<2> = sum_squares(update));
            for (std::size_t k = 0; k < w.matrices.size(); ++k)
            {
                const auto& t = w.matrices[k];
                const std::size_t n = t.view.batches * t.view.rows;
                const double size = step_size<T>(alpha<T>(param_squares[k], t.size, s), job_sum(w.rows, t.first_job, n, 2),
                                                 t.size);
                for (std::size_t j = t.first_job; j < t.first_job + n; ++j)
                {
                    w.rows.scalars(j)[3] = size;
                }
            }
            // Pass 4: the update.
            step.run_on(w.rows, g_, p = p * s.decay + step_scale * update);
        }

        template <class Step, class T, class Lerp>
        void run_vectors(const Step& step, detail::factored_workspace<T>& w, const step_scalars<T>& s, Lerp lerp) const
        {
            using namespace sym;
            const auto& grad = sym::local<0>;
            const auto& variance = sym::state<2>;
            const auto& step_scale = sym::scalar<2>;
            const auto g_ = grad = s.sign * g;
            const auto update = (1 / sqrt(max(variance, s.eps1_squared))) * grad;
            // Pass 1: ||p||^2 (before the decay), the second moment, ||u||^2.
            step.run_on(w.vectors, g_, scalar<0> = sum_squares(p), variance = lerp(variance, grad * grad),
                        scalar<1> = sum_squares(update));
            for (const auto& t : w.plain)
            {
                auto& scalars = w.vectors.scalars(t.first_job);
                scalars[2] = step_size<T>(alpha<T>(scalars[0], t.size, s), scalars[1], t.size);
            }
            // Pass 2: the update, from the second moment pass 1 stored.
            step.run_on(w.vectors, g_, p = p * s.decay + step_scale * update);
        }

        adafactor_options m_o;
        detail::factored_workspace<float> m_floats;
        detail::factored_workspace<double> m_doubles;
    };
}

#endif
