// dist::data_parallel on the one-rank communicator (no MPI): it must be the one-process
// step, bit for bit, in both modes, with accumulation, clipping, the guard, routers and
// grad_ready; errors come through as the same error, with nothing changed.
#include <xoptim/dist/data_parallel.hpp>
#include <xoptim/optim/hybrid.hpp>
#include <xoptim/xoptim.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "../support/message_of.hpp"
#include "../support/reference.hpp"

namespace
{
    namespace dist = xoptim::dist;
    using xoptim::named;

    // A row-major tensor with its shape (the container protocol: data, size, shape).
    template <class T>
    struct tensor
    {
        std::vector<T> values;
        std::vector<std::size_t> dims;

        tensor(std::vector<std::size_t> shape)
            : values(xoptim::dist::detail::elements(shape)), dims(std::move(shape))
        {
        }

        T* data() { return values.data(); }
        const T* data() const { return values.data(); }
        std::size_t size() const { return values.size(); }
        const std::vector<std::size_t>& shape() const { return dims; }
        T& operator[](std::size_t i) { return values[i]; }
        const T& operator[](std::size_t i) const { return values[i]; }
    };

    // A small model: matrices (Muon takes them in the hybrid), vectors, odd sizes, a
    // double tensor.
    struct model
    {
        tensor<float> w1{{24, 40}}, b1{{40}}, w2{{40, 7}}, out{{7, 3}};
        tensor<double> scale{{5}};

        auto params()
        {
            return std::make_tuple(named("layers.0.weight", w1), named("layers.0.bias", b1), named("layers.1.weight", w2),
                                   named("output.weight", out), named("scale", scale));
        }

        auto grads()
        {
            return std::tie(w1, b1, w2, out, scale);
        }

        void fill(std::uint64_t seed)
        {
            std::size_t k = 0;
            for (auto* v : {&w1, &b1, &w2, &out})
            {
                for (std::size_t i = 0; i < v->size(); ++i)
                {
                    (*v)[i] = float(xoptim_test::u(seed * 100 + k, 0, i));
                }
                ++k;
            }
            for (std::size_t i = 0; i < scale.size(); ++i)
            {
                scale[i] = xoptim_test::u(seed * 100 + k, 0, i);
            }
        }
    };

    template <class A, class B>
    void expect_same_bits(const A& a, const B& b)
    {
        ASSERT_EQ(a.size(), b.size());
        EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(a[0])), 0);
    }

    void expect_same_model(const model& a, const model& b)
    {
        expect_same_bits(a.w1.values, b.w1.values);
        expect_same_bits(a.b1.values, b.b1.values);
        expect_same_bits(a.w2.values, b.w2.values);
        expect_same_bits(a.out.values, b.out.values);
        expect_same_bits(a.scale.values, b.scale.values);
    }

    // Runs `steps` calls on one process and through data_parallel on one rank.
    template <class MakeTrainer>
    void expect_one_process_bits(MakeTrainer make, dist::mode how, std::size_t calls, bool nan_at_3 = false)
    {
        model a, b;
        a.fill(1);
        b.fill(1);
        auto one = make();
        dist::options o;
        o.mode = how;
        o.bucket_bytes = 1024;  // several buckets, tensors split across them
        dist::data_parallel dp(dist::local_comm{}, make(), o);
        model g;
        for (std::size_t t = 0; t < calls; ++t)
        {
            g.fill(10 + t);
            if (nan_at_3 && t == 3)
            {
                g.b1[5] = std::numeric_limits<float>::quiet_NaN();
            }
            const bool stepped_one = one(a.params(), g.grads());
            const bool stepped_dp = dp.step(b.params(), g.grads());
            EXPECT_EQ(stepped_one, stepped_dp) << "call " << t;
        }
        expect_same_model(a, b);
    }
}

TEST(dist_local, adamw_is_the_one_process_step_in_both_modes)
{
    for (const auto how : {dist::mode::data_parallel, dist::mode::zero1})
    {
        expect_one_process_bits([] { return xoptim::stepper(xoptim::adamw()); }, how, 5);
    }
}

TEST(dist_local, accumulation_clipping_and_the_guard_are_the_steppers)
{
    xoptim::stepper_options s;
    s.accumulate = 3;
    s.clip_global_norm = 0.5;
    s.clip_value = 0.8;
    for (const auto how : {dist::mode::data_parallel, dist::mode::zero1})
    {
        expect_one_process_bits([&] { return xoptim::stepper(xoptim::adamw(), s); }, how, 12, true);
    }
}

