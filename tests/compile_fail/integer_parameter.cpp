// expect: parameters must be float or double
#include <xoptim/optim/adam.hpp>
int main()
{
    std::vector<int> p(3), g(3);
    xoptim::adamw().step(p, g);
}
