// docs/guide.md, "Parameters": std::span (C++20; this file is built with -std=c++20).
#include <cstdio>
#include <span>
#include <vector>

#include <xoptim/xoptim.hpp>

#include "require.hpp"

int main()
{
    //! [span]
    std::vector<float> weights(3 * 100, 1.0f);  // three tensors of 100 in one buffer
    const std::vector<float> grads(3 * 100, 0.5f);
    std::vector<std::span<float>> params;
    std::vector<std::span<const float>> gradients;
    for (std::size_t k = 0; k < 3; ++k)
    {
        params.emplace_back(weights.data() + 100 * k, 100);
        gradients.emplace_back(grads.data() + 100 * k, 100);
    }
    xoptim::lion opt;
    opt.step(params, gradients);  // a runtime list of three spans: "0", "1", "2"
    //! [span]
    guide::require(weights[299] < 1.0f && opt.state().size() == 3, "the spans stepped");
    std::printf("%s %s %s\n", opt.state()[0].name.c_str(), opt.state()[1].name.c_str(), opt.state()[2].name.c_str());
}
