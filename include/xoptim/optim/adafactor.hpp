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
// eps1 none is the machine epsilon of the type the step computes in: double for double
// parameters, float for float and for bf16 ones (bf16 parameters are computed in float, as
// transformers computes them; torch.optim.Adafactor on a bf16 tensor would compute in bf16
// and take 2^-7). Every product, quotient and lerp is rounded as ATen rounds it (lerp in
// its two forms; rsqrt = 1 / sqrt).
//
// Passes over memory, matrices: p g (||p||, the row and the column sums of g'^2, in one
// threaded pass: matrix_statistics), g (the update's norm), p g -> p: 5 reads and a write
// of a parameter-sized tensor, against a floor of 2 reads and a write (the reference's
// semantics need all of g before the statistics and the whole update before p is
// written); vectors: p g v -> v (with ||p|| and ||u||), p g v -> p. The statistics are
// R + C values per matrix.
//
// Storage (set_storage): the statistics stay float; bf16 parameters are decoded as they
// are read and written with the storage's rounding; the vectors' second moment is bf16
// under 8-bit storage (wide_range_states), and transformers' first moment 8-bit where a
// matrix's rows are whole blocks (else bf16, see optimizer<D>::layout_for).
#ifndef XOPTIM_OPTIM_ADAFACTOR_HPP
#define XOPTIM_OPTIM_ADAFACTOR_HPP

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <optional>
#include <vector>

