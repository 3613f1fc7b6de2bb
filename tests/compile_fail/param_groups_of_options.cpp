// expect: xoptim::param_groups takes optimizers \(xoptim::adamw\(\)\), not their options
#include <vector>

#include <xoptim/optim/adam.hpp>
#include <xoptim/optim/router.hpp>
int main()
{
    std::vector<float> w(4), g(4);
    xoptim::param_groups<xoptim::adamw_options> groups;
    groups.fallback("all", xoptim::adamw_options{});
    groups.step(w, g);
}
