// docs/guide.md, "Optimizers": options, the common interface, bad options.
#include <cstdio>
#include <optional>
#include <stdexcept>
#include <tuple>
#include <vector>

#include <xoptim/optim/ema.hpp>
#include <xoptim/optim/schedulefree.hpp>
#include <xoptim/xoptim.hpp>

#include "require.hpp"

namespace
{

    // The defaults the guide's tables give.
    void check_defaults()
    {
        const xoptim::adam_options adam;
        const xoptim::adamw_options adamw;
        guide::require(adam.lr == 1e-3 && adam.betas[0] == 0.9 && adam.betas[1] == 0.999 && adam.eps == 1e-8
                    && adam.weight_decay == 0 && !adam.amsgrad && !adam.maximize && adam.bias_correction,
                "adam defaults");
        guide::require(adamw.weight_decay == 1e-2, "adamw weight decay");
        const xoptim::sgd_options sgd;
        guide::require(sgd.lr != sgd.lr && sgd.momentum == 0 && sgd.dampening == 0 && !sgd.nesterov && sgd.weight_decay == 0
                    && !sgd.maximize,
                "sgd defaults");
        const xoptim::lion_options lion;
        guide::require(lion.lr == 1e-4 && lion.betas[0] == 0.9 && lion.betas[1] == 0.99 && lion.weight_decay == 0,
                "lion defaults");
        const xoptim::signsgd_options sign;
        guide::require(sign.lr == 1e-2 && sign.weight_decay == 0.1, "signsgd defaults");
        guide::require(!adamw.caution && adamw.caution_normalize == xoptim::caution_normalization::mean && !lion.caution,
                       "caution defaults");
        const xoptim::ademamix_options ademamix;
        guide::require(ademamix.lr == 1e-3 && ademamix.betas[0] == 0.9 && ademamix.betas[1] == 0.999
                           && ademamix.betas[2] == 0.9999 && ademamix.alpha == 2 && ademamix.beta3_warmup == 0
                           && ademamix.alpha_warmup == 0 && ademamix.eps == 1e-8 && ademamix.weight_decay == 0,
                       "ademamix defaults");
        const xoptim::adamw_schedulefree_options sf;
        guide::require(sf.lr == 0.0025 && sf.betas[0] == 0.9 && sf.betas[1] == 0.999 && sf.eps == 1e-8
                           && sf.weight_decay == 0 && sf.warmup_steps == 0 && sf.r == 0 && sf.weight_lr_power == 2
                           && !sf.paper,
                       "adamw_schedulefree defaults");
        const xoptim::sgd_schedulefree_options sgd_sf;
        guide::require(sgd_sf.lr == 1 && sgd_sf.momentum == 0.9 && sgd_sf.weight_decay == 0 && sgd_sf.warmup_steps == 0
                           && sgd_sf.r == 0 && sgd_sf.weight_lr_power == 2,
                       "sgd_schedulefree defaults");
        const xoptim::lamb_options lamb;
        guide::require(lamb.lr == 1e-3 && lamb.bias_correction && lamb.betas[0] == 0.9 && lamb.betas[1] == 0.999
                           && lamb.eps == 1e-6 && lamb.weight_decay == 0.01 && lamb.adam_w_mode && lamb.grad_averaging
                           && lamb.max_grad_norm == 1.0 && !lamb.use_nvlamb,
                       "lamb defaults");
        const xoptim::adafactor_options adafactor;
        guide::require(adafactor.lr == 1e-2 && adafactor.beta2_decay == -0.8 && !adafactor.eps[0]
                           && adafactor.eps[1] == 1e-3 && adafactor.d == 1 && adafactor.weight_decay == 0
                           && !adafactor.maximize,
                       "adafactor defaults");
        const xoptim::adafactor_transformers_options hf;
        guide::require(!hf.lr && hf.eps[0] == 1e-30 && hf.eps[1] == 1e-3 && hf.clip_threshold == 1
                           && hf.decay_rate == -0.8 && !hf.beta1 && hf.weight_decay == 0 && hf.scale_parameter
                           && hf.relative_step && !hf.warmup_init,
                       "adafactor_transformers defaults");
        const xoptim::ema_options ema;
        guide::require(ema.decay == 0.9999 && ema.min_decay == 0 && ema.update_after_step == 0 && !ema.use_warmup
                           && ema.warmup_gamma == 1 && ema.warmup_power == 2.0 / 3.0
                           && ema.shadow_dtype == xoptim::ema_shadow::same,
                       "ema defaults");
    }
}

