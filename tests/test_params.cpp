// The parameter model: every container kind, tuples, runtime lists, named sets and
// model structs, each stepped in place and named as documented.
#include <gtest/gtest.h>

#include <sstream>

#include <xtensor/xadapt.hpp>
#include <xtensor/xfixed.hpp>
#include <xtensor/xtensor.hpp>
#include <xtensor/xview.hpp>

#include <xoptim/step/stepper.hpp>
#include <xoptim/xoptim.hpp>

#include "support/message_of.hpp"

// A user's own tensor type, plugged in through tensor_traits.
namespace user
{
    class tensor
    {
    public:
        tensor(std::size_t rows, std::size_t cols, float value) : m_rows(rows), m_cols(cols), m_data(rows * cols, value) {}
        float* ptr() { return m_data.data(); }
        const float* ptr() const { return m_data.data(); }
        std::size_t numel() const { return m_data.size(); }
        std::size_t dim(std::size_t d) const { return d == 0 ? m_rows : m_cols; }

    private:
        std::size_t m_rows, m_cols;
        std::vector<float> m_data;
    };

    // A model with one unconstrained template for both overloads. Lookup finds it for
    // anything holding a user::tensor (a tuple of them, a named one): xoptim asks for
    // xoptim_params only of types that are none of its other kinds, where asking would
    // instantiate this body (m.w of a tuple) and fail to compile.
    struct pair_model
    {
        tensor w, b;
    };

    template <class M>
    auto xoptim_params(M& m)
    {
        return std::tie(m.w, m.b);
    }
}

template <>
struct xoptim::tensor_traits<user::tensor>
{
    using value_type = float;
    static float* data(user::tensor& t) { return t.ptr(); }
    static const float* data(const user::tensor& t) { return t.ptr(); }
    static std::size_t size(const user::tensor& t) { return t.numel(); }
    static std::size_t rank(const user::tensor&) { return 2; }
    static std::size_t extent(const user::tensor& t, std::size_t d) { return t.dim(d); }
};

namespace
{
    xoptim::sgd plain_sgd()
    {
        xoptim::sgd_options o;
        o.lr = 0.5;
        return xoptim::sgd(o);
    }

    // One plain SGD step with lr 0.5 on p = 1, g = 1 gives 0.5 everywhere.
    template <class C>
    bool all_half(const C& c)
    {
        const auto* d = xoptim::tensor::data(c);
        for (std::size_t i = 0; i < xoptim::tensor::size(c); ++i)
        {
            if (d[i] != 0.5f)
            {
                return false;
            }
        }
        return true;
    }

    TEST(params, an_unconstrained_xoptim_params_template)
    {
        user::pair_model m{user::tensor(2, 3, 1.0f), user::tensor(1, 3, 1.0f)}, g = m;
        auto sgd = plain_sgd();
        sgd.step(m, g);
        EXPECT_TRUE(all_half(m.w));
        EXPECT_TRUE(all_half(m.b));
        // The same tensors in a tuple and named, whose xoptim_params lookup finds the template.
        user::tensor w(2, 2, 1.0f), gw(2, 2, 1.0f);
        auto named = plain_sgd();
        named.step(std::make_tuple(xoptim::named("w", w)), std::make_tuple(xoptim::named("w", gw)));
        EXPECT_TRUE(all_half(w));
    }

    TEST(params, every_container_kind_in_one_tuple)
    {
        std::vector<float> vec(5, 1), gvec(5, 1);
        std::array<float, 3> arr{1, 1, 1}, garr{1, 1, 1};
        xt::xtensor<float, 2> xt2 = xt::ones<float>({3, 4}), gxt2 = xt::ones<float>({3, 4});
        xt::xarray<float> xa = xt::ones<float>({2, 2, 2}), gxa = xt::ones<float>({2, 2, 2});
        xt::xtensor_fixed<float, xt::xshape<2, 3>> fixed = xt::ones<float>({2, 3}), gfixed = xt::ones<float>({2, 3});
        std::vector<float> raw(7, 1), graw(7, 1);
        auto adapted = xt::adapt(raw.data(), raw.size(), xt::no_ownership(), std::array<std::size_t, 1>{7});
        auto sgd = plain_sgd();
        sgd.step(std::tie(vec, arr, xt2, xa, fixed, adapted),
                 std::tie(gvec, garr, gxt2, gxa, gfixed, graw));
        EXPECT_TRUE(all_half(vec));
        EXPECT_TRUE(all_half(arr));
        EXPECT_TRUE(all_half(xt2));
        EXPECT_TRUE(all_half(xa));
        EXPECT_TRUE(all_half(fixed));
        EXPECT_TRUE(all_half(raw));
        EXPECT_EQ(sgd.state().size(), 6u);
        EXPECT_EQ(sgd.state()[2].shape, (std::vector<std::size_t>{3, 4}));
    }

