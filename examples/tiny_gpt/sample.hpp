// Text from a trained model: each next character greedily (the most likely one) or drawn
// from the softmax of the logits divided by a temperature.
#ifndef XOPTIM_EXAMPLES_TINY_GPT_SAMPLE_HPP
#define XOPTIM_EXAMPLES_TINY_GPT_SAMPLE_HPP

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <xoptim/train/gpt.hpp>

namespace tiny_gpt
{
    // `prompt` followed by `count` generated characters (ASCII; temperature 0: greedy).
    // The model sees the last `context` characters at each step.
    inline std::string generate(xoptim::train::gpt<float>& model, const std::string& prompt, std::size_t count,
                                double temperature, std::uint64_t seed)
    {
        const std::size_t context = model.config().context, vocab = model.config().vocab;
        std::vector<std::int32_t> ids;
        for (const char c : prompt)
        {
            ids.push_back(static_cast<unsigned char>(c) < vocab ? c : '?');
        }
        std::vector<double> p(vocab);
        for (std::size_t k = 0; k < count; ++k)
        {
            const std::size_t n = std::min(ids.size(), context);
            const float* logits = model.forward(ids.data() + ids.size() - n, 1, n) + (n - 1) * vocab;
            std::size_t next = std::size_t(std::max_element(logits, logits + vocab) - logits);
            if (temperature > 0)
            {
                double sum = 0;
                for (std::size_t j = 0; j < vocab; ++j)
                {
                    p[j] = std::exp((double(logits[j]) - double(logits[next])) / temperature);
                    sum += p[j];
                }
                double u = (xoptim::train::hash_uniform(seed, k) + 1) * 0.5 * sum;  // [0, sum)
                for (next = 0; next + 1 < vocab && u >= p[next]; ++next)
                {
                    u -= p[next];
                }
            }
            ids.push_back(std::int32_t(next));
        }
        return std::string(ids.begin(), ids.end());
    }
}

#endif
