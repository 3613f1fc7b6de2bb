// Distributed steps under MPI, run as `mpiexec -n N test_dist_mpi` for N = 1..4 (ctest
// tests dist.mpi.npN). Each rank steps on its own gradient; the result must equal one
// process stepping on the mean gradient (float within 1e-6 relative, double 1e-12),
// every rank must end with bit-identical parameters (and, in data-parallel mode,
// states), ZeRO-1 must match data parallel, and errors on any rank must be the same
// error on every rank with nothing changed.
//
// Every test runs its collectives to the end before it checks (EXPECT, not ASSERT), so a
// failed check on one rank never leaves the others waiting.
#include <xoptim/dist/checkpoint.hpp>
#include <xoptim/dist/data_parallel.hpp>
#include <xoptim/dist/mpi.hpp>
#include <xoptim/optim/hybrid.hpp>
#include <xoptim/xoptim.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "net.hpp"

namespace
{
    namespace dist = xoptim::dist;
    using dist_test::net;
    using dist_test::spec;

    bool power_of_two(int n)
    {
        return n > 0 && (n & (n - 1)) == 0;
    }

    dist::mpi_comm world()
    {
        return dist::mpi_comm(MPI_COMM_WORLD);
    }

    int world_size()
    {
        return world().size();
    }

    // True on every rank when `value` is the same on every rank.
    bool same_everywhere(std::uint64_t value)
    {
        const auto all = dist::allgather_value(world(), value);
        return std::all_of(all.begin(), all.end(), [&](std::uint64_t v) { return v == all[0]; });
    }

    // Sizes not divisible by 2, 3 or 4, tensors smaller than the ranks, one of 1 element,
    // matrices, a double tensor.
    std::vector<spec> uneven()
    {
        return {{"embedding.weight", {37, 11}},   {"layers.0.weight", {24, 40}}, {"layers.0.bias", {40}},
                {"layers.1.weight", {40, 7}},     {"tiny", {3}},                 {"one", {1}},
                {"layers.2.weight", {1000, 3}},   {"output.weight", {7, 3}},     {"scale", {5}, true},
                {"big", {4099}},                  {"gain", {2}, true}};
    }

    struct outcome
    {
        net params;
        std::uint64_t states = 0;
        bool stepped_everywhere = true;
    };

    // `calls` calls of data_parallel with rank-own gradients.
    template <class Trainer>
    outcome run_distributed(const std::vector<spec>& specs, Trainer trainer, const dist::options& o, std::size_t calls,
                            std::uint64_t seed = 7, const dist::mpi_comm& comm = world())
    {
        outcome r{net(specs)};
        r.params.fill(seed, 0);
        dist::data_parallel dp(comm, std::move(trainer), o);
        net g(specs);
        for (std::size_t t = 0; t < calls; ++t)
        {
            g.fill_gradient(seed, t, comm.rank());
            dp.step(r.params.params(), g.grads());
        }
        r.states = dist_test::state_checksum(dp.trainer());
        return r;
    }

    // The same calls on one process with the mean gradients.
    template <class Trainer>
    net run_one_process(const std::vector<spec>& specs, Trainer trainer, std::size_t calls, std::uint64_t seed = 7)
    {
        net p(specs);
        p.fill(seed, 0);
        net g(specs);
        for (std::size_t t = 0; t < calls; ++t)
        {
            g.fill_mean_gradient(seed, t, world_size());
            trainer(p.params(), g.grads());
        }
        return p;
    }

    dist::options with_mode(dist::mode how, std::size_t bucket_bytes = 2048)
    {
        dist::options o;
        o.mode = how;
        o.bucket_bytes = bucket_bytes;
        return o;
    }

    template <class MakeTrainer>
    void expect_mean_step(MakeTrainer make, std::size_t calls, double float_tolerance = 1e-6)
    {
        const auto specs = uneven();
        const net one = run_one_process(specs, make(), calls);
        std::vector<net> results;
        for (const auto how : {dist::mode::data_parallel, dist::mode::zero1})
        {
            SCOPED_TRACE(dist::to_string(how));
            const outcome r = run_distributed(specs, make(), with_mode(how), calls);
            EXPECT_LE(dist_test::max_relative(r.params.f, one.f), float_tolerance);
            EXPECT_LE(dist_test::max_relative(r.params.d, one.d), 1e-12);
            if (power_of_two(world_size()))
            {
                // The sums are exact and so is the scaling by 1/N: the very same bits.
                EXPECT_TRUE(r.params.same_bits(one)) << "not bit-identical to one process";
            }
            EXPECT_TRUE(same_everywhere(r.params.checksum())) << "parameters differ between ranks";
            if (how == dist::mode::data_parallel)
            {
                EXPECT_TRUE(same_everywhere(r.states)) << "states differ between ranks";
            }
            results.push_back(r.params);
        }
        // ZeRO-1 against data parallel: exact sums, the same scaling, the same bits.
        EXPECT_TRUE(results[0].same_bits(results[1])) << "ZeRO-1 differs from data parallel";
        // Collectives started non-blocking by the step instead of run on a thread: the same bits.
        dist::options o = with_mode(dist::mode::zero1);
        o.progress_thread = false;
        EXPECT_TRUE(run_distributed(specs, make(), o, calls).params.same_bits(results[1]));
        // The reduce-scatter as MPI's own collective instead of one rooted reduce per rank.
        const dist::mpi_comm collective(MPI_COMM_WORLD, dist::reduce_scatter_algorithm::collective);
        EXPECT_TRUE(run_distributed(specs, make(), with_mode(dist::mode::zero1), calls, 7, collective)
                        .params.same_bits(results[1]));
    }
}

