// expect: a const tensor .gradients are usually passed const. needs tensor_traits<C>::data.const C&. too. add .static const T. data.const C& c.. beside .T. data.C& c..
#include <xoptim/optim/adam.hpp>
namespace my
{
    struct tensor { float* ptr; std::size_t numel; };
}
template <>
struct xoptim::tensor_traits<my::tensor>
{
    using value_type = float;
    static float* data(my::tensor& t) { return t.ptr; }  // no data(const my::tensor&)
    static std::size_t size(const my::tensor& t) { return t.numel; }
};
int main()
{
    float w[4] = {}, gw[4] = {};
    my::tensor p{w, 4};
    const my::tensor g{gw, 4};
    xoptim::adamw().step(p, g);
}
