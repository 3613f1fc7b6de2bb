// expect: xoptim_params returns tensors \(or a model\) by value
#include <xoptim/optim/adam.hpp>
struct linear { std::vector<float> w; };
std::vector<float> xoptim_params(linear& l) { return l.w; }  // a copy: should return a reference
const std::vector<float>& xoptim_params(const linear& l) { return l.w; }
int main()
{
    linear m{std::vector<float>(3)}, g = m;
    xoptim::adamw().step(m, g);
}
