// Low-memory optimizers: 8-bit block-wise states, bf16 states, bf16 parameters with
// nearest-even, stochastic or compensated rounding; their memory, their exactness
// where exactness is defined, how closely they track float32, and checkpoints.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <xoptim/io/checkpoint.hpp>
#include <xoptim/optim/muon.hpp>
#include <xoptim/xoptim.hpp>

#include "support/emulation.hpp"
#include "support/temp_dir.hpp"

namespace
{
    using xoptim::bfloat16;
    using xoptim::slot_format;
    using xoptim::state_storage;

    xoptim::storage_options storage(state_storage s, std::size_t min_8bit_size = 4096)
    {
        xoptim::storage_options o;
        o.states = s;
        o.min_8bit_size = min_8bit_size;
        return o;
    }

    xoptim::storage_options bf16_parameters(xoptim::bf16_rounding r, std::uint64_t seed = 0)
    {
        xoptim::storage_options o;
        o.parameters = r;
        o.seed = seed;
        return o;
    }

    // Deterministic values in [-1, 1).
    float wave(std::size_t i, std::size_t t)
    {
        return std::sin(0.37f * float(i) + 1.3f * float(t)) * std::cos(0.011f * float(i));
    }

    std::uint32_t bits_of(float x)
    {
        std::uint32_t u;
        std::memcpy(&u, &x, sizeof u);
        return u;
    }

    // A separable quadratic 0.5 sum a_i (p_i - c_i)^2, a_i in [0.5, 1.5].
    struct quadratic
    {
        explicit quadratic(std::size_t n)
            : a(n), c(n)
        {
            for (std::size_t i = 0; i < n; ++i)
            {
                a[i] = 1.0f + 0.5f * wave(i, 101);
                c[i] = wave(i, 202);
            }
        }

        void gradient(const std::vector<float>& p, std::vector<float>& g) const
        {
            for (std::size_t i = 0; i < p.size(); ++i)
            {
                g[i] = a[i] * (p[i] - c[i]);
            }
        }

        double loss(const std::vector<float>& p) const
        {
            double s = 0;
            for (std::size_t i = 0; i < p.size(); ++i)
            {
                s += 0.5 * a[i] * double(p[i] - c[i]) * double(p[i] - c[i]);
            }
            return s;
        }

        std::vector<float> a, c;
    };

    // Runs `steps` steps of `opt` on the quadratic from p = 0; returns the final p.
    template <class Opt>
    std::vector<float> descend(Opt& opt, const quadratic& q, std::size_t steps)
    {
        std::vector<float> p(q.a.size(), 0.0f), g(p.size());
        for (std::size_t t = 0; t < steps; ++t)
        {
            q.gradient(p, g);
            opt.step(xoptim::named("w", p), xoptim::named("w", g));
        }
        return p;
    }

    /**********
     * Memory *
     **********/

    TEST(eight_bit_states, adamw_keeps_about_two_bytes_per_parameter)
    {
        std::vector<float> big(1 << 16, 1.0f), gbig(big.size(), 0.5f), small(4095, 1.0f), gsmall(small.size(), 0.5f);
        xoptim::adamw opt;
        opt.set_storage(storage(state_storage::blockwise_8bit));
        opt.step(xoptim::named("big", big), xoptim::named("big", gbig));
        const auto r = opt.report();
        EXPECT_EQ(r.state_bytes, big.size() * 2 + 2 * (big.size() / 256) * 4);  // 2.03125 bytes each
        EXPECT_DOUBLE_EQ(double(r.state_bytes) / double(big.size()), 2.03125);

        // Under 4,096 elements the states stay float: 8 bytes per parameter.
        xoptim::adamw small_opt;
        small_opt.set_storage(storage(state_storage::blockwise_8bit));
        small_opt.step(xoptim::named("small", small), xoptim::named("small", gsmall));
        EXPECT_EQ(small_opt.report().state_bytes, small.size() * 8);
        EXPECT_EQ(small_opt.state().at("small").states[0].format, slot_format::native);
        EXPECT_EQ(opt.state().at("big").states[0].format, slot_format::q8_signed);
        EXPECT_EQ(opt.state().at("big").states[1].format, slot_format::q8_unsigned);
    }

    TEST(eight_bit_states, muon_keeps_its_momentum_in_8_bits_and_its_scratch_in_float)
    {
        std::vector<float> w(64 * 128, 0.1f), g(w.size(), 0.01f);
        xoptim::muon opt;
        opt.set_storage(storage(state_storage::blockwise_8bit));
        xoptim::tensor_view<float> wv(w.data(), {64, 128});
        xoptim::tensor_view<const float> gv(g.data(), {64, 128});
        opt.step(xoptim::named("w", wv), xoptim::named("w", gv));
        const auto& e = opt.state().at("w");
        EXPECT_EQ(e.states[0].format, slot_format::q8_signed);
        EXPECT_EQ(e.states[1].format, slot_format::native);
    }

