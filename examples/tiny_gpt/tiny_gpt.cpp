// A character-level GPT trained in C++ on the King James Bible, with each optimizer
// xoptim has, compared on the model family they were made for.
//
//   tiny_gpt [--optimizer NAME,...] [--steps N] [--sweep] [--out DIR] [--text FILE] ...
//            (--help lists every option)
//
// The model (include/xoptim/train/gpt.hpp): 4 pre-norm transformer blocks, d_model 128,
// 4 heads, context 128, ReLU² MLPs, learned positions, an untied head; 0.84 M parameters.
// Each optimizer trains it from the same initial weights on the same batches (16 windows
// of 128 characters per step) with a warmup-cosine learning rate, global-norm clipping
// and the non-finite guard, validated every 25 steps on 64 fixed windows of the last 10%
// of the text. tiny_gpt prints the comparison table, writes tiny_gpt.csv and tiny_gpt.svg
// (validation loss by step and by training time), a checkpoint per optimizer, and text
// sampled from each trained model. docs/training.md has the results.
#include <algorithm>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <xoptim/linalg/blas_info.hpp>

#include "../common/options.hpp"
#include "optimizers.hpp"
#include "report.hpp"

namespace
{
    using namespace tiny_gpt;

    const char* usage = R"(tiny_gpt: a character-level GPT trained with each of xoptim's optimizers.

  --optimizer NAME,...  which optimizers (default: all): see below
  --lr X                learning rate instead of the optimizer's default (the hybrid: Muon's)
  --adamw-lr X          the hybrid's AdamW learning rate (default: AdamW's)
  --sweep               train each optimizer at every learning rate of its sweep list and
                        compare them at their best (AdamW's best sets the hybrid's AdamW lr;
                        no checkpoints or samples)
  --steps N             optimizer steps per run (default 1000)
  --warmup N            steps of linear warmup before the cosine decay (default 100, at
                        most a tenth of --steps)
  --batch B             sequences per micro-batch (default 16)
  --accumulate K        micro-batches per optimizer step, their gradients averaged (default 1)
  --clip X              global gradient norm clipping (default 1; 0: none)
  --eval-every N        steps between validations (default 25, at most a tenth of --steps)
  --layers N --d-model N --heads N --context N --tied
                        the model (default 4 layers, d_model 128, 4 heads, context 128, untied head)
  --seed N              the model's initialization and the batches' order (default 1)
  --text FILE           train on FILE instead of the King James Bible
  --out DIR             outputs and the text's token cache (default tiny_gpt_out)
  --resume FILE         continue the run FILE (a checkpoint of one optimizer) was saved from
  --stop-after N        stop after step N (the schedules still span --steps) and save
  --save-every N        also save a checkpoint every N steps
  --threads N           threads for the layers and the step (default: all)
  --workers N           data loader threads (default 2)
  --prompt TEXT --sample-chars N --temperature X   the text sampled at the end
)";

    std::vector<std::string> split(const std::string& list)
    {
        std::vector<std::string> out;
        std::stringstream in(list);
        for (std::string item; std::getline(in, item, ',');)
        {
            out.push_back(item);
        }
        return out;
    }

    const optimizer_entry& find_optimizer(const std::string& name)
    {
        std::string known;
        for (const auto& e : optimizer_table())
        {
            if (e.name == name)
            {
                return e;
            }
            known += (known.empty() ? "" : ", ") + std::string(e.name);
        }
        throw std::invalid_argument("--optimizer: unknown optimizer '" + name + "' (known: " + known + ")");
    }

    settings parse(int argc, char** argv)
    {
        settings s;
        bool help = false;
        std::optional<std::size_t> warmup, eval_every;
        examples::for_each_option(
            argc, argv,
            [&](const std::string& name, const auto& value) {
                if (name == "--optimizer") s.optimizers = split(value());
                else if (name == "--lr") s.lr = examples::number(name, value(), 0);
                else if (name == "--adamw-lr") s.adamw_lr = examples::number(name, value(), 0);
                else if (name == "--sweep") s.sweep = true;
                else if (name == "--steps") s.steps = examples::count(name, value(), 1);
                else if (name == "--warmup") warmup = examples::count(name, value(), 0);
                else if (name == "--batch") s.batch = examples::count(name, value(), 1);
                else if (name == "--accumulate") s.accumulate = examples::count(name, value(), 1);
                else if (name == "--clip") s.clip = examples::number(name, value(), 0);
                else if (name == "--eval-every") eval_every = examples::count(name, value(), 1);
                else if (name == "--layers") s.model.layers = examples::count(name, value(), 1);
                else if (name == "--d-model") s.model.d_model = examples::count(name, value(), 1);
                else if (name == "--heads") s.model.heads = examples::count(name, value(), 1);
                else if (name == "--context") s.model.context = examples::count(name, value(), 1);
                else if (name == "--tied") s.model.tied_head = true;
                else if (name == "--seed") s.model.seed = examples::count(name, value(), 1);
                else if (name == "--text") s.text = value();
                else if (name == "--out") s.out = value();
                else if (name == "--resume") s.resume = value();
                else if (name == "--stop-after") s.stop_after = examples::count(name, value(), 1);
                else if (name == "--save-every") s.save_every = examples::count(name, value(), 1);
                else if (name == "--threads") s.threads = examples::count(name, value(), 1);
                else if (name == "--workers") s.workers = examples::count(name, value(), 1);
                else if (name == "--prompt") s.prompt = value();
                else if (name == "--sample-chars") s.sample_chars = examples::count(name, value(), 0);
                else if (name == "--temperature") s.temperature = examples::number(name, value(), 0);
                else if (name == "--help" || name == "-h") help = true;
                else return false;
                return true;
            },
            "an option of tiny_gpt --help");
        if (help)
        {
            std::cout << usage << "\noptimizers:\n";
            for (const auto& e : optimizer_table())
            {
                std::cout << "  " << e.name << ": " << e.description << " (lr " << e.lr << ")\n";
            }
            std::exit(0);
        }
        s.model.vocab = examples::ascii_vocab;
        s.model.check();
        if (s.optimizers.empty())
        {
            for (const auto& e : optimizer_table())
            {
                s.optimizers.push_back(e.name);
            }
        }
        // Short runs scale the defaults down.
        s.warmup = warmup.value_or(std::min(s.warmup, s.steps / 10));
        s.eval_every = eval_every.value_or(std::min(s.eval_every, std::max<std::size_t>(1, s.steps / 10)));
        if (s.warmup >= s.steps)
        {
            throw std::invalid_argument("--warmup (" + std::to_string(s.warmup) + ") must be below --steps ("
                                        + std::to_string(s.steps) + ")");
        }
        if (!s.resume.empty() && (s.optimizers.size() != 1 || s.sweep))
        {
            throw std::invalid_argument("--resume continues one run: give one --optimizer, and no --sweep");
        }
        if (s.prompt.empty())
        {
            throw std::invalid_argument("--prompt must not be empty");
        }
        return s;
    }
}

