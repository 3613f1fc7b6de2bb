// expect: not a parameter set
#include <xoptim/optim/adam.hpp>
struct opaque { int x; };
int main()
{
    opaque p{}, g{};
    xoptim::adamw().step(p, g);
}