    TEST(storage, is_set_before_the_state_exists)
    {
        std::vector<float> p(10, 1.0f), g(10, 1.0f);
        xoptim::adamw opt;
        opt.step(p, g);
        EXPECT_THROW(opt.set_storage(storage(state_storage::bf16)), std::logic_error);
        EXPECT_EQ(opt.storage().states, state_storage::native);
    }

    /*************
     * Exactness *
     *************/

    // From zero state the first step reads zeros whatever their format: the parameter
    // moves exactly as with float states, and each block of the new states is the
    // float states encoded on their own absmax.
    TEST(eight_bit_states, the_first_step_is_the_float_step_with_its_states_encoded)
    {
        // 48 whole blocks plus 100 (a last block ending within a batch: the generic
        // path), and 16 blocks plus 32 (a last block of whole batches: the fused path).
        for (std::size_t n : {48 * 256 + 100, 16 * 256 + 32})
        {
            std::vector<float> p8(n), p32(n), g(n);
            for (std::size_t i = 0; i < n; ++i)
            {
                p8[i] = p32[i] = wave(i, 0);
                g[i] = wave(i, 1) * (i % 7 == 0 ? 1e-6f : 1.0f);
            }
            xoptim::adamw eight, full;
            eight.set_storage(storage(state_storage::blockwise_8bit));
            eight.step(xoptim::named("w", p8), xoptim::named("w", g));
            full.step(xoptim::named("w", p32), xoptim::named("w", g));
            for (std::size_t i = 0; i < n; ++i)
            {
                ASSERT_EQ(bits_of(p8[i]), bits_of(p32[i])) << "n " << n << " i " << i;
            }
            const auto& e8 = eight.state().at("w");
            const auto& e32 = full.state().at("w");
            for (std::size_t k = 0; k < 2; ++k)
            {
                const auto& map = k == 0 ? xoptim::dynamic_map::signed_map() : xoptim::dynamic_map::unsigned_map();
                const auto* codes = static_cast<const std::uint8_t*>(e8.states[k].data);
                const float* exact = e32.state<float>(k);
                for (std::size_t b = 0; b < e8.blocks(); ++b)
                {
                    const std::size_t first = b * 256, last = std::min(n, first + 256);
                    float absmax = 0;
                    for (std::size_t i = first; i < last; ++i)
                    {
                        absmax = std::max(absmax, std::fabs(exact[i]));
                    }
                    ASSERT_EQ(e8.states[k].absmax[b], absmax);
                    for (std::size_t i = first; i < last; ++i)
                    {
                        ASSERT_EQ(codes[i], map.encode(exact[i] * (1 / absmax))) << "state " << k << " i " << i;
                    }
                }
            }
        }
    }

    // The same steps on 1 and 2 threads, cut anywhere: the same bits.
    TEST(eight_bit_states, steps_are_bit_identical_for_any_thread_count)
    {
        const std::vector<std::size_t> sizes = {5000, 4096, 70000, 4100, 4113};
        auto run = [&](std::size_t threads) {
            xoptim::set_num_threads(threads);
            xoptim::set_parallel_threshold(1000);
            std::vector<std::vector<float>> p, g;
            for (std::size_t n : sizes)
            {
                p.emplace_back(n);
                g.emplace_back(n);
                for (std::size_t i = 0; i < n; ++i)
                {
                    p.back()[i] = wave(i, n);
                }
            }
            xoptim::adamw opt;
            opt.set_storage(storage(state_storage::blockwise_8bit));
            for (std::size_t t = 0; t < 4; ++t)
            {
                for (std::size_t k = 0; k < sizes.size(); ++k)
                {
                    for (std::size_t i = 0; i < sizes[k]; ++i)
                    {
                        g[k][i] = wave(i + k, t + 3);
                    }
                }
                opt.step(p, g);
            }
            std::vector<unsigned char> bytes;
            for (std::size_t k = 0; k < opt.state().size(); ++k)
            {
                const auto& e = opt.state()[k];
                bytes.insert(bytes.end(), e.data.get(), e.data.get() + e.bytes);
            }
            xoptim::set_num_threads(std::thread::hardware_concurrency());
            xoptim::set_parallel_threshold(std::size_t(1) << 16);
            return std::make_pair(p, bytes);
        };
        const auto one = run(1);
        const auto two = run(2);
        EXPECT_EQ(one.first, two.first);
        EXPECT_EQ(one.second, two.second);
    }

