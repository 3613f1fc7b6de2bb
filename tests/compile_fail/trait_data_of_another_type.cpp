// expect: tensor_traits<C>::data must return a pointer to its value_type
#include <xoptim/optim/adam.hpp>
namespace my
{
    struct tensor { double* ptr; std::size_t numel; };
}
template <>
struct xoptim::tensor_traits<my::tensor>
{
    using value_type = float;  // but the elements are double
    static double* data(my::tensor& t) { return t.ptr; }
    static const double* data(const my::tensor& t) { return t.ptr; }
    static std::size_t size(const my::tensor& t) { return t.numel; }
};
int main()
{
    double w[4] = {}, gw[4] = {};
    my::tensor p{w, 4};
    const my::tensor g{gw, 4};
    xoptim::adamw().step(p, g);
}
