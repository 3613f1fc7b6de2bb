// The optimizers --optimizer knows: one line each. An entry names the optimizer, says
// what it is, gives its default learning rate (the best of the sweep in
// docs/training.md), the learning rates --sweep tries, and how to build and train it.
// The learning rate follows the run's warmup-cosine schedule (trainer::lr_schedule).
#ifndef XOPTIM_EXAMPLES_TINY_GPT_OPTIMIZERS_HPP
#define XOPTIM_EXAMPLES_TINY_GPT_OPTIMIZERS_HPP

#include <string>
#include <vector>

#include <xoptim/optim/hybrid.hpp>
#include <xoptim/optim/schedulefree.hpp>
#include <xoptim/xoptim.hpp>

#include "trainer.hpp"

namespace tiny_gpt
{
    struct optimizer_entry
    {
        const char* name;
        const char* description;
        double lr;
        std::vector<double> sweep;
        run_result (*train)(trainer&, double lr);
    };

    // AdamW as this model trains best with it (betas as nanoGPT's character-level
    // Shakespeare; the decay PyTorch's default); the hybrid and the 8-bit run share it.
    inline xoptim::adamw_options adamw_settings()
    {
        xoptim::adamw_options o;
        o.betas = {0.9, 0.99};
        o.weight_decay = 0.01;
        return o;
    }

    inline xoptim::adamw adamw_8bit()
    {
        xoptim::adamw opt(adamw_settings());
        xoptim::storage_options storage;
        storage.states = xoptim::state_storage::blockwise_8bit;  // tensors of >= 4,096 elements
        opt.set_storage(storage);
        return opt;
    }

    inline xoptim::lion_options lion_settings()
    {
        xoptim::lion_options o;
        o.betas = {0.9, 0.99};
        o.weight_decay = 0.1;  // Lion's lr is ~10x lower than AdamW's: the same lr * wd
        return o;
    }

    inline xoptim::adamw cautious_adamw()
    {
        xoptim::adamw_options o = adamw_settings();
        o.caution = true;
        return xoptim::adamw(o);
    }

    // LAMB as apex (its clipping at 1 is the run's own), betas and decay as AdamW's.
    inline xoptim::lamb_options lamb_settings()
    {
        xoptim::lamb_options o;
        o.betas = {0.9, 0.99};
        return o;
    }

    // AdEMAMix's slow EMA and its weight alpha (5) warmed up over the run, as the paper's
    // language models; beta3 0.999, a horizon of 1,000 steps, the length of a default run
    // (0.9999 made the loss rise over the last quarter: docs/training.md).
    inline xoptim::ademamix ademamix_for(const trainer& t)
    {
        xoptim::ademamix_options o;
        o.betas = {0.9, 0.99, 0.999};
        o.alpha = 5;
        o.alpha_warmup = t.options().steps;
        o.beta3_warmup = t.options().steps;
        o.weight_decay = 0.01;
        return xoptim::ademamix(o);
    }

    template <class Opt>
    Opt scheduled(Opt opt, const trainer& t, double lr)
    {
        opt.schedule("lr", t.lr_schedule(lr));
        return opt;
    }

    // 8-bit AdamW as bitsandbytes recommends it for language models: the embeddings keep
    // 32-bit states (its StableEmbedding's optimizer override), every other tensor of
    // 4,096 elements or more 8-bit.
    inline run_result train_adamw_8bit_stable(trainer& t, double lr)
    {
        xoptim::param_groups<xoptim::adamw> groups;
        groups.add("embeddings", xoptim::name_matches({"*embed*"}), scheduled(xoptim::adamw(adamw_settings()), t, lr));
        groups.fallback("rest", scheduled(adamw_8bit(), t, lr));
        return t.run(std::move(groups));
    }

    // Muon (as `muon` sets it) on the hidden matrices at `muon_lr`, AdamW on the rest at
    // --adamw-lr.
    inline run_result train_hybrid(trainer& t, double muon_lr, const xoptim::muon_options& muon = {})
    {
        xoptim::hybrid_options o;
        o.muon = muon;
        o.adamw = adamw_settings();
        auto opt = xoptim::make_hybrid(o);
        const double adamw_lr = t.options().adamw_lr;
        opt.optimizer<0>().schedule("lr", t.lr_schedule(muon_lr));
        opt.optimizer<1>().schedule("lr", t.lr_schedule(adamw_lr));
        t.note("adamw lr " + format("%g", adamw_lr));
        return t.run(std::move(opt));
    }

