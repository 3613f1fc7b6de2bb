// expect: xoptim::router takes optimizers \(xoptim::adamw\(\)\), not their options
#include <vector>

#include <xoptim/optim/adam.hpp>
#include <xoptim/optim/lion.hpp>
#include <xoptim/optim/router.hpp>
int main()
{
    std::vector<float> w(4), g(4);
    xoptim::routing rules;
    rules.add("lion", xoptim::name_matches({"embed*"})).fallback("adamw");
    xoptim::router r(rules, xoptim::lion_options{}, xoptim::adamw_options{});
    r.step(w, g);
}
