// expect: xoptim: parameters must be mutable \(got a const tensor. a model lists its parameters through a non-const xoptim_params\(M&\)\)
#include <xoptim/optim/adam.hpp>
struct mlp { std::vector<float> w, b; };
// Only the const overload: the model's own parameters come out const.
auto xoptim_params(const mlp& m) { return std::make_tuple(xoptim::named("w", m.w), xoptim::named("b", m.b)); }
int main()
{
    mlp m{std::vector<float>(3), std::vector<float>(2)}, g = m;
    xoptim::adamw opt;
    opt.step(m, g);
}
