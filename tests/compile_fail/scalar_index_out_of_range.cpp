// expect: sym::scalar<K> takes K < max_scalars
#include <xoptim/engine/executor.hpp>
int main()
{
    using namespace xoptim::sym;
    xoptim::job_list<float> jobs;
    xoptim::run_program(xoptim::fuse(p = p * scalar<4>), jobs);
}