    // The programs the coded-path tests run, prepared for this machine: two states (m, v)
    // and p; the same with the update scaled by a per-tensor scalar, which the fused
    // loops read as the float loop does (a cautious step's second pass reads its factor
    // so).
    using arch = xsimd::default_arch;
    const auto states_program = [](const auto& factor) {
        using xoptim::sym::g;
        using xoptim::sym::p;
        const auto& m = xoptim::sym::state<0>;
        const auto& v = xoptim::sym::state<1>;
        return xoptim::fuse(m = m + g * g, v = 0.9 * v + 0.001 * g * g, p = p - factor * m / (sqrt(v) + 1e-8));
    };
    const auto two_states = states_program(0.001);
    using two_states_traits = xoptim::detail::program_traits<std::decay_t<decltype(two_states)>>;
    const auto two_states_prepared = xoptim::prepare_program<arch, float>(two_states);
    using two_states_type = std::decay_t<decltype(two_states_prepared)>;
    const auto scaled_states = states_program(xoptim::sym::scalar<0>);
    using scaled_states_traits = xoptim::detail::program_traits<std::decay_t<decltype(scaled_states)>>;
    const auto scaled_states_prepared = xoptim::prepare_program<arch, float>(scaled_states);

    // Runs `fused` over job `a` and the generic block path (in chunks, as run_coded does)
    // over job `b`: the program, by the trial's parity, two_states or scaled_states.
    template <class Fused>
    void run_fused_and_generic(int trial, const xoptim::grad_transform& transform, const Fused& fused,
                               const xoptim::coded_slots& a, const xoptim::coded_slots& b, std::size_t n)
    {
        alignas(64) static float buffer[xoptim::first_local][xoptim::coded_chunk];  // the engine stores aligned
        const auto run = [&](const auto& prepared, auto traits) {
            using prepared_type = std::decay_t<decltype(prepared)>;
            using traits_type = decltype(traits);
            fused(prepared, traits, a);
            for (std::size_t first = 0; first < n; first += xoptim::coded_chunk)
            {
                xoptim::detail::run_coded_block<arch, prepared_type, traits_type>(
                    prepared, transform, b, first, std::min(xoptim::coded_chunk, n - first), buffer);
            }
        };
        if (trial % 2 == 0)
        {
            run(two_states_prepared, two_states_traits{});
        }
        else
        {
            run(scaled_states_prepared, scaled_states_traits{});
        }
    }

    // The fused 8-bit loop and the generic block path on the same job: the same bits, for
    // a plain and a clipped and scaled gradient, with and without a per-tensor scalar.
    TEST(eight_bit_states, fused_and_generic_paths_give_the_same_bits)
    {
        std::mt19937 rng(1);
        std::lognormal_distribution<float> spread(0, 3);
        std::normal_distribution<float> normal;
        // Five whole blocks (the fused loop writes each one's codes between the next
        // one's batches) and a short one; now and then a gradient whose square
        // overflows, so a block in the middle takes encode_q8's rare path.
        constexpr std::size_t blocks = 6;
        constexpr std::size_t n = 5 * 256 + 16;
        const xoptim::grad_transform transforms[] = {{}, {}, {0.5, 3.0}};
        for (int trial = 0; trial < 500; ++trial)
        {
            struct side
            {
                alignas(64) float p[n];
                std::uint8_t m[n], v[n];
                float scale[2][blocks];
            } a, b;
            alignas(64) float grad[n];
            for (std::size_t i = 0; i < n; ++i)
            {
                a.p[i] = normal(rng);
                grad[i] = normal(rng) * spread(rng);
                a.m[i] = std::uint8_t(rng());
                a.v[i] = std::uint8_t(rng());
            }
            for (std::size_t k = 0; k < blocks; ++k)
            {
                a.scale[0][k] = spread(rng) * 1e-3f;
                a.scale[1][k] = spread(rng) * 1e-6f;
            }
            if (trial % 5 == 0)
            {
                grad[rng() % n] = 1e30f;
            }
            const float scalar = normal(rng) * 1e-3f;
            b = a;
            const auto job = [&](side& s) {
                xoptim::coded_slots c;
                c.plain.size = n;
                c.plain.param = s.p;
                c.plain.grad = grad;
                c.format[xoptim::first_state] = slot_format::q8_signed;
                c.format[xoptim::first_state + 1] = slot_format::q8_unsigned;
                c.source[xoptim::first_state] = c.target[xoptim::first_state] = s.m;
                c.source[xoptim::first_state + 1] = c.target[xoptim::first_state + 1] = s.v;
                c.absmax[xoptim::first_state] = s.scale[0];
                c.absmax[xoptim::first_state + 1] = s.scale[1];
                c.plain.scalars[0] = scalar;
                return c;
            };
            const xoptim::grad_transform& transform = transforms[trial % 3];
            const auto fused = [&](const auto& prepared, auto traits, const xoptim::coded_slots& c) {
                xoptim::detail::run_q8_blocks<arch, std::decay_t<decltype(prepared)>, decltype(traits)>(
                    prepared, transform, c, nullptr, 0, n);
            };
            run_fused_and_generic(trial, transform, fused, job(a), job(b), n);
            ASSERT_EQ(std::memcmp(&a, &b, sizeof a), 0) << "trial " << trial;
        }
    }