int main(int argc, char** argv)
{
    try
    {
        settings s = parse(argc, argv);
        std::vector<const optimizer_entry*> chosen;  // in the table's order: AdamW before the hybrid
        for (const auto& e : optimizer_table())
        {
            if (std::find(s.optimizers.begin(), s.optimizers.end(), e.name) != s.optimizers.end())
            {
                chosen.push_back(&e);
            }
        }
        for (const auto& name : s.optimizers)
        {
            find_optimizer(name);  // an unknown name is an error, not ignored
        }
        if (s.threads > 0)
        {
            xoptim::set_num_threads(s.threads);
        }
        if (s.adamw_lr == 0)
        {
            s.adamw_lr = find_optimizer("adamw").lr;
        }
        const corpus text(s.text, s.out, s.model.context, s.validation_windows);
        std::cout << "tiny_gpt: " << text.describe() << "\nmodel: " << s.model.layers << " layers, d_model "
                  << s.model.d_model << ", " << s.model.heads << " heads, context " << s.model.context << ", "
                  << (s.model.tied_head ? "tied" : "untied") << " head; batch " << s.batch << " x "
                  << s.model.context << " characters" << (s.accumulate > 1 ? " x " + std::to_string(s.accumulate) + " micro-batches" : "") << ", " << s.steps << " steps (warmup " << s.warmup
                  << ", cosine to 10%), clipping at " << s.clip << "\nthreads: " << xoptim::num_threads() << "; SIMD: "
                  << xsimd::default_arch::name() << "; BLAS: " << xoptim::blas::library().text() << "\n";

        xoptim::train::memory_profiler memory;
        trainer t(s, text, memory);
        std::vector<run_result> runs;
        std::vector<std::size_t> best;  // index into runs, per chosen optimizer
        for (const optimizer_entry* e : chosen)
        {
            const std::vector<double> lrs = s.sweep ? e->sweep : std::vector<double>{s.lr.value_or(e->lr)};
            std::size_t b = runs.size();
            for (const double lr : lrs)
            {
                t.begin(e->name, lr);
                runs.push_back(e->train(t, lr));
                const run_result& r = runs.back();
                const bool better = r.diverged.empty()
                                    && (!runs[b].diverged.empty() || r.val_loss.back() < runs[b].val_loss.back());
                b = better ? runs.size() - 1 : b;
            }
            best.push_back(b);
            if (std::string(e->name) == "adamw" && s.sweep && runs[b].diverged.empty())
            {
                s.adamw_lr = runs[b].lr;  // the hybrid's AdamW part
            }
        }

        std::vector<const run_result*> best_runs;
        const run_result* reference = nullptr;
        for (const std::size_t b : best)
        {
            if (runs[b].diverged.empty())
            {
                best_runs.push_back(&runs[b]);
                reference = runs[b].optimizer == "adamw" ? &runs[b] : reference;
            }
        }
        if (s.sweep)
        {
            print_sweep(runs);
        }
        print_comparison(best_runs, reference, s.steps);
        write_csv(s.out / "tiny_gpt.csv", runs);
        write_plot(s.out / "tiny_gpt.svg", best_runs, "tiny GPT on " + fs::path(text.name()).filename().string());
        std::cout << "\n" << memory.report() << "\nCSV:  " << (s.out / "tiny_gpt.csv").string()
                  << "\nplot: " << (s.out / "tiny_gpt.svg").string() << "\n";

        // Every optimizer (at its best) must have lowered the validation loss and stayed
        // finite; the smoke tests rely on it.
        int status = 0;
        for (const std::size_t b : best)
        {
            const run_result& r = runs[b];
            if (!r.diverged.empty())
            {
                std::cerr << "tiny_gpt: " << r.optimizer << " (lr " << r.lr << ") diverged at " << r.diverged << "\n";
                status = 1;
            }
            else if (!(r.val_loss.back() < r.val_loss.front()))
            {
                std::cerr << "tiny_gpt: " << r.optimizer << " did not lower the validation loss ("
                          << r.val_loss.front() << " -> " << r.val_loss.back() << ")\n";
                status = 1;
            }
        }
        return status;
    }
    catch (const std::exception& e)
    {
        std::cerr << "tiny_gpt: " << e.what() << '\n';
        return 1;
    }
}
