// expect: a reduction \(sum, sum_squares\) gives one value per tensor
#include <xoptim/engine/executor.hpp>
int main()
{
    using namespace xoptim::sym;
    xoptim::job_list<float> jobs;
    xoptim::run_program(xoptim::fuse(p = p - sum(g)), jobs);
}
