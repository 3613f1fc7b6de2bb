// dist::data_parallel on the one-rank communicator (no MPI): it must be the one-process
// step, bit for bit, in both modes, with accumulation, clipping, the guard and routers;
// errors come through as the same error, with nothing changed; a gathered checkpoint is
// byte for byte the one-process file, and a load resumes bit for bit.
#include <xoptim/dist/checkpoint.hpp>
#include <xoptim/dist/data_parallel.hpp>
#include <xoptim/optim/hybrid.hpp>
#include <xoptim/xoptim.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "../support/counted_checks.hpp"
#include "../support/message_of.hpp"
#include "../support/temp_dir.hpp"
#include "net.hpp"

namespace
{
    namespace dist = xoptim::dist;
    using dist_test::net;

    // Matrices (Muon takes them in the hybrid), vectors, odd sizes, a double tensor.
    net small_model()
    {
        return net({{"layers.0.weight", {24, 40}},
                    {"layers.0.bias", {40}},
                    {"layers.1.weight", {40, 7}},
                    {"output.weight", {7, 3}},
                    {"scale", {5}, true}});
    }

    // One step of a one-process trainer: a stepper's call or an optimizer's step.
    template <class Trainer, class P, class G>
    bool step_one(Trainer& t, P&& params, G&& grads)
    {
        if constexpr (xoptim::detail::is_stepper<Trainer>::value)
        {
            return t(params, grads);
        }
        else
        {
            t.step(params, grads);
            return true;
        }
    }

    // The same trainer, alone and through data_parallel on one rank (buckets of 1 KiB:
    // several, tensors across them), stepped side by side.
    template <class MakeTrainer>
    struct side_by_side
    {
        net alone = small_model(), distributed = small_model(), g = small_model();
        decltype(std::declval<MakeTrainer&>()()) one;
        dist::data_parallel<decltype(std::declval<MakeTrainer&>()()), dist::local_comm> dp;

        side_by_side(MakeTrainer make, dist::mode how)
            : one(make()), dp(dist::local_comm{}, make(), options(how))
        {
            alone.fill(1, 0);
            distributed.fill(1, 0);
        }

        static dist::options options(dist::mode how)
        {
            dist::options o;
            o.mode = how;
            o.bucket_bytes = 1024;
            return o;
        }

        // Calls [from, to): gradient t is the hash's at 10 + t; NaN in one at `nan_at`.
        void run(std::size_t from, std::size_t to, std::size_t nan_at = std::size_t(-1))
        {
            for (std::size_t t = from; t < to; ++t)
            {
                g.fill(10 + t, 0, 0.1);
                if (t == nan_at)
                {
                    g.f[1][5] = std::numeric_limits<float>::quiet_NaN();
                }
                const bool stepped_one = step_one(one, alone.params(), g.grads());
                EXPECT_EQ(stepped_one, dp.step(distributed.params(), g.grads())) << "call " << t;
            }
        }
    };

