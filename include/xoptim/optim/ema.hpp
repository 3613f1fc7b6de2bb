// An exponential moving average of the parameters (Polyak averaging), as timm's ModelEmaV3
// (huggingface/pytorch-image-models timm/utils/model_ema.py, commit 0a044bf4):
//   s = max(0, step - update_after_step - 1)
//   decay = 0 if s == 0, else use_warmup ? clamp(1 - (1 + s / warmup_gamma)^-warmup_power,
//                                                min_decay, decay)
//                                        : decay
//   shadow = lerp(shadow, p, 1 - decay)
// one fused pass over the parameters and their shadows per update(params, step), called
// after the optimizer's step with step = the steps taken (opt.step_count()): the first
// update copies the parameters, whatever its step. lerp is ATen's, in its two forms (w < 0.5:
// shadow + w (p - shadow); else p - (p - shadow)(1 - w)). The shadow is kept in the
// parameters' type or, with shadow_dtype bfloat16, in bf16 (computed in float, rounded to
// nearest even). swap(params) exchanges parameters and shadows for evaluation (twice
// restores them, bit for bit); copy_to(params) overwrites the parameters with the shadow.
// The shadows are this object's state: save_checkpoint(path, params, ema) keeps them, and
// a checkpoint saved before the first update loads as no shadows (the next update copies).
#ifndef XOPTIM_OPTIM_EMA_HPP
#define XOPTIM_OPTIM_EMA_HPP

#include <algorithm>
#include <array>
#include <cmath>
#include <stdexcept>
#include <string>

#include "optimizer.hpp"
#include "validate.hpp"

namespace xoptim
{
    enum class ema_shadow
    {
        same,     // the parameters' type
        bfloat16  // bf16 (float parameters only; double parameters keep double shadows)
    };

    inline const char* to_string(ema_shadow s) noexcept
    {
        return s == ema_shadow::same ? "same" : "bfloat16";
    }

    struct ema_options
    {
        double decay = 0.9999;
        double min_decay = 0;
        std::size_t update_after_step = 0;
        bool use_warmup = false;
        double warmup_gamma = 1.0;
        double warmup_power = 2.0 / 3.0;
        ema_shadow shadow_dtype = ema_shadow::same;  // fixed at construction

        template <class O, class F>
        static void fields(O& o, F&& f)
        {
            f("decay", o.decay);
            f("min_decay", o.min_decay);
            f("update_after_step", o.update_after_step);
            f("use_warmup", o.use_warmup);
            f("warmup_gamma", o.warmup_gamma);
            f("warmup_power", o.warmup_power);
            f("shadow_dtype", o.shadow_dtype);
        }
    };

    class ema : public optimizer<ema, ema_options>
    {
    public:

        static constexpr const char* name = "ema";
        static constexpr std::array<const char*, 1> state_names = {"shadow"};

        explicit ema(const ema_options& o = {})
            : optimizer(o)
        {
            storage_options s;
            s.states = o.shadow_dtype == ema_shadow::bfloat16 ? state_storage::bf16 : state_storage::native;
            set_storage(s);
        }

        static void check(const ema_options& o)
        {
            detail::require(o.decay >= 0 && o.decay <= 1, name, "decay", "in [0, 1]", o.decay);
            detail::require(o.min_decay >= 0 && o.min_decay <= 1, name, "min_decay", "in [0, 1]", o.min_decay);
            detail::require_positive(o.warmup_gamma, name, "warmup_gamma");
            detail::require_non_negative(o.warmup_power, name, "warmup_power");
        }

        static std::size_t num_states(const ema_options&) noexcept
        {
            return 1;
        }

        // timm's get_decay(step).
        double decay_at(std::size_t step) const noexcept
        {
            const ema_options& o = options();
            const std::size_t after = o.update_after_step + 1;
            const double s = step > after ? static_cast<double>(step - after) : 0.0;
            if (s <= 0)
            {
                return 0;
            }
            if (!o.use_warmup)
            {
                return o.decay;
            }
            const double warm = 1 - std::pow(1 + s / o.warmup_gamma, -o.warmup_power);
            return std::max(std::min(warm, o.decay), o.min_decay);
        }

