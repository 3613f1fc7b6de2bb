// expect: the parameters are a temporary
#include <xoptim/optim/adam.hpp>
struct mlp { std::vector<float> w; };
auto xoptim_params(mlp& m) { return std::make_tuple(xoptim::named("w", m.w)); }
int main()
{
    mlp m{std::vector<float>(3)}, g = m;
    xoptim::adamw().step(mlp(m), g);  // steps a copy of m
}