#include "../engine/arch/product.hpp"
#include "../engine/host_arithmetic.hpp"
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
        // A job's float or double tensors (a coded job's: those not coded).
        template <class Slots>
        auto& float_tensors(Slots& s) noexcept
        {
            if constexpr (std::is_same_v<std::remove_const_t<Slots>, coded_slots>)
            {
                return s.plain;
            }
            else
            {
                return s;
            }
        }

        // Where the statistics pass reads a parameter and its gradient.
        template <class T>
        matrix_sums_job<T> sums_source(const tensor_slots<T>& s) noexcept
        {
            return {s.param, s.grad, 0, 0, nullptr, nullptr};
        }

        inline matrix_sums_job<float> sums_source(const coded_slots& s) noexcept
        {
            matrix_sums_job<float> m{s.plain.param, s.plain.grad, 0, 0, nullptr, nullptr};
            if (s.format[param_slot] != slot_format::native)  // a bf16 parameter, its gradient bf16
            {
                m.bf16_param = static_cast<const std::uint16_t*>(s.source[param_slot]);
                m.bf16_low = s.format[param_slot] == slot_format::bf16_compensated ? s.compensation : nullptr;
                m.bf16_grad = static_cast<const std::uint16_t*>(s.source[grad_slot]);
            }
            return m;
        }

        // The rows of a step's matrix parameters as jobs (one per row: the parameter's and
        // the gradient's row, state 1 the matrix's column statistics, scalars the row's
        // statistic, element states the row's: coded ones too, see window()), and its
        // vectors as jobs of their own. Slots: tensor_slots<float or double>, or
        // coded_slots (bf16 parameters, 8-bit or bf16 element states; the statistics are
        // always float).
        template <class Slots>
        struct factored_workspace
        {
            using value_type = typename math_type_of<Slots>::type;
            using T = value_type;

            struct tensor
            {
                std::size_t first_job;  // in rows (matrices) or vectors
                matrix_view view;
                std::size_t size;
                T* row_var;
                T* col_var;
                matrix_sums_job<T> source;  // p and g, for the statistics
            };

            basic_job_list<Slots> rows;
            basic_job_list<Slots> vectors;
            std::vector<tensor> matrices;
            std::vector<tensor> plain;
            matrix_statistics<T> statistics;
            std::vector<double> row_sums;       // per row job: the sums of p^2 and of f(g)
            std::vector<double> column_sums;    // per matrix of each tensor, its columns
            std::vector<double> param_squares;  // per matrix tensor
            std::vector<T> row_means;           // per matrix of a tensor
            std::vector<T> column_factors;      // transformers: rsqrt of the column statistics

            void clear() noexcept
            {
                rows.clear();
                vectors.clear();
                matrices.clear();
                plain.clear();
            }

            // A parameter's jobs: one per row of every matrix (rank >= 2), else one.
            void add(const state_store::entry& e, const Slots& s)
            {
                const tensor_slots<T>& f = float_tensors(s);
                tensor t{0, matrix_view::of(e.shape), e.size, f.states[0], f.states[1], sums_source(s)};
                if (e.shape.size() < 2)
                {
                    t.first_job = vectors.size();
                    vectors.push_back(s);
                    plain.push_back(t);
                    return;
                }
                t.first_job = rows.size();
                // Only the element-sized tensors are windowed: the statistics (float
                // slots, never coded) are cleared first and the column ones set per row.
                Slots elements = s;
                tensor_slots<T>& ef = float_tensors(elements);
                for (std::size_t k = 0; k < max_states; ++k)
                {
                    if (k < 2 || e.extents[k] != state_extent::elements || k >= e.count)
                    {
                        ef.states[k] = nullptr;
                    }
                }
                const matrix_view& v = t.view;
                for (std::size_t b = 0; b < v.batches; ++b)
                {
                    for (std::size_t r = 0; r < v.rows; ++r)
                    {
                        Slots row = window(elements, (b * v.rows + r) * v.cols, v.cols);
                        // The column statistics, read by column.
                        float_tensors(row).states[1] = f.states[1] + b * v.cols;
                        rows.push_back(row);
                    }
                }
                matrices.push_back(t);
            }

            // Pass 1 over the matrices: per row the sums of p^2 and of f(g) (Square: of
            // f(g)^2) into row_sums, per column of each matrix the latter's sum over the
            // rows into column_sums (the matrices in order, each one's columns in order).
            template <bool Square, class F>
            void run_statistics(const grad_transform& transform, F f)
            {
                statistics.clear();
                row_sums.resize(2 * rows.size());
                std::size_t columns = 0;
                for (const tensor& t : matrices)
                {
                    columns += t.view.batches * t.view.cols;
                }
                column_sums.resize(columns);
                columns = 0;
                for (const tensor& t : matrices)
                {
                    const matrix_view& v = t.view;
                    for (std::size_t b = 0; b < v.batches; ++b, columns += v.cols)
                    {
                        matrix_sums_job<T> m = t.source.from(b * v.rows * v.cols);
                        m.rows = v.rows;
                        m.cols = v.cols;
                        m.row_sums = row_sums.data() + 2 * (t.first_job + b * v.rows);
                        m.column_sums = column_sums.data() + columns;
                        statistics.add(m);
                    }
                }
                statistics.template run<Square, std::is_same_v<Slots, coded_slots>>(transform, f);
            }

            // Sum over the rows of matrix tensor t, in row order, of a per-row number:
            // value(j), j the row's job.
            template <class F>
            static double row_total(const tensor& t, F value)
            {
                double sum = 0;
                for (std::size_t j = t.first_job; j < t.first_job + t.view.batches * t.view.rows; ++j)
                {
                    sum += value(j);
                }
                return sum;
            }

            // The tensor's sum of p^2 (pass 1's row sums) and of u^2 (scalar K of its rows).
            double param_squares_of(const tensor& t) const
            {
                return row_total(t, [&](std::size_t j) { return row_sums[2 * j]; });
            }

            double update_squares_of(const tensor& t, std::size_t K) const
            {
                return row_total(t, [&](std::size_t j) { return rows.scalars(j)[K]; });
            }
        };

        // A factored optimizer's workspaces: float and double parameters with native
        // states, and those with coded tensors (run only by a step compiled for them).
        struct factored_workspaces
        {
            factored_workspace<tensor_slots<float>> floats;
            factored_workspace<tensor_slots<double>> doubles;
            factored_workspace<coded_slots> coded;

            // A step's first part: every parameter's jobs, by how it is stored.
            template <class Step>
            void collect(const Step& step)
            {
                floats.clear();
                doubles.clear();
                coded.clear();
                step.for_each_job([&](const state_store::entry& e, const auto& slots) {
                    using S = std::decay_t<decltype(slots)>;
                    if constexpr (std::is_same_v<S, coded_slots>)
                    {
                        coded.add(e, slots);
                    }
                    else
                    {
                        using T = std::remove_const_t<std::remove_pointer_t<decltype(slots.param)>>;
                        by_type<T>(floats, doubles).add(e, slots);
                    }
                });
            }

            // Runs run(workspace) for each kind of job the step has.
            template <class Step, class Run>
            void run(const Step&, Run&& run)
            {
                run(floats);
                if constexpr (Step::runs_coded)
                {
                    run(coded);
                }
                run(doubles);
            }
        };
    }

    class adafactor : public optimizer<adafactor, adafactor_options>
    {
    public:

        static constexpr const char* name = "adafactor";
        static constexpr std::array<const char*, 3> state_names = {"row_var", "col_var", "variance"};
        // The update divides by the square root of the second moment, floored only at eps1^2:
        // 8-bit's zero code (any value under about 1.6e-7 of its block's largest) would
        // scale an element's update by 1 / eps1. bf16 keeps its exponent.
        static constexpr std::array<bool, 3> wide_range_states = {false, false, true};

        explicit adafactor(const adafactor_options& o = {})
            : optimizer(o)
        {
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

        static std::size_t num_states(const adafactor_options&) noexcept
        {
            return 3;
        }

        // RMS of p and of the update, and the row and column statistics: per tensor.
        static shard_rule shards(const adafactor_options&) noexcept
        {
            return shard_rule::whole_tensors;
        }

        // Matrices (rank >= 2) keep row and column statistics, vectors an element-wise
        // second moment.
        static std::array<state_extent, 3> state_extents(const adafactor_options&,
                                                         const std::vector<std::size_t>& shape) noexcept
        {
            if (shape.size() >= 2)
            {
                return {state_extent::rows, state_extent::cols, state_extent::none};
            }
            return {state_extent::none, state_extent::none, state_extent::elements};
        }

        template <class Step>
        void update(const Step& step, const options_type& o)
        {
            m_work.collect(step);
            m_work.run(step, [&](auto& w) { run_type(step, w, o); });
        }

    private:

        // The scalar inputs of a step, for element type T.
        template <class T>
        struct step_scalars
        {
            double t, w, w_complement, rho, sign, decay, eps1, eps1_squared, eps2, d;
        };

        template <class T>
        static step_scalars<T> scalars_at(std::size_t count, const adafactor_options& o) noexcept
        {
            step_scalars<T> s{};
            s.t = static_cast<double>(count);
            s.w = std::pow(s.t, o.beta2_decay);
            s.w_complement = 1 - double(T(s.w));  // ATen's 1 - weight in T (exact)
            s.rho = std::min(o.lr, 1 / std::sqrt(s.t));
            s.sign = o.maximize ? -1 : 1;
            s.decay = 1 - arch::product(o.lr, o.weight_decay);
            s.eps1 = o.eps[0] ? *o.eps[0] : double(std::numeric_limits<T>::epsilon());
            s.eps1_squared = s.eps1 * s.eps1;
            s.eps2 = *o.eps[1];
            s.d = o.d;
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
        static double step_size(double alpha, double update_squares, std::size_t n, const step_scalars<T>& s) noexcept
        {
            const double norm = double(T(std::sqrt(update_squares)));
            return -alpha / std::max(1.0, norm / (std::sqrt(double(n)) * s.d));
        }

        template <class Step, class W>
        void run_type(const Step& step, W& w, const adafactor_options& o) const
        {
            using T = typename W::value_type;
            const step_scalars<T> s = scalars_at<T>(step.count(), o);
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
                    run_vectors(step, w, s, [&](const auto& v, const auto& target) {
                        return target - (target - v) * s.w_complement;
                    });
                }
            }
        }

        template <class Step, class W, class T>
        void run_matrices(const Step& step, W& w, const step_scalars<T>& s) const
        {
            using namespace sym;
            const auto& grad = sym::local<0>;
            const auto& col_var = sym::state<1>;
            const auto& row_var = sym::scalar<0>;
            const auto& row_mean = sym::scalar<1>;
            const auto& step_scale = sym::scalar<3>;
            const auto g_ = grad = s.sign * g;
            const auto update = (1 / sqrt(max(s.eps1_squared, (row_var * col_var) / row_mean))) * grad;

            // Pass 1: ||p||^2, the row and the column sums of g'^2.
            w.template run_statistics<true>(step.transform(), [](const auto& x) { return x; });
            std::vector<double>& param_squares = w.param_squares;
            param_squares.resize(w.matrices.size());
            const double* column_sums = w.column_sums.data();
            for (std::size_t k = 0; k < w.matrices.size(); ++k)
            {
                auto& t = w.matrices[k];
                const matrix_view& v = t.view;
                param_squares[k] = w.param_squares_of(t);
                w.row_means.resize(v.batches);
                for (std::size_t b = 0; b < v.batches; ++b, column_sums += v.cols)
                {
                    // The statistics, as torch: norm rounded to T, squared, divided by the count.
                    const T weight = T(s.w);
                    double row_total = 0;
                    for (std::size_t r = 0; r < v.rows; ++r)
                    {
                        const T norm = T(std::sqrt(w.row_sums[2 * (t.first_job + b * v.rows + r) + 1]));
                        const T mean = detail::rounded<T>(detail::rounded<T>(norm * norm) / T(v.cols));
                        T& x = t.row_var[b * v.rows + r];
                        x = detail::aten_lerp<T>(x, mean, weight);
                        row_total += double(x);
                    }
                    for (std::size_t j = 0; j < v.cols; ++j)
                    {
                        const T norm = T(std::sqrt(column_sums[j]));
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
            // Pass 2: ||u||^2 per row (scalar 2).
            step.run_on(w.rows, g_, scalar<2> = sum_squares(update));
            for (std::size_t k = 0; k < w.matrices.size(); ++k)
            {
                const auto& t = w.matrices[k];
                const std::size_t n = t.view.batches * t.view.rows;
                const double size = step_size<T>(alpha<T>(param_squares[k], t.size, s), w.update_squares_of(t, 2),
                                                 t.size, s);
                for (std::size_t j = t.first_job; j < t.first_job + n; ++j)
                {
                    w.rows.scalars(j)[3] = size;
                }
            }
            // Pass 3: the update.
            step.run_on(w.rows, g_, p = p * s.decay + step_scale * update);
        }

        template <class Step, class W, class T, class Lerp>
        void run_vectors(const Step& step, W& w, const step_scalars<T>& s, Lerp lerp) const
        {
            using namespace sym;
            const auto& grad = sym::local<0>;
            const auto& variance = sym::state<2>;
            const auto& step_scale = sym::scalar<2>;
            const auto g_ = grad = s.sign * g;
            const auto update = (1 / sqrt(max(s.eps1_squared, variance))) * grad;
            // Pass 1: ||p||^2 (before the decay), the second moment, ||u||^2.
            step.run_on(w.vectors, g_, scalar<0> = sum_squares(p), variance = lerp(variance, grad * grad),
                        scalar<1> = sum_squares(update));
            for (const auto& t : w.plain)
            {
                auto& scalars = w.vectors.scalars(t.first_job);
                scalars[2] = step_size<T>(alpha<T>(scalars[0], t.size, s), scalars[1], t.size, s);
            }
            // Pass 2: the update, from the second moment pass 1 stored.
            step.run_on(w.vectors, g_, p = p * s.decay + step_scale * update);
        }

        detail::factored_workspaces m_work;
    };
    // Adafactor as HF transformers computes it (src/transformers/optimization.py,
    // `Adafactor`), the relative-step variant:
    //   rms = RMS(p);  rel = relative_step ? min(warmup_init ? 1e-6 t : 1e-2, 1 / sqrt(t)) : lr
    //   lr_t = scale_parameter ? max(eps2, rms) * rel : rel;   b2 = 1 - t^decay_rate
    //   u = g^2 + eps1
    //   matrices: row = b2 * row + (1 - b2) * mean over columns of u;  col likewise over rows
    //             u = rsqrt(row / mean(row)) * rsqrt(col) * g       (outer product of factors)
    //   vectors:  v = b2 * v + (1 - b2) * u;  u = rsqrt(v) * g
    //   u = u / max(1, RMS(u) / clip_threshold) * lr_t
    //   beta1: m = beta1 * m + (1 - beta1) * u; u = m
    //   p = p - weight_decay * lr_t * p - u
    // RMS and lr_t are tensors of the parameter's type there: rounded as such.
    struct adafactor_transformers_options
    {
        std::optional<double> lr;  // none: the relative step
        std::array<double, 2> eps = {1e-30, 1e-3};
        double clip_threshold = 1.0;
        double decay_rate = -0.8;
        std::optional<double> beta1;  // none: no first moment
        double weight_decay = 0.0;
        bool scale_parameter = true;
        bool relative_step = true;
        bool warmup_init = false;

        // Every hyperparameter with transformers' name.
        template <class O, class F>
        static void fields(O& o, F&& f)
        {
            f("lr", o.lr);
            f("eps", o.eps);
            f("clip_threshold", o.clip_threshold);
            f("decay_rate", o.decay_rate);
            f("beta1", o.beta1);
            f("weight_decay", o.weight_decay);
            f("scale_parameter", o.scale_parameter);
            f("relative_step", o.relative_step);
            f("warmup_init", o.warmup_init);
        }
    };

    class adafactor_transformers : public optimizer<adafactor_transformers, adafactor_transformers_options>
    {
    public:

        static constexpr const char* name = "adafactor_transformers";
        static constexpr std::array<const char*, 4> state_names = {"exp_avg_sq_row", "exp_avg_sq_col", "exp_avg_sq",
                                                                   "exp_avg"};
        // rsqrt of the second moment, unfloored: 8-bit's zero code would make it infinite.
        static constexpr std::array<bool, 4> wide_range_states = {false, false, true, false};

        explicit adafactor_transformers(const options_type& o = {})
            : optimizer(o)
        {
        }

        static void check(const options_type& o)
        {
            detail::require(!(o.lr && o.relative_step), name, "lr",
                            "none with relative_step (transformers: "
                            "cannot combine manual lr and relative_step)",
                            o.lr ? *o.lr : 0.0);
            detail::require(o.lr.has_value() || o.relative_step, name, "lr", "set without relative_step",
                            std::numeric_limits<double>::quiet_NaN());
            if (o.lr)
            {
                detail::require_non_negative(*o.lr, name, "lr");
            }
            detail::require_non_negative(o.eps[0], name, "eps[0]");
            detail::require_non_negative(o.eps[1], name, "eps[1]");
            detail::require_positive(o.clip_threshold, name, "clip_threshold");
            detail::require(std::isfinite(o.decay_rate) && o.decay_rate <= 0, name, "decay_rate", "<= 0 and finite",
                            o.decay_rate);
            if (o.beta1)
            {
                detail::require_unit_interval(*o.beta1, name, "beta1");
            }
            detail::require_non_negative(o.weight_decay, name, "weight_decay");
            detail::require(!o.warmup_init || o.relative_step, name, "warmup_init", "false without relative_step", 1.0);
        }

        static std::size_t num_states(const options_type& o) noexcept
        {
            return o.beta1 ? 4 : 3;
        }

        static shard_rule shards(const options_type&) noexcept
        {
            return shard_rule::whole_tensors;
        }

        static std::array<state_extent, 4> state_extents(const options_type&, const std::vector<std::size_t>& shape) noexcept
        {
            if (shape.size() >= 2)
            {
                return {state_extent::rows, state_extent::cols, state_extent::none, state_extent::elements};
            }
            return {state_extent::none, state_extent::none, state_extent::elements, state_extent::elements};
        }

        template <class Step>
        void update(const Step& step, const options_type& o)
        {
            m_work.collect(step);
            m_work.run(step, [&](auto& w) { run_type(step, w, o); });
        }

    private:

        // The per-tensor numbers of the last pass, in T as transformers' 0-d tensors: the
        // step size lr_t, the clip divisor and the decay's factor -weight_decay * lr_t.
        template <class T>
        static void finish_tensor(job_scalars& out, double param_squares, double update_squares, std::size_t n,
                                  double relative, const options_type& o) noexcept
        {
            using detail::rounded;
            const T root = T(std::sqrt(double(n)));
            const T rms = rounded<T>(T(std::sqrt(param_squares)) / root);
            const bool lr_is_tensor = o.scale_parameter && double(rms) > o.eps[1];
            const double lr = lr_is_tensor ? double(rounded<T>(rms * T(relative)))
                                           : (o.scale_parameter ? o.eps[1] : 1.0) * relative;
            const T update_rms = rounded<T>(T(std::sqrt(update_squares)) / root);
            out[1] = double(std::max(rounded<T>(update_rms / T(o.clip_threshold)), T(1)));
            out[2] = lr_is_tensor ? double(rounded<T>(T(-o.weight_decay) * T(lr))) : double(T(-o.weight_decay * lr));
            out[3] = double(T(lr));
        }

        template <class Step, class W>
        void run_type(const Step& step, W& w, const options_type& o)
        {
            using T = typename W::value_type;
            using namespace sym;
            using detail::rounded;
            if (w.matrices.empty() && w.plain.empty())
            {
                return;
            }
            const double t = static_cast<double>(step.count());
            const double relative = o.relative_step ? std::min(o.warmup_init ? 1e-6 * t : 1e-2, 1 / std::sqrt(t))
                                                    : *o.lr;
            const double b2 = 1 - std::pow(t, o.decay_rate);
            const T keep = T(b2);
            const T add = T(1 - b2);
            const double eps1 = o.eps[0];
            const auto& u = sym::local<0>;
            const auto& factor = sym::state<1>;  // matrices: rsqrt of the column statistic
            const auto& v = sym::state<2>;
            const auto& m = sym::state<3>;
            const auto& row_factor = sym::scalar<0>;
            const auto& clip = sym::scalar<1>;
            const auto& decay = sym::scalar<2>;
            const auto& lr = sym::scalar<3>;
            const auto g2 = u = g * g + eps1;
            // The last pass: p - wd * lr * p - u, through the first moment with beta1; the
            // decay only where weight_decay is not 0, as transformers (-0 * inf is NaN).
            const auto last = [&](const auto& jobs, const auto& direction) {
                const auto scaled = (direction / clip) * lr;
                const auto move = [&](const auto& decayed) {
                    if (o.beta1)
                    {
                        step.run_on(jobs, m = *o.beta1 * m + (1 - *o.beta1) * scaled, p = decayed - m);
                    }
                    else
                    {
                        step.run_on(jobs, p = decayed - scaled);
                    }
                };
                if (o.weight_decay != 0)
                {
                    move(p + decay * p);
                }
                else
                {
                    move(p);
                }
            };

            if (!w.matrices.empty())
            {
                const auto direction = (row_factor * factor) * g;
                // Pass 1: ||p||^2, the row and the column sums of g^2 + eps1.
                const xsimd::batch<T> e1(static_cast<T>(eps1));
                w.template run_statistics<false>(step.transform(), [e1](const auto& y) { return arch::mul(y, y) + e1; });
                w.column_factors.resize(w.column_sums.size());  // one per column, as the sums
                std::vector<double>& param_squares = w.param_squares;
                param_squares.resize(w.matrices.size());
                T* cf = w.column_factors.data();
                const double* column_sums = w.column_sums.data();
                for (std::size_t k = 0; k < w.matrices.size(); ++k)
                {
                    auto& x = w.matrices[k];
                    const matrix_view& mv = x.view;
                    param_squares[k] = w.param_squares_of(x);
                    for (std::size_t b = 0; b < mv.batches; ++b, cf += mv.cols, column_sums += mv.cols)
                    {
                        double row_total = 0;
                        for (std::size_t r = 0; r < mv.rows; ++r)
                        {
                            const double mean = w.row_sums[2 * (x.first_job + b * mv.rows + r) + 1] / double(mv.cols);
                            T& s = x.row_var[b * mv.rows + r];
                            s = rounded<T>(rounded<T>(s * keep) + rounded<T>(add * T(mean)));
                            row_total += double(s);
                        }
                        const T row_mean = T(row_total / double(mv.rows));
                        for (std::size_t r = 0; r < mv.rows; ++r)
                        {
                            const T ratio = rounded<T>(x.row_var[b * mv.rows + r] / row_mean);
                            w.rows.scalars(x.first_job + b * mv.rows + r)[0] = double(
                                rounded<T>(T(1) / T(std::sqrt(ratio))));
                        }
                        for (std::size_t j = 0; j < mv.cols; ++j)
                        {
                            T& s = x.col_var[b * mv.cols + j];
                            s = rounded<T>(rounded<T>(s * keep) + rounded<T>(add * T(column_sums[j] / double(mv.rows))));
                            cf[j] = rounded<T>(T(1) / T(std::sqrt(s)));
                        }
                        for (std::size_t r = 0; r < mv.rows; ++r)
                        {
                            detail::float_tensors(w.rows[x.first_job + b * mv.rows + r]).states[1] = cf;
                        }
                    }
                }
                // Pass 2: ||u||^2 per row (scalar 2), then the tensor's numbers.
                step.run_on(w.rows, scalar<2> = sum_squares(direction));
                for (std::size_t k = 0; k < w.matrices.size(); ++k)
                {
                    const auto& x = w.matrices[k];
                    const std::size_t n = x.view.batches * x.view.rows;
                    job_scalars numbers{};
                    finish_tensor<T>(numbers, param_squares[k], w.update_squares_of(x, 2), x.size, relative, o);
                    for (std::size_t j = x.first_job; j < x.first_job + n; ++j)
                    {
                        std::copy(numbers.begin() + 1, numbers.end(), w.rows.scalars(j).begin() + 1);
                    }
                }
                // Pass 3: the update.
                last(w.rows, direction);
            }
            if (!w.plain.empty())
            {
                const auto direction = (1 / sqrt(v)) * g;
                // Pass 1: ||p||^2, the second moment, ||u||^2.
                step.run_on(w.vectors, g2, scalar<0> = sum_squares(p), v = keep * v + add * u,
                            scalar<1> = sum_squares(direction));
                for (const auto& x : w.plain)
                {
                    auto& numbers = w.vectors.scalars(x.first_job);
                    finish_tensor<T>(numbers, numbers[0], numbers[1], x.size, relative, o);
                }
                // Pass 2: the update.
                last(w.vectors, direction);
            }
        }

        detail::factored_workspaces m_work;
    };
}

#endif
