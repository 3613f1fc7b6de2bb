// expect: tensor_traits<C> has `rank`, so it needs `static std::size_t extent.const C& c, std::size_t d.` too
#include <xoptim/optim/adam.hpp>
namespace my
{
    struct tensor { float* ptr; std::size_t rows, cols; };
}
template <>
struct xoptim::tensor_traits<my::tensor>
{
    using value_type = float;
    static float* data(my::tensor& t) { return t.ptr; }
    static const float* data(const my::tensor& t) { return t.ptr; }
    static std::size_t size(const my::tensor& t) { return t.rows * t.cols; }
    static std::size_t rank(const my::tensor&) { return 2; }  // no extent(const my::tensor&, std::size_t)
};
int main()
{
    float w[6] = {}, gw[6] = {};
    my::tensor p{w, 2, 3};
    const my::tensor g{gw, 2, 3};
    xoptim::adamw().step(p, g);
}
