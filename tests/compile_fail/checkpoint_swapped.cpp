// expect: xoptim::load_checkpoint\(path, params, trainer\) loads an optimizer, a router, param_groups or a stepper
#include <vector>

#include <xoptim/io/checkpoint.hpp>
#include <xoptim/optim/adam.hpp>
int main()
{
    std::vector<float> w(4);
    xoptim::adamw opt;
    xoptim::load_checkpoint("x.safetensors", opt, w);  // (path, params, trainer)
}
