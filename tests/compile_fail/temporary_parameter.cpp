// expect: the parameters are a temporary
#include <xoptim/optim/adam.hpp>
int main()
{
    std::vector<float> g(3);
    xoptim::adamw().step(std::vector<float>(3), g);
}