    // The fused bf16 loop (states widened and rounded in registers) against the generic
    // block path (decoded into a buffer, encoded back) on the same job: the same bits,
    // for sizes that end within a batch (the tail takes the generic path), starts off
    // the vectors' alignment, a clipped and scaled gradient, a per-tensor scalar, and
    // states and gradients that hold NaN, infinities, zeros of both signs and subnormals.
    TEST(bf16_states, fused_and_generic_paths_give_the_same_bits)
    {
        std::mt19937 rng(2);
        std::lognormal_distribution<float> spread(0, 4);
        std::normal_distribution<float> normal;
        const float specials[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                                  -std::numeric_limits<float>::infinity(), 0.0f, -0.0f, 1e-40f, -3e-39f, 1e30f};
        constexpr std::size_t capacity = 3 * xoptim::coded_chunk + 64;
        struct side
        {
            float p[capacity];
            std::uint16_t m[capacity], v[capacity];
        };
        static side a, b;
        static float grad[capacity];
        const xoptim::grad_transform transforms[] = {{}, {}, {0.5, 3.0}};
        for (int trial = 0; trial < 200; ++trial)
        {
            const std::size_t n = rng() % (capacity - 8);
            const std::size_t start = rng() % 8;
            for (std::size_t i = 0; i < capacity; ++i)
            {
                a.p[i] = normal(rng);
                grad[i] = normal(rng) * spread(rng);
                a.m[i] = bfloat16::round_nearest_even(normal(rng) * spread(rng) * 1e-2f);
                a.v[i] = bfloat16::round_nearest_even(spread(rng) * 1e-4f);
                if (rng() % 64 == 0)
                {
                    grad[i] = specials[rng() % 8];
                }
                if (rng() % 64 == 0)
                {
                    a.m[i] = bfloat16::round_nearest_even(specials[rng() % 8]);
                }
                if (rng() % 64 == 0)
                {
                    a.v[i] = bfloat16::round_nearest_even(specials[rng() % 8]);
                }
            }
            const float scalar = normal(rng) * 1e-3f;
            b = a;
            const auto job = [&](side& s) {
                xoptim::coded_slots c;
                c.plain.size = n;
                c.plain.param = s.p + start;
                c.plain.grad = grad + start;
                for (std::size_t k = 0; k < 2; ++k)
                {
                    c.format[xoptim::first_state + k] = slot_format::bf16;
                    c.source[xoptim::first_state + k] = c.target[xoptim::first_state + k] = (k == 0 ? s.m : s.v) + start;
                }
                c.plain.scalars[0] = scalar;
                return c;
            };
            const xoptim::grad_transform& transform = transforms[trial % 3];
            const auto fused = [&](const auto& prepared, auto traits, const xoptim::coded_slots& c) {
                xoptim::run_coded<arch, std::decay_t<decltype(prepared)>, decltype(traits)>(prepared, transform, c,
                                                                                           nullptr, 0, n);
            };
            run_fused_and_generic(trial, transform, fused, job(a), job(b), n);
            ASSERT_EQ(std::memcmp(&a, &b, sizeof a), 0) << "trial " << trial << ", " << n << " elements from " << start;
        }
    }

