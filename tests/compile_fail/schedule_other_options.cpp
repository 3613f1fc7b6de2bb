// expect: schedule a field of this optimizer's own options struct
#include <xoptim/xoptim.hpp>
int main()
{
    xoptim::adamw opt;
    opt.schedule(&xoptim::lion_options::lr, 1e-3);  // Lion's field on AdamW
}
