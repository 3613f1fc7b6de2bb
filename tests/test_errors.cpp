// Bad input: each mistake is an exception that names the optimizer, the parameter or
// field and what was wrong, raised before anything changes.
#include <gtest/gtest.h>

#include "support/message_of.hpp"

#include <xtensor/xtensor.hpp>
#include <xtensor/xview.hpp>

#include <xoptim/xoptim.hpp>

namespace
{
    using xoptim_test::message_of;

    template <class Optimizer, class Options>
    std::string construct(const Options& o)
    {
        return message_of([&] { Optimizer opt(o); });
    }

    TEST(bad_hyperparameters, name_the_field)
    {
        xoptim::adamw_options a;
        a.lr = -1e-3;
        EXPECT_EQ(construct<xoptim::adamw>(a), "xoptim::adamw: lr must be >= 0 and finite (got -0.001)");
        a = {};
        a.betas = {0.9, 1.0};
        EXPECT_EQ(construct<xoptim::adamw>(a), "xoptim::adamw: betas[1] must be in [0, 1) (got 1)");
        a = {};
        a.betas = {-0.1, 0.999};
        EXPECT_EQ(construct<xoptim::adamw>(a), "xoptim::adamw: betas[0] must be in [0, 1) (got -0.1)");
        a = {};
        a.eps = 0;
        EXPECT_EQ(construct<xoptim::adamw>(a), "xoptim::adamw: eps must be > 0 and finite (got 0)");
        xoptim::adam_options b;
        b.weight_decay = -0.1;
        EXPECT_EQ(construct<xoptim::adam>(b), "xoptim::adam: weight_decay must be >= 0 and finite (got -0.1)");
        b = {};
        b.lr = std::numeric_limits<double>::infinity();
        EXPECT_EQ(construct<xoptim::adam>(b), "xoptim::adam: lr must be >= 0 and finite (got inf)");

        xoptim::sgd_options s;
        EXPECT_EQ(construct<xoptim::sgd>(s),
                  "xoptim::sgd: lr is required (sgd_options::lr is NaN: not set, or set to NaN)");
        s.lr = 0.1;
        xoptim::sgd set(s);
        s.lr = std::numeric_limits<double>::quiet_NaN();
        EXPECT_EQ(message_of([&] { set.set_options(s); }),
                  "xoptim::sgd: lr is required (sgd_options::lr is NaN: not set, or set to NaN)");
        EXPECT_EQ(set.options().lr, 0.1);
        s.lr = 0.1;
        s.momentum = -0.9;
        EXPECT_EQ(construct<xoptim::sgd>(s), "xoptim::sgd: momentum must be >= 0 and finite (got -0.9)");
        s.momentum = 0.9;
        s.dampening = 1.5;
        EXPECT_EQ(construct<xoptim::sgd>(s), "xoptim::sgd: dampening must be in [0, 1] (got 1.5)");
        s.dampening = 0.1;
        s.nesterov = true;
        EXPECT_EQ(construct<xoptim::sgd>(s), "xoptim::sgd: nesterov needs momentum > 0 and dampening = 0");

        xoptim::lion_options l;
        l.betas = {0.9, 1.5};
        EXPECT_EQ(construct<xoptim::lion>(l), "xoptim::lion: betas[1] must be in [0, 1) (got 1.5)");
        xoptim::signsgd_options g;
        g.lr = -1;
        EXPECT_EQ(construct<xoptim::signsgd>(g), "xoptim::signsgd: lr must be >= 0 and finite (got -1)");
    }

    // A step that throws leaves parameters, state and the step count as they were.
    template <class Optimizer, class P, class G, class F>
    std::string failed_step(Optimizer& opt, P& params, const G& grads, F&& bad_step)
    {
        opt.step(params, grads);
        const P before = params;
        const std::size_t steps = opt.step_count();
        const auto m = opt.state().template view<float>("0", 0);
        const std::vector<float> m_before(m.data(), m.data() + m.size());
        const std::string what = message_of(bad_step);
        EXPECT_EQ(params, before);
        EXPECT_EQ(opt.step_count(), steps);
        EXPECT_EQ(std::vector<float>(m.data(), m.data() + m.size()), m_before);
        return what;
    }

    TEST(bad_step, gradient_size_mismatch)
    {
        std::vector<std::vector<float>> p(2, std::vector<float>(6, 1)), g(2, std::vector<float>(6, 1));
        auto bad = g;
        bad[1].resize(5);
        xoptim::adamw opt;
        EXPECT_EQ(failed_step(opt, p, g, [&] { opt.step(p, bad); }),
                  "xoptim::adamw: parameter '1': gradient has 5 elements, parameter has 6");
    }

