// What tiny_gpt reports after its runs: the comparison at each optimizer's best learning
// rate (as a Markdown table, the one in docs/training.md), the sweep, a CSV of every run
// and an SVG plot of the validation loss against steps and against training time.
#ifndef XOPTIM_EXAMPLES_TINY_GPT_REPORT_HPP
#define XOPTIM_EXAMPLES_TINY_GPT_REPORT_HPP

#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "../common/svg_plot.hpp"
#include "trainer.hpp"

namespace tiny_gpt
{
    struct reach
    {
        double step, seconds;
    };

    // The first evaluation at which r's validation loss is at most `target`.
    inline std::optional<reach> reached(const run_result& r, double target)
    {
        for (std::size_t k = 0; k < r.val_loss.size(); ++k)
        {
            if (r.val_loss[k] <= target)
            {
                return reach{r.eval_steps[k], r.eval_seconds[k]};
            }
        }
        return std::nullopt;
    }

    // The validation loss at the first evaluation at or after `step`.
    inline double loss_at(const run_result& r, double step)
    {
        for (std::size_t k = 0; k < r.val_loss.size(); ++k)
        {
            if (r.eval_steps[k] >= step)
            {
                return r.val_loss[k];
            }
        }
        return r.val_loss.back();
    }

    // One row per optimizer (its best run); `reference` (AdamW's) sets the target loss.
    inline void print_comparison(const std::vector<const run_result*>& best, const run_result* reference,
                                 std::size_t steps)
    {
        const double quarter = double(steps) / 4;
        std::printf("\n| optimizer | lr | val %g | val %g | val %g | val %g | steps to %s | s to %s | fwd+bwd ms/step | "
                    "optimizer ms/step | optimizer share | state bytes/param byte |\n",
                    quarter, 2 * quarter, 3 * quarter, 4 * quarter,
                    reference ? format("%.4f", reference->val_loss.back()).c_str() : "-",
                    reference ? "it" : "-");
        std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        const auto target = reference ? reached(*reference, reference->val_loss.back()) : std::nullopt;
        for (const run_result* r : best)
        {
            std::string to_steps = "-", to_seconds = "-";
            if (target)
            {
                if (const auto at = reached(*r, reference->val_loss.back()))
                {
                    to_steps = format("%.0f", at->step) + format(" (%.2fx)", at->step / target->step);
                    to_seconds = format("%.1f", at->seconds) + format(" (%.2fx)", at->seconds / target->seconds);
                }
                else
                {
                    to_steps = to_seconds = "not reached";
                }
            }
            const double n = double(std::max<std::size_t>(1, r->steps_run));
            std::printf("| %s | %g | %.4f | %.4f | %.4f | %.4f | %s | %s | %.1f | %.2f | %.1f%% | %.2f |\n",
                        r->optimizer.c_str(), r->lr, loss_at(*r, quarter), loss_at(*r, 2 * quarter),
                        loss_at(*r, 3 * quarter), r->val_loss.back(), to_steps.c_str(), to_seconds.c_str(),
                        1000 * r->model_seconds / n, 1000 * r->step_seconds / n,
                        100 * r->step_seconds / (r->model_seconds + r->step_seconds), r->state.ratio());
        }
    }

    inline void print_sweep(const std::vector<run_result>& runs)
    {
        std::printf("\n| optimizer | lr | final val loss |\n|---|---:|---:|\n");
        for (const auto& r : runs)
        {
            std::printf("| %s | %g | %s |\n", r.optimizer.c_str(), r.lr,
                        r.diverged.empty() ? format("%.4f", r.val_loss.back()).c_str()
                                           : ("diverged at " + r.diverged).c_str());
        }
    }

    inline void write_csv(const fs::path& path, const std::vector<run_result>& runs)
    {
        std::ofstream csv(path);
        csv << "optimizer,lr,step,train_loss,val_loss,seconds\n";
        for (const auto& r : runs)
        {
            std::size_t e = 0;
            for (std::size_t i = 0; i < r.steps.size(); ++i)
            {
                csv << r.optimizer << ',' << r.lr << ',' << r.steps[i] << ',' << r.train_loss[i] << ',';
                while (e < r.eval_steps.size() && r.eval_steps[e] < r.steps[i])
                {
                    ++e;
                }
                if (e < r.eval_steps.size() && r.eval_steps[e] == r.steps[i])
                {
                    csv << r.val_loss[e] << ',' << r.eval_seconds[e];
                }
                else
                {
                    csv << ',';
                }
                csv << '\n';
            }
        }
        if (!csv.flush())
        {
            throw std::runtime_error("cannot write " + path.string());
        }
    }

    inline void write_plot(const fs::path& path, const std::vector<const run_result*>& best, const std::string& title)
    {
        std::vector<examples::series> by_step, by_time;
        for (const run_result* r : best)
        {
            const std::string label = r->optimizer + " lr " + format("%g", r->lr);
            by_step.push_back({label, r->eval_steps, r->val_loss});
            by_time.push_back({label, r->eval_seconds, r->val_loss});
        }
        examples::write_svg(path.string(), title,
                            {{"validation loss by step", "step", "loss (nats/char)", by_step, false},
                             {"validation loss by training time", "seconds", "loss (nats/char)", by_time, false}});
    }
}

#endif
