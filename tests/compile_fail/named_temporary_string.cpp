// expect: the name is a temporary std::string
#include <string>
#include <xoptim/optim/adam.hpp>
struct mlp { std::vector<float> w; };
auto xoptim_params(mlp& m) { return std::make_tuple(xoptim::named("layer_" + std::to_string(0), m.w)); }
auto xoptim_params(const mlp& m) { return std::make_tuple(xoptim::named("layer_0", m.w)); }
int main()
{
    mlp m{std::vector<float>(3)}, g = m;
    xoptim::adamw().step(m, g);
}
