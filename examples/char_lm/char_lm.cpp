// A character-level language model on a real English text, trained with AdamW and with
// the Muon + AdamW hybrid (embedding and output head on AdamW, hidden matrices on Muon),
// each with a warmup-cosine learning rate, global-norm clipping and a guarded step.
// Reports the steps each needs to reach the same validation loss, the loader's headroom
// and the memory trend; writes a CSV, an SVG plot and a checkpoint of the hybrid.
//
// The text: the King James Bible (public domain), from Debian's bible-kjv and
// bible-kjv-text packages (`bible` prints it), or any text file with --text.
//
//   char_lm [--steps N] [--out DIR] [--text FILE] [--sweep] [--workers W]
//           [--adamw-lr X] [--muon-lr X] [--data-parallel]
//
// --data-parallel (under mpiexec -n N) trains on N ranks, each on its share of every batch,
// with ZeRO-1 AdamW and the distributed hybrid (Muon's matrices owned by ranks).
//
// The model (a Bengio-style neural LM): the previous 8 characters, each embedded in 32
// dimensions, concatenated (256) -> 256 -> 256 (ReLU) -> 128 logits (ASCII).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include <xoptim/io/checkpoint.hpp>
#include <xoptim/optim/hybrid.hpp>
#include <xoptim/train/data.hpp>
#include <xoptim/train/layers.hpp>
#include <xoptim/train/memory.hpp>
#include <xoptim/train/progress.hpp>
#include <xoptim/xoptim.hpp>

#include "../common/distributed.hpp"
#include "../common/ascii_text.hpp"
#include "../common/options.hpp"
#include "../common/svg_plot.hpp"

namespace
{
    namespace fs = std::filesystem;
    using xoptim::named;
    using xoptim::train::hash_uniform;

    constexpr std::size_t context = 8;
    constexpr std::size_t embed_dim = 32;
    constexpr std::size_t width = context * embed_dim;  // 256
    constexpr std::size_t vocab = examples::ascii_vocab;
    constexpr std::size_t batch = 256;

    struct settings
    {
        std::size_t steps = 1500;
        std::size_t eval_every = 50;
        std::size_t warmup = 100;
        std::size_t workers = 8;
        fs::path out = "char_lm_out";
        fs::path text;  // empty: the King James Bible through `bible`
        bool sweep = false;
        // The best of the sweep (--sweep; docs/training.md). The hybrid's AdamW part uses
        // AdamW's best lr.
        double adamw_lr = 1e-2;
        double muon_lr = 0.01;
        bool data_parallel = false;
    };

    struct lm_batch
    {
        std::vector<std::int32_t> ids = std::vector<std::int32_t>(batch * context);
        std::vector<std::int32_t> targets = std::vector<std::int32_t>(batch);
    };

    // Windows of `context` characters and the character after each, from [begin, end).
    void fill_windows(const std::uint8_t* tokens, std::size_t begin, std::size_t end, std::uint64_t seed,
                      std::size_t rows, std::int32_t* ids, std::int32_t* targets)
    {
        const std::size_t span = end - begin - context;
        for (std::size_t r = 0; r < rows; ++r)
        {
            const std::size_t at = begin + std::size_t((hash_uniform(seed, r) + 1) * 0.5 * double(span)) % span;
            for (std::size_t j = 0; j < context; ++j)
            {
                ids[r * context + j] = tokens[at + j];
            }
            targets[r] = tokens[at + context];
        }
    }

    struct model
    {
        xoptim::train::embedding<float> embedding{vocab, embed_dim, 11};
        xoptim::train::linear<float> l0{width, width, 12}, l1{width, width, 13}, head{width, vocab, 14};
        std::vector<float> e, h0, h1, logits, d_logits, d_h1, d_h0, d_e;

        void resize(std::size_t rows)
        {
            e.resize(rows * width);
            h0.resize(rows * width);
            h1.resize(rows * width);
            logits.resize(rows * vocab);
            d_logits.resize(rows * vocab);
            d_h1.resize(rows * width);
            d_h0.resize(rows * width);
            d_e.resize(rows * width);
        }

