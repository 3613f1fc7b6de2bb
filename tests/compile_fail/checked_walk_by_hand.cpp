// expect: private
// Only a flat_params walk makes a checked_walk: a caller cannot claim its lists were
// checked and so skip the checks of a step.
#include <xoptim/optim/sgd.hpp>
#include <vector>
int main()
{
    std::vector<float> p(4, 1.0f), g(4, 0.5f);
    xoptim::sgd opt({0.1});
    opt.step(p, g, {}, xoptim::checked_walk{});
}
