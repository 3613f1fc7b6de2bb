// Two Muon steps on one matrix, then its report's BLAS line. test_blas_info starts it in
// a child process with OPENBLAS_CORETYPE set, which OpenBLAS reads when it loads.
#include <cstdio>
#include <vector>

#include <xoptim/optim/muon.hpp>

int main()
{
    std::vector<float> w(64 * 32, 0.5f), g(64 * 32);
    for (std::size_t i = 0; i < g.size(); ++i)
    {
        g[i] = float(i % 7) - 3.0f;
    }
    xoptim::muon opt;
    for (int t = 0; t < 2; ++t)
    {
        opt.step(xoptim::view(w.data(), {64, 32}), xoptim::view(g.data(), {64, 32}));
    }
    std::printf("blas: %s\n", opt.report().blas.c_str());
    return 0;
}