        double loss(const std::int32_t* ids, const std::int32_t* targets, std::size_t rows, bool backward)
        {
            resize(rows);
            embedding.forward(ids, rows * context, e.data());  // (rows * context, 32) is (rows, 256)
            l0.forward(e.data(), rows, h0.data());
            xoptim::train::relu(h0.data(), h0.size());
            l1.forward(h0.data(), rows, h1.data());
            xoptim::train::relu(h1.data(), h1.size());
            head.forward(h1.data(), rows, logits.data());
            const double l = xoptim::train::softmax_cross_entropy(logits.data(), targets, rows, vocab, d_logits.data());
            if (backward)
            {
                head.backward(h1.data(), d_logits.data(), rows, d_h1.data());
                xoptim::train::relu_backward(h1.data(), d_h1.data(), d_h1.size());
                l1.backward(h0.data(), d_h1.data(), rows, d_h0.data());
                xoptim::train::relu_backward(h0.data(), d_h0.data(), d_h0.size());
                l0.backward(e.data(), d_h0.data(), rows, d_e.data());
                embedding.backward(ids, d_e.data(), rows * context);
            }
            return l;
        }

        auto params()
        {
            return std::make_tuple(named("embedding.weight", embedding.weight), named("layers.0.weight", l0.weight),
                                   named("layers.0.bias", l0.bias), named("layers.1.weight", l1.weight),
                                   named("layers.1.bias", l1.bias), named("head.weight", head.weight),
                                   named("head.bias", head.bias));
        }

        auto grads()
        {
            return std::tie(embedding.grad_weight, l0.grad_weight, l0.grad_bias, l1.grad_weight, l1.grad_bias,
                            head.grad_weight, head.grad_bias);
        }
    };

    struct run_result
    {
        std::string name;
        double lr = 0;
        std::vector<double> steps, loss, eval_steps, val_loss;
        double seconds = 0;
        double loader_headroom = 0;  // loader throughput / step rate
    };

    struct corpus
    {
        const std::uint8_t* tokens;
        std::size_t train_end;  // [0, train_end) trains, the rest validates
        std::size_t size;
        std::vector<std::int32_t> val_ids, val_targets;
    };

    double validation_loss(model& m, const corpus& c)
    {
        const std::size_t rows = c.val_targets.size(), chunk = 1024;
        double total = 0;
        for (std::size_t r = 0; r < rows; r += chunk)
        {
            const std::size_t n = std::min(chunk, rows - r);
            total += m.loss(c.val_ids.data() + r * context, c.val_targets.data() + r, n, false) * double(n);
        }
        return total / double(rows);
    }

    xoptim::stepper_options guarded_clipped()
    {
        xoptim::stepper_options o;
        o.clip_global_norm = 1.0;
        return o;
    }

