// The options of the optimizers the compile-fail tests of the optimizer contract declare
// (optim/contract.hpp), each leaving out one required member.
#ifndef XOPTIM_TESTS_COMPILE_FAIL_HALVING_HPP
#define XOPTIM_TESTS_COMPILE_FAIL_HALVING_HPP

#include <array>
#include <xoptim/optim/optimizer.hpp>

struct halving_options
{
    double lr = 0.5;

    template <class O, class F>
    static void fields(O& o, F&& f)
    {
        f("lr", o.lr);
    }
};

#endif