    TEST(params, contiguous_view_and_raw_pointer_view)
    {
        xt::xtensor<float, 2> w = xt::ones<float>({4, 3});
        xt::xtensor<float, 2> gw = xt::ones<float>({2, 3});
        auto rows = xt::view(w, xt::range(1, 3), xt::all());  // rows 1..2: contiguous
        auto sgd = plain_sgd();
        sgd.step(rows, gw);
        EXPECT_EQ(w(0, 0), 1.0f);
        EXPECT_EQ(w(1, 0), 0.5f);
        EXPECT_EQ(w(2, 2), 0.5f);
        EXPECT_EQ(w(3, 0), 1.0f);

        // An empty column range is shape (4, 0): no element out of place, not refused.
        auto none = xt::view(w, xt::all(), xt::range(2, 2));
        xt::xtensor<float, 2> gnone = xt::zeros<float>({4, 0});
        auto empty_step = plain_sgd();
        empty_step.step(none, gnone);
        EXPECT_EQ(empty_step.state()[0].shape, (std::vector<std::size_t>{4, 0}));

        std::vector<double> buffer(13, 1.0), grad(12, 1.0);
        xoptim::sgd_options o;
        o.lr = 0.25;
        xoptim::sgd s(o);
        s.step(xoptim::view(buffer.data() + 1, {3, 4}), xoptim::view(grad.data(), {3, 4}));  // unaligned start
        EXPECT_EQ(buffer[0], 1.0);
        EXPECT_EQ(buffer[1], 0.75);
        EXPECT_EQ(buffer[12], 0.75);
        EXPECT_EQ(s.state()[0].shape, (std::vector<std::size_t>{3, 4}));
    }

    // Views own nothing: a temporary list of them, or a model of them passed by value,
    // steps the buffers they view (a temporary that owns its tensors does not compile:
    // compile_fail/temporary_parameter.cpp, temporary_model.cpp).
    namespace viewing
    {
        struct model
        {
            xoptim::tensor_view<float> w;
        };

        auto xoptim_params(model& m)
        {
            return std::make_tuple(xoptim::named("w", m.w));
        }
    }

    TEST(params, temporaries_of_views_step_what_they_view)
    {
        std::vector<float> a(3, 1.0f), b(2, 1.0f);
        const std::vector<std::vector<float>> grads{std::vector<float>(3, 1.0f)};
        auto sgd = plain_sgd();
        sgd.step(std::vector<xoptim::tensor_view<float>>{xoptim::view(a.data(), {3})}, grads);
        EXPECT_EQ(a, std::vector<float>(3, 0.5f));
        auto other = plain_sgd();
        std::vector<float> gb(2, 1.0f);
        viewing::model g{xoptim::view(gb.data(), {2})};
        other.step(viewing::model{xoptim::view(b.data(), {2})}, g);
        EXPECT_EQ(b, std::vector<float>(2, 0.5f));
    }

    TEST(params, user_tensor_type_through_traits)
    {
        user::tensor w(3, 5, 1.0f), gw(3, 5, 1.0f), wrong(5, 3, 1.0f);
        auto sgd = plain_sgd();
        sgd.step(xoptim::named("w", w), gw);
        EXPECT_TRUE(all_half(w));
        EXPECT_EQ(sgd.state()[0].shape, (std::vector<std::size_t>{3, 5}));
        EXPECT_THROW(sgd.step(xoptim::named("w", w), wrong), std::invalid_argument);  // shapes from the trait
    }

