// test_compiled's parameter sets: float and double leaves, a runtime list, an empty tensor
// and odd lengths, named through xoptim_params; float and double matrices for Muon; and the
// direct steps they are compared with, defined in support/compiled_instances.cpp (the unit
// that includes the optimizers).
#ifndef XOPTIM_TESTS_SUPPORT_COMPILED_NET_HPP
#define XOPTIM_TESTS_SUPPORT_COMPILED_NET_HPP

#include <string>
#include <tuple>
#include <vector>

#include <xoptim/compiled.hpp>

namespace compiled_test
{
    struct net
    {
        std::vector<float> w;
        std::vector<double> b;
        std::vector<std::vector<float>> layers;
        std::vector<float> empty;
    };

    template <class N>
    auto xoptim_params(N& n)
    {
        return std::make_tuple(xoptim::named("w", n.w), xoptim::named("b", n.b), xoptim::named("layers", n.layers),
                               xoptim::named("empty", n.empty));
    }

    // Parameters and gradients of the given seed's values.
    net make_net(unsigned seed);

    // An 8 x 6 float matrix and a 5 x 7 double one, stepped as matrix_views.
    struct matrices
    {
        std::vector<float> a;
        std::vector<double> b;
    };

    matrices make_matrices(unsigned seed);

    template <class M>
    auto matrix_views(M& m)
    {
        return std::make_tuple(xoptim::view(m.a.data(), {8, 6}), xoptim::view(m.b.data(), {5, 7}));
    }

    // `steps` steps of Muon itself over matrix_views(params); its state's names, sorted.
    std::vector<std::string> step_matrices_directly(const xoptim::muon_options& o, matrices& params,
                                                    const matrices& grads, int steps);

    // `steps` steps of O itself (not compiled<O>) over `params`; the names of its state
    // tensors' parameters, sorted.
    template <class O>
    std::vector<std::string> step_directly(const typename xoptim::compiled<O>::options_type& o, net& params,
                                           const net& grads, int steps);

    // opt.optimizer().init(params): the state made by a walk of `params` in their order
    // (double b between float leaves), as a unit that includes O's header makes it.
    void init_through_optimizer(xoptim::compiled<xoptim::adamw>& opt, net& params);

    // opt.optimizer() = a new adamw, then init_through_optimizer: a compiled<O> that has
    // stepped, starting again.
    void restart_through_optimizer(xoptim::compiled<xoptim::adamw>& opt, net& params);

    // save_checkpoint(file, from_params, from.optimizer()), then
    // load_checkpoint(file, to_params, to.optimizer()): the guide's way for compiled<O>.
    void checkpoint_through_optimizer(const std::string& file, net& from_params, xoptim::compiled<xoptim::adamw>& from,
                                      net& to_params, xoptim::compiled<xoptim::adamw>& to);

    // The names of the parameters `o` keeps a state for, sorted.
    template <class O>
    std::vector<std::string> state_names(const O& o);
}

#endif
