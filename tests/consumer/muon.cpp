// One Muon step through the installed package's xoptim::muon (xoptim with a CBLAS) and
// xoptim::native; prints the CBLAS Muon reports. Fails if nothing moved.
#include <cstdio>
#include <vector>

#include <xoptim/optim/muon.hpp>

int main()
{
    std::vector<float> p(8 * 16, 1.0f), g(8 * 16);
    for (std::size_t i = 0; i < g.size(); ++i)
    {
        g[i] = float(i % 5) - 2.0f;
    }
    const std::vector<float> before = p;
    xoptim::muon opt;
    opt.step(xoptim::view(p.data(), {8, 16}), xoptim::view(g.data(), {8, 16}));
    if (p == before)
    {
        std::fprintf(stderr, "consumer_muon: the step changed nothing\n");
        return 1;
    }
    std::printf("consumer_muon: ok, blas: %s\n", opt.report().blas.c_str());
    return 0;
}
