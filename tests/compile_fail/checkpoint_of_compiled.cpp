// expect: xoptim::save_checkpoint\(path, params, trainer\) saves the optimizer of a compiled<O> \(pass opt.optimizer\(\)\)
#include <vector>

#include <xoptim/compiled.hpp>
#include <xoptim/io/checkpoint.hpp>
int main()
{
    std::vector<float> w(4);
    xoptim::compiled<xoptim::adamw> opt;
    xoptim::save_checkpoint("x.safetensors", w, opt);
}
