// expect: parameters must be float, double or xoptim::bfloat16
#include <xoptim/optim/adam.hpp>
int main()
{
    std::vector<int> p(3), g(3);
    xoptim::adamw().step(p, g);
}