    TEST(params, names_follow_the_path)
    {
        std::vector<float> a(2, 1), b(2, 1), c(2, 1), d(2, 1), g(2, 1);
        std::vector<std::vector<float>> list(2, std::vector<float>(3, 1)), glist(2, std::vector<float>(3, 1));
        auto sgd = plain_sgd();
        sgd.step(std::forward_as_tuple(xoptim::named("embed", a), b,
                                       std::forward_as_tuple(c, xoptim::named("head", d)), xoptim::named("layers", list)),
                 std::make_tuple(g, g, std::make_tuple(g, g), glist));
        EXPECT_TRUE(all_half(b));
        EXPECT_TRUE(all_half(c));
        EXPECT_TRUE(all_half(list[1]));
        std::vector<std::string> names;
        for (std::size_t k = 0; k < sgd.state().size(); ++k)
        {
            names.push_back(sgd.state()[k].name);
        }
        EXPECT_EQ(names, (std::vector<std::string>{"embed", "1", "2.0", "2.head", "layers.0", "layers.1"}));
    }

    // A name given to a named set nests, as it does over a tuple: two blocks whose
    // parameters have the same inner name stay apart.
    TEST(params, names_nest_under_names)
    {
        std::vector<float> a(2, 1), b(2, 1), g(2, 1);
        auto inner_a = xoptim::named("w", a);
        auto inner_b = xoptim::named("w", b);
        auto sgd = plain_sgd();
        sgd.step(std::make_tuple(xoptim::named("enc", inner_a), xoptim::named("dec", inner_b)), std::make_tuple(g, g));
        ASSERT_EQ(sgd.state().size(), 2u);
        EXPECT_EQ(sgd.state()[0].name, "enc.w");
        EXPECT_EQ(sgd.state()[1].name, "dec.w");
        auto lone = plain_sgd();
        lone.step(xoptim::named("outer", inner_a), g);
        EXPECT_EQ(lone.state()[0].name, "outer.w");
    }

    // State follows names, so two parameters of one name are refused, on the step that
    // makes the state, by an optimizer and by what walks for several (the stepper): a
    // reordered pair would otherwise have swapped their moments silently. Names collide
    // through nesting and positions too.
    TEST(params, two_parameters_of_one_name_are_refused)
    {
        std::vector<float> a(4, 1.0f), b(4, 1.0f), g(4, 0.5f);
        const std::string twice
            = ": parameter 'w': two parameters have this name (state follows names: give each its own)";
        xoptim::adamw opt;
        EXPECT_EQ(xoptim_test::message_of(
                      [&] { opt.step(std::make_tuple(xoptim::named("w", a), xoptim::named("w", b)), std::tie(g, g)); }),
                  "xoptim::adamw" + twice);
        EXPECT_TRUE(opt.state().empty());
        EXPECT_EQ(a, std::vector<float>(4, 1.0f));
        xoptim::stepper step{xoptim::adamw()};
        EXPECT_EQ(xoptim_test::message_of(
                      [&] { step(std::make_tuple(xoptim::named("w", a), xoptim::named("w", b)), std::tie(g, g)); }),
                  "xoptim::stepper" + twice);
        EXPECT_TRUE(step.optimizer().state().empty());
        auto inner = xoptim::named("b", b);
        EXPECT_EQ(
            xoptim_test::message_of(
                [&] { opt.step(std::make_tuple(xoptim::named("a.b", a), xoptim::named("a", inner)), std::tie(g, g)); }),
            "xoptim::adamw: parameter 'a.b': two parameters have this name (state follows names: give each its own)");
        EXPECT_EQ(
            xoptim_test::message_of([&] { opt.step(std::forward_as_tuple(a, xoptim::named("0", b)), std::tie(g, g)); }),
            "xoptim::adamw: parameter '0': two parameters have this name (state follows names: give each its own)");
        // Distinct names step, and a reordered pair is refused.
        opt.step(std::make_tuple(xoptim::named("w", a), xoptim::named("v", b)), std::tie(g, g));
        EXPECT_NE(xoptim_test::message_of([&] {
                      opt.step(std::make_tuple(xoptim::named("v", b), xoptim::named("w", a)), std::tie(g, g));
                  }).find("parameters must keep their order"),
                  std::string::npos);
    }

    // A user's model: members listed once, with names, through xoptim_params.
    namespace model
    {
        struct linear
        {
            xt::xtensor<float, 2> weight;
            xt::xtensor<float, 1> bias;
        };

