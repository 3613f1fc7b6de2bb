// expect: xoptim::ema is not an optimizer: call avg.update\(params, opt.step_count\(\)\) after the optimizer.s step
#include <vector>

#include <xoptim/optim/ema.hpp>
int main()
{
    std::vector<float> w(4), g(4);
    xoptim::ema average;
    average.step(w, g);
}
