// One training run of tiny_gpt with any optimizer: the loop (data loader, forward and
// backward, the guarded and clipped step), validation, checkpoints and --resume, a
// diverging run caught, and text sampled at the end.
#ifndef XOPTIM_EXAMPLES_TINY_GPT_TRAINER_HPP
#define XOPTIM_EXAMPLES_TINY_GPT_TRAINER_HPP

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include <xoptim/io/checkpoint.hpp>
#include <xoptim/optim/router.hpp>
#include <xoptim/schedule/schedule.hpp>
#include <xoptim/step/stepper.hpp>
#include <xoptim/train/gpt.hpp>
#include <xoptim/train/loader.hpp>
#include <xoptim/train/memory.hpp>
#include <xoptim/train/progress.hpp>

#include "../common/evaluation.hpp"
#include "corpus.hpp"
#include "run_record.hpp"
#include "sample.hpp"
#include "settings.hpp"

namespace tiny_gpt
{
    // printf's formatting of one number.
    inline std::string format(const char* f, double v)
    {
        char b[64];
        std::snprintf(b, sizeof b, f, v);
        return b;
    }

    struct run_result
    {
        std::string optimizer;
        double lr = 0;
        std::vector<double> steps, train_loss;            // every step
        std::vector<double> eval_steps, eval_seconds, val_loss;  // every eval_every steps and at the ends
        double seconds = 0;        // training time: steps, data, not validation or checkpoints
        double model_seconds = 0;  // forward and backward
        double step_seconds = 0;   // the optimizer's step (with clipping and the guard)
        double wait_seconds = 0;   // waiting for the data loader
        std::size_t steps_run = 0;
        xoptim::state_report state;
        std::string diverged;  // "step N: what", empty when the run stayed finite
    };

    // Whether O routes parameters to several optimizers (a router, parameter groups).
    template <class O, class = void>
    constexpr bool routes = false;

    template <class O>
    constexpr bool routes<O, std::void_t<decltype(std::declval<const O&>().routing_table())>> = true;

    // The state of all of O's optimizers.
    template <class O>
    xoptim::state_report state_of(const O& o)
    {
        if constexpr (routes<O>)
        {
            xoptim::state_report total;
            o.each([&](std::size_t, const auto& each) {
                total.state_bytes += each.report().state_bytes;
                total.param_bytes += each.report().param_bytes;
            });
            return total;
        }
        else
        {
            return o.report();
        }
    }

    // The steps taken (every optimizer of a router takes each step).
    template <class O>
    std::size_t steps_of(const O& o)
    {
        if constexpr (routes<O>)
        {
            std::size_t steps = 0;
            o.each([&](std::size_t k, const auto& each) { steps = k == 0 ? each.step_count() : steps; });
            return steps;
        }
        else
        {
            return o.step_count();
        }
    }

    template <class O>
    void print_routing(const O& o)
    {
        if constexpr (routes<O>)
        {
            std::cout << "routing:\n" << o.routing_table();
        }
        else
        {
            std::cout << "routing: every parameter -> " << O::name << "\n";
        }
    }

    class trainer
    {
    public:

        trainer(const settings& s, const corpus& c, xoptim::train::memory_profiler& memory)
            : m_s(s), m_corpus(c), m_memory(memory)
        {
        }

        const settings& options() const noexcept
        {
            return m_s;
        }

        // The learning rate's schedule: linear warmup from 0, cosine down to 10% at the end.
        xoptim::schedule lr_schedule(double lr) const
        {
            return xoptim::warmup_cosine(lr, (long long)m_s.steps, (long long)m_s.warmup, 0.1);
        }

        // The run about to start: its optimizer's name and learning rate.
        void begin(const std::string& optimizer, double lr)
        {
            m_optimizer = optimizer;
            m_lr = lr;
            m_detail.clear();
        }

        // What else sets the run's optimizer (kept in the run record, printed).
        void note(const std::string& detail)
        {
            m_detail = detail;
        }

        // Trains a fresh model (or the one --resume names) with `opt`.
        template <class Opt>
        run_result run(Opt opt);

        // Where the run's checkpoint goes.
        fs::path checkpoint_path() const
        {
            return m_s.out / (m_optimizer + ".safetensors");
        }

    private:

        double validation_loss(xoptim::train::gpt<float>& model) const;

