// expect: a const model .gradients are usually passed const. needs xoptim_params.const M&. too. add one that lists the same named members, or write xoptim_params as one template for both
#include <xoptim/optim/adam.hpp>
struct mlp { std::vector<float> w, b; };
auto xoptim_params(mlp& m) { return std::make_tuple(xoptim::named("w", m.w), xoptim::named("b", m.b)); }
// (no xoptim_params(const mlp&): the const gradients below cannot be listed)
void train_step(mlp& model, const mlp& grads, xoptim::adamw& opt) { opt.step(model, grads); }
int main()
{
    mlp m{std::vector<float>(3), std::vector<float>(2)}, g = m;
    xoptim::adamw opt;
    train_step(m, g, opt);
}
