// docs/guide.md, "The stepper": accumulation, clipping, the non-finite guard.
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <tuple>
#include <vector>

#include <xoptim/step/stepper.hpp>
#include <xoptim/xoptim.hpp>

#include "require.hpp"

int main()
{
    //! [tensors]
    std::vector<float> w(256, 1.0f), b(16, 0.0f);     // the parameters
    std::vector<float> gw(256, 0.5f), gb(16, 0.5f);   // their gradients
    //! [tensors]
    {
        //! [accumulate]
        xoptim::stepper_options o;
        o.accumulate = 4;           // the optimizer steps on every 4th call, with the mean
        o.clip_global_norm = 1.0;   // of the 4 gradients, clipped to norm 1
        xoptim::stepper step(xoptim::adamw(), o);
        for (int call = 1; call <= 8; ++call)
        {
            const bool stepped = step(std::tie(w, b), std::tie(gw, gb));
            std::printf("call %d: %s, pending %zu\n", call, stepped ? "stepped" : "accumulated",
                        step.pending_micro_batches());
        }
        std::printf("norm before clipping %.4f, optimizer steps %zu\n", step.last_norm(),
                    step.optimizer().step_count());
        //! [accumulate]
        guide::require(step.optimizer().step_count() == 2, "two steps in eight calls");
    }
    {
        //! [guard]
        xoptim::stepper step{xoptim::adamw()};   // on_non_finite = skip by default
        gw[3] = std::numeric_limits<float>::quiet_NaN();
        const std::vector<float> before = w;
        const bool stepped = step(std::tie(w, b), std::tie(gw, gb));
        std::printf("stepped %d, skipped %zu, unchanged %d\n", stepped, step.skipped_steps(), w == before);

        xoptim::stepper_options strict;
        strict.on_non_finite = xoptim::non_finite::raise;
        xoptim::stepper raising(xoptim::adamw(), strict);
        try
        {
            raising(std::forward_as_tuple(xoptim::named("w", w), xoptim::named("b", b)), std::tie(gw, gb));
        }
        catch (const xoptim::non_finite_error& e)
        {
            std::printf("%s\n", e.what());
        }
        gw[3] = 0.5f;
        //! [guard]
        guide::require(!stepped && step.skipped_steps() == 1 && step.optimizer().step_count() == 0, "skipped");
    }
    {
        //! [caller_accumulates]
        xoptim::adamw opt;                       // owned here; the stepper keeps a reference
        xoptim::stepper_options o;
        o.accumulate = 2;
        o.caller_accumulates = true;             // the gradient buffers hold the sum
        xoptim::stepper step(opt, o);            // a stepper<xoptim::adamw&>
        std::vector<float> sum_w(256, 0.0f), sum_b(16, 0.0f);
        for (int micro = 0; micro < 2; ++micro)
        {
            for (std::size_t i = 0; i < sum_w.size(); ++i)
            {
                sum_w[i] += gw[i];               // your backward pass adds into the buffers
            }
            step(std::tie(w, b), std::tie(sum_w, sum_b));
            if (step.pending_micro_batches() == 0)  // the cycle ended: a step, or one skipped for a NaN
            {
                std::fill(sum_w.begin(), sum_w.end(), 0.0f);  // and you clear them
                std::fill(sum_b.begin(), sum_b.end(), 0.0f);
            }
        }
        std::printf("adamw steps: %zu\n", opt.step_count());
        //! [caller_accumulates]
        guide::require(opt.step_count() == 1 && step.accumulators().empty(), "caller accumulates");
    }
}
