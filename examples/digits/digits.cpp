// Handwritten digits (8 x 8 images, 10 classes) with an MLP 64 -> 256 -> 256 -> 10,
// trained by several optimizers from the same initial weights: by default AdamW, AdamW
// with 8-bit states (block-wise; the output layer and the biases, under 4,096 elements,
// keep float states), SGD with momentum, and the Muon + AdamW hybrid (Muon on the hidden
// matrices, AdamW on the output layer and the biases). Writes the loss and test accuracy
// per step (CSV) and a plot comparing them (SVG), and checks that memory stayed flat.
//
//   digits [--steps N] [--batch B] [--out DIR] [--threads T] [--runs NAME,NAME,...]
//          [--lr X] [--require-accuracy A] [--require-8bit-within POINTS] [--data-parallel]
//
// --data-parallel (under mpiexec -n N) trains every run on N ranks, each on its share of
// every batch, with ZeRO-1: sharded optimizer states, Muon's matrices owned by ranks.
//
// --runs picks runs by name (the table in optimizer_table(); `all` for every one), --lr
// sets their learning rate (the hybrid's Muon part). With --require-accuracy, the program
// fails unless every run ends at test accuracy A (0..1) or more; with --require-8bit-within,
// unless adamw_8bit ends within POINTS percentage points of adamw's test accuracy.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>
#include <string>
#include <vector>

#include <zlib.h>

#include <xoptim/optim/hybrid.hpp>
#include <xoptim/optim/schedulefree.hpp>
#include <xoptim/step/stepper.hpp>
#include <xoptim/train/layers.hpp>
#include <xoptim/train/memory.hpp>
#include <xoptim/train/progress.hpp>
#include <xoptim/xoptim.hpp>

#include "../common/distributed.hpp"
#include "../common/evaluation.hpp"
#include "../common/options.hpp"
#include "../common/svg_plot.hpp"

namespace
{
    using xoptim::named;
    using xoptim::train::linear;

    constexpr std::size_t pixels = 64;
    constexpr std::size_t classes = 10;
    constexpr std::size_t hidden = 256;

    struct dataset
    {
        std::vector<float> x;  // (n, 64), pixels scaled to [0, 1]
        std::vector<std::int32_t> y;

        std::size_t size() const noexcept
        {
            return y.size();
        }
    };

    // The CSV (64 pixel values 0..16, then the label), gzip-compressed.
    dataset load_digits(const std::string& path)
    {
        gzFile file = gzopen(path.c_str(), "rb");
        if (file == nullptr)
        {
            throw std::runtime_error("cannot open " + path);
        }
        dataset d;
        char line[1024];
        while (gzgets(file, line, sizeof line) != nullptr)
        {
            std::vector<int> values;
            for (char* p = line; *p != '\0' && *p != '\n';)
            {
                char* end = nullptr;
                values.push_back(int(std::strtol(p, &end, 10)));
                p = *end == ',' ? end + 1 : end;
                if (end == p && *p != '\0' && *p != '\n')
                {
                    break;
                }
            }
            if (values.size() != pixels + 1)
            {
                gzclose(file);
                throw std::runtime_error(path + ": line " + std::to_string(d.size() + 1) + " has "
                                         + std::to_string(values.size()) + " values, expected 65");
            }
            for (std::size_t i = 0; i < pixels; ++i)
            {
                d.x.push_back(float(values[i]) / 16.0f);
            }
            d.y.push_back(values[pixels]);
        }
        gzclose(file);
        return d;
    }

    // Rows of `d` at `rows`.
    dataset subset(const dataset& d, const std::vector<std::size_t>& rows)
    {
        dataset s;
        for (std::size_t r : rows)
        {
            s.x.insert(s.x.end(), d.x.begin() + long(r * pixels), d.x.begin() + long((r + 1) * pixels));
            s.y.push_back(d.y[r]);
        }
        return s;
    }