    TEST(bad_step, gradient_shape_mismatch)
    {
        xt::xtensor<float, 2> w = xt::ones<float>({3, 4}), gw = xt::ones<float>({3, 4}), wrong = xt::ones<float>({4, 3});
        xoptim::adamw opt;
        opt.step(xoptim::named("w", w), gw);
        const xt::xtensor<float, 2> before = w;
        EXPECT_EQ(message_of([&] { opt.step(xoptim::named("w", w), wrong); }),
                  "xoptim::adamw: parameter 'w': gradient shape (4, 3) differs from parameter shape (3, 4)");
        EXPECT_EQ(w, before);
    }

    TEST(bad_step, parameters_no_longer_fit_the_state)
    {
        std::vector<std::vector<float>> p(2, std::vector<float>(6, 1)), g = p;
        xoptim::lion opt;
        auto grown = p, ggrown = g;
        grown[0].resize(7, 1);
        ggrown[0].resize(7, 1);
        EXPECT_EQ(failed_step(opt, p, g, [&] { opt.step(grown, ggrown); }),
                  "xoptim::lion: parameter '0': parameter is float32 (7,), its optimizer state (made for '0') is "
                  "float32 (6,)");
        // Same size, other shape: the state's shape says why.
        std::vector<float> w(12, 1.0f), gw(12, 1.0f);
        xoptim::lion reshaped;
        reshaped.step(xoptim::view(w.data(), {3, 4}), xoptim::view(gw.data(), {3, 4}));
        EXPECT_EQ(message_of([&] {
                      reshaped.step(xoptim::view(w.data(), {4, 3}), xoptim::view(gw.data(), {4, 3}));
                  }),
                  "xoptim::lion: parameter '0': parameter is float32 (4, 3), its optimizer state (made for '0') is "
                  "float32 (3, 4)");
        auto more = p, gmore = g;
        more.push_back(p[0]);
        gmore.push_back(g[0]);
        EXPECT_EQ(message_of([&] { opt.step(more, gmore); }),
                  "xoptim::lion: parameter '2': the optimizer state holds only 2 parameters");
        auto fewer = p, gfewer = g;
        fewer.pop_back();
        gfewer.pop_back();
        EXPECT_EQ(message_of([&] { opt.step(fewer, gfewer); }),
                  "xoptim::lion: this step passed 1 parameters, the optimizer state holds 2");
    }

    TEST(bad_step, list_lengths_differ)
    {
        std::vector<std::vector<float>> p(3, std::vector<float>(2, 1)), g(2, std::vector<float>(2, 1));
        xoptim::adamw opt;
        EXPECT_EQ(message_of([&] { opt.step(xoptim::named("blocks", p), g); }),
                  "xoptim::adamw: parameter 'blocks': parameter list has 3 entries, gradient list 2");
        EXPECT_TRUE(opt.state().empty());  // the failed first step created nothing
    }

    // An update that carries an array between its passes (sym::carried) in the last state
    // slot, with every state slot its own: refused before anything is written.
    struct crowded_options
    {
        double lr = 0.5;

        template <class O, class F>
        static void fields(O& o, F&& f)
        {
            f("lr", o.lr);
        }
    };

    class crowded : public xoptim::optimizer<crowded, crowded_options>
    {
    public:

        static constexpr const char* name = "crowded";
        static constexpr std::array<const char*, 6> state_names = {"a", "b", "c", "d", "e", "f"};

        crowded()
            : optimizer(crowded_options{})
        {
        }

        static void check(const crowded_options&)
        {
        }

        static std::size_t num_states(const crowded_options&) noexcept
        {
            return 6;
        }

        template <class Step>
        void update(const Step& step, const crowded_options& o) const
        {
            using namespace xoptim::sym;
            step.run_carrying(xoptim::fuse(carried = o.lr * g, scalar<0> = sum(g)), xoptim::detail::nothing_between{},
                              xoptim::fuse(p = p - carried * scalar<0>));
        }
    };

    TEST(bad_step, an_update_that_carries_leaves_the_last_state_slot_free)
    {
        std::vector<float> p(5, 1), g(5, 1);
        crowded opt;
        EXPECT_EQ(message_of<std::logic_error>([&] { opt.step(p, g); }),
                  "xoptim: an update that carries an array (sym::carried) leaves the last state slot free: at most 5 "
                  "states, num_states() created 6");
        EXPECT_EQ(p, std::vector<float>(5, 1));
    }

