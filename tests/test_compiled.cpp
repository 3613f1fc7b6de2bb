// compiled<O> (include/xoptim/compiled.hpp): a unit that includes compiled.hpp only, no
// engine and no xsimd, steps AdamW, Adam, SGD, Lion and Muon with the steps compiled in
// support/compiled_instances.cpp, the same bits, state and names as the optimizers stepped
// directly (there), and the same checks before anything moves.
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>

#include <gtest/gtest.h>

#include "support/compiled_net.hpp"

#if defined(XSIMD_HPP) || defined(XOPTIM_ENGINE_EXECUTOR_HPP)
#error "compiled.hpp brought the engine or xsimd into a unit that only steps through compiled<O>"
#endif

namespace
{
    using compiled_test::net;

    template <class T>
    bool same_bits(const std::vector<T>& a, const std::vector<T>& b)
    {
        return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
    }

    bool same_bits(const net& a, const net& b)
    {
        return same_bits(a.w, b.w) && same_bits(a.b, b.b) && a.layers.size() == b.layers.size()
               && same_bits(a.layers[0], b.layers[0]) && same_bits(a.layers[1], b.layers[1])
               && same_bits(a.empty, b.empty);
    }

    // Three steps of compiled<O> and of O itself from the same net.
    template <class O>
    void expect_steps_as_the_optimizer(const typename xoptim::compiled<O>::options_type& o)
    {
        const net grads = compiled_test::make_net(2);
        net direct = compiled_test::make_net(1);
        const std::vector<std::string> direct_names = compiled_test::step_directly<O>(o, direct, grads, 3);

        net params = compiled_test::make_net(1);
        xoptim::compiled<O> opt(o);
        for (int s = 0; s < 3; ++s)
        {
            opt.step(params, grads);
        }
        EXPECT_TRUE(same_bits(params, direct));
        EXPECT_NE(params.w, compiled_test::make_net(1).w);  // it moved
        EXPECT_EQ(opt.step_count(), 3u);
        EXPECT_EQ(compiled_test::state_names(opt.optimizer()), direct_names);
    }
}

TEST(compiled, adamw_steps_as_adamw)
{
    xoptim::adamw_options o;
    o.lr = 0.05;
    o.weight_decay = 0.1;
    expect_steps_as_the_optimizer<xoptim::adamw>(o);
    o.amsgrad = true;
    o.caution = true;
    expect_steps_as_the_optimizer<xoptim::adamw>(o);
}

TEST(compiled, adam_steps_as_adam)
{
    xoptim::adam_options o;
    o.lr = 0.01;
    o.weight_decay = 0.2;
    o.maximize = true;
    expect_steps_as_the_optimizer<xoptim::adam>(o);
}

TEST(compiled, sgd_steps_as_sgd)
{
    xoptim::sgd_options o;
    o.lr = 0.1;
    o.momentum = 0.9;
    o.nesterov = true;
    o.weight_decay = 1e-3;
    expect_steps_as_the_optimizer<xoptim::sgd>(o);
}

TEST(compiled, lion_steps_as_lion)
{
    xoptim::lion_options o;
    o.lr = 0.02;
    o.weight_decay = 0.5;
    expect_steps_as_the_optimizer<xoptim::lion>(o);
    o.caution = true;
    expect_steps_as_the_optimizer<xoptim::lion>(o);
}

TEST(compiled, muon_steps_as_muon)
{
    const compiled_test::matrices grads = compiled_test::make_matrices(2);
    for (const xoptim::muon_options& o : {xoptim::muon_options{}, xoptim::muon_options::polar_express()})
    {
        compiled_test::matrices direct = compiled_test::make_matrices(1);
        const std::vector<std::string> direct_names = compiled_test::step_matrices_directly(o, direct, grads, 3);

        compiled_test::matrices params = compiled_test::make_matrices(1);
        xoptim::compiled<xoptim::muon> opt(o);
        auto p = compiled_test::matrix_views(params);
        const auto g = compiled_test::matrix_views(grads);
        for (int s = 0; s < 3; ++s)
        {
            opt.step(p, g);
        }
        EXPECT_TRUE(same_bits(params.a, direct.a));
        EXPECT_TRUE(same_bits(params.b, direct.b));
        EXPECT_NE(params.a, compiled_test::make_matrices(1).a);
        EXPECT_EQ(compiled_test::state_names(opt.optimizer()), direct_names);
    }
}