    template <class Trainer>
    run_result train_with(const std::string& name, double lr, Trainer& step, const corpus& c, const settings& s,
                          xoptim::train::memory_profiler& memory, const examples::cluster& cluster)
    {
        using xoptim::save_checkpoint;  // a distributed trainer's is found by its type
        model m;
        // This rank's rows of every batch (all of them in one process).
        const auto [first, rows] = cluster.share(batch);
        xoptim::train::loader_options lo;
        lo.workers = s.workers;
        lo.count = s.steps;
        xoptim::train::batch_loader<lm_batch> loader(
            [&c](std::size_t index, lm_batch& b) {
                fill_windows(c.tokens, 0, c.train_end, 1'000'000 + index, batch, b.ids.data(), b.targets.data());
            },
            lo);
        run_result r;
        r.name = name;
        r.lr = lr;
        std::cout << name << " (lr " << lr << ")\n";
        xoptim::train::progress_bar bar(s.steps, std::cout);
        const auto start = std::chrono::steady_clock::now();
        double eval_seconds = 0;
        while (auto b = loader.next())
        {
            const std::size_t t = b.index() + 1;
            const double loss =
                cluster.mean(m.loss(b->ids.data() + first * context, b->targets.data() + first, rows, true));
            b.release();
            step(m.params(), m.grads());
            if (t == 1 && cluster.size() > 1)
            {
                std::cout << examples::assignment_of(step);
            }
            r.steps.push_back(double(t));
            r.loss.push_back(loss);
            memory.record_step(memory.steps_recorded());
            if (t % s.eval_every == 0 || t == s.steps)
            {
                const auto eval_start = std::chrono::steady_clock::now();
                r.eval_steps.push_back(double(t));
                r.val_loss.push_back(validation_loss(m, c));
                eval_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - eval_start).count();
                bar.update(t, {{"loss", loss}, {"val", r.val_loss.back()}});
            }
            else
            {
                bar.update(t, {{"loss", loss}});
            }
        }
        bar.finish();
        r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() - eval_seconds;
        const auto stats = loader.stats();
        r.loader_headroom = stats.throughput() / (double(s.steps) / r.seconds);
        std::cout << "  loader: waited " << stats.wait_seconds << " s in all; it fills " << stats.throughput()
                  << " batches/s, " << r.loader_headroom << "x the " << double(s.steps) / r.seconds
                  << " steps/s the training takes\n";
        if (step.skipped_steps() != 0)
        {
            std::cout << "  " << step.skipped_steps() << " steps skipped for non-finite gradients\n";
        }
        if (name.rfind("muon", 0) == 0)
        {
            save_checkpoint((s.out / (name + ".safetensors")).string(), m.params(), step);
        }
        return r;
    }

    template <class Optimizer>
    run_result train(const std::string& name, double lr, Optimizer optimizer, const corpus& c, const settings& s,
                     xoptim::train::memory_profiler& memory, const examples::cluster& cluster)
    {
        run_result r;
        cluster.with_trainer(std::move(optimizer), guarded_clipped(),
                             [&](auto& step) { r = train_with(name, lr, step, c, s, memory, cluster); });
        return r;
    }

    run_result train_adamw(double lr, const corpus& c, const settings& s, xoptim::train::memory_profiler& memory,
                           const examples::cluster& cluster)
    {
        xoptim::adamw_options o;
        o.weight_decay = 0.01;
        xoptim::adamw opt(o);
        opt.schedule("lr", xoptim::warmup_cosine(lr, (long long)s.steps, (long long)s.warmup, 0.1));
        return train("adamw", lr, std::move(opt), c, s, memory, cluster);
    }

    run_result train_hybrid(double muon_lr, double adamw_lr, const corpus& c, const settings& s,
                            xoptim::train::memory_profiler& memory, const examples::cluster& cluster)
    {
        auto opt = xoptim::make_hybrid();
        const auto total = (long long)s.steps, warmup = (long long)s.warmup;
        opt.optimizer<0>().schedule("lr", xoptim::warmup_cosine(muon_lr, total, warmup, 0.1));
        opt.optimizer<1>().schedule("lr", xoptim::warmup_cosine(adamw_lr, total, warmup, 0.1));
        return train("muon_adamw", muon_lr, std::move(opt), c, s, memory, cluster);
    }

    // The first evaluation step at which `r` reached `target`, or 0.
    double steps_to(const run_result& r, double target)
    {
        for (std::size_t k = 0; k < r.val_loss.size(); ++k)
        {
            if (r.val_loss[k] <= target)
            {
                return r.eval_steps[k];
            }
        }
        return 0;
    }

    settings parse(int argc, char** argv)
    {
        settings s;
        examples::for_each_option(
            argc, argv,
            [&](const std::string& name, const auto& value) {
                if (name == "--steps")
                {
                    s.steps = examples::count(name, value(), 2);
                }
                else if (name == "--out")
                {
                    s.out = value();
                }
                else if (name == "--text")
                {
                    s.text = value();
                }
                else if (name == "--workers")
                {
                    s.workers = examples::count(name, value(), 1);
                }
                else if (name == "--adamw-lr")
                {
                    s.adamw_lr = examples::number(name, value(), 0);
                }
                else if (name == "--muon-lr")
                {
                    s.muon_lr = examples::number(name, value(), 0);
                }
                else if (name == "--sweep")
                {
                    s.sweep = true;
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
            "--steps N, --out DIR, --text FILE, --workers W, --adamw-lr X, --muon-lr X, --sweep, --data-parallel");
        s.eval_every = std::min(s.eval_every, std::max<std::size_t>(1, s.steps / 10));
        s.warmup = std::min(s.warmup, s.steps / 10);
        return s;
    }
}

int main(int argc, char** argv)
{
    try
    {
        const settings s = parse(argc, argv);
        const examples::cluster cluster(s.data_parallel, argc, argv);
        cluster.require_rows(batch, "the batch of " + std::to_string(batch) + " windows");
        fs::path source = s.text;
        if (source.empty())
        {
            source = s.out / "kjv.txt";
        }
        // Rank 0 writes the text and the token cache; the other ranks read them after it.
        const auto prepare = [&] {
            fs::create_directories(s.out);
            if (!fs::exists(source))
            {
                examples::write_bible(source);
            }
            return xoptim::train::load_or_build_tokens<std::uint8_t>(
                source.string(), (s.out / (source.filename().string() + ".tokens")).string(), examples::ascii_tokenizer{});
        };
        std::optional<decltype(prepare())> prepared;
        if (cluster.rank() == 0)
        {
            prepared.emplace(prepare());
        }
        cluster.barrier();
        if (cluster.rank() != 0)
        {
            prepared.emplace(prepare());
        }
        const auto& cached = *prepared;
        std::cout << "char_lm: " << source.string() << ", " << cached.tokens.size() << " characters; token cache "
                  << xoptim::train::cache_status_name(cached.status)
                  << (cached.reason.empty() ? "" : " (" + cached.reason + ")") << "\n";

        corpus c{cached.tokens.data(), cached.tokens.size() * 9 / 10, cached.tokens.size(), {}, {}};
        if (c.train_end < 10 * context || c.size - c.train_end < 10 * context)
        {
            throw std::runtime_error(source.string() + " is too short to train on");
        }
        const std::size_t val_rows = 8192;
        c.val_ids.resize(val_rows * context);
        c.val_targets.resize(val_rows);
        fill_windows(c.tokens, c.train_end, c.size, 42, val_rows, c.val_ids.data(), c.val_targets.data());

        {
            auto probe = xoptim::make_hybrid();
            model m;
            probe.init(m.params());
            std::cout << "routing:\n" << probe.routing_table();
        }

        xoptim::train::memory_profiler memory;
        std::vector<run_result> runs;
        // Each optimizer at its best learning rate; the target is AdamW's final loss.
        const auto best = [&](const std::string& name) {
            const run_result* b = nullptr;
            for (const auto& r : runs)
            {
                if (r.name == name && (b == nullptr || r.val_loss.back() < b->val_loss.back()))
                {
                    b = &r;
                }
            }
            return b;
        };
        if (s.sweep)
        {
            for (double lr : {1e-3, 3e-3, 1e-2, 3e-2})
            {
                runs.push_back(train_adamw(lr, c, s, memory, cluster));
            }
            const double adamw_lr = best("adamw")->lr;
            for (double lr : {0.005, 0.01, 0.02, 0.05})
            {
                runs.push_back(train_hybrid(lr, adamw_lr, c, s, memory, cluster));
            }
        }
        else
        {
            runs.push_back(train_adamw(s.adamw_lr, c, s, memory, cluster));
            runs.push_back(train_hybrid(s.muon_lr, s.adamw_lr, c, s, memory, cluster));
        }
        const run_result& adamw = *best("adamw");
        const run_result& hybrid = *best("muon_adamw");
        const double target = adamw.val_loss.back();
        const double adamw_steps = steps_to(adamw, target), hybrid_steps = steps_to(hybrid, target);

        std::printf("\n%-12s %8s %12s %10s %10s\n", "optimizer", "lr", "final val", "train s", "loader x");
        for (const auto& r : runs)
        {
            std::printf("%-12s %8.4g %12.4f %10.2f %10.0f\n", r.name.c_str(), r.lr, r.val_loss.back(), r.seconds,
                        r.loader_headroom);
        }
        std::printf("\nvalidation loss %.4f (AdamW's final, lr %g): AdamW at step %.0f, Muon + AdamW (lr %g) at ",
                    target, adamw.lr, adamw_steps, hybrid.lr);
        if (hybrid_steps > 0)
        {
            std::printf("step %.0f: %.2fx AdamW's steps\n", hybrid_steps, hybrid_steps / adamw_steps);
        }
        else
        {
            std::printf("never within %zu steps\n", s.steps);
        }

        // The smoke test's check: both lowered the validation loss.
        const bool learned =
            adamw.val_loss.back() < adamw.val_loss.front() && hybrid.val_loss.back() < hybrid.val_loss.front();
        if (cluster.rank() != 0)
        {
            return learned ? 0 : 1;  // rank 0 writes the files
        }
        std::ofstream csv(s.out / "char_lm.csv");
        csv << "optimizer,lr,step,train_loss,val_loss\n";
        std::vector<examples::series> val, train_loss;
        for (const auto& r : runs)
        {
            std::size_t e = 0;
            for (std::size_t i = 0; i < r.steps.size(); ++i)
            {
                csv << r.name << ',' << r.lr << ',' << r.steps[i] << ',' << r.loss[i] << ',';
                if (e < r.eval_steps.size() && r.eval_steps[e] == r.steps[i])
                {
                    csv << r.val_loss[e++];
                }
                csv << '\n';
            }
            char label[64];
            std::snprintf(label, sizeof label, "%s lr %g", r.name.c_str(), r.lr);
            val.push_back({label, r.eval_steps, r.val_loss});
        }
        examples::write_svg((s.out / "char_lm.svg").string(), "Character LM on " + source.filename().string(),
                            {{"validation loss", "step", "loss (nats/char)", val, false}});
        std::cout << "\n" << memory.report() << "\n";
        std::cout << "CSV:  " << (s.out / "char_lm.csv").string() << "\nplot: " << (s.out / "char_lm.svg").string()
                  << "\n";
        return learned ? 0 : 1;
    }
    catch (const std::exception& e)
    {
        std::cerr << "char_lm: " << e.what() << '\n';
        return 1;
    }
}