// Rank r receives the sum of block r, whichever algorithm runs it: equal blocks, unequal
// ones, empty ones (small integers: every order of addition gives the same bits).
TEST(dist_mpi, reduce_scatter_sums_each_block_to_its_rank)
{
    for (const auto algorithm : {dist::reduce_scatter_algorithm::rooted_reduces, dist::reduce_scatter_algorithm::collective})
    {
        const dist::mpi_comm comm(MPI_COMM_WORLD, algorithm);
        const auto n = std::size_t(comm.size());
        const auto rank = std::size_t(comm.rank());
        std::vector<std::size_t> equal(n, 5), unequal(n);
        for (std::size_t k = 0; k < n; ++k)
        {
            unequal[k] = (k * 7 + 3) % 5;  // 3, 0, 2, 4, 1, ...: one rank's block is empty
        }
        for (const auto* counts : {&equal, &unequal})
        {
            std::vector<double> send;
            for (std::size_t k = 0; k < n; ++k)
            {
                for (std::size_t i = 0; i < (*counts)[k]; ++i)
                {
                    send.push_back(double(1000 * k + 10 * i + rank));
                }
            }
            std::vector<double> recv((*counts)[rank] + 1, -1.0);  // one past the block: untouched
            comm.reduce_scatter_sum(send.data(), recv.data(), counts->data());
            const double ranks = double(n), rank_sum = double(n * (n - 1) / 2);
            for (std::size_t i = 0; i < (*counts)[rank]; ++i)
            {
                EXPECT_EQ(recv[i], ranks * double(1000 * rank + 10 * i) + rank_sum) << "element " << i;
            }
            EXPECT_EQ(recv.back(), -1.0);
        }
    }
}

// Rank 0 receives every rank's block in rank order, in one MPI_Gatherv or, past `most`
// elements altogether, in messages of at most `most` (a checkpoint's state of more than
// 2 GiB gathers that way); empty blocks and blocks longer than a message included.
TEST(dist_mpi, gather_in_messages_equals_one_gatherv)
{
    const dist::mpi_comm comm = world();
    const auto n = std::size_t(comm.size());
    const auto rank = std::size_t(comm.rank());
    std::vector<std::size_t> counts(n);
    for (std::size_t k = 0; k < n; ++k)
    {
        counts[k] = (k * 7 + 3) % 5 * 3;  // 9, 0, 6, 12, 3, ...: one rank's block is empty
    }
    std::vector<char> send(counts[rank]);
    for (std::size_t i = 0; i < send.size(); ++i)
    {
        send[i] = char('a' + (rank * 5 + i) % 26);
    }
    const std::size_t total = std::accumulate(counts.begin(), counts.end(), std::size_t(0));
    std::vector<char> whole(total + 1, '#');  // one past the blocks: untouched
    comm.gather(send.data(), send.size(), whole.data(), counts.data(), 0);
    for (const std::size_t most : {std::size_t(1), std::size_t(4), total - 1})
    {
        std::vector<char> pieces(total + 1, '#');
        comm.gather(send.data(), send.size(), pieces.data(), counts.data(), 0, std::max<std::size_t>(1, most));
        if (comm.rank() == 0)
        {
            EXPECT_EQ(std::string(pieces.begin(), pieces.end()), std::string(whole.begin(), whole.end()))
                << "messages of " << most;
        }
    }
    if (comm.rank() == 0)
    {
        std::string expected;
        for (std::size_t k = 0; k < n; ++k)
        {
            for (std::size_t i = 0; i < counts[k]; ++i)
            {
                expected += char('a' + (k * 5 + i) % 26);
            }
        }
        EXPECT_EQ(std::string(whole.begin(), whole.end()), expected + '#');
    }
}

TEST(dist_mpi, adamw_equals_one_process_on_the_mean_gradient)
{
    expect_mean_step([] { return xoptim::stepper(xoptim::adamw()); }, 4);
}

TEST(dist_mpi, sgd_nesterov_lion_and_amsgrad_equal_one_process)
{
    xoptim::sgd_options s;
    s.lr = 0.05;
    s.momentum = 0.9;
    s.nesterov = true;
    s.weight_decay = 1e-3;
    {
        SCOPED_TRACE("sgd");
        expect_mean_step([&] { return xoptim::stepper(xoptim::sgd(s)); }, 4);
    }
    xoptim::lion_options l;
    l.lr = 1e-3;
    l.weight_decay = 0.1;
    {
        SCOPED_TRACE("lion");
        expect_mean_step([&] { return xoptim::stepper(xoptim::lion(l)); }, 3);
    }
    xoptim::adam_options a;
    a.amsgrad = true;
    a.weight_decay = 1e-2;
    {
        SCOPED_TRACE("adam amsgrad");
        expect_mean_step([&] { return xoptim::stepper(xoptim::adam(a)); }, 4);
    }
}

TEST(dist_mpi, the_hybrid_owns_muon_matrices_and_shards_adamw)
{
    expect_mean_step([] { return xoptim::stepper(xoptim::make_hybrid()); }, 3);
}

