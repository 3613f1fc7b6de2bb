// expect: the gradient is read-only
#include <xoptim/engine/kernel.hpp>
int main()
{
    using namespace xoptim::sym;
    auto prog = xoptim::fuse(g = g * 2);
    (void) prog;
}
