// expect: xoptim::router owns its optimizers: pass a temporary \(xoptim::adamw\(\)\) or std::move\(opt\)
#include <xoptim/optim/adam.hpp>
#include <xoptim/optim/lion.hpp>
#include <xoptim/optim/router.hpp>
int main()
{
    xoptim::routing rules;
    rules.add("lion", xoptim::name_matches({"embed*"})).fallback("adamw");
    xoptim::adamw adamw;
    xoptim::router r(rules, xoptim::lion(), adamw);  // would step a copy of adamw
}
