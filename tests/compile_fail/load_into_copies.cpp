// expect: holds a parameter by value
#include <xoptim/io/checkpoint.hpp>
#include <xoptim/xoptim.hpp>
int main()
{
    std::vector<float> w(4);
    xoptim::adamw opt;
    xoptim::load_checkpoint("c.safetensors", std::make_tuple(w), opt);  // would load into a copy of w
}