        run_record record() const
        {
            return make_record(m_s, m_corpus, m_optimizer, m_lr, m_detail);
        }

        template <class Stepper>
        void save(xoptim::train::gpt<float>& model, const Stepper& step, const fs::path& path) const
        {
            write_record(path, record());
            xoptim::save_checkpoint(path.string(), model.params(), step);
        }

        template <class Stepper>
        std::size_t resume(xoptim::train::gpt<float>& model, Stepper& step) const;

        const settings& m_s;
        const corpus& m_corpus;
        xoptim::train::memory_profiler& m_memory;
        std::string m_optimizer, m_detail;
        double m_lr = 0;
    };

    inline double trainer::validation_loss(xoptim::train::gpt<float>& model) const
    {
        const lm_batch& v = m_corpus.validation();
        const std::size_t context = m_s.model.context, windows = v.ids.size() / context;
        double total = 0;
        for (std::size_t w = 0; w < windows; w += m_s.batch)  // in training-sized pieces: no new buffers
        {
            const std::size_t n = std::min(m_s.batch, windows - w);
            total += model.loss(v.ids.data() + w * context, v.targets.data() + w * context, n, context, false)
                     * double(n);
        }
        return total / double(windows);
    }

    // Checks the record beside the checkpoint against this run, then loads it; returns
    // the step it was saved at. Throws naming what differs; nothing is changed then.
    template <class Stepper>
    std::size_t trainer::resume(xoptim::train::gpt<float>& model, Stepper& step) const
    {
        const std::string path = m_s.resume.string();
        const std::string differences = compare(read_record(m_s.resume), record());
        if (!differences.empty())
        {
            throw std::runtime_error("cannot resume from " + path + ": it was trained " + differences
                                     + " (nothing was loaded or written)");
        }
        try
        {
            xoptim::load_checkpoint(path, model.params(), step);
        }
        catch (const std::exception& e)
        {
            throw std::runtime_error(std::string("cannot resume: ") + e.what() + " (nothing was loaded or written)");
        }
        return steps_of(step.optimizer());
    }

