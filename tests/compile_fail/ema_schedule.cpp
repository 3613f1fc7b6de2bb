// expect: xoptim::ema: an average is not scheduled
#include <xoptim/optim/ema.hpp>
int main()
{
    xoptim::ema average;
    average.schedule("decay", xoptim::linear(0.9, 0.999, 100));  // update(params, step) was never scheduled
}
