// expect: xoptim::save_checkpoint\(path, params, trainer\) saves an optimizer, a router, param_groups or a stepper
#include <vector>

#include <xoptim/io/checkpoint.hpp>
#include <xoptim/optim/adam.hpp>
int main()
{
    std::vector<float> w(4);
    xoptim::save_checkpoint("x.safetensors", w, xoptim::adamw_options{});
}
