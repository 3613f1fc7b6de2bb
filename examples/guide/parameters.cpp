// docs/guide.md, "Parameters": every kind of container, sets of them, model structs.
#include <array>
#include <cstdio>
#include <stdexcept>
#include <tuple>
#include <vector>

#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xfixed.hpp>
#include <xtensor/xtensor.hpp>
#include <xtensor/xview.hpp>

#include <xoptim/xoptim.hpp>

#include "require.hpp"

//! [model]
struct linear
{
    xt::xtensor<float, 2> weight;  // (out, in)
    xt::xtensor<float, 1> bias;    // (out)
};

// The parameters: the step writes them.
auto xoptim_params(linear& l)
{
    return std::make_tuple(xoptim::named("weight", l.weight), xoptim::named("bias", l.bias));
}

// The gradients, usually passed const: the same members, read only.
auto xoptim_params(const linear& l)
{
    return std::make_tuple(xoptim::named("weight", l.weight), xoptim::named("bias", l.bias));
}

struct mlp
{
    linear hidden;
    linear output;
};

auto xoptim_params(mlp& m)
{
    return std::make_tuple(xoptim::named("hidden", m.hidden), xoptim::named("output", m.output));
}

auto xoptim_params(const mlp& m)
{
    return std::make_tuple(xoptim::named("hidden", m.hidden), xoptim::named("output", m.output));
}

void train_step(mlp& model, const mlp& grads, xoptim::adamw& opt)
{
    opt.step(model, grads);
}
//! [model]

//! [model_template]
struct block
{
    std::vector<float> scale;
    std::vector<linear> layers;  // a runtime list inside a model
};

// One template for both: M is `block` or `const block`.
template <class M, std::enable_if_t<std::is_same_v<std::remove_const_t<M>, block>, int> = 0>
auto xoptim_params(M& b)
{
    return std::make_tuple(xoptim::named("scale", b.scale), xoptim::named("layers", b.layers));
}
//! [model_template]

namespace
{
    void print_names(const char* title, const xoptim::state_store& state)
    {
        std::printf("%s:", title);
        for (std::size_t k = 0; k < state.size(); ++k)
        {
            std::printf(" %s", state[k].name.c_str());
        }
        std::printf("\n");
    }
}

int main()
{
    {
        //! [containers]
        std::vector<float> bias(64, 0.0f), g_bias(64, 0.01f);
        std::array<float, 8> scale{}, g_scale{};
        xt::xtensor<float, 2> w = xt::zeros<float>({64, 32}), g_w = xt::ones<float>({64, 32});
        xt::xarray<double> table = xt::zeros<double>({10, 4, 4}), g_table = xt::ones<double>({10, 4, 4});
        xt::xtensor_fixed<float, xt::xshape<4, 4>> rot = xt::zeros<float>({4, 4});
        std::vector<float> g_rot(16, 0.5f);  // gradients may be another container, same size

        std::vector<float> buffer(10 * 6);   // memory owned elsewhere, seen as (10, 6)
        auto adapted = xt::adapt(buffer.data(), buffer.size(), xt::no_ownership(), std::array<std::size_t, 2>{10, 6});
        std::vector<float> g_adapted(60, 0.1f);

        xoptim::adamw opt;
        opt.step(std::tie(bias, scale, w, table, rot, adapted),
                 std::tie(g_bias, g_scale, g_w, g_table, g_rot, g_adapted));
        //! [containers]
        print_names("containers", opt.state());
        guide::require(opt.state()[2].shape == std::vector<std::size_t>{64, 32}, "xtensor shape");
        guide::require(w(0, 0) < 0 && buffer[0] < 0 && rot(3, 3) < 0 && table(9, 3, 3) < 0, "every tensor moved");
    }
    {
        //! [views]
        xt::xtensor<float, 2> embedding = xt::zeros<float>({100, 16});
        xt::xtensor<float, 2> g_rows = xt::ones<float>({8, 16});
        std::vector<double> flat(12 * 5);  // e.g. memory from a C API
        std::vector<double> g_flat(12 * 5, 1.0);

        xoptim::sgd_options o;
        o.lr = 0.1;
        xoptim::sgd opt(o);
        // Whole rows of a row-major tensor are contiguous: rows 8..15 step in place.
        opt.step(std::make_tuple(xt::view(embedding, xt::range(8, 16), xt::all()),
                                 xoptim::view(flat.data(), {12, 5})),
                 std::tie(g_rows, g_flat));
        //! [views]
        guide::require(embedding(7, 0) == 0 && embedding(8, 0) != 0 && embedding(15, 15) != 0 && embedding(16, 0) == 0,
                "only rows 8..15 moved");
        guide::require(opt.state()[1].shape == std::vector<std::size_t>{12, 5}, "view shape");
        //! [strided]
        auto columns = xt::view(embedding, xt::all(), xt::range(0, 8));  // every row's first 8: strided
        xt::xtensor<float, 2> g_columns = xt::ones<float>({100, 8});
        xoptim::adamw adamw;
        try
        {
            adamw.step(xoptim::named("embedding", columns), g_columns);
        }
        catch (const std::invalid_argument& e)
        {
            std::printf("%s\n", e.what());
        }
        //! [strided]
    }
    {
        //! [sets]
        std::vector<float> embedding(1000 * 16), g_embedding(1000 * 16, 0.1f);
        std::vector<std::vector<float>> layers(3, std::vector<float>(256));           // a runtime list
        std::vector<std::vector<float>> g_layers(3, std::vector<float>(256, 0.1f));
        std::vector<float> head(16 * 10), g_head(16 * 10, 0.1f);

        xoptim::adamw opt;
        opt.step(std::forward_as_tuple(xoptim::named("embedding", embedding), xoptim::named("layers", layers), head),
                 std::tie(g_embedding, g_layers, g_head));
        //! [sets]
        print_names("sets", opt.state());
    }
    {
        mlp model{{xt::zeros<float>({32, 8}), xt::zeros<float>({32})}, {xt::zeros<float>({4, 32}), xt::zeros<float>({4})}};
        mlp grads{{xt::ones<float>({32, 8}), xt::ones<float>({32})}, {xt::ones<float>({4, 32}), xt::ones<float>({4})}};
        xoptim::adamw opt;
        train_step(model, grads, opt);
        print_names("model", opt.state());
        guide::require(model.output.bias(0) < 0, "the model moved");

        block b{std::vector<float>(4), {linear{xt::zeros<float>({4, 4}), xt::zeros<float>({4})}}};
        const block g{std::vector<float>(4, 1.0f), {linear{xt::ones<float>({4, 4}), xt::ones<float>({4})}}};
        xoptim::lion lion;
        lion.step(b, g);
        print_names("model_template", lion.state());
    }
}