    // A factored optimizer's row is a window of its tensor's coded job (coded.hpp,
    // window): run as consecutive windows, a program must give the bits of one run over
    // the whole job (the older path, tested above and by every coded optimizer test):
    // 8-bit codes and block scales, bf16 bits, a stochastic rounding's stream and a
    // compensated rounding's low halves. 8-bit states are windowed at whole blocks (as
    // Adafactor's rows are), bf16 states also at odd offsets; the parameter float (the
    // fused 8-bit loop), bf16 stochastic or bf16 compensated.
    TEST(coded_windows, consecutive_windows_give_the_bits_of_the_whole_job)
    {
        constexpr std::size_t n = 5 * 256 + 37;
        constexpr std::size_t blocks = 6;
        struct tensors
        {
            std::vector<float> param = std::vector<float>(n);
            std::vector<std::uint16_t> bits = std::vector<std::uint16_t>(n), low = std::vector<std::uint16_t>(n);
            std::vector<std::uint8_t> codes[2] = {std::vector<std::uint8_t>(n), std::vector<std::uint8_t>(n)};
            std::vector<float> scales[2] = {std::vector<float>(blocks), std::vector<float>(blocks)};
            std::vector<std::uint16_t> halves[2] = {std::vector<std::uint16_t>(n), std::vector<std::uint16_t>(n)};
        };
        std::mt19937 rng(3);
        std::normal_distribution<float> normal;
        std::vector<float> grad(n);
        for (bool eight : {true, false})
        {
            // Consecutive windows [cuts[k], cuts[k + 1]).
            const std::vector<std::size_t> cuts = eight ? std::vector<std::size_t>{0, 256, 768, 1024, n}
                                                        : std::vector<std::size_t>{0, 37, 300, 301, 1024, n};
            for (slot_format rounding :
                 {slot_format::native, slot_format::bf16_stochastic, slot_format::bf16_compensated})
            {
                for (int trial = 0; trial < 10; ++trial)
                {
                    tensors a;
                    for (std::size_t i = 0; i < n; ++i)
                    {
                        grad[i] = normal(rng);
                        a.param[i] = normal(rng);
                        a.bits[i] = bfloat16(a.param[i]).bits;
                        a.low[i] = std::uint16_t(rng());
                        for (std::size_t k = 0; k < 2; ++k)
                        {
                            a.codes[k][i] = std::uint8_t(rng());
                            const float x = 0.1f * normal(rng);
                            a.halves[k][i] = bfloat16(k == 0 ? x : x * x).bits;
                        }
                    }
                    for (std::size_t k = 0; k < 2; ++k)
                    {
                        for (float& s : a.scales[k])
                        {
                            s = 0.5f * std::abs(normal(rng)) + 0.01f;
                        }
                    }
                    tensors b = a;
                    const tensors before = a;
                    const auto job = [&](tensors& s) {
                        xoptim::coded_slots c;
                        c.plain.size = n;
                        c.plain.grad = grad.data();
                        c.format[xoptim::param_slot] = rounding;
                        if (rounding == slot_format::native)
                        {
                            c.plain.param = s.param.data();
                        }
                        else
                        {
                            c.source[xoptim::param_slot] = c.target[xoptim::param_slot] = s.bits.data();
                        }
                        c.compensation = rounding == slot_format::bf16_compensated ? s.low.data() : nullptr;
                        c.key = 0x9e3779b9u + std::uint32_t(trial);
                        for (std::size_t k = 0; k < 2; ++k)
                        {
                            const std::size_t slot = xoptim::first_state + k;
                            if (eight)
                            {
                                c.format[slot] = k == 0 ? slot_format::q8_signed : slot_format::q8_unsigned;
                                c.source[slot] = c.target[slot] = s.codes[k].data();
                                c.absmax[slot] = s.scales[k].data();
                            }
                            else
                            {
                                c.format[slot] = slot_format::bf16;
                                c.source[slot] = c.target[slot] = s.halves[k].data();
                            }
                        }
                        return c;
                    };
                    xoptim::run_coded<arch, two_states_type, two_states_traits>(two_states_prepared, {}, job(a),
                                                                                nullptr, 0, n);
                    const xoptim::coded_slots whole = job(b);
                    for (std::size_t k = 0; k + 1 < cuts.size(); ++k)
                    {
                        const std::size_t length = cuts[k + 1] - cuts[k];
                        xoptim::run_coded<arch, two_states_type, two_states_traits>(
                            two_states_prepared, {}, xoptim::window(whole, cuts[k], length), nullptr, 0, length);
                    }
                    const std::string where = std::string(eight ? "8-bit" : "bf16") + " states, parameter format "
                                              + std::to_string(int(rounding)) + ", trial " + std::to_string(trial);
                    if (rounding == slot_format::native)
                    {
                        ASSERT_EQ(b.param, a.param) << where;
                        EXPECT_NE(a.param, before.param) << where;
                    }
                    else
                    {
                        ASSERT_EQ(b.bits, a.bits) << where;
                        ASSERT_EQ(b.low, a.low) << where;
                        EXPECT_NE(a.bits, before.bits) << where;
                    }
                    for (std::size_t k = 0; k < 2; ++k)
                    {
                        ASSERT_EQ(b.codes[k], a.codes[k]) << where << ", state " << k;
                        ASSERT_EQ(b.scales[k], a.scales[k]) << where << ", state " << k;
                        ASSERT_EQ(b.halves[k], a.halves[k]) << where << ", state " << k;
                        EXPECT_TRUE(eight ? a.codes[k] != before.codes[k] : a.halves[k] != before.halves[k]) << where;
                    }
                }
            }
        }
    }

    /*******************
     * Tracking float32 *
     *******************/

    // Final loss of the 8-bit run against the float run's, both from the same start,
    // after `steps`: 8-bit states change the path a little, not where it goes.
    // Under an emulator, a smaller tensor still of 8-bit size (>= 4,096 elements).
    std::size_t tracking_size(std::size_t native)
    {
        return xoptim_test::smaller_when_emulated<std::size_t>(native, 5000);
    }

    template <class Opt>
    void expect_tracks_float(Opt eight, Opt full, std::size_t n, std::size_t steps, double tolerance,
                             double rms_distance = 0.02)
    {
        const quadratic q(n);
        eight.set_storage(storage(state_storage::blockwise_8bit));
        const double start = q.loss(std::vector<float>(n, 0.0f));
        const auto p8 = descend(eight, q, steps);
        const auto p32 = descend(full, q, steps);
        const double l8 = q.loss(p8), l32 = q.loss(p32);
        EXPECT_LT(l32, 0.5 * start);
        EXPECT_NEAR(l8, l32, tolerance * start) << Opt::name << ": 8-bit " << l8 << ", float " << l32;
        double distance = 0;
        for (std::size_t i = 0; i < n; ++i)
        {
            distance += double(p8[i] - p32[i]) * double(p8[i] - p32[i]);
        }
        EXPECT_LT(std::sqrt(distance / double(n)), rms_distance) << Opt::name;
    }

