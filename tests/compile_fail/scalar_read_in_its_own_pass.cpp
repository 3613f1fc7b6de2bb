// expect: a per-tensor scalar is read in the pass that computes it
#include <xoptim/engine/executor.hpp>
int main()
{
    using namespace xoptim::sym;
    xoptim::job_list<float> jobs;
    xoptim::run_program(xoptim::fuse(scalar<0> = sum_squares(g), p = p * scalar<0>), jobs);
}
