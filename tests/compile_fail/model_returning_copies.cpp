// expect: xoptim_params returns tensors \(or a model\) by value
#include <xoptim/optim/adam.hpp>
struct mlp { std::vector<float> w, b; };
auto xoptim_params(mlp& m) { return std::make_tuple(m.w, m.b); }  // copies: should be std::tie
int main()
{
    mlp m{std::vector<float>(3), std::vector<float>(2)}, g = m;
    xoptim::adamw().step(m, g);
}
