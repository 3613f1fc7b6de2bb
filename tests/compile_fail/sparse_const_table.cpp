// expect: xoptim: sparse_signsgd's table must be mutable \(got a const tensor\)
#include <xtensor/xtensor.hpp>

#include <xoptim/optim/sparse.hpp>
int main()
{
    const xt::xtensor<float, 2> table({4, 3});
    xt::xtensor<float, 2> rows({1, 3});
    std::vector<float> w(5), gw(5);
    xoptim::sparse_embedding_optimizer opt;
    opt.step(table, {1}, rows, std::tie(w), std::tie(gw));
}