    TEST(eight_bit_states, adamw_tracks_float_adamw_on_a_quadratic)
    {
        xoptim::adamw_options o;
        o.lr = 1e-2;
        expect_tracks_float(xoptim::adamw(o), xoptim::adamw(o), tracking_size(20000), 300, 0.005);
    }

    TEST(eight_bit_states, adam_with_amsgrad_tracks_float)
    {
        xoptim::adam_options o;
        o.lr = 1e-2;
        o.amsgrad = true;
        o.weight_decay = 1e-3;
        expect_tracks_float(xoptim::adam(o), xoptim::adam(o), tracking_size(10000), 300, 0.005);
    }

    TEST(eight_bit_states, lion_and_sgd_momentum_track_float)
    {
        xoptim::lion_options l;
        l.lr = 1e-3;
        // Lion steps by the sign of its interpolated momentum: where that is near zero
        // (at the optimum), 8-bit rounding flips signs, so paths part by a few lr.
        expect_tracks_float(xoptim::lion(l), xoptim::lion(l), tracking_size(10000), 300, 0.01, 0.05);
        xoptim::sgd_options s;
        s.lr = 0.05;
        s.momentum = 0.9;
        s.nesterov = true;
        expect_tracks_float(xoptim::sgd(s), xoptim::sgd(s), tracking_size(10000), 200, 0.005);
    }

    TEST(eight_bit_states, muon_tracks_float_muon)
    {
        // Under an emulator: 32 x 128 (still 8-bit, a third of the Newton-Schulz flops) for
        // 100 steps (float loss 0.05 of the start there, 8-bit within 1e-4 of it).
        const std::size_t rows = xoptim_test::smaller_when_emulated(64, 32);
        const std::size_t cols = xoptim_test::smaller_when_emulated(96, 128);
        const std::size_t steps = xoptim_test::smaller_when_emulated(300, 100);
        const quadratic q(rows * cols);
        const auto run = [&](bool eight_bit) {
            xoptim::muon_options o;
            o.lr = 0.05;
            xoptim::muon opt(o);
            if (eight_bit)
            {
                opt.set_storage(storage(state_storage::blockwise_8bit));
            }
            std::vector<float> p(rows * cols, 0.0f), g(p.size());
            for (std::size_t t = 0; t < steps; ++t)
            {
                q.gradient(p, g);
                xoptim::tensor_view<float> pv(p.data(), {rows, cols});
                xoptim::tensor_view<const float> gv(g.data(), {rows, cols});
                opt.step(xoptim::named("w", pv), xoptim::named("w", gv));
            }
            return q.loss(p);
        };
        const double start = q.loss(std::vector<float>(rows * cols, 0.0f));
        const double l32 = run(false), l8 = run(true);
        EXPECT_LT(l32, 0.5 * start);
        // Newton-Schulz sets every singular value to about 1, so the momentum's 8-bit
        // rounding in weak directions weighs more than in AdamW.
        EXPECT_NEAR(l8, l32, 0.01 * start) << "8-bit " << l8 << ", float " << l32 << ", start " << start;
    }

    TEST(bf16_states, adamw_with_bf16_states_tracks_float)
    {
        xoptim::adamw_options o;
        o.lr = 1e-2;
        xoptim::adamw bf, full(o);
        bf = xoptim::adamw(o);
        bf.set_storage(storage(state_storage::bf16));
        const quadratic q(5000);
        const auto p16 = descend(bf, q, 300);
        const auto p32 = descend(full, q, 300);
        EXPECT_EQ(bf.report().state_bytes, 5000u * 4);
        EXPECT_NEAR(q.loss(p16), q.loss(p32), 0.002 * q.loss(std::vector<float>(5000, 0.0f)));
    }

    // Edge sizes with every tensor 8-bit (min_8bit_size 1), the parameters starting at
    // odd addresses inside one buffer.
    TEST(eight_bit_states, edge_sizes_and_unaligned_starts)
    {
        const std::vector<std::size_t> sizes = {0, 1, 15, 16, 17, 255, 256, 257, 1000};
        std::size_t total = 0;
        for (std::size_t n : sizes)
        {
            total += n + 3;
        }
        std::vector<float> buffer(total + 1), grads(total + 1);
        std::vector<xoptim::tensor_view<float>> p;
        std::vector<xoptim::tensor_view<const float>> g;
        std::size_t at = 1;
        for (std::size_t n : sizes)
        {
            for (std::size_t i = 0; i < n; ++i)
            {
                buffer[at + i] = wave(i, n);
                grads[at + i] = wave(i, n + 1);
            }
            p.emplace_back(buffer.data() + at, n);
            g.emplace_back(grads.data() + at, n);
            at += n + 3;
        }
        const std::vector<float> before = buffer;
        xoptim::adamw eight;
        eight.set_storage(storage(state_storage::blockwise_8bit, 1));
        eight.step(p, g);
        eight.step(p, g);
        // Only the parameters moved, and each did (except where its gradient is zero).
        at = 1;
        std::size_t k = 0;
        for (std::size_t n : sizes)
        {
            EXPECT_EQ(buffer[at - 1], before[at - 1]);
            for (std::size_t i = 0; i < n; ++i)
            {
                EXPECT_NE(buffer[at + i], before[at + i]) << "size " << n << " element " << i;
            }
            // Size 0 is under min_8bit_size 1: float states, no blocks.
            EXPECT_EQ(eight.state()[k].states[0].format, n == 0 ? slot_format::native : slot_format::q8_signed);
            at += n + 3;
            ++k;
        }
    }

