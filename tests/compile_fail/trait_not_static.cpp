// expect: tensor_traits<C>.s functions are called without an object: declare data, size, rank, extent and contiguous .static.
#include <xoptim/optim/adam.hpp>
namespace my
{
    struct tensor { float* ptr; std::size_t rows, cols; };
}
template <>
struct xoptim::tensor_traits<my::tensor>  // every function without `static`
{
    using value_type = float;
    float* data(my::tensor& t) { return t.ptr; }
    const float* data(const my::tensor& t) { return t.ptr; }
    std::size_t size(const my::tensor& t) { return t.rows * t.cols; }
    std::size_t rank(const my::tensor&) { return 2; }
    std::size_t extent(const my::tensor& t, std::size_t d) { return d == 0 ? t.rows : t.cols; }
};
int main()
{
    float w[6] = {}, gw[6] = {};
    my::tensor p{w, 2, 3};
    const my::tensor g{gw, 2, 3};
    xoptim::adamw().step(p, g);
}
