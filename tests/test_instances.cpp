// Steps compiled once per project (include/xoptim/instances.hpp): this unit declares them
// extern and steps every optimizer the header names through each of its entry points; the
// kernels come from support/instances_unit.cpp. Both units are built with
// XOPTIM_SEPARATE_IO (io/separate.hpp), so the checkpoint's functions that depend on no
// type of this unit come from there too. The ctest instances.none_compiled_here checks
// that this unit's object holds neither.
#include <cmath>
#include <stdexcept>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include <xoptim/io/checkpoint.hpp>
#include <xoptim/optim/muon.hpp>
#include <xoptim/step/stepper.hpp>
#include <xoptim/xoptim.hpp>
#include <xoptim/instances.hpp>
#include <xoptim/instances_muon.hpp>

#include "support/temp_dir.hpp"

namespace
{
    // AdamW's first step from m = v = 0, in double: p(1 - lr wd) - lr g / (|g| + eps), the
    // bias corrections cancelling (torch.optim.AdamW, step 1).
    double adamw_first_step(double p, double g, const xoptim::adamw_options& o)
    {
        const double m = (1 - o.betas[0]) * g / (1 - o.betas[0]);
        const double v = (1 - o.betas[1]) * g * g / (1 - o.betas[1]);
        return p * (1 - o.lr * o.weight_decay) - o.lr * m / (std::sqrt(v) + o.eps);
    }
}

TEST(instances, float_double_and_mixed_steps_run_the_project_kernels)
{
    xoptim::adamw_options o;
    o.lr = 0.1;
    o.weight_decay = 0.5;
    std::vector<float> pf{1.0f, -2.0f, 0.25f};
    const std::vector<float> gf{0.5f, -1.0f, 3.0f};
    std::vector<double> pd{1.0, -2.0, 0.25};
    const std::vector<double> gd{0.5, -1.0, 3.0};
    xoptim::adamw floats(o), doubles(o), both(o);
    floats.step(std::tie(pf), std::tie(gf));   // commit<1>
    doubles.step(std::tie(pd), std::tie(gd));  // commit<2>
    std::vector<float> qf{1.0f, -2.0f, 0.25f};
    std::vector<double> qd{1.0, -2.0, 0.25};
    both.step(std::tie(qf, qd), std::tie(gf, gd));  // commit<3>
    for (std::size_t i = 0; i < pf.size(); ++i)
    {
        const double expected = adamw_first_step(i == 0 ? 1.0 : i == 1 ? -2.0 : 0.25, gd[i], o);
        EXPECT_NEAR(pf[i], expected, 1e-6);
        EXPECT_NEAR(pd[i], expected, 1e-15);
        EXPECT_EQ(qf[i], pf[i]);
        EXPECT_EQ(qd[i], pd[i]);
    }
}

TEST(instances, stepper_storage_and_every_optimizer_named)
{
    std::vector<float> w(512, 1.0f), b(8, 0.0f);
    const std::vector<float> gw(512, 0.25f), gb(8, -0.5f);
    xoptim::stepper step{xoptim::sgd({0.1, 0.9})};  // commit<3>
    step(std::tie(w, b), std::tie(gw, gb));
    EXPECT_FLOAT_EQ(w[0], 1.0f - 0.1f * 0.25f);
    EXPECT_FLOAT_EQ(b[0], 0.05f);

    xoptim::storage_options s;
    s.states = xoptim::state_storage::blockwise_8bit;
    s.min_8bit_size = 256;
    xoptim::lion lion;
    lion.set_storage(s);  // commit<7>
    lion.step(std::tie(w), std::tie(gw));
    EXPECT_EQ(lion.state()[0].states[0].format, xoptim::slot_format::q8_signed);
    EXPECT_NEAR(w[0], 1.0 - 0.1 * 0.25 - 1e-4, 1e-6);  // sign(c) = 1: p - lr

    xoptim::adam adam;
    adam.step(std::tie(b), std::tie(gb));
    EXPECT_NEAR(b[0], 0.05 + 1e-3, 1e-7);

    std::vector<float> matrix(16, 0.0f);
    std::vector<float> grad(16, 0.0f);
    for (std::size_t i = 0; i < 4; ++i)
    {
        grad[i * 5] = 1.0f;  // the identity: its orthogonalization is itself, up to NS's error
    }
    xoptim::muon muon;
    muon.step(std::forward_as_tuple(xoptim::tensor_view<float>(matrix.data(), {4, 4})),
              std::forward_as_tuple(xoptim::tensor_view<const float>(grad.data(), {4, 4})));
    EXPECT_LT(matrix[0], 0.0f);
    EXPECT_EQ(matrix[1], 0.0f);
}

namespace
{
    class instances_io : public xoptim_test::temp_dir_test
    {
    };
}

TEST_F(instances_io, a_checkpoint_saves_loads_and_refuses_through_the_project_io)
{
    const std::string path = (dir_ / "run.safetensors").string();
    std::vector<float> w{1.0f, -2.0f, 0.5f}, b{0.25f};
    const std::vector<float> gw{0.5f, 0.5f, -1.0f}, gb{2.0f};
    xoptim::stepper step{xoptim::adamw()};
    step(std::tie(w, b), std::tie(gw, gb));
    xoptim::save_checkpoint(path, std::tie(w, b), step);

    // A second step from the saved point, once as the run went on, once after a load.
    std::vector<float> w_on = w, b_on = b;
    step(std::tie(w_on, b_on), std::tie(gw, gb));
    std::vector<float> w_back{9.0f, 9.0f, 9.0f}, b_back{9.0f};
    xoptim::stepper again{xoptim::adamw()};
    again(std::tie(w_back, b_back), std::tie(gw, gb));  // states exist, with other values
    xoptim::load_checkpoint(path, std::tie(w_back, b_back), again);
    EXPECT_EQ(w_back, w);
    EXPECT_EQ(b_back, b);
    again(std::tie(w_back, b_back), std::tie(gw, gb));
    EXPECT_EQ(w_back, w_on);
    EXPECT_EQ(b_back, b_on);

    // The metadata check (detail::check_metadata) refuses a file that is not a checkpoint.
    xoptim::io::safetensors_writer other;
    other.metadata("format", "something else");
    other.write((dir_ / "other.safetensors").string());
    try
    {
        xoptim::load_checkpoint((dir_ / "other.safetensors").string(), std::tie(w_back, b_back), again);
        FAIL() << "a file of another format was loaded";
    }
    catch (const std::runtime_error& e)
    {
        EXPECT_NE(std::string(e.what()).find("not an xoptim checkpoint"), std::string::npos) << e.what();
    }
    EXPECT_EQ(w_back, w_on);
}