        template <class L, std::enable_if_t<std::is_same_v<std::decay_t<L>, linear>, int> = 0>
        auto xoptim_params(L& l)
        {
            return std::make_tuple(xoptim::named("weight", l.weight), xoptim::named("bias", l.bias));
        }

        struct mlp
        {
            xt::xtensor<float, 2> embedding;
            std::vector<linear> layers;
        };

        template <class M, std::enable_if_t<std::is_same_v<std::decay_t<M>, mlp>, int> = 0>
        auto xoptim_params(M& m)
        {
            return std::make_tuple(xoptim::named("embedding", m.embedding), xoptim::named("layers", m.layers));
        }

        mlp make(float value)
        {
            mlp m;
            m.embedding = xt::xtensor<float, 2>({10, 4}, value);
            for (int k = 0; k < 2; ++k)
            {
                m.layers.push_back({xt::xtensor<float, 2>({4, 4}, value), xt::xtensor<float, 1>({4}, value)});
            }
            return m;
        }
    }

    TEST(params, model_struct_with_named_members)
    {
        model::mlp m = model::make(1), grads = model::make(1);
        auto sgd = plain_sgd();
        sgd.step(m, grads);
        EXPECT_TRUE(all_half(m.embedding));
        EXPECT_TRUE(all_half(m.layers[1].bias));
        ASSERT_EQ(sgd.state().size(), 5u);
        EXPECT_EQ(sgd.state()[0].name, "embedding");
        EXPECT_EQ(sgd.state()[3].name, "layers.1.weight");
        EXPECT_EQ(sgd.state()[4].name, "layers.1.bias");
        EXPECT_EQ(sgd.state()[4].shape, (std::vector<std::size_t>{4}));
    }

    TEST(params, thousand_tiny_tensors)
    {
        std::vector<std::vector<float>> p, g;
        for (std::size_t k = 0; k < 1000; ++k)
        {
            p.emplace_back(k % 7 + 1, 1.0f);  // sizes 1..7, all below one SIMD batch
            g.emplace_back(k % 7 + 1, 1.0f);
        }
        auto sgd = plain_sgd();
        sgd.step(p, g);
        for (const auto& t : p)
        {
            ASSERT_TRUE(all_half(t));
        }
        EXPECT_EQ(sgd.state()[999].name, "999");
    }

    TEST(params, float_and_double_together)
    {
        std::vector<float> f(9, 1), gf(9, 1);
        std::vector<double> d(9, 1), gd(9, 1);
        xoptim::adamw opt;
        opt.step(std::tie(f, d), std::tie(gf, gd));
        EXPECT_FLOAT_EQ(f[8], float(d[8]));
        EXPECT_LT(d[8], 1.0);
    }

    TEST(params, state_created_explicitly_and_reported)
    {
        std::vector<float> w(1000, 1), b(24, 1);
        xoptim::adamw opt;
        opt.init(std::tie(w, b));
        EXPECT_EQ(opt.step_count(), 0u);
        const auto r = opt.report();
        EXPECT_EQ(r.param_bytes, 1024u * 4);
        EXPECT_EQ(r.state_bytes, 2u * 1024 * 4);
        EXPECT_DOUBLE_EQ(r.ratio(), 2.0);
        EXPECT_EQ(opt.state().view<float>("0", 1).size(), 1000u);

        xoptim::adamw_options o;
        o.amsgrad = true;
        xoptim::adamw ams(o);
        ams.init(std::tie(w, b));
        EXPECT_DOUBLE_EQ(ams.report().ratio(), 3.0);
        xoptim::signsgd sign;
        sign.init(w);
        EXPECT_EQ(sign.report().state_bytes, 0u);
    }

    // The report says which kernels the steps run: the build's instruction set, its
    // batch width, and whether fma is the instruction or its exact emulation.
    TEST(params, report_names_the_simd_kernels)
    {
        const xoptim::adamw opt;
        const auto r = opt.report();
        std::ostringstream text;
        text << r;
        EXPECT_NE(text.str().find(std::string("simd: ") + xsimd::default_arch::name()), std::string::npos) << text.str();
        EXPECT_EQ(r.simd_width, xsimd::batch<float>::size);
#if defined(__FMA__) || defined(__AVX512F__) || defined(__aarch64__)
        EXPECT_TRUE(r.hardware_fma);
#else
        EXPECT_FALSE(r.hardware_fma);
#endif
    }
}