    /*******************
     * bf16 parameters *
     *******************/

    // SGD (no momentum) on bf16: p' = bf16(float(p) - lr * float(g)), computed here by
    // hand for nearest-even.
    TEST(bf16_parameters, nearest_even_is_the_float_update_rounded)
    {
        const std::size_t n = 1000;
        std::vector<bfloat16> p(n), g(n);
        for (std::size_t i = 0; i < n; ++i)
        {
            p[i] = bfloat16(wave(i, 0));
            g[i] = bfloat16(wave(i, 1));
        }
        const std::vector<bfloat16> before = p;
        xoptim::sgd_options o;
        o.lr = 0.1;
        xoptim::sgd opt(o);
        opt.step(p, g);
        const float lr = 0.1f;
        for (std::size_t i = 0; i < n; ++i)
        {
            const float expected = float(before[i]) + (-lr) * float(g[i]);
            EXPECT_EQ(p[i].bits, bfloat16(expected).bits) << i;
        }
    }

    // Least squares 0.5 |w - t|^2 from w = 1 to t = 0.9 with lr 1e-3: every update
    // (1e-4 at first) is far below bf16's resolution at 1 (2^-7). Nearest-even never
    // moves; stochastic rounding follows the float path on average; compensation
    // follows it closely.
    TEST(bf16_parameters, stochastic_rounding_keeps_learning_where_nearest_even_stalls)
    {
        const std::size_t n = xoptim_test::smaller_when_emulated(4096, 512), steps = 3000;
        const float target = 0.9f;
        auto run = [&](xoptim::bf16_rounding r) {
            std::vector<bfloat16> w(n, bfloat16(1.0f)), g(n);
            xoptim::sgd_options o;
            o.lr = 1e-3;
            xoptim::sgd opt(o);
            opt.set_storage(bf16_parameters(r, 17));
            for (std::size_t t = 0; t < steps; ++t)
            {
                for (std::size_t i = 0; i < n; ++i)
                {
                    g[i] = bfloat16(float(w[i]) - target);
                }
                opt.step(w, g);
            }
            if (r == xoptim::bf16_rounding::compensated)
            {
                // The value the optimizer holds is hi + lo.
                const auto* lo = opt.state()[0].compensation;
                double mean = 0;
                for (std::size_t i = 0; i < n; ++i)
                {
                    mean += double(float(w[i])) + double(bfloat16::to_float(lo[i]));
                }
                return mean / double(n);
            }
            double mean = 0;
            for (const auto& x : w)
            {
                mean += double(float(x));
            }
            return mean / double(n);
        };
        // The float path: 0.9 + 0.1 (1 - 1e-3)^3000 = 0.90497.
        const double exact = 0.9 + 0.1 * std::pow(1 - 1e-3, double(steps));
        const double nearest = run(xoptim::bf16_rounding::nearest_even);
        const double stochastic = run(xoptim::bf16_rounding::stochastic);
        const double compensated = run(xoptim::bf16_rounding::compensated);
        EXPECT_EQ(nearest, 1.0);  // stalled
        EXPECT_NEAR(stochastic, exact, 0.002);
        EXPECT_NEAR(compensated, exact, 1e-4);
    }

    TEST(bf16_parameters, stochastic_rounding_is_reproducible_from_its_seed)
    {
        auto run = [](std::uint64_t seed, std::size_t threads) {
            xoptim::set_num_threads(threads);
            xoptim::set_parallel_threshold(1000);
            std::vector<bfloat16> w(20000, bfloat16(1.0f)), g(20000, bfloat16(0.37f));
            xoptim::sgd_options o;
            o.lr = 1e-3;
            xoptim::sgd opt(o);
            opt.set_storage(bf16_parameters(xoptim::bf16_rounding::stochastic, seed));
            for (int t = 0; t < 5; ++t)
            {
                opt.step(w, g);
            }
            xoptim::set_num_threads(std::thread::hardware_concurrency());
            xoptim::set_parallel_threshold(std::size_t(1) << 16);
            std::vector<std::uint16_t> bits;
            for (const auto& x : w)
            {
                bits.push_back(x.bits);
            }
            return bits;
        };
        EXPECT_EQ(run(1, 1), run(1, 2));
        EXPECT_NE(run(1, 1), run(2, 1));
    }