// Optimizers with per-tensor numbers (a cautious step's mask count, LAMB's trust ratio,
// Adafactor's RMS and factored statistics): under ZeRO-1 each of their tensors is stepped
// whole by one rank, so the numbers are the one-process ones.
TEST(dist_mpi, per_tensor_optimizers_step_whole_tensors)
{
    xoptim::adamw_options a;
    a.caution = true;
    {
        SCOPED_TRACE("cautious adamw");
        expect_mean_step([&] { return xoptim::stepper(xoptim::adamw(a)); }, 3);
    }
    xoptim::lion_options l;
    l.lr = 1e-3;
    l.caution = true;
    {
        SCOPED_TRACE("cautious lion");
        expect_mean_step([&] { return xoptim::stepper(xoptim::lion(l)); }, 3);
    }
    xoptim::lamb_options b;
    b.max_grad_norm.reset();  // the stepper's clipping is global across ranks; LAMB's own is not
    {
        SCOPED_TRACE("lamb");
        expect_mean_step([&] { return xoptim::stepper(xoptim::lamb(b)); }, 3);
    }
    {
        SCOPED_TRACE("adafactor");
        expect_mean_step([] { return xoptim::stepper(xoptim::adafactor()); }, 3);
    }
}

// LAMB's max_grad_norm clips by the norm of all its gradients, which ZeRO-1 splits
// between ranks: refused when the trainer is made, naming the fix.
TEST(dist_mpi, lamb_clipping_over_all_tensors_is_refused_under_zero1)
{
    dist::mpi_comm comm(MPI_COMM_WORLD);
    try
    {
        dist::data_parallel dp(comm, xoptim::stepper(xoptim::lamb()), with_mode(dist::mode::zero1));
        ADD_FAILURE() << "accepted";
    }
    catch (const std::invalid_argument& e)
    {
        EXPECT_NE(std::string(e.what()).find("max_grad_norm"), std::string::npos) << e.what();
    }
    dist::data_parallel allowed(comm, xoptim::stepper(xoptim::lamb()), with_mode(dist::mode::data_parallel));
}

// Options refused on one rank only are every rank's error at construction (the others
// waited in the first step's collectives for ever).
TEST(dist_mpi, options_refused_on_one_rank_are_every_ranks_error)
{
    const auto comm = world();
    dist::options o = with_mode(dist::mode::data_parallel);
    o.bucket_bytes = comm.rank() == comm.size() - 1 ? 0 : 1024;
    std::string message = "no error";
    try
    {
        dist::data_parallel dp(comm, xoptim::adamw(), o);
    }
    catch (const std::invalid_argument& e)
    {
        message = e.what();
    }
    EXPECT_EQ(message, "xoptim::dist: rank " + std::to_string(comm.size() - 1) + " of " + std::to_string(comm.size())
                           + ": xoptim::dist: bucket_bytes must be in [1, 2^30] (got 0)");
}

TEST(dist_mpi, param_groups_with_a_schedule_equal_one_process)
{
    const auto make = [] {
        xoptim::adamw_options no_decay;
        no_decay.weight_decay = 0;
        xoptim::param_groups<xoptim::adamw> g;
        g.add("no_decay", xoptim::name_matches({"*.bias", "scale", "gain"}), xoptim::adamw(no_decay));
        g.fallback("decay", xoptim::adamw());
        g.group(1).schedule("lr", xoptim::warmup_cosine(1e-3, 10, 2, 0.1));
        return xoptim::stepper(std::move(g));
    };
    expect_mean_step(make, 4);
}

TEST(dist_mpi, accumulation_communicates_once_per_step)
{
    xoptim::stepper_options s;
    s.accumulate = 3;
    const auto specs = uneven();
    const int n = world_size();
    // One process: the mean over every rank's 3 micro-batches per step.
    net one(specs);
    one.fill(7, 0);
    xoptim::stepper reference{xoptim::adamw()};
    net g(specs);
    for (std::size_t step = 0; step < 3; ++step)
    {
        net mean(specs);
        std::vector<net> parts;
        for (std::size_t m = 0; m < 3; ++m)
        {
            g.fill_mean_gradient(7, step * 3 + m, n);
            parts.push_back(g);
        }
        for (std::size_t k = 0; k < mean.f.size(); ++k)
        {
            for (std::size_t i = 0; i < mean.f[k].size(); ++i)
            {
                mean.f[k][i] = float((double(parts[0].f[k][i]) + parts[1].f[k][i] + parts[2].f[k][i]) / 3);
            }
        }
        for (std::size_t k = 0; k < mean.d.size(); ++k)
        {
            for (std::size_t i = 0; i < mean.d[k].size(); ++i)
            {
                mean.d[k][i] = (parts[0].d[k][i] + parts[1].d[k][i] + parts[2].d[k][i]) / 3;
            }
        }
        reference(one.params(), mean.grads());
    }
    for (const auto how : {dist::mode::data_parallel, dist::mode::zero1})
    {
        SCOPED_TRACE(dist::to_string(how));
        const outcome r = run_distributed(specs, xoptim::stepper(xoptim::adamw(), s), with_mode(how), 9);
        EXPECT_LE(dist_test::max_relative(r.params.f, one.f), 1e-6);
        EXPECT_LE(dist_test::max_relative(r.params.d, one.d), 1e-12);
        EXPECT_TRUE(same_everywhere(r.params.checksum()));
    }
}

