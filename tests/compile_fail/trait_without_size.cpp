// expect: tensor_traits<C> needs .static std::size_t size.const C& c.., the number of elements
#include <xoptim/optim/adam.hpp>
namespace my
{
    struct tensor { float* ptr; std::size_t numel; };
}
template <>
struct xoptim::tensor_traits<my::tensor>
{
    using value_type = float;
    static float* data(my::tensor& t) { return t.ptr; }
    static const float* data(const my::tensor& t) { return t.ptr; }  // no size(const my::tensor&)
};
int main()
{
    float w[4] = {}, gw[4] = {};
    my::tensor p{w, 4};
    const my::tensor g{gw, 4};
    xoptim::adamw().step(p, g);
}