    // Indices 0..n-1 in an order fixed by `seed`.
    std::vector<std::size_t> shuffled(std::size_t n, std::uint64_t seed)
    {
        std::vector<std::size_t> order(n);
        std::iota(order.begin(), order.end(), 0);
        std::vector<double> key(n);
        for (std::size_t i = 0; i < n; ++i)
        {
            key[i] = xoptim::train::hash_uniform(seed, i);
        }
        std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return key[a] < key[b]; });
        return order;
    }

    struct mlp
    {
        linear<float> l0{pixels, hidden, 101}, l1{hidden, hidden, 202}, out{hidden, classes, 303};
        std::vector<float> h0, h1, logits, d_logits, d_h1, d_h0;

        void resize(std::size_t batch)
        {
            h0.resize(batch * hidden);
            h1.resize(batch * hidden);
            logits.resize(batch * classes);
            d_logits.resize(batch * classes);
            d_h1.resize(batch * hidden);
            d_h0.resize(batch * hidden);
        }

        const float* forward(const float* x, std::size_t batch)
        {
            resize(batch);
            l0.forward(x, batch, h0.data());
            xoptim::train::relu(h0.data(), h0.size());
            l1.forward(h0.data(), batch, h1.data());
            xoptim::train::relu(h1.data(), h1.size());
            out.forward(h1.data(), batch, logits.data());
            return logits.data();
        }

        // Forward and backward on one batch; returns the mean loss.
        double train_batch(const float* x, const std::int32_t* y, std::size_t batch)
        {
            forward(x, batch);
            const double loss = xoptim::train::softmax_cross_entropy(logits.data(), y, batch, classes, d_logits.data());
            out.backward(h1.data(), d_logits.data(), batch, d_h1.data());
            xoptim::train::relu_backward(h1.data(), d_h1.data(), d_h1.size());
            l1.backward(h0.data(), d_h1.data(), batch, d_h0.data());
            xoptim::train::relu_backward(h0.data(), d_h0.data(), d_h0.size());
            l0.backward(x, d_h0.data(), batch, nullptr);
            return loss;
        }

        double accuracy(const dataset& d)
        {
            forward(d.x.data(), d.size());
            return double(xoptim::train::count_correct(logits.data(), d.y.data(), d.size(), classes))
                   / double(d.size());
        }

        // Names as a PyTorch nn.Sequential would give them; "output" keeps the last layer
        // off Muon in the hybrid.
        auto params()
        {
            return std::make_tuple(named("layers.0.weight", l0.weight), named("layers.0.bias", l0.bias),
                                   named("layers.1.weight", l1.weight), named("layers.1.bias", l1.bias),
                                   named("output.weight", out.weight), named("output.bias", out.bias));
        }

        auto grads()
        {
            return std::tie(l0.grad_weight, l0.grad_bias, l1.grad_weight, l1.grad_bias, out.grad_weight, out.grad_bias);
        }
    };

    struct run_result
    {
        std::string name;
        std::vector<double> steps, loss, eval_steps, accuracy, seconds;
        double train_seconds = 0;
        std::size_t steps_to_95 = 0;  // 0: never reached
        double seconds_to_95 = 0;
    };

    struct settings
    {
        std::size_t steps = 600;
        std::size_t batch = 64;
        std::size_t eval_every = 20;
        std::filesystem::path out = "digits_out";
        std::string runs = "adamw,adamw_8bit,sgd_momentum,muon_adamw";
        double lr = 0;                    // 0: each run's own
        double require_accuracy = -1;     // negative: no check
        double require_8bit_within = -1;  // points; negative: no check
        bool data_parallel = false;

        bool wants(const std::string& name) const
        {
            return runs == "all" || ("," + runs + ",").find("," + name + ",") != std::string::npos;
        }
    };

    // What a run trains with besides its optimizer.
    struct run_context
    {
        const char* name;
        const dataset& train_set;
        const dataset& test_set;
        const settings& s;
        xoptim::train::memory_profiler& memory;
        const examples::cluster& cluster;
    };

    template <class Optimizer>
    run_result train(const run_context& c, Optimizer optimizer)
    {
        run_result r;
        // Guarded steps: a NaN or Inf gradient would be skipped and counted, never applied.
        c.cluster.with_trainer(std::move(optimizer), xoptim::stepper_options{}, [&](auto& step) {
            r = train_with(c.name, step, c.train_set, c.test_set, c.s, c.memory, c.cluster);
        });
        return r;
    }

    // The runs --runs knows: a name, what it is, its learning rate (the best of the sweep
    // in docs/training.md where one was run) and how to train it at another.
    struct optimizer_entry
    {
        const char* name;
        const char* description;
        double lr;
        bool one_process;  // refuses --data-parallel
        run_result (*train)(const run_context&, double lr);
    };

    template <class Options>
    Options with_lr(Options o, double lr)
    {
        o.lr = lr;
        return o;
    }

    const std::vector<optimizer_entry>& optimizer_table()
    {
        static const std::vector<optimizer_entry> table = {
            {"adamw", "AdamW, PyTorch's defaults", 1e-3, false,
             [](const run_context& c, double lr) {
                 return train(c, xoptim::adamw(with_lr(xoptim::adamw_options{}, lr)));
             }},
            {"adamw_8bit", "AdamW with 8-bit block-wise states", 1e-3, false,
             [](const run_context& c, double lr) {
                 xoptim::adamw eight_bit(with_lr(xoptim::adamw_options{}, lr));
                 xoptim::storage_options storage;
                 storage.states = xoptim::state_storage::blockwise_8bit;
                 eight_bit.set_storage(storage);
                 return train(c, std::move(eight_bit));
             }},
            {"sgd_momentum", "SGD, momentum 0.9", 0.05, false,
             [](const run_context& c, double lr) {
                 xoptim::sgd_options o;
                 o.lr = lr;
                 o.momentum = 0.9;
                 return train(c, xoptim::sgd(o));
             }},
            {"muon_adamw", "Muon on the hidden matrices, AdamW (lr 1e-3) on the rest", 0.02, false,
             [](const run_context& c, double lr) {
                 xoptim::hybrid_options o;
                 o.muon.lr = lr;
                 return train(c, xoptim::make_hybrid(o));
             }},
            {"lion", "Lion, betas (0.9, 0.99)", 3e-3, false,
             [](const run_context& c, double lr) {
                 return train(c, xoptim::lion(with_lr(xoptim::lion_options{}, lr)));
             }},
            {"adamw_cautious", "cautious AdamW (timm's mean normalization)", 1e-3, false,
             [](const run_context& c, double lr) {
                 xoptim::adamw_options o = with_lr(xoptim::adamw_options{}, lr);
                 o.caution = true;
                 return train(c, xoptim::adamw(o));
             }},
            {"lion_cautious", "cautious Lion (timm's mean normalization)", 1e-4, false,
             [](const run_context& c, double lr) {
                 xoptim::lion_options o = with_lr(xoptim::lion_options{}, lr);
                 o.caution = true;
                 return train(c, xoptim::lion(o));
             }},
            {"lamb", "LAMB, apex's defaults (weight decay 0.01, gradient norm clipped at 1)", 3e-3, false,
             [](const run_context& c, double lr) {
                 return train(c, xoptim::lamb(with_lr(xoptim::lamb_options{}, lr)));
             }},
            {"adafactor", "Adafactor, torch.optim.Adafactor's defaults", 0.1, false,
             [](const run_context& c, double lr) {
                 return train(c, xoptim::adafactor(with_lr(xoptim::adafactor_options{}, lr)));
             }},
            {"ademamix", "AdEMAMix, alpha 5, beta3 0.9999, both warmed up over the run", 3e-3, false,
             [](const run_context& c, double lr) {
                 xoptim::ademamix_options o = with_lr(xoptim::ademamix_options{}, lr);
                 o.alpha = 5;
                 o.alpha_warmup = c.s.steps;
                 o.beta3_warmup = c.s.steps;
                 return train(c, xoptim::ademamix(o));
             }},
            {"muon_polar_express", "the hybrid with Polar Express coefficients in Muon", 0.01, false,
             [](const run_context& c, double lr) {
                 xoptim::hybrid_options o;
                 o.muon = xoptim::muon_options::polar_express();
                 o.muon.lr = lr;
                 return train(c, xoptim::make_hybrid(o));
             }},
            {"normuon_adamw", "the hybrid with NorMuon's neuron-wise normalization in Muon", 0.01, false,
             [](const run_context& c, double lr) {
                 xoptim::hybrid_options o;
                 o.muon.lr = lr;
                 o.muon.normuon = true;
                 return train(c, xoptim::make_hybrid(o));
             }},
            {"sgd_schedulefree", "Schedule-Free SGD, momentum 0.9, 50 warmup steps, evaluated at x", 3.0, true,
             [](const run_context& c, double lr) {
                 xoptim::sgd_schedulefree_options o = with_lr(xoptim::sgd_schedulefree_options{}, lr);
                 o.warmup_steps = 50;
                 return train(c, xoptim::sgd_schedulefree(o));
             }},
            {"adamw_schedulefree", "Schedule-Free AdamW, 50 warmup steps, evaluated at x", 1e-2, true,
             [](const run_context& c, double lr) {
                 xoptim::adamw_schedulefree_options o = with_lr(xoptim::adamw_schedulefree_options{}, lr);
                 o.warmup_steps = 50;
                 return train(c, xoptim::adamw_schedulefree(o));
             }},
        };
        return table;
    }

    template <class Trainer>
    run_result train_with(const std::string& name, Trainer& step, const dataset& train_set, const dataset& test_set,
                          const settings& s, xoptim::train::memory_profiler& memory, const examples::cluster& cluster)
    {
        mlp model;
        // This rank's rows of every batch (all of them in one process).
        const auto [first, rows] = cluster.share(s.batch);
        run_result r;
        r.name = name;
        std::vector<float> bx(s.batch * pixels);
        std::vector<std::int32_t> by(s.batch);
        const std::size_t per_epoch = train_set.size() / s.batch;
        std::vector<std::size_t> order;
        std::cout << name << '\n';
        xoptim::train::progress_bar bar(s.steps, std::cout);
        double seconds = 0;
        for (std::size_t t = 0; t < s.steps; ++t)
        {
            if (t % per_epoch == 0)
            {
                order = shuffled(train_set.size(), 1000 + t / per_epoch);
            }
            for (std::size_t k = 0; k < s.batch; ++k)
            {
                const std::size_t row = order[(t % per_epoch) * s.batch + k];
                std::copy_n(train_set.x.begin() + long(row * pixels), pixels, bx.begin() + long(k * pixels));
                by[k] = train_set.y[row];
            }
            const auto start = std::chrono::steady_clock::now();
            const double loss = cluster.mean(model.train_batch(bx.data() + first * pixels, by.data() + first, rows));
            step(model.params(), model.grads());
            if (t == 0 && cluster.size() > 1)
            {
                std::cout << examples::assignment_of(step);
            }
            seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            r.steps.push_back(double(t + 1));
            r.loss.push_back(loss);
            r.seconds.push_back(seconds);
            memory.record_step(memory.steps_recorded());  // one series over all runs
            if ((t + 1) % s.eval_every == 0 || t + 1 == s.steps)
            {
                double acc = 0;
                examples::at_evaluation_point(step, model.params(), [&] { acc = model.accuracy(test_set); });
                r.eval_steps.push_back(double(t + 1));
                r.accuracy.push_back(acc);
                if (acc >= 0.95 && r.steps_to_95 == 0)
                {
                    r.steps_to_95 = t + 1;
                    r.seconds_to_95 = seconds;
                }
                bar.update(t + 1, {{"loss", loss}, {"test acc", acc}});
            }
            else
            {
                bar.update(t + 1, {{"loss", loss}});
            }
        }
        bar.finish();
        r.train_seconds = seconds;
        if (step.skipped_steps() != 0)
        {
            std::cout << "  " << step.skipped_steps() << " steps skipped for non-finite gradients\n";
        }
        return r;
    }

    // Mean of the last `window` values at each point: a readable loss curve.
    std::vector<double> smoothed(const std::vector<double>& v, std::size_t window)
    {
        std::vector<double> out(v.size());
        double sum = 0;
        for (std::size_t i = 0; i < v.size(); ++i)
        {
            sum += v[i] - (i >= window ? v[i - window] : 0.0);
            out[i] = sum / double(std::min(i + 1, window));
        }
        return out;
    }

    void write_csv(const std::filesystem::path& file, const std::vector<run_result>& runs)
    {
        std::ofstream out(file);
        out << "optimizer,step,train_seconds,train_loss,test_accuracy\n";
        for (const auto& r : runs)
        {
            std::size_t e = 0;
            for (std::size_t i = 0; i < r.steps.size(); ++i)
            {
                out << r.name << ',' << r.steps[i] << ',' << r.seconds[i] << ',' << r.loss[i] << ',';
                if (e < r.eval_steps.size() && r.eval_steps[e] == r.steps[i])
                {
                    out << r.accuracy[e++];
                }
                out << '\n';
            }
        }
        if (!out.flush())
        {
            throw std::runtime_error("cannot write " + file.string());
        }
    }

    settings parse(int argc, char** argv)
    {
        settings s;
        examples::for_each_option(
            argc, argv,
            [&](const std::string& name, const auto& value) {
                if (name == "--steps")
                {
                    s.steps = examples::count(name, value(), 1);
                }
                else if (name == "--batch")
                {
                    s.batch = examples::count(name, value(), 1);
                }
                else if (name == "--out")
                {
                    s.out = value();
                }
                else if (name == "--threads")
                {
                    xoptim::set_num_threads(examples::count(name, value(), 1));
                }
                else if (name == "--runs")
                {
                    s.runs = value();
                }
                else if (name == "--lr")
                {
                    s.lr = examples::number(name, value(), 0);
                }
                else if (name == "--require-accuracy")
                {
                    s.require_accuracy = examples::number(name, value(), 0, 1);
                }
                else if (name == "--require-8bit-within")
                {
                    s.require_8bit_within = examples::number(name, value(), 0, 100);
                }
                else if (name == "--data-parallel")
                {
                    s.data_parallel = true;
                }
                else
                {
                    return false;
                }
                return true;
            },
            "--steps N, --batch B, --out DIR, --threads T, --runs NAME,..., --lr X, --require-accuracy A, "
            "--require-8bit-within POINTS, "
            "--data-parallel");
        return s;
    }
}