TEST(dist_mpi, tensors_smaller_than_the_ranks_and_single_elements)
{
    const std::vector<spec> specs{{"a", {1}}, {"b", {2}}, {"c", {1}, true}, {"d", {3}}, {"e", {1, 1}}};
    const net one = run_one_process(specs, xoptim::stepper(xoptim::adamw()), 3);
    for (const auto how : {dist::mode::data_parallel, dist::mode::zero1})
    {
        const outcome r = run_distributed(specs, xoptim::stepper(xoptim::adamw()), with_mode(how, 64), 3);
        EXPECT_LE(dist_test::max_relative(r.params.f, one.f), 1e-6);
        EXPECT_LE(dist_test::max_relative(r.params.d, one.d), 1e-12);
        EXPECT_TRUE(same_everywhere(r.params.checksum()));
    }
}

TEST(dist_mpi, eight_bit_states_shard_on_block_boundaries)
{
    // 70,000 elements (8-bit, cut into pieces of at least 4,096), 5,000 (8-bit, too
    // small to cut into two such pieces: whole on one rank), 300 (float states).
    const std::vector<spec> specs{{"big", {70000}}, {"mid", {5000}}, {"small", {300}}};
    const auto make = [] { return xoptim::stepper(dist_test::eight_bit_adamw(4096)); };
    const net one = run_one_process(specs, make(), 4);
    const auto comm = world();
    std::vector<net> results;
    std::vector<std::size_t> state_bytes;
    for (const auto how : {dist::mode::data_parallel, dist::mode::zero1})
    {
        SCOPED_TRACE(dist::to_string(how));
        net p(specs);
        p.fill(7, 0);
        dist::data_parallel dp(comm, make(), with_mode(how, 1 << 20));
        net g(specs);
        for (std::size_t t = 0; t < 4; ++t)
        {
            g.fill_gradient(7, t, comm.rank());
            dp.step(p.params(), g.grads());
        }
        EXPECT_TRUE(same_everywhere(p.checksum()));
        if (power_of_two(comm.size()))
        {
            EXPECT_TRUE(p.same_bits(one)) << "8-bit states: not bit-identical to one process";
        }
        // With N = 3 the mean's last bit may move a code: within one code step's effect.
        EXPECT_LE(dist_test::max_relative(p.f, one.f), 1e-4);
        results.push_back(p);
        state_bytes.push_back(dp.report().state_bytes);
    }
    EXPECT_TRUE(results[0].same_bits(results[1])) << "8-bit ZeRO-1 differs from 8-bit data parallel";
    // ZeRO-1 keeps about 1/N of the state: the big tensor is split (a block of slack per
    // cut), "mid" and "small" are whole on one rank each.
    const auto all = dist::allgather_value(comm, state_bytes[1]);
    std::uint64_t total = 0;
    for (const auto b : all)
    {
        total += b;
    }
    EXPECT_EQ(total, state_bytes[0]) << "the shards together hold exactly the one-process state";
    EXPECT_LE(double(all[std::size_t(comm.rank())]),
              double(state_bytes[0]) / comm.size() + 2 * (5000 + 300) * 2 + 2 * 4096 * 2 + 64)
        << "more than its share of the state";
}

TEST(dist_mpi, clipping_norm_and_guard_are_agreed_across_ranks)
{
    const auto specs = uneven();
    const auto comm = world();
    xoptim::stepper_options s;
    s.clip_global_norm = 0.05;  // below the gradients' norm: every step is clipped
    for (const auto how : {dist::mode::data_parallel, dist::mode::zero1})
    {
        SCOPED_TRACE(dist::to_string(how));
        // One process, the mean gradient, NaN in it at call 2.
        net one(specs);
        one.fill(7, 0);
        xoptim::stepper reference{xoptim::adamw(), s};
        net g(specs);
        std::vector<double> norms;
        for (std::size_t t = 0; t < 5; ++t)
        {
            g.fill_mean_gradient(7, t, comm.size());
            g.f[2][5] = t == 2 ? std::numeric_limits<float>::quiet_NaN() : g.f[2][5];
            reference(one.params(), g.grads());
            norms.push_back(reference.last_norm());
        }
        // The ranks, NaN on the last rank only at call 2: every rank skips.
        net p(specs);
        p.fill(7, 0);
        dist::data_parallel dp(comm, xoptim::stepper(xoptim::adamw(), s), with_mode(how));
        std::vector<std::uint64_t> stepped;
        for (std::size_t t = 0; t < 5; ++t)
        {
            g.fill_gradient(7, t, comm.rank());
            if (t == 2 && comm.rank() == comm.size() - 1)
            {
                g.f[2][5] = std::numeric_limits<float>::quiet_NaN();
            }
            stepped.push_back(dp.step(p.params(), g.grads()) ? 1 : 0);
            EXPECT_TRUE(same_everywhere(std::uint64_t(std::llround(dp.last_norm() * 1e12))))
                << "the norm differs between ranks";
            if (t != 2)
            {
                EXPECT_NEAR(dp.last_norm(), norms[t], 1e-6 * norms[t]);
            }
        }
        EXPECT_EQ(stepped, (std::vector<std::uint64_t>{1, 1, 0, 1, 1}));
        EXPECT_EQ(dp.skipped_steps(), 1u);
        EXPECT_TRUE(same_everywhere(p.checksum()));
        EXPECT_LE(dist_test::max_relative(p.f, one.f), 1e-6);
        if (how == dist::mode::data_parallel && power_of_two(comm.size()))
        {
            EXPECT_TRUE(p.same_bits(one));
        }
    }
}

