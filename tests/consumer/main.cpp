// One AdamW step through the installed xoptim package; fails if nothing moved.
#include <cstdio>
#include <vector>

#include <xoptim/xoptim.hpp>

int main()
{
    std::vector<float> p(37, 1.0f);
    std::vector<float> g(37, 0.5f);
    const std::vector<float> before = p;

    xoptim::adamw opt;
    opt.step(p, g);

    for (std::size_t i = 0; i < p.size(); ++i)
    {
        if (!(p[i] < before[i]))
        {
            std::fprintf(stderr, "consumer: p[%zu] = %f did not decrease\n", i, static_cast<double>(p[i]));
            return 1;
        }
    }
    std::printf("consumer: ok, p[0] %f -> %f\n", static_cast<double>(before[0]), static_cast<double>(p[0]));
    return 0;
}
