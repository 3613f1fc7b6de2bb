// Compile-time benchmark (bench/compile_time.sh): AdamW stepped over a std::tuple (std::tie)
// of 10 tensors. Built four ways:
//   default:                    10 xt::xtensor<float, N> of ranks 1 to 4 (includes xtensor)
//   -DXOPTIM_TUPLE10_VECTOR:    10 std::vector<float>
//   -DXOPTIM_TUPLE10_COMPILED:  either, through xoptim::compiled<xoptim::adamw> (compiled.hpp:
//                               the step compiled in the project's instantiation unit, not here)
// Compare with xtensor_baseline.cpp (xtensor alone, one assignment).
#include <vector>

#ifdef XOPTIM_TUPLE10_COMPILED
#include <xoptim/compiled.hpp>
using optimizer = xoptim::compiled<xoptim::adamw>;
#else
#include <xoptim/xoptim.hpp>
using optimizer = xoptim::adamw;
#endif

#ifndef XOPTIM_TUPLE10_VECTOR
#include <xtensor/xtensor.hpp>

void adamw_tuple10()
{
    xt::xtensor<float, 1> p0({16}), p1({32}), p2({64});
    xt::xtensor<float, 2> p3({4, 4}), p4({8, 8}), p5({16, 4});
    xt::xtensor<float, 3> p6({2, 2, 2}), p7({4, 2, 2});
    xt::xtensor<float, 4> p8({2, 2, 2, 2}), p9({2, 4, 2, 2});
    xt::xtensor<float, 1> g0({16}), g1({32}), g2({64});
    xt::xtensor<float, 2> g3({4, 4}), g4({8, 8}), g5({16, 4});
    xt::xtensor<float, 3> g6({2, 2, 2}), g7({4, 2, 2});
    xt::xtensor<float, 4> g8({2, 2, 2, 2}), g9({2, 4, 2, 2});
    optimizer opt;
    opt.step(std::tie(p0, p1, p2, p3, p4, p5, p6, p7, p8, p9), std::tie(g0, g1, g2, g3, g4, g5, g6, g7, g8, g9));
}
#else
void adamw_tuple10()
{
    std::vector<float> p0(16), p1(32), p2(64), p3(16), p4(64), p5(64), p6(8), p7(16), p8(16), p9(32);
    std::vector<float> g0(16), g1(32), g2(64), g3(16), g4(64), g5(64), g6(8), g7(16), g8(16), g9(32);
    optimizer opt;
    opt.step(std::tie(p0, p1, p2, p3, p4, p5, p6, p7, p8, p9), std::tie(g0, g1, g2, g3, g4, g5, g6, g7, g8, g9));
}
#endif

int main()
{
    adamw_tuple10();
    return 0;
}
