// expect: a local is read before it is assigned
#include <xoptim/engine/executor.hpp>
int main()
{
    using namespace xoptim::sym;
    xoptim::job_list<float> jobs;
    xoptim::run_program(xoptim::fuse(p = p + local<0>), jobs);
}