    TEST(bf16_parameters, adamw_with_8bit_states_on_bf16_parameters_learns)
    {
        const std::size_t n = 8192;
        const quadratic q(n);
        std::vector<bfloat16> w(n, bfloat16(0.0f)), g(n);
        xoptim::adamw_options o;
        o.lr = 1e-2;
        xoptim::adamw opt(o);
        xoptim::storage_options s = bf16_parameters(xoptim::bf16_rounding::stochastic, 3);
        s.states = state_storage::blockwise_8bit;
        opt.set_storage(s);
        std::vector<float> p(n);
        const double start = q.loss(std::vector<float>(n, 0.0f));
        for (int t = 0; t < 200; ++t)
        {
            for (std::size_t i = 0; i < n; ++i)
            {
                p[i] = float(w[i]);
                g[i] = bfloat16(q.a[i] * (p[i] - q.c[i]));
            }
            opt.step(w, g);
        }
        for (std::size_t i = 0; i < n; ++i)
        {
            p[i] = float(w[i]);
        }
        EXPECT_LT(q.loss(p), 0.05 * start);
        EXPECT_NEAR(double(opt.report().state_bytes) / double(n), 2.03125, 1e-9);
    }

    /***************
     * Checkpoints *
     ***************/

    using checkpoint = xoptim_test::temp_dir_test;

    TEST_F(checkpoint, stores_8bit_and_bf16_states_as_they_are_and_resumes_bit_for_bit)
    {
        const std::string path = (dir_ / "lowmem.safetensors").string();
        const std::size_t n = 10000;
        struct model
        {
            std::vector<float> w, b;
            auto params()
            {
                return std::make_tuple(xoptim::named("w", w), xoptim::named("b", b));
            }
        };
        const auto make = [&] {
            model m{std::vector<float>(n), std::vector<float>(100)};
            for (std::size_t i = 0; i < n; ++i)
            {
                m.w[i] = wave(i, 0);
            }
            return m;
        };
        const auto grads_at = [&](std::size_t t) {
            model g{std::vector<float>(n), std::vector<float>(100)};
            for (std::size_t i = 0; i < n; ++i)
            {
                g.w[i] = wave(i, t + 1);
            }
            for (std::size_t i = 0; i < 100; ++i)
            {
                g.b[i] = wave(i, t + 50);
            }
            return g;
        };
        for (state_storage kind : {state_storage::blockwise_8bit, state_storage::bf16})
        {
            model a = make(), b = make();
            xoptim::adamw oa, ob;
            oa.set_storage(storage(kind));
            ob.set_storage(storage(kind));
            for (std::size_t t = 0; t < 3; ++t)
            {
                auto g = grads_at(t);
                oa.step(a.params(), g.params());
            }
            xoptim::save_checkpoint(path, a.params(), oa);
            xoptim::load_checkpoint(path, b.params(), ob);
            for (std::size_t t = 3; t < 6; ++t)
            {
                auto ga = grads_at(t), gb = grads_at(t);
                oa.step(a.params(), ga.params());
                ob.step(b.params(), gb.params());
            }
            EXPECT_EQ(a.w, b.w);
            EXPECT_EQ(a.b, b.b);
            for (std::size_t k = 0; k < oa.state().size(); ++k)
            {
                const auto& x = oa.state()[k];
                const auto& y = ob.state()[k];
                ASSERT_EQ(x.bytes, y.bytes);
                EXPECT_EQ(std::memcmp(x.data.get(), y.data.get(), x.bytes), 0) << x.name;
            }
            // On disk: codes and scales, or bf16, not float.
            const auto file = xoptim::io::safetensors_file::read(path);
            const auto* m = file.find("state/optimizer/w/exp_avg");
            ASSERT_NE(m, nullptr);
            if (kind == state_storage::blockwise_8bit)
            {
                EXPECT_EQ(m->dtype, xoptim::io::st_dtype::U8);
                const auto* scales = file.find("state/optimizer/w/exp_avg_sq.absmax");
                ASSERT_NE(scales, nullptr);
                EXPECT_EQ(scales->shape, std::vector<std::size_t>{(n + 255) / 256});
                // The 100-element bias keeps float states.
                EXPECT_EQ(file.find("state/optimizer/b/exp_avg")->dtype, xoptim::io::st_dtype::F32);
            }
            else
            {
                EXPECT_EQ(m->dtype, xoptim::io::st_dtype::BF16);
            }
            EXPECT_EQ(m->shape, std::vector<std::size_t>{n});

            // A load into an optimizer that stores its states otherwise is refused.
            model c = make();
            xoptim::adamw other;
            std::string message;
            try
            {
                xoptim::load_checkpoint(path, c.params(), other);
            }
            catch (const std::runtime_error& e)
            {
                message = e.what();
            }
            EXPECT_NE(message.find("call set_storage before loading"), std::string::npos) << message;
            EXPECT_TRUE(other.state().empty());
        }
    }
}
