// expect: xoptim::router::optimizer<K>: K counts the optimizers given, from 0
#include <xoptim/optim/adam.hpp>
#include <xoptim/optim/lion.hpp>
#include <xoptim/optim/router.hpp>
int main()
{
    xoptim::routing rules;
    rules.add("lion", xoptim::name_matches({"embed*"})).fallback("adamw");
    xoptim::router r(rules, xoptim::lion(), xoptim::adamw());
    r.optimizer<2>().step_count();  // the second is optimizer<1>
}
