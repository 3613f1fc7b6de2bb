// expect: compiled<O>: O is one of xoptim::adamw, adam, sgd, lion and muon
#include <xoptim/compiled.hpp>
#include <xoptim/optim/adafactor.hpp>
int main()
{
    xoptim::compiled<xoptim::adafactor> opt;  // no compiled step for Adafactor
}