TEST(dist_mpi, a_non_finite_gradient_on_one_rank_raises_on_every_rank)
{
    const auto specs = uneven();
    const auto comm = world();
    xoptim::stepper_options s;
    s.on_non_finite = xoptim::non_finite::raise;
    for (const auto how : {dist::mode::data_parallel, dist::mode::zero1})
    {
        net p(specs);
        p.fill(7, 0);
        dist::data_parallel dp(comm, xoptim::stepper(xoptim::adamw(), s), with_mode(how));
        net g(specs);
        g.fill_gradient(7, 0, comm.rank());
        dp.step(p.params(), g.grads());
        const std::uint64_t before = p.checksum();
        g.fill_gradient(7, 1, comm.rank());
        if (comm.rank() == comm.size() - 1)
        {
            g.f[2][3] = std::numeric_limits<float>::infinity();
        }
        std::string message = "no error";
        try
        {
            dp.step(p.params(), g.grads());
        }
        catch (const xoptim::non_finite_error& e)
        {
            message = e.what();
        }
        const auto messages = dist::allgather_strings(comm, message);
        EXPECT_TRUE(std::all_of(messages.begin(), messages.end(), [&](const auto& m) { return m == messages[0]; }));
        const std::string expected = "xoptim::dist: parameter 'layers.0.bias': the averaged gradient holds NaN or Inf "
                                     "(the gradient of rank "
                                     + std::to_string(comm.size() - 1) + " did); step not taken on any rank";
        EXPECT_EQ(message, expected);
        EXPECT_EQ(p.checksum(), before) << "a raised step changed the parameters";
    }
}

// Finite gradients whose sum over the ranks overflows float (it is taken before the 1/N
// scaling): on two ranks or more the step is refused, saying so; on one the mean is the
// gradient itself, and the step is taken.
TEST(dist_mpi, a_sum_over_the_ranks_that_overflows_is_named)
{
    const auto specs = uneven();
    const auto comm = world();
    xoptim::stepper_options s;
    s.on_non_finite = xoptim::non_finite::raise;
    net p(specs);
    p.fill(7, 0);
    dist::data_parallel dp(comm, xoptim::stepper(xoptim::adamw(), s), with_mode(dist::mode::data_parallel));
    net g(specs);
    g.fill_gradient(7, 0, comm.rank());
    g.f[2][3] = 3e38f;
    const std::uint64_t before = p.checksum();
    std::string message = "no error";
    try
    {
        dp.step(p.params(), g.grads());
    }
    catch (const xoptim::non_finite_error& e)
    {
        message = e.what();
    }
    if (comm.size() == 1)
    {
        EXPECT_EQ(message, "no error");
        EXPECT_NE(p.checksum(), before);
        return;
    }
    EXPECT_EQ(message,
              "xoptim::dist: parameter 'layers.0.bias': the averaged gradient holds NaN or Inf (every "
              "rank's gradient of it is finite: their sum over the ranks overflowed); step not taken on any rank");
    EXPECT_EQ(p.checksum(), before) << "a raised step changed the parameters";
}

TEST(dist_mpi, different_parameter_sets_are_one_error_naming_the_ranks)
{
    const auto comm = world();
    if (comm.size() < 2)
    {
        GTEST_SKIP() << "needs two ranks";
    }
    auto specs = uneven();
    if (comm.rank() == 1)
    {
        specs[2].shape = {41};  // layers.0.bias
    }
    std::string message = "no error";
    net p(specs);
    net g(specs);
    p.fill(7, 0);
    g.fill_gradient(7, 0, comm.rank());
    dist::data_parallel dp(comm, xoptim::adamw(), with_mode(dist::mode::zero1));
    try
    {
        dp.step(p.params(), g.grads());
    }
    catch (const std::invalid_argument& e)
    {
        message = e.what();
    }
    std::string others = "rank 0";
    if (comm.size() > 2)
    {
        others = "ranks 0";
        for (int r = 2; r < comm.size(); ++r)
        {
            others += ", " + std::to_string(r);
        }
    }
    EXPECT_EQ(message, "xoptim::dist: the ranks hold different parameters: parameter 2 is 'layers.0.bias' float32 (40,) "
                       "-> adamw on " + others + ", 'layers.0.bias' float32 (41,) -> adamw on rank 1");
    EXPECT_TRUE(dp.trainer().state().empty());

    // Different hyperparameters: the setting and the ranks.
    const auto same = uneven();
    net q(same);
    net h(same);
    q.fill(7, 0);
    h.fill_gradient(7, 0, comm.rank());
    xoptim::adamw_options o;
    o.lr = comm.rank() == 1 ? 2e-3 : 1e-3;
    dist::data_parallel other(comm, xoptim::adamw(o), with_mode(dist::mode::data_parallel));
    message = "no error";
    try
    {
        other.step(q.params(), h.grads());
    }
    catch (const std::invalid_argument& e)
    {
        message = e.what();
    }
    EXPECT_NE(message.find("xoptim::dist: the ranks hold different optimizers or options: setting 0 is optimizer: "
                           "adamw {\"lr\": 0.001"),
              std::string::npos)
        << message;
    EXPECT_NE(message.find("{\"lr\": 0.002"), std::string::npos) << message;
    EXPECT_NE(message.find(" on rank 1"), std::string::npos) << message;
}

