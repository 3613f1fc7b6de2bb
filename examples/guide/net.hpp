// The model of docs/guide.md's Muon, routing and hybrid examples.
#ifndef XOPTIM_EXAMPLES_GUIDE_NET_HPP
#define XOPTIM_EXAMPLES_GUIDE_NET_HPP

#include <tuple>
#include <type_traits>

#include <xtensor/xtensor.hpp>

#include <xoptim/params/param_set.hpp>

//! [model]
struct net
{
    xt::xtensor<float, 2> embedding = xt::zeros<float>({100, 64});
    xt::xtensor<float, 2> linear1 = xt::zeros<float>({128, 64});
    xt::xtensor<float, 1> bias1 = xt::zeros<float>({128});
    xt::xtensor<float, 2> linear2 = xt::zeros<float>({64, 128});
    xt::xtensor<float, 2> output = xt::zeros<float>({10, 64});
};

template <class M, std::enable_if_t<std::is_same_v<std::remove_const_t<M>, net>, int> = 0>
auto xoptim_params(M& m)
{
    return std::make_tuple(xoptim::named("embedding.weight", m.embedding), xoptim::named("linear1.weight", m.linear1),
                           xoptim::named("linear1.bias", m.bias1), xoptim::named("linear2.weight", m.linear2),
                           xoptim::named("output.weight", m.output));
}
//! [model]

// Every tensor of the net at one value (for gradients).
inline net filled(float value)
{
    net n;
    n.embedding.fill(value);
    n.linear1.fill(value);
    n.bias1.fill(value);
    n.linear2.fill(value);
    n.output.fill(value);
    return n;
}

#endif
