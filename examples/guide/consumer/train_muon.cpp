// One Muon step on a matrix: Newton-Schulz runs on the CBLAS the program links.
#include <cstdio>
#include <vector>

#include <xoptim/optim/muon.hpp>

int main()
{
    std::vector<float> w(128 * 64, 0.0f), g(128 * 64, 0.01f);
    xoptim::muon opt;
    opt.step(xoptim::view(w.data(), {128, 64}), xoptim::view(g.data(), {128, 64}));
    std::printf("w[0] = %.6f\n", w[0]);
}
