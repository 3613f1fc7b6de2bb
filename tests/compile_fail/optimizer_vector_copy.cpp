// expect: must be constructible from input type|deleted
// A list of optimizers is copied no more than one of them.
#include <vector>

#include <xoptim/optim/adam.hpp>
int main()
{
    std::vector<xoptim::adamw> list(2);
    std::vector<xoptim::adamw> copy = list;
}