TEST(compiled, a_first_step_the_optimizer_refuses_leaves_no_names)
{
    // Muon refuses a 1-D parameter in its own first step, after the walk recorded both
    // names: the next call, the matrix alone, is a first step again.
    std::vector<float> w(12, 1.0f), b(3, 1.0f);
    const std::vector<float> gw(12, 0.5f), gb(3, 0.5f);
    xoptim::compiled<xoptim::muon> opt;
    EXPECT_THROW(opt.step(std::make_tuple(xoptim::view(w.data(), {4, 3}), xoptim::view(b.data(), {3})),
                          std::make_tuple(xoptim::view(gw.data(), {4, 3}), xoptim::view(gb.data(), {3}))),
                 std::invalid_argument);
    EXPECT_EQ(w, std::vector<float>(12, 1.0f));
    opt.step(xoptim::view(w.data(), {4, 3}), xoptim::view(gw.data(), {4, 3}));
    EXPECT_EQ(opt.step_count(), 1u);
    EXPECT_NE(w, std::vector<float>(12, 1.0f));
}

TEST(compiled, a_bad_gradient_is_named_and_nothing_moves)
{
    net params = compiled_test::make_net(1);
    net grads = compiled_test::make_net(2);
    grads.layers[1].pop_back();
    xoptim::compiled<xoptim::adamw> opt;
    try
    {
        opt.step(params, grads);
        ADD_FAILURE() << "no error";
    }
    catch (const std::invalid_argument& e)
    {
        EXPECT_STREQ(e.what(),
                     "xoptim::compiled<adamw>: parameter 'layers.1': gradient has 15 elements, parameter has 16");
    }
    EXPECT_TRUE(same_bits(params, compiled_test::make_net(1)));
    EXPECT_EQ(opt.step_count(), 0u);
}

TEST(compiled, an_aliased_first_step_is_refused_and_the_next_starts_afresh)
{
    // The alias check runs at the end of the walk (flat_params::finish, in the
    // instantiation unit); a first walk that fails there forgets its names.
    net params = compiled_test::make_net(1);
    const net grads = compiled_test::make_net(2);
    xoptim::compiled<xoptim::adamw> opt;
    try
    {
        opt.step(std::tie(params.w, params.w), std::tie(grads.w, grads.w));
        ADD_FAILURE() << "no error";
    }
    catch (const std::invalid_argument& e)
    {
        EXPECT_STREQ(e.what(), "xoptim::compiled<adamw>: parameter '1': parameter '1' shares memory with parameter '0'");
    }
    EXPECT_TRUE(same_bits(params, compiled_test::make_net(1)));
    EXPECT_EQ(opt.step_count(), 0u);

    opt.step(params, grads);
    net direct = compiled_test::make_net(1);
    compiled_test::step_directly<xoptim::adamw>({}, direct, grads, 1);
    EXPECT_TRUE(same_bits(params, direct));
}

TEST(compiled, named_parameters_keep_their_order)
{
    std::vector<float> a(5, 1.0f), b(5, 2.0f);
    const std::vector<float> g(5, 0.5f);
    xoptim::compiled<xoptim::lion> opt;
    opt.step(std::make_tuple(xoptim::named("a", a), xoptim::named("b", b)), std::tie(g, g));
    const std::vector<float> a1 = a, b1 = b;
    try
    {
        opt.step(std::make_tuple(xoptim::named("b", b), xoptim::named("a", a)), std::tie(g, g));
        ADD_FAILURE() << "no error";
    }
    catch (const std::invalid_argument& e)
    {
        EXPECT_STREQ(e.what(), "xoptim::compiled<lion>: parameter 'b': found where 'a' was on the first call "
                               "(parameters must keep their order)");
    }
    EXPECT_EQ(a, a1);
    EXPECT_EQ(b, b1);
    EXPECT_EQ(opt.step_count(), 1u);
}