    template <class MakeTrainer>
    void expect_one_process_bits(MakeTrainer make, dist::mode how, std::size_t calls, bool nan_at_3 = false)
    {
        side_by_side<MakeTrainer> s(make, how);
        s.run(0, calls, nan_at_3 ? 3 : std::size_t(-1));
        EXPECT_TRUE(s.alone.same_bits(s.distributed));
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

namespace
{
    // Parameter groups (no decay for the biases and the scale), a schedule, bf16 states.
    xoptim::param_groups<xoptim::adamw> groups()
    {
        xoptim::adamw_options no_decay;
        no_decay.weight_decay = 0;
        xoptim::param_groups<xoptim::adamw> g;
        g.add("no_decay", xoptim::name_matches({"*.bias", "scale"}), xoptim::adamw(no_decay));
        g.fallback("decay", xoptim::adamw());
        g.group(1).schedule("lr", xoptim::warmup_cosine(1e-3, 10, 2, 0.1));
        return g;
    }

    xoptim::adamw bf16_adamw()
    {
        xoptim::adamw opt;
        xoptim::storage_options s;
        s.states = xoptim::state_storage::bf16;
        opt.set_storage(s);
        return opt;
    }
}

TEST(dist_local, param_groups_schedules_and_bf16_states_are_the_one_process_ones)
{
    for (const auto how : {dist::mode::data_parallel, dist::mode::zero1})
    {
        expect_one_process_bits([] { return xoptim::stepper(groups()); }, how, 5);
        expect_one_process_bits([] { return xoptim::stepper(bf16_adamw()); }, how, 5);
    }
}

// LAMB in parameter groups clips by one gradient norm over every group (apex's): a
// data-parallel step, where each rank steps every tensor, commits the groups as the one
// process does, summing their norms before any group updates. (ZeRO-1 refuses LAMB's
// clipping: the norm would be over a rank's share.)
TEST(dist_local, lamb_groups_clip_by_one_norm_over_all_groups_as_one_process)
{
    const auto make = [] {
        xoptim::lamb_options no_decay;
        no_decay.weight_decay = 0;
        xoptim::param_groups<xoptim::lamb> g;
        g.add("no_decay", xoptim::name_matches({"*.bias", "scale"}), xoptim::lamb(no_decay));
        g.fallback("decay", xoptim::lamb());
        return xoptim::stepper(std::move(g));
    };
    expect_one_process_bits(make, dist::mode::data_parallel, 4);
}

TEST(dist_local, a_bad_gradient_is_an_error_that_changes_nothing)
{
    net m = small_model();
    m.fill(2, 0);
    const net before = m;
    dist::data_parallel dp(dist::local_comm{}, xoptim::adamw());
    net g = small_model();
    g.fill(3, 0);
    net bad = g;
    bad.f[1] = dist_test::tensor<float>({39});
    const std::string message = xoptim_test::message_of([&] { dp.step(m.params(), bad.grads()); });
    EXPECT_NE(message.find("xoptim::dist: rank 0 of 1:"), std::string::npos) << message;
    EXPECT_NE(message.find("'layers.0.bias'"), std::string::npos) << message;
    EXPECT_TRUE(m.same_bits(before));
    EXPECT_TRUE(dp.trainer().state().empty());
    // The next, good step is a first step.
    EXPECT_TRUE(dp.step(m.params(), g.grads()));
}

// A communicator that moves at most 500 elements in one call (mpi_comm: MPI's int count).
struct narrow_comm : dist::local_comm
{
    static constexpr std::size_t max_count = 500;
};

// Under ZeRO-1 a tensor that one rank steps whole (the hybrid's Muon matrices) goes in one
// collective: one longer than the communicator's count is refused by name, with nothing
// changed; data-parallel mode cuts it into buckets.
TEST(dist_local, a_whole_tensor_past_the_communicators_count_is_refused)
{
    net m = small_model(), g = small_model();
    m.fill(2, 0);
    g.fill(3, 0);
    const net before = m;
    dist::options o;
    o.mode = dist::mode::zero1;
    dist::data_parallel refused(narrow_comm{}, xoptim::stepper(xoptim::make_hybrid()), o);
    const std::string message = xoptim_test::message_of([&] { refused.step(m.params(), g.grads()); });
    EXPECT_NE(message.find("parameter 'layers.0.weight' has 960 elements: under ZeRO-1 a tensor one rank steps whole "
                           "goes in one collective, and the communicator moves at most 500 elements in one call"),
              std::string::npos)
        << message;
    EXPECT_TRUE(m.same_bits(before));
    o.mode = dist::mode::data_parallel;
    dist::data_parallel whole(narrow_comm{}, xoptim::stepper(xoptim::make_hybrid()), o);
    EXPECT_TRUE(whole.step(m.params(), g.grads()));
    EXPECT_FALSE(m.same_bits(before));
}

// Two ranks in one process, the second a mirror of the first (its data is the first's),
// whose float allreduce throws while `fail` is set: a transport's error. It takes calls
// from several threads, so data_parallel runs its collectives on the progress thread.
struct mirror_comm
{
    struct request
    {
    };

    bool* fail;

    int rank() const noexcept
    {
        return 0;
    }
    int size() const noexcept
    {
        return 2;
    }
    bool concurrent() const noexcept
    {
        return true;
    }
    template <class T>
    void allreduce_sum(T* data, std::size_t n) const
    {
        if (*fail && std::is_same_v<T, float>)
        {
            throw std::runtime_error("transport: connection reset");
        }
        std::transform(data, data + n, data, [](T x) { return T(x + x); });
    }
    template <class T>
    void iallreduce_sum(T* data, std::size_t n, request&) const
    {
        allreduce_sum(data, n);
    }
    template <class T>
    void reduce_scatter_sum(const T* send, T* recv, const std::size_t* counts) const
    {
        std::transform(send, send + counts[0], recv, [](T x) { return T(x + x); });
    }
    template <class T>
    void ireduce_scatter_sum(const T* send, T* recv, const std::size_t* counts, request&) const
    {
        reduce_scatter_sum(send, recv, counts);
    }
    template <class T>
    void allgather(T* data, const std::size_t* counts) const
    {
        std::copy(data, data + counts[1], data + counts[0]);
    }
    template <class T>
    void iallgather(T* data, const std::size_t* counts, request&) const
    {
        allgather(data, counts);
    }
    template <class T>
    void gather(const T* send, std::size_t n, T* recv, const std::size_t*, int) const
    {
        std::copy(send, send + n, recv);
        std::copy(send, send + n, recv + n);
    }
    template <class T>
    void broadcast(T*, std::size_t, int) const noexcept
    {
    }
    void wait(request&) const noexcept
    {
    }
    bool test(request&) const noexcept
    {
        return true;
    }
};

// A collective that throws is the step's error, on the progress thread as without it: the
// same message, the parameters unchanged, and the next step works.
TEST(dist_local, a_communicators_error_on_the_progress_thread_is_the_steps_error)
{
    for (const bool progress_thread : {true, false})
    {
        bool fail = false;
        dist::options o;
        o.progress_thread = progress_thread;
        o.bucket_bytes = 1024;  // several buckets: the collectives after the first that throws
        dist::data_parallel dp(mirror_comm{&fail}, xoptim::adamw(), o);
        net m = small_model(), g = small_model();
        m.fill(2, 0);
        g.fill(3, 0);
        EXPECT_TRUE(dp.step(m.params(), g.grads()));
        const net before = m;
        fail = true;
        const std::string message = xoptim_test::message_of<std::runtime_error>(
            [&] { dp.step(m.params(), g.grads()); });
        EXPECT_EQ(message, "xoptim::dist: rank 0 of 2: transport: connection reset (and 1 other rank failed)")
            << (progress_thread ? "progress thread" : "no progress thread");
        EXPECT_TRUE(m.same_bits(before));
        fail = false;
        EXPECT_TRUE(dp.step(m.params(), g.grads()));
        EXPECT_FALSE(m.same_bits(before));
    }
}

// The plan is the first step's: a parameter of another shape later is refused, naming it,
// with nothing changed (it was packed past its end).
TEST(dist_local, a_parameter_of_another_shape_after_the_first_step_is_refused)
{
    for (const auto how : {dist::mode::data_parallel, dist::mode::zero1})
    {
        net m = small_model(), g = small_model();
        m.fill(2, 0);
        g.fill(3, 0);
        dist::options o;
        o.mode = how;
        dist::data_parallel dp(dist::local_comm{}, xoptim::stepper(xoptim::adamw()), o);
        dp.step(m.params(), g.grads());
        net other = m, other_g = g;
        other.f[1] = dist_test::tensor<float>({8});
        other_g.f[1] = dist_test::tensor<float>({8});
        const net before = other;
        const std::string message = xoptim_test::message_of([&] { dp.step(other.params(), other_g.grads()); });
        EXPECT_NE(message.find("parameter 'layers.0.bias' is (8,), the first call passed (40,)"), std::string::npos)
            << message;
        EXPECT_TRUE(other.same_bits(before));
        EXPECT_EQ(dp.trainer().optimizer().step_count(), 1u);
        EXPECT_TRUE(dp.step(m.params(), g.grads()));
    }
}

// data_parallel walks the user's set once per step (twice on the first, the second time
// to record where the gradients are, without checking the leaves again); its optimizers
// take their shares without checking them again.
TEST(dist_local, a_step_checks_each_leaf_once)
{
    using xoptim_test::checks_per_leaf;
    for (const dist::mode how : {dist::mode::data_parallel, dist::mode::zero1})
    {
        auto p = xoptim_test::counted_tensors(6, 33, 1.0f);
        const auto g = xoptim_test::counted_tensors(6, 33, 0.5f);
        dist::options o;
        o.mode = how;
        o.bucket_bytes = 256;  // several buckets, tensors across them
        dist::data_parallel dp(dist::local_comm{}, xoptim::stepper(xoptim::adamw()), o);
        for (int step = 0; step < 2; ++step)
        {
            bool stepped = false;
            EXPECT_EQ(checks_per_leaf([&] { stepped = dp.step(p, g); }, 6), 1.0) << to_string(how) << " step " << step;
            EXPECT_TRUE(stepped);
        }
        EXPECT_EQ(dp.trainer().optimizer().step_count(), 2u);
    }
}

namespace
{
    class dist_local_checkpoint : public xoptim_test::temp_dir_test
    {
    protected:
        template <class MakeTrainer>
        void same_file_and_resume(MakeTrainer make, dist::mode how)
        {
            side_by_side<MakeTrainer> s(make, how);
            s.run(0, 3);
            const auto one_file = dir_ / "one.safetensors";
            const auto dist_file = dir_ / "dist.safetensors";
            xoptim::save_checkpoint(one_file.string(), s.alone.params(), s.one);
            dist::save_checkpoint(dist_file.string(), s.distributed.params(), s.dp);
            EXPECT_EQ(dist_test::read_bytes(one_file), dist_test::read_bytes(dist_file)) << "not the one-process file";
            dist::save_sharded((dir_ / "sharded").string(), s.distributed.params(), s.dp);
            s.run(3, 5);
            // Two more steps after a load equal two more uninterrupted steps.
            for (const bool sharded : {false, true})
            {
                side_by_side<MakeTrainer> resumed(make, how);
                if (sharded)
                {
                    dist::load_sharded((dir_ / "sharded").string(), resumed.distributed.params(), resumed.dp);
                }
                else
                {
                    dist::load_checkpoint(dist_file.string(), resumed.distributed.params(), resumed.dp);
                }
                xoptim::load_checkpoint(one_file.string(), resumed.alone.params(), resumed.one);
                resumed.run(3, 5);
                EXPECT_TRUE(resumed.distributed.same_bits(s.distributed)) << (sharded ? "sharded" : "gathered");
                EXPECT_TRUE(resumed.alone.same_bits(s.distributed));
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
        same_file_and_resume([] { return xoptim::stepper(dist_test::eight_bit_adamw(256)); }, how);
        same_file_and_resume([] { return xoptim::adamw(); }, how);
        same_file_and_resume([] { return xoptim::stepper(groups()); }, how);
        same_file_and_resume([] { return xoptim::stepper(bf16_adamw()); }, how);
    }
}

// A load refused on a data_parallel that was never planned (here: a file of another
// parameter set) leaves it unplanned and without state: the next step, with the set it
// trains, is a first step, as on a data_parallel no load touched.
TEST_F(dist_local_checkpoint, a_refused_load_leaves_a_new_data_parallel_unplanned)
{
    for (const auto how : {dist::mode::data_parallel, dist::mode::zero1})
    {
        for (const bool sharded : {false, true})
        {
            SCOPED_TRACE(std::string(dist::to_string(how)) + (sharded ? ", sharded" : ", gathered"));
            using trainer = decltype(xoptim::stepper(xoptim::adamw()));
            const auto options = side_by_side<trainer (*)()>::options(how);
            net saved = net({{"w", {3, 4}}}), g_saved = net({{"w", {3, 4}}});
            saved.fill(1, 0);
            g_saved.fill(2, 0);
            dist::data_parallel first(dist::local_comm{}, xoptim::stepper(xoptim::adamw()), options);
            first.step(saved.params(), g_saved.grads());
            const auto file = dir_ / (std::string(dist::to_string(how)) + (sharded ? "-sharded" : ".safetensors"));
            if (sharded)
            {
                dist::save_sharded(file.string(), saved.params(), first);
            }
            else
            {
                dist::save_checkpoint(file.string(), saved.params(), first);
            }

            side_by_side<trainer (*)()> s([] { return xoptim::stepper(xoptim::adamw()); }, how);
            const net before = s.distributed;
            const std::string message = xoptim_test::message_of<std::exception>([&] {
                if (sharded)
                {
                    dist::load_sharded(file.string(), s.distributed.params(), s.dp);
                }
                else
                {
                    dist::load_checkpoint(file.string(), s.distributed.params(), s.dp);
                }
            });
            EXPECT_NE(message.find(sharded ? "saved with other parameters" : "no tensor 'param/layers.0.weight'"),
                      std::string::npos)
                << message;
            EXPECT_TRUE(s.distributed.same_bits(before));
            EXPECT_FALSE(s.dp.planned());
            EXPECT_TRUE(s.dp.trainer().optimizer().state().empty());
            // The set it trains, with a tensor fewer than the refused one had: a first step.
            s.distributed.f.pop_back();
            s.distributed.float_names.pop_back();
            s.alone = s.distributed;
            s.g = s.distributed;
            s.run(0, 2);
            EXPECT_TRUE(s.alone.same_bits(s.distributed));
            EXPECT_EQ(s.dp.trainer().optimizer().step_count(), 2u);
        }
    }
}
