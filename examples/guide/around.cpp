// docs/guide.md, "Schedules", "Checkpoints", "Storage" and "Threads".
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <tuple>
#include <vector>

#include <xoptim/io/checkpoint.hpp>
#include <xoptim/xoptim.hpp>

#include "require.hpp"

int main()
{
    //! [tensors]
    std::vector<float> w(8192, 1.0f), b(64, 0.0f);                // the parameters
    const std::vector<float> gw(8192, 0.25f), gb(64, -0.25f);     // their gradients
    //! [tensors]
    {
        //! [schedule]
        xoptim::adamw opt;
        opt.schedule("lr", xoptim::warmup_cosine(6e-4, /*total_steps*/ 100000, /*warmup_steps*/ 2000));
        opt.schedule("betas[1]", xoptim::linear(0.95, 0.999, 1000));
        opt.step(std::tie(w, b), std::tie(gw, gb));  // step k = 0 uses lr 0: a warmup starts at 0
        opt.step(std::tie(w, b), std::tie(gw, gb));
        std::printf("lr of the last step: %g\n", opt.options().lr);
        //! [schedule]
        guide::require(opt.options().lr == 6e-4 / 2000, "the schedule's value at step 1");
    }
    {
        //! [checkpoint]
        xoptim::stepper_options so;
        so.accumulate = 2;
        xoptim::stepper trainer(xoptim::adamw(), so);
        trainer(std::tie(w, b), std::tie(gw, gb));
        trainer(std::tie(w, b), std::tie(gw, gb));
        trainer(std::tie(w, b), std::tie(gw, gb));   // one micro-batch pending
        xoptim::save_checkpoint("guide_checkpoint.safetensors", std::tie(w, b), trainer);

        // Later, in a fresh process: build the same model and trainer, then load.
        xoptim::stepper resumed(xoptim::adamw(), so);
        xoptim::load_checkpoint("guide_checkpoint.safetensors", std::tie(w, b), resumed);
        std::printf("resumed at step %zu with %zu micro-batch pending\n", resumed.optimizer().step_count(),
                    resumed.pending_micro_batches());

        xoptim::lion other;
        try
        {
            xoptim::load_checkpoint("guide_checkpoint.safetensors", std::tie(w, b), other);
        }
        catch (const std::runtime_error& e)
        {
            std::printf("%s\n", e.what());
        }
        //! [checkpoint]
        guide::require(resumed.optimizer().step_count() == 1 && other.state().empty(), "checkpoint");
    }
    {
        //! [storage]
        xoptim::adamw opt;
        xoptim::storage_options s;
        s.states = xoptim::state_storage::blockwise_8bit;  // tensors of 4096 elements or more
        opt.set_storage(s);                                 // before the first step
        opt.step(std::tie(w, b), std::tie(gw, gb));
        const auto r = opt.report();
        std::printf("8-bit AdamW: %zu state bytes for %zu parameter bytes\n", r.state_bytes, r.param_bytes);
        //! [storage]
        guide::require(r.state_bytes == 8192 * 2 + 32 * 2 * 4 + 64 * 8, "8-bit state bytes");
    }
    {
        //! [threads]
        std::vector<float> p1(1 << 20, 1.0f), p2 = p1;
        const std::vector<float> g(1 << 20, 0.5f);
        xoptim::adamw one, two;

        xoptim::set_num_threads(1);
        one.step(p1, g);
        xoptim::set_num_threads(2);             // the calling thread and one more
        xoptim::set_parallel_threshold(4096);   // parallel from 4,096 elements per thread
        two.step(p2, g);
        std::printf("bit-identical: %s\n", std::memcmp(p1.data(), p2.data(), p1.size() * sizeof(float)) == 0 ? "yes" : "no");
        //! [threads]
        guide::require(p1 == p2, "thread counts give the same bits");
    }
}