// Ranks whose communicators reduce-scatter in different ways would wait for each other
// for ever (MPI_Reduce against MPI_Reduce_scatter_block): the first step says so instead.
TEST(dist_mpi, ranks_reducing_in_different_ways_are_one_error)
{
    const auto comm = world();
    if (comm.size() < 2)
    {
        GTEST_SKIP() << "needs two ranks";
    }
    const dist::mpi_comm mixed(MPI_COMM_WORLD, comm.rank() == 0 ? dist::reduce_scatter_algorithm::rooted_reduces
                                                                : dist::reduce_scatter_algorithm::collective);
    const auto specs = uneven();
    net p(specs);
    net g(specs);
    p.fill(7, 0);
    g.fill_gradient(7, 0, comm.rank());
    dist::data_parallel dp(mixed, xoptim::adamw(), with_mode(dist::mode::zero1));
    std::string message = "no error";
    try
    {
        dp.step(p.params(), g.grads());
    }
    catch (const std::invalid_argument& e)
    {
        message = e.what();
    }
    EXPECT_NE(message.find("xoptim::dist: the ranks hold different optimizers or options"), std::string::npos)
        << message;
    EXPECT_NE(message.find("reduce_scatter_algorithm collective"), std::string::npos) << message;
    EXPECT_TRUE(dp.trainer().state().empty());
}

TEST(dist_mpi, an_error_on_one_rank_is_every_ranks_error_and_changes_nothing)
{
    const auto specs = uneven();
    const auto comm = world();
    const int last = comm.size() - 1;
    for (const auto how : {dist::mode::data_parallel, dist::mode::zero1})
    {
        for (const bool overlap : {false, true})
        {
            SCOPED_TRACE(std::string(dist::to_string(how)) + (overlap ? ", grad_ready" : ""));
            // Uninterrupted: calls 0, 1, 2 with good gradients.
            const outcome clean = run_distributed(specs, xoptim::adamw(), with_mode(how), 3);
            net p(specs);
            p.fill(7, 0);
            // With grad_ready, the collectives started before the error run non-blocking.
            dist::options o = with_mode(how);
            o.progress_thread = !overlap;
            dist::data_parallel dp(comm, xoptim::adamw(), o);
            net g(specs);
            net short_bias(specs);
            short_bias.f[2] = dist_test::tensor<float>({39});
            for (std::size_t t = 0; t < 3; ++t)
            {
                g.fill_gradient(7, t, comm.rank());
                if (t == 2)
                {
                    // A bad call first: the last rank's bias gradient is one short.
                    const std::uint64_t before = p.checksum();
                    const std::uint64_t states = dist_test::state_checksum(dp.trainer());
                    net& mine = comm.rank() == last ? short_bias : g;
                    if (comm.rank() == last)
                    {
                        short_bias = g;
                        short_bias.f[2] = dist_test::tensor<float>({39});
                    }
                    if (overlap)
                    {
                        for (std::size_t i = dp.size(); i-- > 0;)
                        {
                            dp.grad_ready(i);
                        }
                    }
                    std::string message = "no error";
                    try
                    {
                        dp.step(p.params(), mine.grads());
                    }
                    catch (const std::invalid_argument& e)
                    {
                        message = e.what();
                    }
                    const auto messages = dist::allgather_strings(comm, message);
                    EXPECT_TRUE(std::all_of(messages.begin(), messages.end(), [&](const auto& m) { return m == messages[0]; }));
                    EXPECT_EQ(message, "xoptim::dist: rank " + std::to_string(last) + " of " + std::to_string(comm.size())
                                           + ": xoptim::dist::data_parallel: parameter 'layers.0.bias': gradient has 39 "
                                             "elements, parameter has 40");
                    EXPECT_EQ(p.checksum(), before);
                    EXPECT_EQ(dist_test::state_checksum(dp.trainer()), states);
                }
                if (overlap)
                {
                    for (std::size_t i = dp.size(); i-- > 0;)
                    {
                        dp.grad_ready(i);
                    }
                }
                dp.step(p.params(), g.grads());
            }
            EXPECT_TRUE(p.same_bits(clean.params)) << "the failed call left a trace";
        }
    }
}

TEST(dist_mpi, grad_ready_overlaps_and_changes_no_bit)
{
    const auto specs = uneven();
    const auto comm = world();
    xoptim::stepper_options s;
    s.accumulate = 2;
    for (const auto how : {dist::mode::data_parallel, dist::mode::zero1})
    {
        const outcome plain = run_distributed(specs, xoptim::stepper(xoptim::adamw(), s), with_mode(how, 512), 6);
        for (const bool thread : {true, false})
        {
            net p(specs);
            p.fill(7, 0);
            dist::options o = with_mode(how, 512);
            o.progress_thread = thread;
            dist::data_parallel dp(comm, xoptim::stepper(xoptim::adamw(), s), o);
            net g(specs);
            for (std::size_t t = 0; t < 6; ++t)
            {
                g.fill_gradient(7, t, comm.rank());
                // A backward pass: gradients ready in reverse order, by name and by index.
                for (std::size_t i = dp.size(); i-- > 0;)
                {
                    if (i % 2)
                    {
                        dp.grad_ready(i);
                    }
                    else if (dp.planned())
                    {
                        dp.grad_ready(dp.name(i));
                    }
                }
                dp.step(p.params(), g.grads());
                if (t == 2)
                {
                    // A walk without gradients (as a checkpoint's) before the cycle's last
                    // backward: grad_ready then packs nothing (it read an emptied list).
                    dp.init(p.params());
                }
            }
            EXPECT_TRUE(p.same_bits(plain.params)) << dist::to_string(how) << (thread ? ", on a thread" : "");
        }
    }
}

