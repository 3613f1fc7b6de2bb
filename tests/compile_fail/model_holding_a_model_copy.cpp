// expect: xoptim_params returns tensors \(or a model\) by value
#include <xoptim/optim/adam.hpp>
struct layer { std::vector<float> w; };
auto xoptim_params(layer& l) { return std::make_tuple(xoptim::named("w", l.w)); }
struct mlp { layer hidden; std::vector<float> b; };
auto xoptim_params(mlp& m) { return std::make_tuple(m.hidden, xoptim::named("b", m.b)); }  // a copy of hidden
int main()
{
    mlp m{{std::vector<float>(3)}, std::vector<float>(2)}, g = m;
    xoptim::adamw().step(m, g);
}
