// expect: compiled<sgd>: SGD has no default options
#include <xoptim/compiled.hpp>
int main()
{
    xoptim::compiled<xoptim::sgd> opt;  // SGD's lr is required, as in torch.optim.SGD
}