TEST(dist_mpi, check_every_finds_ranks_whose_parameters_drifted)
{
    const auto specs = uneven();
    const auto comm = world();
    dist::options o = with_mode(dist::mode::data_parallel);
    o.check_every = 1;
    net p(specs);
    p.fill(7, 0);
    dist::data_parallel dp(comm, xoptim::adamw(), o);
    net g(specs);
    std::string message = "no error";
    for (std::size_t t = 0; t < 3; ++t)
    {
        g.fill_gradient(7, t, comm.rank());
        if (t == 2 && comm.rank() == comm.size() - 1 && comm.size() > 1)
        {
            p.f[3][7] += 1.0f;  // layers.1.weight drifts on the last rank
        }
        try
        {
            dp.step(p.params(), g.grads());
        }
        catch (const std::runtime_error& e)
        {
            message = e.what();
        }
    }
    if (comm.size() > 1)
    {
        EXPECT_NE(message.find("xoptim::dist: the ranks hold different parameter values after step 3 (check_every): "
                               "parameter 3 is 'layers.1.weight'"),
                  std::string::npos)
            << message;
        EXPECT_NE(message.find(" on rank " + std::to_string(comm.size() - 1)), std::string::npos) << message;
    }
    else
    {
        EXPECT_EQ(message, "no error");
    }
}

TEST(dist_mpi, the_assignment_shows_owners_and_shards)
{
    const auto comm = world();
    net p(uneven());
    net g(uneven());
    p.fill(7, 0);
    g.fill_gradient(7, 0, comm.rank());
    dist::data_parallel dp(comm, xoptim::make_hybrid(), with_mode(dist::mode::zero1));
    dp.step(p.params(), g.grads());
    const std::string table = dp.assignment();
    EXPECT_NE(table.find("layers.0.weight (24, 40) -> muon, rank "), std::string::npos) << table;
    EXPECT_NE(table.find("embedding.weight (37, 11) -> adamw, ranks "), std::string::npos) << table;
    EXPECT_NE(table.find("rank 0: "), std::string::npos) << table;
    EXPECT_TRUE(same_everywhere(std::hash<std::string>{}(table)));
}

namespace
{
    // A scratch directory every rank sees (made by rank 0), removed at the end.
    struct shared_dir
    {
        std::filesystem::path path;

        shared_dir()
        {
            std::string made;
            if (world().rank() == 0)
            {
                char name[] = "/tmp/xoptim-dist-XXXXXX";
                made = mkdtemp(name) != nullptr ? name : "";
            }
            path = dist::allgather_strings(world(), made)[0];
        }

        ~shared_dir()
        {
            dist::allgather_value(world(), 0);  // every rank is done with it
            if (world().rank() == 0)
            {
                std::error_code ec;
                std::filesystem::remove_all(path, ec);
            }
        }
    };

    // A communicator of the first `ranks` ranks of the world; the others get none.
    struct first_ranks
    {
        MPI_Comm comm = MPI_COMM_NULL;

        explicit first_ranks(int ranks)
        {
            const int rank = world().rank();
            MPI_Comm_split(MPI_COMM_WORLD, rank < ranks ? 0 : MPI_UNDEFINED, rank, &comm);
        }

        ~first_ranks()
        {
            if (comm != MPI_COMM_NULL)
            {
                MPI_Comm_free(&comm);
            }
        }
    };

    template <class MakeTrainer>
    void gathered_checkpoint_round_trip(MakeTrainer make, dist::mode how, const shared_dir& dir)
    {
        const auto comm = world();
        const auto specs = uneven();
        const dist::options o = with_mode(how);
        const auto file = dir.path / (std::string("gathered-") + dist::to_string(how) + ".safetensors");
        // N ranks: 3 steps, save, 2 more steps.
        net p(specs);
        p.fill(7, 0);
        dist::data_parallel dp(comm, make(), o);
        net g(specs);
        for (std::size_t t = 0; t < 3; ++t)
        {
            g.fill_gradient(7, t, comm.rank());
            dp.step(p.params(), g.grads());
        }
        dist::save_checkpoint(file.string(), p.params(), dp);
        const net saved = p;
        for (std::size_t t = 3; t < 5; ++t)
        {
            g.fill_gradient(7, t, comm.rank());
            dp.step(p.params(), g.grads());
        }
        // The same N ranks resume bit for bit.
        {
            net q(specs);
            dist::data_parallel resumed(comm, make(), o);
            dist::load_checkpoint(file.string(), q.params(), resumed);
            EXPECT_TRUE(q.same_bits(saved));
            for (std::size_t t = 3; t < 5; ++t)
            {
                g.fill_gradient(7, t, comm.rank());
                resumed.step(q.params(), g.grads());
            }
            EXPECT_TRUE(q.same_bits(p)) << "resume on the same ranks is not bit-identical";
        }
        // Fewer ranks: the load holds the same state (saving it again gives the same
        // file), and two steps continue as one process would on their mean gradient.
        for (int m = comm.size() - 1; m >= 1; --m)
        {
            SCOPED_TRACE("loaded on " + std::to_string(m) + " ranks");
            const first_ranks sub(m);
            if (sub.comm == MPI_COMM_NULL)
            {
                continue;
            }
            const dist::mpi_comm fewer(sub.comm);
            net q(specs);
            dist::data_parallel resumed(fewer, make(), o);
            dist::load_checkpoint(file.string(), q.params(), resumed);
            EXPECT_TRUE(q.same_bits(saved));
            const auto again = dir.path / ("again-" + std::to_string(m) + ".safetensors");
            dist::save_checkpoint(again.string(), q.params(), resumed);
            if (fewer.rank() == 0)
            {
                EXPECT_EQ(dist_test::read_bytes(again), dist_test::read_bytes(file)) << "the state changed on its way through " << m << " ranks";
            }
            net one = saved;
            auto reference = make();
            xoptim::load_checkpoint(file.string(), one.params(), reference);
            for (std::size_t t = 3; t < 5; ++t)
            {
                g.fill_gradient(7, t, fewer.rank());
                resumed.step(q.params(), g.grads());
                net mean(specs);
                mean.fill_mean_gradient(7, t, m);
                reference(one.params(), mean.grads());
            }
            EXPECT_LE(dist_test::max_relative(q.f, one.f), 1e-6);
            if (power_of_two(m))
            {
                EXPECT_TRUE(q.same_bits(one));
            }
        }
    }
}