TEST(compiled, options_are_checked_as_the_optimizer_checks_them)
{
    // (compiled<sgd> without options: tests/compile_fail/compiled_sgd_without_options.cpp.)
    EXPECT_THROW(xoptim::compiled<xoptim::sgd>(xoptim::sgd_options{}), std::invalid_argument);

    xoptim::lion_options bad;
    bad.betas[1] = 1.5;
    try
    {
        xoptim::compiled<xoptim::lion> opt(bad);
        ADD_FAILURE() << "no error";
    }
    catch (const std::invalid_argument& e)
    {
        EXPECT_NE(std::string(e.what()).find("betas[1]"), std::string::npos) << e.what();
    }

    xoptim::compiled<xoptim::lion> opt;
    EXPECT_EQ(opt.options().lr, 1e-4);
    xoptim::lion_options o;
    o.lr = 3e-4;
    opt.set_options(o);
    EXPECT_EQ(opt.options().lr, 3e-4);
    EXPECT_THROW(opt.set_options(bad), std::invalid_argument);
    EXPECT_EQ(opt.options().lr, 3e-4);
}

TEST(compiled, a_moved_optimizer_keeps_its_state)
{
    net params = compiled_test::make_net(1);
    const net grads = compiled_test::make_net(2);
    xoptim::compiled<xoptim::adamw> first;
    first.step(params, grads);
    xoptim::compiled<xoptim::adamw> second(std::move(first));
    second.step(params, grads);
    xoptim::compiled<xoptim::adamw> third;
    third = std::move(second);
    third.step(params, grads);

    net direct = compiled_test::make_net(1);
    compiled_test::step_directly<xoptim::adamw>({}, direct, grads, 3);
    EXPECT_TRUE(same_bits(params, direct));
    EXPECT_EQ(third.step_count(), 3u);
}

// A state made through optimizer() (init, a checkpoint loaded into a new compiled<O>)
// follows the set's own order, where the double b comes between float leaves: the first
// step through compiled<O> puts it in its lists' order (every step was refused before),
// and the run goes on as one that never stopped.
TEST(compiled, a_state_made_through_the_optimizer_is_stepped)
{
    const net grads = compiled_test::make_net(2);
    net direct = compiled_test::make_net(1);
    compiled_test::step_directly<xoptim::adamw>({}, direct, grads, 4);

    net initialised = compiled_test::make_net(1);
    xoptim::compiled<xoptim::adamw> fresh;
    compiled_test::init_through_optimizer(fresh, initialised);
    for (int s = 0; s < 4; ++s)
    {
        fresh.step(initialised, grads);
    }
    EXPECT_TRUE(same_bits(initialised, direct));

    net restarted = compiled_test::make_net(3);
    fresh.step(restarted, grads);  // this compiled<O> has stepped before
    restarted = compiled_test::make_net(1);
    compiled_test::restart_through_optimizer(fresh, restarted);
    for (int s = 0; s < 4; ++s)
    {
        fresh.step(restarted, grads);
    }
    EXPECT_TRUE(same_bits(restarted, direct));

    net params = compiled_test::make_net(1);
    xoptim::compiled<xoptim::adamw> first;
    first.step(params, grads);
    first.step(params, grads);
    net resumed = compiled_test::make_net(3);  // the checkpoint brings the values
    xoptim::compiled<xoptim::adamw> second;
    const std::string file = "compiled_resume.safetensors";
    compiled_test::checkpoint_through_optimizer(file, params, first, resumed, second);
    std::remove(file.c_str());
    EXPECT_EQ(second.step_count(), 2u);
    second.step(resumed, grads);
    second.step(resumed, grads);
    EXPECT_TRUE(same_bits(resumed, direct));
    EXPECT_EQ(compiled_test::state_names(second.optimizer()), compiled_test::state_names(first.optimizer()));
}
