// Builds against the installed xoptim::mpi target (find_package(xoptim COMPONENTS mpi)):
// one ZeRO-1 AdamW step on however many ranks it is started with.
#include <cstdio>
#include <vector>

#include <xoptim/dist/data_parallel.hpp>
#include <xoptim/dist/mpi.hpp>
#include <xoptim/xoptim.hpp>

int main(int argc, char** argv)
{
    xoptim::dist::mpi_session session(argc, argv);
    xoptim::dist::options o;
    o.mode = xoptim::dist::mode::zero1;
    std::vector<float> p(37, 1.0f), g(37, 0.5f);
    {
        xoptim::dist::data_parallel dp(xoptim::dist::mpi_comm(), xoptim::adamw(), o);
        dp.step(p, g);
    }
    std::printf("consumer_mpi: ok, p[0] = %f\n", static_cast<double>(p[0]));
    return p[0] < 1.0f ? 0 : 1;
}