TEST(dist_mpi, a_gathered_checkpoint_loads_on_fewer_ranks_and_resumes)
{
    const shared_dir dir;
    for (const auto how : {dist::mode::data_parallel, dist::mode::zero1})
    {
        SCOPED_TRACE(dist::to_string(how));
        gathered_checkpoint_round_trip([] { return xoptim::stepper(xoptim::adamw()); }, how, dir);
        gathered_checkpoint_round_trip([] { return xoptim::stepper(xoptim::make_hybrid()); }, how, dir);
        gathered_checkpoint_round_trip([] { return xoptim::stepper(dist_test::eight_bit_adamw(1024)); }, how, dir);
        // States of their own shape: NorMuon's per-row second moment, Adafactor's statistics.
        gathered_checkpoint_round_trip(
            [] {
                xoptim::hybrid_options h;
                h.muon.normuon = true;
                return xoptim::stepper(xoptim::make_hybrid(h));
            },
            how, dir);
        gathered_checkpoint_round_trip([] { return xoptim::stepper(xoptim::adafactor()); }, how, dir);
    }
}

TEST(dist_mpi, a_sharded_checkpoint_resumes_on_the_same_ranks_only)
{
    const shared_dir dir;
    const auto comm = world();
    const auto specs = uneven();
    for (const auto how : {dist::mode::data_parallel, dist::mode::zero1})
    {
        SCOPED_TRACE(dist::to_string(how));
        const auto where = dir.path / dist::to_string(how);
        net p(specs);
        p.fill(7, 0);
        dist::data_parallel dp(comm, xoptim::stepper(xoptim::make_hybrid()), with_mode(how));
        net g(specs);
        for (std::size_t t = 0; t < 5; ++t)
        {
            if (t == 2 || t == 3)
            {
                dist::save_sharded(where.string(), p.params(), dp);  // the second replaces the first
            }
            g.fill_gradient(7, t, comm.rank());
            dp.step(p.params(), g.grads());
        }
        net q(specs);
        dist::data_parallel resumed(comm, xoptim::stepper(xoptim::make_hybrid()), with_mode(how));
        dist::load_sharded(where.string(), q.params(), resumed);
        for (std::size_t t = 3; t < 5; ++t)
        {
            g.fill_gradient(7, t, comm.rank());
            resumed.step(q.params(), g.grads());
        }
        EXPECT_TRUE(q.same_bits(p)) << "sharded resume is not bit-identical";
        std::size_t files = 0;
        for (const auto& entry : std::filesystem::directory_iterator(where))
        {
            files += entry.path().filename().string().rfind("shard-", 0) == 0 ? 1 : 0;
        }
        EXPECT_EQ(files, how == dist::mode::zero1 ? std::size_t(comm.size()) : 1u) << "the older shards stayed";
        // Another rank count: the same error on every rank of that run.
        if (comm.size() > 1)
        {
            const first_ranks sub(1);
            if (sub.comm != MPI_COMM_NULL)
            {
                const dist::mpi_comm one(sub.comm);
                net r(specs);
                dist::data_parallel other(one, xoptim::stepper(xoptim::make_hybrid()), with_mode(how));
                std::string message = "no error";
                try
                {
                    dist::load_sharded(where.string(), r.params(), other);
                }
                catch (const std::runtime_error& e)
                {
                    message = e.what();
                }
                EXPECT_NE(message.find("saved by " + std::to_string(comm.size()) + " ranks in "), std::string::npos)
                    << message;
            }
        }
    }
}

int main(int argc, char** argv)
{
    xoptim::dist::mpi_session session(argc, argv);
    ::testing::InitGoogleTest(&argc, argv);
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank != 0)
    {
        // Ranks other than 0 print their failures only.
        auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
        delete listeners.Release(listeners.default_result_printer());
        struct failures : ::testing::EmptyTestEventListener
        {
            int rank;
            explicit failures(int r) : rank(r) {}
            void OnTestPartResult(const ::testing::TestPartResult& r) override
            {
                if (r.failed())
                {
                    std::fprintf(stderr, "rank %d: %s:%d: failure\n%s\n", rank, r.file_name() ? r.file_name() : "?",
                                 r.line_number(), r.summary());
                }
            }
        };
        listeners.Append(new failures(rank));
    }
    int result = RUN_ALL_TESTS();
    MPI_Allreduce(MPI_IN_PLACE, &result, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return result;
}
