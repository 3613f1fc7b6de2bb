// expect: xoptim::param_groups owns its optimizers: pass a temporary \(xoptim::adamw\(\)\) or std::move\(opt\)
#include <xoptim/optim/adam.hpp>
#include <xoptim/optim/router.hpp>
int main()
{
    xoptim::param_groups<xoptim::adamw> groups;
    xoptim::adamw no_decay;
    groups.add("no_decay", xoptim::name_matches({"*.bias"}), no_decay);  // would step a copy
}