int main(int argc, char** argv)
{
    try
    {
        const settings s = parse(argc, argv);
        const examples::cluster cluster(s.data_parallel, argc, argv);
        const dataset all = load_digits(XOPTIM_DIGITS_DATA);
        // A fixed split: 80% to train, 20% to test.
        const auto order = shuffled(all.size(), 7);
        const std::size_t n_train = all.size() * 4 / 5;
        const dataset train_set = subset(all, {order.begin(), order.begin() + long(n_train)});
        const dataset test_set = subset(all, {order.begin() + long(n_train), order.end()});
        // A step takes its batch from one pass over the training set, without repeats.
        if (s.batch > train_set.size())
        {
            throw std::invalid_argument("--batch must be at most the " + std::to_string(train_set.size())
                                        + " training images (got " + std::to_string(s.batch) + ")");
        }
        cluster.require_rows(s.batch, "--batch");
        std::cout << "digits: " << train_set.size() << " training and " << test_set.size()
                  << " test images, MLP 64-256-256-10, batch " << s.batch << ", " << s.steps << " steps";
        if (cluster.size() > 1)
        {
            std::cout << ", " << cluster.size() << " ranks (ZeRO-1), " << cluster.share(s.batch).second
                      << " rows of each batch per rank";
        }
        std::cout << "\n";

        xoptim::train::memory_profiler memory;
        std::vector<run_result> runs;
        for (const optimizer_entry& e : optimizer_table())
        {
            if (s.wants(e.name))
            {
                if (e.one_process && s.data_parallel)
                {
                    throw std::invalid_argument(std::string("--runs ") + e.name
                                                + " trains in one process: its evaluation point is not sharded");
                }
                const double lr = s.lr > 0 ? s.lr : e.lr;
                std::cout << e.name << ": " << e.description << ", lr " << lr << "\n";
                runs.push_back(e.train({e.name, train_set, test_set, s, memory, cluster}, lr));
            }
        }
        if (runs.empty())
        {
            std::string names;
            for (const optimizer_entry& e : optimizer_table())
            {
                names += std::string(names.empty() ? "" : ", ") + e.name;
            }
            throw std::invalid_argument("--runs names none of " + names + " (or all)");
        }

        if (cluster.rank() == 0)
        {
            std::filesystem::create_directories(s.out);
            write_csv(s.out / "digits.csv", runs);
        }
        std::vector<examples::series> loss, accuracy;
        for (const auto& r : runs)
        {
            loss.push_back({r.name, r.steps, smoothed(r.loss, 20)});
            accuracy.push_back({r.name, r.eval_steps, r.accuracy});
        }
        if (cluster.rank() == 0)
        {
            examples::write_svg((s.out / "digits.svg").string(), "Handwritten digits, MLP 64-256-256-10",
                                {{"training loss (mean of 20 steps)", "step", "loss", loss, true},
                                 {"test accuracy", "step", "accuracy", accuracy, false}});
        }

        std::printf("\n%-18s %10s %10s %14s %14s\n", "optimizer", "test acc", "train s", "steps to 95%",
                    "seconds to 95%");
        for (const auto& r : runs)
        {
            std::printf("%-18s %9.2f%% %10.2f %14s %14s\n", r.name.c_str(), 100 * r.accuracy.back(), r.train_seconds,
                        r.steps_to_95 ? std::to_string(r.steps_to_95).c_str() : "-",
                        r.steps_to_95 ? (std::to_string(r.seconds_to_95).substr(0, 5)).c_str() : "-");
        }
        std::cout << "\n" << memory.report() << "\n";
        // The smoke test's check (ctest runs a short run): every optimizer lowered the loss.
        bool learned = true;
        for (const auto& r : runs)
        {
            const std::size_t w = std::max<std::size_t>(1, std::min<std::size_t>(20, r.loss.size() / 2));
            const double first = std::accumulate(r.loss.begin(), r.loss.begin() + long(w), 0.0) / double(w);
            const double last = std::accumulate(r.loss.end() - long(w), r.loss.end(), 0.0) / double(w);
            if (!(last < first))
            {
                std::cerr << "digits: " << r.name << " did not lower the loss (" << first << " -> " << last << ")\n";
                learned = false;
            }
            if (s.require_accuracy >= 0 && r.accuracy.back() < s.require_accuracy)
            {
                std::cerr << "digits: " << r.name << " ended at " << 100 * r.accuracy.back()
                          << "% test accuracy, under the required " << 100 * s.require_accuracy << "%\n";
                learned = false;
            }
        }
        if (s.require_8bit_within >= 0)
        {
            const auto accuracy_of = [&](const std::string& name) {
                for (const auto& r : runs)
                {
                    if (r.name == name)
                    {
                        return 100 * r.accuracy.back();
                    }
                }
                throw std::invalid_argument("--require-8bit-within needs the " + name + " run");
            };
            const double gap = std::fabs(accuracy_of("adamw_8bit") - accuracy_of("adamw"));
            std::printf("8-bit AdamW against AdamW: %.2f points apart (allowed %.2f)\n", gap, s.require_8bit_within);
            learned = learned && gap <= s.require_8bit_within;
        }
        std::cout << "CSV:  " << (s.out / "digits.csv").string() << "\nplot: " << (s.out / "digits.svg").string()
                  << "\n";
        return learned ? 0 : 1;
    }
    catch (const std::exception& e)
    {
        std::cerr << "digits: " << e.what() << '\n';
        return 1;
    }
}