TEST(dist_local, the_hybrid_is_the_one_process_hybrid)
{
    for (const auto how : {dist::mode::data_parallel, dist::mode::zero1})
    {
        expect_one_process_bits([] { return xoptim::stepper(xoptim::make_hybrid()); }, how, 4);
    }
}

TEST(dist_local, a_bad_gradient_is_an_error_that_changes_nothing)
{
    model m;
    m.fill(2);
    const model before = m;
    dist::data_parallel dp(dist::local_comm{}, xoptim::adamw());
    model g;
    g.fill(3);
    tensor<float> short_bias({39});
    const auto bad = std::tie(g.w1, short_bias, g.w2, g.out, g.scale);
    const std::string message = xoptim_test::message_of([&] { dp.step(m.params(), bad); });
    EXPECT_NE(message.find("xoptim::dist: rank 0 of 1:"), std::string::npos) << message;
    EXPECT_NE(message.find("'layers.0.bias'"), std::string::npos) << message;
    expect_same_model(m, before);
    EXPECT_TRUE(dp.trainer().state().empty());
    // The next, good step is a first step.
    EXPECT_TRUE(dp.step(m.params(), g.grads()));
}

// Checkpoints on one rank: the gathered file is byte for byte the one-process file, and
// a load resumes bit for bit.
#include <xoptim/dist/checkpoint.hpp>

#include <fstream>
#include <iterator>

#include "../support/temp_dir.hpp"

namespace
{
    std::string read_bytes(const std::filesystem::path& p)
    {
        std::ifstream in(p, std::ios::binary);
        return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    }

    xoptim::adamw eight_bit_adamw()
    {
        xoptim::adamw opt;
        xoptim::storage_options s;
        s.states = xoptim::state_storage::blockwise_8bit;
        s.min_8bit_size = 256;
        opt.set_storage(s);
        return opt;
    }

    // One step of a one-process trainer: a stepper's call or an optimizer's step.
    template <class Trainer, class P, class G>
    void step_one(Trainer& t, P&& params, G&& grads)
    {
        if constexpr (xoptim::detail::is_stepper<Trainer>::value)
        {
            t(params, grads);
        }
        else
        {
            t.step(params, grads);
        }
    }

    class dist_local_checkpoint : public xoptim_test::temp_dir_test
    {
    protected:
        template <class MakeTrainer>
        void same_file_and_resume(MakeTrainer make, dist::mode how)
        {
            model a, b;
            a.fill(1);
            b.fill(1);
            auto one = make();
            dist::options o;
            o.mode = how;
            o.bucket_bytes = 1024;
            dist::data_parallel dp(dist::local_comm{}, make(), o);
            model g;
            for (std::size_t t = 0; t < 3; ++t)
            {
                g.fill(10 + t);
                step_one(one, a.params(), g.grads());
                dp.step(b.params(), g.grads());
            }
            const auto one_file = dir_ / "one.safetensors";
            const auto dist_file = dir_ / "dist.safetensors";
            xoptim::save_checkpoint(one_file.string(), a.params(), one);
            dist::save_checkpoint(dist_file.string(), b.params(), dp);
            EXPECT_EQ(read_bytes(one_file), read_bytes(dist_file)) << "not the one-process file";
            dist::save_sharded((dir_ / "sharded").string(), b.params(), dp);

            // Resume: two more steps after a load equal two more uninterrupted steps.
            std::vector<model> resumed_models;
            for (const bool sharded : {false, true})
            {
                model c;
                dist::data_parallel resumed(dist::local_comm{}, make(), o);
                if (sharded)
                {
                    dist::load_sharded((dir_ / "sharded").string(), c.params(), resumed);
                }
                else
                {
                    dist::load_checkpoint(dist_file.string(), c.params(), resumed);
                }
                expect_same_model(c, b);
                for (std::size_t t = 3; t < 5; ++t)
                {
                    g.fill(10 + t);
                    resumed.step(c.params(), g.grads());
                }
                resumed_models.push_back(c);
            }
            for (std::size_t t = 3; t < 5; ++t)
            {
                g.fill(10 + t);
                dp.step(b.params(), g.grads());
            }
            for (const model& c : resumed_models)
            {
                expect_same_model(c, b);
            }
        }
    };
}

TEST_F(dist_local_checkpoint, the_gathered_file_is_the_one_process_file)
{
    for (const auto how : {dist::mode::data_parallel, dist::mode::zero1})
    {
        same_file_and_resume([] { return xoptim::stepper(xoptim::adamw()); }, how);
        same_file_and_resume([] { return xoptim::stepper(xoptim::make_hybrid()); }, how);
        same_file_and_resume([] { return xoptim::stepper(eight_bit_adamw()); }, how);
        same_file_and_resume([] { return xoptim::adamw(); }, how);
    }
}