    TEST(bad_step, first_step_failing_halfway_creates_no_state)
    {
        std::vector<float> a(4, 1), b(4, 1), ga(4, 1), gb(3, 1);
        xoptim::adamw opt;
        EXPECT_EQ(message_of([&] { opt.step(std::tie(a, b), std::tie(ga, gb)); }),
                  "xoptim::adamw: parameter '1': gradient has 3 elements, parameter has 4");
        EXPECT_TRUE(opt.state().empty());
        EXPECT_EQ(a, std::vector<float>(4, 1));
        opt.step(std::tie(a, b), std::tie(ga, ga));  // and a good step afterwards works
        EXPECT_EQ(opt.state().size(), 2u);
    }

    TEST(bad_step, strided_view_is_rejected)
    {
        xt::xtensor<float, 2> w = xt::ones<float>({4, 4});
        xt::xtensor<float, 2> g = xt::ones<float>({4, 2});
        auto columns = xt::view(w, xt::all(), xt::range(0, 2));
        xoptim::adamw opt;
        EXPECT_EQ(message_of([&] { opt.step(xoptim::named("w", columns), g); }),
                  "xoptim::adamw: parameter 'w': parameter is not contiguous (a strided view cannot be stepped in "
                  "place)");
        EXPECT_EQ(w(0, 0), 1.0f);
    }

    TEST(bad_step, gradient_aliasing_the_parameter)
    {
        std::vector<float> p(8, 1);
        xoptim::adamw opt;
        EXPECT_EQ(message_of([&] { opt.step(xoptim::view(p.data(), 4), xoptim::view(p.data() + 2, 4)); }),
                  "xoptim::adamw: parameter '0': gradient and parameter share memory");
        EXPECT_TRUE(opt.state().empty());
    }

    TEST(bad_step, a_parameter_passed_twice)
    {
        std::vector<float> w(8, 1), g(8, 1);
        xoptim::adamw opt;
        EXPECT_EQ(message_of([&] { opt.step(std::tie(w, w), std::tie(g, g)); }),
                  "xoptim::adamw: parameter '1': parameter '1' shares memory with parameter '0'");
        EXPECT_EQ(w, std::vector<float>(8, 1));
        EXPECT_TRUE(opt.state().empty());
    }

    TEST(bad_step, a_gradient_overlapping_another_parameter)
    {
        std::vector<float> buffer(16, 1), g(8, 1);
        xoptim::adamw opt;
        const auto a = xoptim::view(buffer.data(), 8);
        const auto b = xoptim::view(buffer.data() + 8, 8);
        opt.step(std::make_tuple(xoptim::named("a", a), xoptim::named("b", b)), std::tie(g, g));  // fine
        const auto before = buffer;
        EXPECT_EQ(message_of([&] {
                      opt.step(std::make_tuple(xoptim::named("a", a), xoptim::named("b", b)),
                               std::make_tuple(g, xoptim::view(buffer.data() + 4, 8)));
                  }),
                  "xoptim::adamw: parameter 'b': the gradient of 'b' shares memory with parameter 'a'");
        EXPECT_EQ(buffer, before);
    }

    TEST(bad_step, named_parameters_reordered)
    {
        std::vector<float> w1(4, 1), w2(4, 1), g(4, 1);
        xoptim::adamw opt;
        opt.step(std::make_tuple(xoptim::named("w1", w1), xoptim::named("w2", w2)), std::tie(g, g));
        EXPECT_EQ(message_of([&] {
                      opt.step(std::make_tuple(xoptim::named("w2", w2), xoptim::named("w1", w1)), std::tie(g, g));
                  }),
                  "xoptim::adamw: parameter 'w2': the optimizer state at this position belongs to 'w1' "
                  "(parameters must keep their order)");
        // A parameter that moved to new memory under its own name keeps its state.
        std::vector<float> w1_moved = w1;
        opt.step(std::make_tuple(xoptim::named("w1", w1_moved), xoptim::named("w2", w2)), std::tie(g, g));
        EXPECT_EQ(opt.step_count(), 2u);
    }

    TEST(bad_step, empty_parameter_set_is_a_no_op)
    {
        std::vector<std::vector<float>> none;
        xoptim::adamw adamw;
        adamw.step(none, none);
        xoptim::lion lion;
        lion.step(none, none);
        EXPECT_EQ(adamw.step_count(), 1u);
        EXPECT_TRUE(adamw.state().empty());
    }
}
