// A small GPT and a batch of token ids for it, the same for every test that trains one.
#ifndef XOPTIM_TESTS_SUPPORT_GPT_PROBLEM_HPP
#define XOPTIM_TESTS_SUPPORT_GPT_PROBLEM_HPP

#include <cstdint>
#include <vector>

#include <xoptim/train/gpt.hpp>

namespace xoptim_test
{
    struct gpt_problem
    {
        xoptim::train::gpt_config config;
        std::size_t batch;
        std::vector<std::int32_t> ids, targets;  // (batch, context)
    };

    // Vocabulary 32, 2 layers, d_model 64, 4 heads; ids and targets in fixed patterns.
    inline gpt_problem small_gpt_problem(std::size_t context, std::size_t batch)
    {
        gpt_problem p{{}, batch, {}, {}};
        p.config.vocab = 32;
        p.config.context = context;
        p.config.layers = 2;
        p.config.d_model = 64;
        p.config.heads = 4;
        for (std::size_t i = 0; i < batch * context; ++i)
        {
            p.ids.push_back(std::int32_t(i * 7 % 32));
            p.targets.push_back(std::int32_t(i * 5 % 32));
        }
        return p;
    }
}

#endif