    // Schedule-Free AdamW: a constant lr after its own warmup (the run's), no decay to
    // schedule; validated and sampled at x, its average.
    inline run_result train_schedulefree(trainer& t, double lr)
    {
        xoptim::adamw_schedulefree_options o;
        o.lr = lr;
        o.betas = {0.9, 0.99};
        o.weight_decay = 0.01;
        o.warmup_steps = t.options().warmup;
        return t.run(xoptim::adamw_schedulefree(o));
    }

    // Schedule-Free SGD: the reference's momentum 0.9, the run's warmup, no weight decay.
    inline run_result train_sgd_schedulefree(trainer& t, double lr)
    {
        xoptim::sgd_schedulefree_options o;
        o.lr = lr;
        o.warmup_steps = t.options().warmup;
        return t.run(xoptim::sgd_schedulefree(o));
    }

    // NorMuon: Muon's update normalized per row by its second moment (the reference's
    // defaults: beta2 0.95, the update's norm preserved).
    inline xoptim::muon_options normuon_settings()
    {
        xoptim::muon_options o;
        o.normuon = true;
        return o;
    }

    inline const std::vector<optimizer_entry>& optimizer_table()
    {
        static const std::vector<optimizer_entry> table = {
            {"adamw", "AdamW, betas (0.9, 0.99), weight decay 0.01", 3e-3, {1e-3, 3e-3, 1e-2},
             [](trainer& t, double lr) { return t.run(scheduled(xoptim::adamw(adamw_settings()), t, lr)); }},
            {"hybrid", "Muon (momentum 0.95, Nesterov, 5 Newton-Schulz steps) on the blocks' matrices, AdamW on the rest",
             0.01, {0.01, 0.02, 0.05}, [](trainer& t, double lr) { return train_hybrid(t, lr); }},
            {"hybrid_polar", "the hybrid with Polar Express coefficients (5 per-step Newton-Schulz iterations)", 0.01,
             {0.01, 0.02, 0.05},
             [](trainer& t, double lr) { return train_hybrid(t, lr, xoptim::muon_options::polar_express()); }},
            {"hybrid_normuon", "the hybrid with NorMuon's per-row normalization after Newton-Schulz", 0.01,
             {0.01, 0.02, 0.05}, [](trainer& t, double lr) { return train_hybrid(t, lr, normuon_settings()); }},
            {"adamw8bit", "AdamW with 8-bit block-wise states (tensors of 4,096 elements or more)", 3e-3,
             {1e-3, 3e-3, 1e-2}, [](trainer& t, double lr) { return t.run(scheduled(adamw_8bit(), t, lr)); }},
            {"adamw8bit_stable", "8-bit AdamW with 32-bit states for the embeddings (bitsandbytes' StableEmbedding)",
             3e-3, {1e-3, 3e-3, 1e-2}, train_adamw_8bit_stable},
            {"lion", "Lion, betas (0.9, 0.99), weight decay 0.1", 1e-3, {1e-4, 3e-4, 1e-3},
             [](trainer& t, double lr) { return t.run(scheduled(xoptim::lion(lion_settings()), t, lr)); }},
            {"adamw_cautious", "AdamW as above with cautious updates (timm's mean normalization)", 3e-3,
             {1e-3, 3e-3, 1e-2}, [](trainer& t, double lr) { return t.run(scheduled(cautious_adamw(), t, lr)); }},
            {"lamb", "LAMB (apex), betas (0.9, 0.99), weight decay 0.01", 1e-2, {3e-3, 1e-2, 3e-2},
             [](trainer& t, double lr) { return t.run(scheduled(xoptim::lamb(lamb_settings()), t, lr)); }},
            {"adafactor", "Adafactor (torch.optim.Adafactor's defaults: relative step min(lr, 1/sqrt(t)))", 3e-2,
             {1e-2, 3e-2, 1e-1}, [](trainer& t, double lr) { return t.run(scheduled(xoptim::adafactor(), t, lr)); }},
            {"ademamix", "AdEMAMix, betas (0.9, 0.99, 0.999), alpha 5, weight decay 0.01", 3e-3, {1e-3, 3e-3, 1e-2},
             [](trainer& t, double lr) { return t.run(scheduled(ademamix_for(t), t, lr)); }},
            {"adamw_schedulefree", "Schedule-Free AdamW, betas (0.9, 0.99), weight decay 0.01, no lr schedule",
             3e-3, {3e-3, 1e-2, 3e-2}, train_schedulefree},
            {"sgd_schedulefree", "Schedule-Free SGD, momentum 0.9, no weight decay, no lr schedule", 1.0,
             {0.3, 1.0, 3.0}, train_sgd_schedulefree},
        };
        return table;
    }
}

#endif
