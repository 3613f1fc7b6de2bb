// Compile-time baseline (bench/compile_time.sh): xtensor alone, one assignment.
#include <xtensor/xtensor.hpp>

int main()
{
    xt::xtensor<float, 1> a({64}, 1.0f), b({64}, 2.0f);
    a = 2.0f * a + b;
    return static_cast<int>(a(0));
}
