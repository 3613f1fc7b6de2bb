// expect: an element of an array field by its name: schedule\("betas\[1\]", s\)
#include <xoptim/xoptim.hpp>
int main()
{
    xoptim::lion opt;
    opt.schedule(&xoptim::lion_options::betas, 0.9);  // the array, not one of its elements
}