int main()
{
    check_defaults();
    //! [interface]
    std::vector<float> w(1000, 1.0f), b(10, 0.0f), gw(1000, 0.5f), gb(10, -0.5f);
    xoptim::adamw adamw;  // every option at its default
    adamw.step(std::tie(w, b), std::tie(gw, gb));
    adamw.step(std::tie(w, b), std::tie(gw, gb));
    std::printf("steps taken: %zu\n", adamw.step_count());
    const xoptim::state_store& state = adamw.state();  // one entry per parameter, by name
    for (std::size_t k = 0; k < state.size(); ++k)
    {
        std::printf("%s: %zu elements, %zu state tensors\n", state[k].name.c_str(), state[k].size, state[k].count);
    }
    // State tensor 0 of AdamW is exp_avg (xoptim::adamw::state_names lists them).
    const auto exp_avg = state.view<float>("0", 0);
    std::printf("exp_avg[0] = %g\n", double(exp_avg.data()[0]));
    const xoptim::state_report r = adamw.report();
    std::printf("state bytes %zu, parameter bytes %zu, ratio %.1f\n", r.state_bytes, r.param_bytes, r.ratio());

    xoptim::adamw_options lower = adamw.options();
    lower.lr = 1e-4;
    adamw.set_options(lower);  // checked as the constructor checks them
    //! [interface]
    guide::require(adamw.step_count() == 2 && state.size() == 2 && r.ratio() == 2.0, "interface");

    //! [sgd]
    xoptim::sgd_options so;  // lr has no default, as in torch.optim.SGD
    so.lr = 0.1;
    so.momentum = 0.9;
    so.nesterov = true;
    xoptim::sgd sgd(so);
    sgd.step(std::tie(w, b), std::tie(gw, gb));
    //! [sgd]

    //! [adamw]
    xoptim::adamw_options o;
    o.lr = 3e-4;
    o.betas = {0.9, 0.95};
    o.weight_decay = 0.1;
    xoptim::adamw tuned(o);
    tuned.step(std::tie(w, b), std::tie(gw, gb));
    //! [adamw]

    //! [lion]
    xoptim::lion_options lo;  // fields by name: each optimizer's options list them in its own order
    lo.lr = 3e-5;
    lo.betas = {0.95, 0.98};
    lo.weight_decay = 1.0;
    xoptim::lion lion(lo);
    lion.step(std::tie(w, b), std::tie(gw, gb));
    //! [lion]

    //! [init]
    xoptim::adamw fresh;
    fresh.init(std::tie(w, b));  // the state now, before the first step
    std::printf("after init: %zu steps, %zu state bytes\n", fresh.step_count(), fresh.report().state_bytes);
    //! [init]

    //! [bad_options]
    try
    {
        xoptim::sgd unset(xoptim::sgd_options{});
    }
    catch (const std::invalid_argument& e)
    {
        std::printf("%s\n", e.what());
    }
    try
    {
        xoptim::adamw_options bad;
        bad.betas[1] = 1.0;
        xoptim::adamw broken(bad);
    }
    catch (const std::invalid_argument& e)
    {
        std::printf("%s\n", e.what());
    }
    //! [bad_options]

    //! [cautious]
    xoptim::adamw_options careful = o;
    careful.caution = true;  // mask where the update and the gradient disagree in sign
    xoptim::adamw cautious(careful);
    cautious.step(std::tie(w, b), std::tie(gw, gb));
    //! [cautious]

    //! [ademamix]
    xoptim::ademamix_options ao;
    ao.lr = 1e-3;
    ao.betas = {0.9, 0.999, 0.9999};
    ao.alpha = 8;
    ao.alpha_warmup = 10000;  // steps; 0: none
    ao.beta3_warmup = 10000;
    xoptim::ademamix ademamix(ao);
    ademamix.step(std::tie(w, b), std::tie(gw, gb));
    //! [ademamix]

    //! [lamb]
    xoptim::lamb_options la;
    la.lr = 2e-3;
    la.weight_decay = 0.01;
    la.max_grad_norm = std::nullopt;  // no clipping inside (optax.lamb); default 1.0 (apex)
    la.use_nvlamb = true;             // trust ratios on every tensor, decayed or not
    xoptim::lamb lamb(la);
    lamb.step(std::tie(w, b), std::tie(gw, gb));
    //! [lamb]

    //! [adafactor]
    std::vector<float> matrix(64 * 32, 0.5f), gmatrix(64 * 32, 0.1f);
    auto weight = xoptim::view(matrix.data(), {64, 32});  // the shape makes it factored
    auto gweight = xoptim::view(gmatrix.data(), {64, 32});
    xoptim::adafactor adafactor;  // torch.optim.Adafactor's defaults: lr 1e-2
    adafactor.step(std::tie(weight, b), std::tie(gweight, gb));

    xoptim::adafactor_transformers_options ho;  // transformers' defaults: relative step
    ho.beta1 = 0.9;                             // with a first moment
    xoptim::adafactor_transformers relative(ho);
    relative.step(std::tie(weight, b), std::tie(gweight, gb));
    //! [adafactor]
    guide::require(adafactor.state()[0].size == 64 * 32, "adafactor");

    //! [schedulefree]
    xoptim::adamw_schedulefree_options fo;
    fo.lr = 2.5e-3;
    fo.warmup_steps = 100;
    xoptim::adamw_schedulefree schedule_free(fo);
    schedule_free.step(std::tie(w, b), std::tie(gw, gb));  // the parameters hold y
    schedule_free.eval(std::tie(w, b));           // now x: evaluate or save the model
    schedule_free.train(std::tie(w, b));          // y again, before the next step
    schedule_free.step(std::tie(w, b), std::tie(gw, gb));
    //! [schedulefree]
    guide::require(!schedule_free.in_eval_mode() && schedule_free.step_count() == 2, "schedule-free");

    //! [ema]
    xoptim::ema_options eo;
    eo.decay = 0.999;
    eo.use_warmup = true;
    xoptim::ema average(eo);
    tuned.step(std::tie(w, b), std::tie(gw, gb));
    average.update(std::tie(w, b), tuned.step_count());  // after each step
    average.swap(std::tie(w, b));                        // evaluate the average...
    average.swap(std::tie(w, b));                        // ...and train on
    //! [ema]
    guide::require(average.state().size() == 2, "ema");

    //! [signsgd]
    xoptim::signsgd_options sgn;
    sgn.lr = 1e-2;
    sgn.weight_decay = 0.1;
    xoptim::signsgd sign(sgn);  // stateless
    sign.step(w, gw);
    //! [signsgd]
    guide::require(sign.state().size() == 1 && sign.report().state_bytes == 0, "signsgd keeps no state");
}
