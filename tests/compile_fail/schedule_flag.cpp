// expect: xoptim: only a number \(double\) field follows a schedule
#include <xoptim/xoptim.hpp>
int main()
{
    xoptim::adamw opt;
    opt.schedule(&xoptim::adamw_options::amsgrad, 1.0);  // a flag cannot follow a schedule
}
