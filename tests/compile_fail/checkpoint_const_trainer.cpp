// expect: xoptim::load_checkpoint writes the trainer: pass it non-const
#include <vector>

#include <xoptim/io/checkpoint.hpp>
#include <xoptim/optim/adam.hpp>
int main()
{
    std::vector<float> w(4);
    const xoptim::adamw opt;
    xoptim::load_checkpoint("x.safetensors", w, opt);
}
