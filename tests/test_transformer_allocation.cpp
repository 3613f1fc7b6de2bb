// A training step of the GPT (forward, backward, the clipped and guarded optimizer step)
// and a validation pass allocate nothing once warm, for every optimizer tiny_gpt trains
// with: counted by replacing global operator new.
#include <gtest/gtest.h>

#include <xoptim/optim/hybrid.hpp>
#include <xoptim/step/stepper.hpp>
#include <xoptim/train/gpt.hpp>
#include <xoptim/xoptim.hpp>

#include "support/count_allocations.hpp"
#include "support/gpt_problem.hpp"

namespace
{
    using xoptim_test::allocations;

    // Allocations of 5 training steps and validations after 2 warm-up ones.
    template <class Opt>
    std::size_t steady_state_allocations(Opt opt, std::size_t threads)
    {
        xoptim::set_num_threads(threads);
        const auto p = xoptim_test::small_gpt_problem(32, 8);
        xoptim::train::gpt<float> model(p.config);
        xoptim::stepper_options o;
        o.clip_global_norm = 1.0;
        o.on_non_finite = xoptim::non_finite::raise;
        xoptim::stepper<Opt> step(std::move(opt), o);
        const auto train_and_validate = [&] {
            model.loss(p.ids.data(), p.targets.data(), p.batch, p.config.context, true);
            step(model.params(), model.grads());
            model.loss(p.ids.data(), p.targets.data(), p.batch / 2, p.config.context, false);
        };
        const std::size_t start = allocations;
        train_and_validate();
        train_and_validate();
        EXPECT_GT(allocations - start, 0u) << "the first steps make buffers and state: the counter must see them";
        const std::size_t before = allocations;
        for (int k = 0; k < 5; ++k)
        {
            train_and_validate();
        }
        xoptim::set_num_threads(std::max<std::size_t>(1, std::thread::hardware_concurrency()));
        return allocations - before;
    }

    TEST(transformer_allocation, none_in_steady_state_with_adamw_on_one_and_two_threads)
    {
        EXPECT_EQ(steady_state_allocations(xoptim::adamw(), 1), 0u);
        EXPECT_EQ(steady_state_allocations(xoptim::adamw(), 2), 0u);
    }

    TEST(transformer_allocation, none_in_steady_state_with_the_hybrid)
    {
        EXPECT_EQ(steady_state_allocations(xoptim::make_hybrid(), 2), 0u);
    }

    TEST(transformer_allocation, none_in_steady_state_with_8bit_adamw_and_lion)
    {
        xoptim::adamw eight_bit;
        xoptim::storage_options storage;
        storage.states = xoptim::state_storage::blockwise_8bit;
        eight_bit.set_storage(storage);
        EXPECT_EQ(steady_state_allocations(std::move(eight_bit), 2), 0u);
        EXPECT_EQ(steady_state_allocations(xoptim::lion(), 2), 0u);
    }
}
