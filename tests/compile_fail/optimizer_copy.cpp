// expect: deleted
// An optimizer owns its state: it moves, it is never copied.
#include <xoptim/optim/adam.hpp>
int main()
{
    xoptim::adamw a;
    xoptim::adamw b = a;  // would share nothing with a, and step twice as often
}