        // As optimizer::set_options, but for shadow_dtype: the constructor's.
        void set_options(const ema_options& o)
        {
            if (o.shadow_dtype != options().shadow_dtype)
            {
                throw std::invalid_argument(std::string("xoptim::ema: shadow_dtype is fixed at construction (it was ")
                                            + to_string(options().shadow_dtype) + ", the new options say "
                                            + to_string(o.shadow_dtype) + ")");
            }
            optimizer::set_options(o);
        }

        // The shadows, made now as copies of the parameters (timm's copy of the model);
        // without init, update's first call makes them.
        template <class P>
        void init(P&& params)
        {
            optimizer::init(params);
            run_without_grads(std::forward<P>(params), sym::state<0> = sym::p);
        }

        // shadow = lerp(shadow, p, 1 - decay_at(step)); the first call, with no shadows
        // yet, makes them copies of the parameters, at any step.
        template <class P>
        void update(P&& params, std::size_t step)
        {
            using namespace sym;
            const auto& shadow = sym::state<0>;
            if (state().empty())
            {
                init(std::forward<P>(params));
                return;
            }
            const double w = 1 - decay_at(step);
            if (std::abs(w) < 0.5)
            {
                run_without_grads(std::forward<P>(params), shadow = shadow + w * (p - shadow));
            }
            else
            {
                // 1 - w in the element type, as ATen computes it (a struct: schedule.hpp has a
                // function of the same name).
                const literal one{1}, weight{w};
                run_without_grads(std::forward<P>(params), shadow = p - (p - shadow) * (one - weight));
            }
        }

        // An average has no step count of its own for a schedule to follow: its decay
        // follows the step passed to update (min_decay, use_warmup), or set_options.
        template <class Field, class Schedule>
        ema& schedule(Field&&, Schedule&&)
        {
            static_assert(!std::is_same_v<Field, Field>,
                          "xoptim::ema: an average is not scheduled (its decay follows "
                          "the step passed to update: use_warmup, min_decay, or set_options)");
            return *this;
        }

        // An average is not stepped with gradients: it follows the optimizer's steps.
        template <class... A>
        void step(A&&...)
        {
            static_assert(!std::is_same_v<void(A...), void(A...)>,
                          "xoptim::ema is not an optimizer: call avg.update(params, opt.step_count()) after "
                          "the optimizer's step");
        }

        // Parameters and shadows change places: call before evaluating and again after.
        // Refused where a shadow is not kept exactly as its parameter is (a bf16 or 8-bit
        // shadow, a bf16 parameter): one of them would be rounded (copy_to a copy instead).
        template <class P>
        void swap(P&& params)
        {
            using namespace sym;
            require_average("swap");
            for (std::size_t k = 0; k < state().size(); ++k)
            {
                const state_store::entry& e = state()[k];
                if (e.type == dtype::bfloat16 || e.states[0].format != slot_format::native)
                {
                    const char* why = e.type == dtype::bfloat16           ? "a bf16 parameter"
                                      : is_8bit(e.states[0].format) ? "an 8-bit shadow"
                                                                    : "a bf16 shadow";
                    throw std::logic_error("xoptim::ema: swap would round parameter '" + e.name + "' or its shadow ("
                                           + why + "): use copy_to on a copy of the model");
                }
            }
            const auto& shadow = sym::state<0>;
            const auto& held = sym::local<0>;
            run_without_grads(std::forward<P>(params), held = p, p = shadow, shadow = held);
        }

        // The parameters become the shadows (a model to evaluate or export).
        template <class P>
        void copy_to(P&& params)
        {
            using namespace sym;
            require_average("copy_to");
            run_without_grads(std::forward<P>(params), p = sym::state<0>);
        }

    private:

        // Before the first update there is no average to hand out.
        void require_average(const char* call) const
        {
            if (state().empty())
            {
                throw std::logic_error(std::string("xoptim::ema: ") + call
                                       + " before the first update (there is no average yet)");
            }
        }

        // An average is not stepped with gradients: prepare and commit stay private (step,
        // above, says so in words).
        using optimizer::prepare;
        using optimizer::commit;
    };
}

#endif