    template <class Opt>
    run_result trainer::run(Opt opt)
    {
        using clock = std::chrono::steady_clock;
        const auto seconds_since = [](clock::time_point t) {
            return std::chrono::duration<double>(clock::now() - t).count();
        };
        xoptim::train::gpt<float> model(m_s.model);
        xoptim::stepper_options so;
        so.clip_global_norm = m_s.clip;
        so.on_non_finite = xoptim::non_finite::raise;  // a NaN gradient ends the run, named
        so.accumulate = m_s.accumulate;
        xoptim::stepper<Opt> step(std::move(opt), so);

        run_result r;
        r.optimizer = m_optimizer;
        r.lr = m_lr;
        const std::size_t first = m_s.resume.empty() ? 0 : resume(model, step);
        const std::size_t last = m_s.stop_after > 0 ? std::min(m_s.stop_after, m_s.steps) : m_s.steps;
        std::cout << "\n" << m_optimizer << " (lr " << m_lr << (m_detail.empty() ? "" : ", " + m_detail) << "), "
                  << model.parameter_count() << " parameters";
        if (first > 0)
        {
            std::cout << ", resumed at step " << first << " from " << m_s.resume.string();
        }
        std::cout << "\n";
        if (m_s.resume.empty())  // a resumed run's state came with the checkpoint
        {
            step.optimizer().init(model.params());
        }
        print_routing(step.optimizer());
        r.state = state_of(step.optimizer());
        std::printf("optimizer state: %.2f MB for %.2f MB of parameters (%.2f bytes per parameter byte)\n",
                    double(r.state.state_bytes) / 1048576.0, double(r.state.param_bytes) / 1048576.0,
                    r.state.ratio());

        // Batch k of the run is micro-batch k % accumulate of step k / accumulate + 1.
        const std::size_t micro = m_s.accumulate, batch = m_s.batch;
        xoptim::train::loader_options lo;
        lo.workers = m_s.workers;
        lo.first = first * micro;
        lo.count = last > first ? (last - first) * micro : 0;
        xoptim::train::batch_loader<lm_batch> loader(
            [this, batch](std::size_t index, lm_batch& b) { m_corpus.fill(m_s.model.seed, index, batch, b); }, lo);

        const auto evaluate = [&](std::size_t t, double at_seconds) {
            r.eval_steps.push_back(double(t));
            r.eval_seconds.push_back(at_seconds);
            examples::at_evaluation_point(step, model.params(), [&] { r.val_loss.push_back(validation_loss(model)); });
            if (!std::isfinite(r.val_loss.back()) && r.diverged.empty())
            {
                r.diverged = "step " + std::to_string(t) + ": the validation loss is " + std::to_string(r.val_loss.back());
            }
        };
        evaluate(first, 0);
        xoptim::train::progress_bar bar(last, std::cout);
        bar.start_step(first);
        const auto start = clock::now();
        double outside = 0;  // validation and checkpoints, left out of the training time
        double loss_sum = 0;
        for (;;)
        {
            const auto wait = clock::now();
            auto b = loader.next();
            r.wait_seconds += seconds_since(wait);
            if (!b)
            {
                break;
            }
            const std::size_t t = b.index() / micro + 1;
            const auto t0 = clock::now();
            const double loss = model.loss(b->ids.data(), b->targets.data(), batch, m_s.model.context, true);
            r.model_seconds += seconds_since(t0);
            b.release();
            if (!std::isfinite(loss))
            {
                r.diverged = "step " + std::to_string(t) + ": the training loss is " + std::to_string(loss);
                break;
            }
            loss_sum += loss;
            const auto t1 = clock::now();
            bool stepped = false;
            try
            {
                stepped = step(model.params(), model.grads());  // true on a step's last micro-batch
            }
            catch (const xoptim::non_finite_error& e)
            {
                r.diverged = "step " + std::to_string(t) + ": " + e.what();
                break;
            }
            r.step_seconds += seconds_since(t1);
            if (!stepped)
            {
                continue;
            }
            r.steps.push_back(double(t));
            r.train_loss.push_back(loss_sum / double(micro));
            loss_sum = 0;
            m_memory.record_step(m_memory.steps_recorded());
            ++r.steps_run;
            const auto pause = clock::now();
            if (t % m_s.eval_every == 0 || t == last)
            {
                evaluate(t, seconds_since(start) - outside);
                if (!r.diverged.empty())
                {
                    break;
                }
                bar.update(t, {{"loss", r.train_loss.back()}, {"val", r.val_loss.back()}});
                std::cout << std::flush;  // a log file sees the progress as it happens
            }
            else
            {
                bar.update(t, {{"loss", r.train_loss.back()}});
            }
            if (m_s.save_every > 0 && t % m_s.save_every == 0 && t != last)
            {
                save(model, step, checkpoint_path());
            }
            outside += seconds_since(pause);
        }
        bar.finish();
        r.seconds = seconds_since(start) - outside;
        if (!r.diverged.empty())
        {
            std::cout << m_optimizer << " (lr " << m_lr << ") diverged at " << r.diverged
                      << "; the run stops here, no checkpoint written\n";
            return r;
        }
        const double per_step = r.steps_run > 0 ? 1000.0 / double(r.steps_run) : 0;
        std::printf("per step: %.1f ms forward + backward, %.2f ms optimizer (%.1f%% of the step), %.2f ms waiting "
                    "for data; validation loss %.4f -> %.4f\n",
                    r.model_seconds * per_step, r.step_seconds * per_step,
                    100 * r.step_seconds / (r.model_seconds + r.step_seconds), r.wait_seconds * per_step,
                    r.val_loss.front(), r.val_loss.back());
        if (!m_s.sweep)
        {
            save(model, step, checkpoint_path());
            std::cout << "checkpoint: " << checkpoint_path().string() << " (step " << last << ")\n";
            if (last < m_s.steps)
            {
                std::cout << "stopped at step " << last << " of " << m_s.steps << "; continue with --resume "
                          << checkpoint_path().string() << "\n";
            }
            for (const double temperature : {0.0, m_s.temperature})
            {
                std::string text;
                examples::at_evaluation_point(step, model.params(), [&] {
                    text = generate(model, m_s.prompt, m_s.sample_chars, temperature, 7);
                });
                for (std::size_t at = 0; (at = text.find('\n', at)) != std::string::npos; at += 5)
                {
                    text.replace(at, 1, "\n    ");
                }
                std::printf("sample, %s %.2g:\n    %s\n", temperature == 0 ? "greedy" : "temperature", temperature,
                            text.c_str());
            }
        }
        return r;
    }
}

#endif
