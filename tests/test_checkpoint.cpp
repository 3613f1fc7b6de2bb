// Checkpoints: round trip, resuming bit for bit (mid-accumulation, after a skipped
// step, through a router), Python's numpy + json reading the file, and every kind of
// damaged or mismatched file refused with its own message, the live state untouched.
#include <gtest/gtest.h>

#include <clocale>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>

#include <sys/resource.h>

#include <xoptim/io/checkpoint.hpp>
#include <xoptim/optim/hybrid.hpp>
#include <xoptim/optim/schedulefree.hpp>
#include <xoptim/xoptim.hpp>

#include "support/files.hpp"
#include "support/message_of.hpp"
#include "support/rewrite.hpp"
#include "support/temp_dir.hpp"

namespace
{
    using xoptim_test::bytes;
    using xoptim_test::read_file;
    using xoptim_test::write_file;

    // Every byte an optimizer keeps, to compare two of them bit for bit.
    template <class O>
    bytes state_bytes(const O& o)
    {
        bytes out;
        for (std::size_t k = 0; k < o.state().size(); ++k)
        {
            const auto& e = o.state()[k];
            const unsigned char* p = e.data.get();
            out.insert(out.end(), p, p + e.bytes);
        }
        return out;
    }

    // A small model: a float matrix, a double bias.
    struct model
    {
        std::vector<float> w = std::vector<float>(6);
        std::vector<double> b = std::vector<double>(3);

        model()
        {
            for (std::size_t i = 0; i < w.size(); ++i)
            {
                w[i] = float(std::sin(double(i) + 1));
            }
            for (std::size_t i = 0; i < b.size(); ++i)
            {
                b[i] = std::cos(double(i));
            }
        }

        auto params()
        {
            return std::make_tuple(xoptim::named("w", wv), xoptim::named("b", b));
        }

        // Gradients of call t, with a NaN where `nan` says.
        void grads(int t, std::vector<float>& gw, std::vector<double>& gb, bool nan = false) const
        {
            gw.resize(w.size());
            gb.resize(b.size());
            for (std::size_t i = 0; i < gw.size(); ++i)
            {
                gw[i] = float(std::sin(0.7 * double(t * 10 + int(i))));
            }
            for (std::size_t i = 0; i < gb.size(); ++i)
            {
                gb[i] = std::cos(1.3 * double(t * 10 + int(i)));
            }
            if (nan)
            {
                gb[1] = std::numeric_limits<double>::quiet_NaN();
            }
        }

        xoptim::tensor_view<float> wv = xoptim::view(w.data(), {2, 3});
    };

    xoptim::stepper<xoptim::adamw> make_stepper()
    {
        xoptim::adamw opt;
        opt.schedule("lr", xoptim::warmup_cosine(0.05, 8, 2, 0.1));
        xoptim::stepper_options o;
        o.accumulate = 2;
        o.clip_global_norm = 0.8;
        return xoptim::stepper<xoptim::adamw>(std::move(opt), o);
    }

    // Calls [from, to) of a run whose call 5 has a NaN gradient (skipped).
    template <class Stepper>
    void run(model& m, Stepper& s, int from, int to)
    {
        std::vector<float> gw;
        std::vector<double> gb;
        for (int t = from; t < to; ++t)
        {
            m.grads(t, gw, gb, t == 5);
            s(m.params(), std::tie(gw, gb));
        }
    }

    class checkpoint : public xoptim_test::temp_dir_test
    {
    protected:
        std::string file(const char* name = "c.safetensors") const
        {
            return (dir_ / name).string();
        }

        // One AdamW step of m (the gradients of call 0), saved to file().
        void step_and_save(model& m, xoptim::adamw& opt) const
        {
            std::vector<float> gw;
            std::vector<double> gb;
            m.grads(0, gw, gb);
            opt.step(m.params(), std::tie(gw, gb));
            xoptim::save_checkpoint(file(), m.params(), opt);
        }

        // The error a load gives, checking that it changed nothing it was given.
        template <class Trainer>
        std::string load_error(const std::string& path, model& m, Trainer& t)
        {
            const auto w = m.w;
            const auto b = m.b;
            std::string error;
            try
            {
                xoptim::load_checkpoint(path, m.params(), t);
            }
            catch (const std::runtime_error& e)
            {
                error = e.what();
            }
            EXPECT_EQ(m.w, w);
            EXPECT_EQ(m.b, b);
            return error;
        }
    };

    TEST(xxh64, matches_python_xxhash)
    {
        // Reference values: python3-xxhash 3.2, xxhash.xxh64(data).intdigest().
        std::string long_input;
        for (int r = 0; r < 3; ++r)
        {
            for (int i = 0; i < 256; ++i)
            {
                long_input.push_back(char(i));
            }
        }
        long_input += "xyz";
        EXPECT_EQ(xoptim::io::xxh64("", 0), 0xef46db3751d8e999ULL);
        EXPECT_EQ(xoptim::io::xxh64("a", 1), 0xd24ec4f1a98c6e5bULL);
        EXPECT_EQ(xoptim::io::xxh64("abc", 3), 0x44bc2cf5ad770999ULL);
        EXPECT_EQ(xoptim::io::xxh64(long_input.data(), long_input.size()), 0xe921a1b45bd779f8ULL);
    }

    TEST_F(checkpoint, resuming_continues_bit_for_bit)
    {
        // Uninterrupted: 11 calls (5 steps, one skipped for a NaN, one micro-batch pending).
        model a;
        auto sa = make_stepper();
        run(a, sa, 0, 11);

        // Interrupted after call 7 (a micro-batch pending, one step skipped), resumed
        // into fresh objects.
        model b;
        auto sb = make_stepper();
        run(b, sb, 0, 7);
        ASSERT_EQ(sb.pending_micro_batches(), 1u);
        ASSERT_EQ(sb.skipped_steps(), 1u);
        xoptim::save_checkpoint(file(), b.params(), sb);

        model c;
        auto sc = make_stepper();
        xoptim::load_checkpoint(file(), c.params(), sc);
        EXPECT_EQ(c.w, b.w);
        EXPECT_EQ(c.b, b.b);
        EXPECT_EQ(state_bytes(sc.optimizer()), state_bytes(sb.optimizer()));
        EXPECT_EQ(sc.optimizer().step_count(), sb.optimizer().step_count());
        EXPECT_EQ(sc.pending_micro_batches(), 1u);
        EXPECT_EQ(sc.skipped_steps(), 1u);
        run(c, sc, 7, 11);

        EXPECT_EQ(c.w, a.w);
        EXPECT_EQ(c.b, a.b);
        EXPECT_EQ(state_bytes(sc.optimizer()), state_bytes(sa.optimizer()));
        EXPECT_EQ(sc.optimizer().step_count(), sa.optimizer().step_count());
        EXPECT_EQ(sc.optimizer().options().lr, sa.optimizer().options().lr);  // the schedule's position
        EXPECT_EQ(sc.skipped_steps(), sa.skipped_steps());
    }

    TEST_F(checkpoint, a_router_resumes_bit_for_bit)
    {
        std::vector<float> e(10 * 4), h(6 * 4), ge(e.size()), gh(h.size());
        const auto fill = [](std::vector<float>& v, double f) {
            for (std::size_t i = 0; i < v.size(); ++i)
            {
                v[i] = float(std::sin(f * double(i + 1)));
            }
        };
        const auto shapes = [](std::vector<float>& x, std::vector<float>& y) {
            return std::make_pair(xoptim::view(x.data(), {10, 4}), xoptim::view(y.data(), {6, 4}));
        };
        auto run_hybrid = [&](std::vector<float>& x, std::vector<float>& y, xoptim::hybrid& opt, int from, int to) {
            auto [vx, vy] = shapes(x, y);
            for (int t = from; t < to; ++t)
            {
                fill(ge, 0.1 * t + 0.3);
                fill(gh, 0.2 * t + 0.1);
                opt.step(std::make_tuple(xoptim::named("embed.weight", vx), xoptim::named("hidden", vy)),
                         std::tie(ge, gh));
            }
        };
        fill(e, 1.0);
        fill(h, 2.0);
        auto e2 = e, h2 = h;
        auto whole = xoptim::make_hybrid();
        run_hybrid(e, h, whole, 0, 6);

        auto first = xoptim::make_hybrid();
        run_hybrid(e2, h2, first, 0, 3);
        auto [ve, vh] = shapes(e2, h2);
        xoptim::save_checkpoint(file(), std::make_tuple(xoptim::named("embed.weight", ve), xoptim::named("hidden", vh)),
                                first);
        std::vector<float> e3(e.size()), h3(h.size());
        auto [ve3, vh3] = shapes(e3, h3);
        auto resumed = xoptim::make_hybrid();
        xoptim::load_checkpoint(file(), std::make_tuple(xoptim::named("embed.weight", ve3), xoptim::named("hidden", vh3)),
                                resumed);
        EXPECT_EQ(resumed.routing_table(), first.routing_table());
        run_hybrid(e3, h3, resumed, 3, 6);
        EXPECT_EQ(e3, e);
        EXPECT_EQ(h3, h);
    }

    TEST_F(checkpoint, parameter_groups_round_trip)
    {
        const auto make = [] {
            xoptim::param_groups<xoptim::adamw> g;
            g.add("bias", xoptim::name_matches({"b"}), xoptim::adamw({1e-3, {0.9, 0.999}, 1e-8, 0}));
            g.fallback("rest", xoptim::adamw());
            return g;
        };
        model m;
        auto groups = make();
        std::vector<float> gw;
        std::vector<double> gb;
        for (int t = 0; t < 2; ++t)
        {
            m.grads(t, gw, gb);
            groups.step(m.params(), std::tie(gw, gb));
        }
        xoptim::save_checkpoint(file(), m.params(), groups);
        model fresh;
        auto loaded = make();
        xoptim::load_checkpoint(file(), fresh.params(), loaded);
        EXPECT_EQ(fresh.w, m.w);
        EXPECT_EQ(fresh.b, m.b);
        EXPECT_EQ(loaded.routing_table(), groups.routing_table());
        for (std::size_t k = 0; k < 2; ++k)
        {
            EXPECT_EQ(state_bytes(loaded.group(k)), state_bytes(groups.group(k)));
            EXPECT_EQ(loaded.group(k).step_count(), 2u);
        }
        const auto f = xoptim::io::safetensors_file::read(file());
        EXPECT_NE(f.find("state/optimizer.0/b/exp_avg"), nullptr);
        EXPECT_NE(f.find("state/optimizer.1/w/exp_avg"), nullptr);
    }

    TEST_F(checkpoint, a_stepper_resumes_with_float_and_double_parameters_interleaved)
    {
        // The stepper hands the optimizer float parameters first, then double: a resumed
        // state must be made in that order too.
        struct mixed
        {
            std::vector<float> m1 = std::vector<float>(16, 0.5f), m2 = std::vector<float>(16, -0.5f);
            std::vector<double> b = std::vector<double>(4, 0.25);
            auto params()
            {
                return std::make_tuple(xoptim::named("m1", m1), xoptim::named("b", b), xoptim::named("m2", m2));
            }
        };
        std::vector<float> g1(16, 0.1f), g2(16, -0.2f);
        std::vector<double> gb(4, 0.3);
        mixed a, b;
        xoptim::stepper whole(xoptim::adamw(), xoptim::stepper_options{});
        xoptim::stepper first(xoptim::adamw(), xoptim::stepper_options{});
        for (int t = 0; t < 4; ++t)
        {
            whole(a.params(), std::tie(g1, gb, g2));
        }
        for (int t = 0; t < 2; ++t)
        {
            first(b.params(), std::tie(g1, gb, g2));
        }
        xoptim::save_checkpoint(file(), b.params(), first);
        mixed c;
        xoptim::stepper resumed(xoptim::adamw(), xoptim::stepper_options{});
        xoptim::load_checkpoint(file(), c.params(), resumed);
        for (int t = 0; t < 2; ++t)
        {
            resumed(c.params(), std::tie(g1, gb, g2));
        }
        EXPECT_EQ(c.m1, a.m1);
        EXPECT_EQ(c.m2, a.m2);
        EXPECT_EQ(c.b, a.b);
    }

    // A class of the user's derived from an optimizer (here to count its steps): a
    // checkpoint keeps its optimizer, which loads into the optimizer or the derived class,
    // alone or inside a stepper.
    struct counting_adamw : xoptim::adamw
    {
        using xoptim::adamw::adamw;
        int calls = 0;
    };

    TEST_F(checkpoint, a_class_derived_from_an_optimizer_saves_and_loads_its_optimizer)
    {
        model a, b;
        xoptim::adamw plain;
        counting_adamw derived;
        step_and_save(a, plain);
        const std::string of_plain = file("plain.safetensors");
        std::rename(file().c_str(), of_plain.c_str());
        step_and_save(b, derived);
        EXPECT_EQ(read_file(file()), read_file(of_plain));  // the same file, byte for byte

        model c, d;
        xoptim::adamw plain_back;
        counting_adamw derived_back;
        xoptim::load_checkpoint(file(), c.params(), plain_back);
        xoptim::load_checkpoint(of_plain, d.params(), derived_back);
        EXPECT_EQ(state_bytes(plain_back), state_bytes(plain));
        EXPECT_EQ(state_bytes(derived_back), state_bytes(plain));
        EXPECT_EQ(derived_back.step_count(), 1u);
        EXPECT_EQ(d.w, a.w);

        // Inside a stepper, through its optimizer.
        model e, f;
        xoptim::stepper<counting_adamw> se(counting_adamw{}, xoptim::stepper_options{});
        run(e, se, 0, 3);
        xoptim::save_checkpoint(file("stepper.safetensors"), e.params(), se);
        xoptim::stepper<counting_adamw> sf(counting_adamw{}, xoptim::stepper_options{});
        xoptim::load_checkpoint(file("stepper.safetensors"), f.params(), sf);
        EXPECT_EQ(f.w, e.w);
        EXPECT_EQ(state_bytes(sf.optimizer()), state_bytes(se.optimizer()));
        EXPECT_EQ(sf.optimizer().step_count(), se.optimizer().step_count());
    }

    // With caller_accumulates the pending micro-batches' sums are in the caller's buffers,
    // which no file holds: a save mid-cycle is refused (no load could resume it), the
    // previous file is kept, and a save after the cycle's step loads.
    TEST_F(checkpoint, a_cycle_summed_in_the_callers_buffers_is_not_saved_half_way)
    {
        xoptim::stepper_options o;
        o.accumulate = 2;
        o.caller_accumulates = true;
        xoptim::stepper s(xoptim::adamw(), o);
        std::vector<float> w(5, 0.5f), sum(5, 0.25f);
        xoptim::save_checkpoint(file(), w, s);
        const bytes before = read_file(file());
        ASSERT_FALSE(s(w, sum));
        const std::string message = xoptim_test::message_of<std::runtime_error>(
            [&] { xoptim::save_checkpoint(file(), w, s); });
        EXPECT_NE(message.find("1 micro-batches are pending, summed in the caller's gradient buffers"),
                  std::string::npos)
            << message;
        EXPECT_EQ(read_file(file()), before);
        ASSERT_TRUE(s(w, sum));
        xoptim::save_checkpoint(file(), w, s);
        std::vector<float> v(5);
        xoptim::stepper resumed(xoptim::adamw(), o);
        xoptim::load_checkpoint(file(), v, resumed);
        EXPECT_EQ(v, w);
        EXPECT_EQ(resumed.optimizer().step_count(), 1u);
    }

    // A load that creates the state does so at the step the run resumes: the schedules'
    // values are those of that step (here lr is -1, refused, before step 3), and options()
    // shows them.
    TEST_F(checkpoint, a_load_makes_the_state_with_the_schedules_at_the_resumed_step)
    {
        model a;
        xoptim::adamw opt;
        std::vector<float> gw;
        std::vector<double> gb;
        for (int t = 0; t < 5; ++t)
        {
            a.grads(t, gw, gb);
            opt.step(a.params(), std::tie(gw, gb));
        }
        xoptim::save_checkpoint(file(), a.params(), opt);
        model b;
        xoptim::adamw resumed;
        resumed.schedule("lr", xoptim::join({xoptim::constant(-1), xoptim::constant(1e-3)}, {3}));
        xoptim::load_checkpoint(file(), b.params(), resumed);
        EXPECT_EQ(resumed.step_count(), 5u);
        EXPECT_EQ(resumed.options().lr, 1e-3);
        EXPECT_EQ(b.w, a.w);
    }

    TEST_F(checkpoint, one_saved_before_the_first_step_loads)
    {
        model m;
        xoptim::adamw opt;
        xoptim::save_checkpoint(file(), m.params(), opt);  // no state yet
        model fresh;
        fresh.w.assign(fresh.w.size(), 0.0f);
        xoptim::adamw loaded;
        xoptim::load_checkpoint(file(), fresh.params(), loaded);
        EXPECT_EQ(fresh.w, m.w);
        EXPECT_EQ(loaded.step_count(), 0u);
        EXPECT_EQ(loaded.state().size(), 2u);  // zeros, as the first step would make them
    }

    // Into a trainer that stepped, a checkpoint saved before the first step loads the
    // state a fresh one starts from: for 8-bit signed states the map's zero code (127),
    // not byte 0 (-0.99, which decoded to -0 beside a zero scale and changed the next
    // step's signs of zero).
    TEST_F(checkpoint, one_saved_before_the_first_step_loads_8bit_states_as_fresh)
    {
        xoptim::storage_options s;
        s.states = xoptim::state_storage::blockwise_8bit;
        s.min_8bit_size = 1;
        std::vector<float> w0(256, -0.0f), g(256, -0.0f);
        for (std::size_t i = 0; i < w0.size(); i += 2)
        {
            w0[i] = 0.5f;
            g[i] = 0.25f;
        }
        xoptim::adamw saved;
        saved.set_storage(s);
        xoptim::save_checkpoint(file(), w0, saved);
        std::vector<float> wb = w0, wc = w0;
        xoptim::adamw stepped, fresh;
        stepped.set_storage(s);
        fresh.set_storage(s);
        stepped.step(wb, g);
        stepped.step(wb, g);
        wb = w0;
        xoptim::load_checkpoint(file(), wb, stepped);
        fresh.init(wc);
        EXPECT_EQ(state_bytes(stepped), state_bytes(fresh));
        stepped.step(wb, g);
        fresh.step(wc, g);
        EXPECT_EQ(std::memcmp(wb.data(), wc.data(), wb.size() * sizeof(float)), 0);
    }

    TEST_F(checkpoint, python_reads_it_with_numpy_and_json)
    {
#ifndef XOPTIM_NUMPY_PYTHON
        GTEST_SKIP() << "no Python with numpy at configure time";
#else
        model m;
        xoptim::adamw opt;
        step_and_save(m, opt);
        const std::string command = std::string("'" XOPTIM_NUMPY_PYTHON "' '" XOPTIM_READ_SAFETENSORS_PY "' '")
                                    + file() + "'";
        std::FILE* pipe = popen(command.c_str(), "r");
        ASSERT_NE(pipe, nullptr);
        std::string out;
        char buffer[4096];
        while (std::fgets(buffer, sizeof buffer, pipe) != nullptr)
        {
            out += buffer;
        }
        ASSERT_EQ(pclose(pipe), 0) << out;
        // Python's repr of each value read by numpy, against ours.
        const auto repr = [](double x) {
            char b[32];
            std::snprintf(b, sizeof b, "%.17g", x);
            return std::stod(b);
        };
        std::string w_line = "param/w F32 [2, 3] [";
        ASSERT_NE(out.find(w_line), std::string::npos) << out;
        std::istringstream values(out.substr(out.find(w_line) + w_line.size()));
        for (float x : m.w)
        {
            double got = 0;
            values >> got;
            EXPECT_EQ(got, repr(x));
        }
        EXPECT_NE(out.find("param/b F64 [3] ["), std::string::npos) << out;
        EXPECT_NE(out.find("state/optimizer/w/exp_avg F32 [2, 3] ["), std::string::npos) << out;
        EXPECT_NE(out.find("state/optimizer/b/exp_avg_sq F64 [3] ["), std::string::npos) << out;
        EXPECT_NE(out.find("\"format\": \"xoptim.checkpoint\""), std::string::npos) << out;
        EXPECT_NE(out.find("\"optimizer.optimizer\": \"adamw\""), std::string::npos) << out;
        EXPECT_NE(out.find("\"optimizer.step\": \"1\""), std::string::npos) << out;
#endif
    }

    // A checkpoint of one AdamW step on `model`, and a trained optimizer to load into.
    class damaged : public checkpoint
    {
    protected:
        void SetUp() override
        {
            checkpoint::SetUp();
            std::vector<float> gw;
            std::vector<double> gb;
            m.grads(0, gw, gb);
            trained.step(m.params(), std::tie(gw, gb));
            xoptim::save_checkpoint(file(), m.params(), trained);
            saved = state_bytes(trained);
            saved_w = m.w;
            good = read_file(file());
            m.grads(1, gw, gb);
            trained.step(m.params(), std::tie(gw, gb));  // now differs from the file
            before = state_bytes(trained);
        }

        // Loads `b` into the trained optimizer and into a fresh one: both refuse with
        // the same message and keep what they had.
        std::string refused(const bytes& b)
        {
            write_file(file("bad.safetensors"), b);
            const std::string error = load_error(file("bad.safetensors"), m, trained);
            EXPECT_EQ(state_bytes(trained), before);
            EXPECT_EQ(trained.step_count(), 2u);
            xoptim::adamw fresh;
            EXPECT_EQ(load_error(file("bad.safetensors"), m, fresh), error);
            EXPECT_TRUE(fresh.state().empty());
            EXPECT_EQ(fresh.step_count(), 0u);
            EXPECT_EQ(error.rfind(file("bad.safetensors") + ": ", 0), 0u) << error;
            return error;
        }

        // The file rewritten with `edit` applied to its metadata.
        bytes with_metadata(const std::function<void(xoptim_test::metadata&)>& edit)
        {
            const std::string s = xoptim_test::rewritten(good, edit);
            return bytes(s.begin(), s.end());
        }

        model m;
        xoptim::adamw trained;
        bytes good;
        bytes saved;
        std::vector<float> saved_w;
        bytes before;
    };

    TEST_F(damaged, a_good_file_loads)
    {
        xoptim::load_checkpoint(file(), m.params(), trained);
        EXPECT_EQ(trained.step_count(), 1u);
        EXPECT_EQ(state_bytes(trained), saved);
        EXPECT_EQ(m.w, saved_w);
    }

    TEST_F(damaged, truncated)
    {
        bytes b = good;
        b.resize(b.size() - 5);
        EXPECT_NE(refused(b).find("data section"), std::string::npos);
        b.resize(6);
        EXPECT_NE(refused(b).find("file too short"), std::string::npos);
    }

    TEST_F(damaged, a_flipped_bit_in_the_data)
    {
        bytes b = good;
        b[b.size() - 3] ^= 0x10;  // inside the last tensor
        const std::string error = refused(b);
        EXPECT_NE(error.find("is damaged (its checksum does not match)"), std::string::npos) << error;
    }

    TEST_F(damaged, a_flipped_bit_in_the_header)
    {
        bytes b = good;
        const std::size_t brace = std::find(b.begin() + 8, b.end(), '{') - b.begin();
        b[brace] ^= 0x01;  // '{' becomes 'z'
        EXPECT_NE(refused(b), "");
    }

    TEST_F(damaged, a_parameter_of_another_shape)
    {
        m.wv = xoptim::view(m.w.data(), {3, 2});
        EXPECT_EQ(load_error(file(), m, trained),
                  file() + ": the trainer's state of parameter 'w' is for shape (2, 3), the parameter is (3, 2)");
        EXPECT_EQ(state_bytes(trained), before);
        xoptim::adamw fresh;
        EXPECT_EQ(load_error(file(), m, fresh),
                  file() + ": tensor 'param/w' is F32 (2, 3), the parameter 'w' is F32 (3, 2)");
    }

    TEST_F(damaged, a_missing_tensor)
    {
        const bytes b = with_metadata([](auto&) {});
        const auto f = xoptim::io::safetensors_file::parse(b, "x");
        // Drop the bias's second moment.
        xoptim::io::safetensors_writer w;
        for (const auto& [k, v] : f.metadata())
        {
            w.metadata(k, v);
        }
        for (const auto& t : f.tensors())
        {
            if (t.name != "state/optimizer/b/exp_avg_sq")
            {
                w.add(t.name, t.dtype, t.shape, f.data(t), t.bytes());
            }
        }
        const std::string s = w.serialize();
        EXPECT_EQ(refused(bytes(s.begin(), s.end())),
                  file("bad.safetensors") + ": no tensor 'state/optimizer/b/exp_avg_sq' for the optimizer state of "
                                            "parameter 'b'");
    }

    TEST_F(damaged, a_parameter_the_file_does_not_have)
    {
        std::vector<float> extra(4, 1.0f);
        xoptim::adamw fresh;
        std::string error;
        try
        {
            xoptim::load_checkpoint(file(), std::make_tuple(xoptim::named("w", m.wv), xoptim::named("b", m.b),
                                                            xoptim::named("c", extra)),
                                    fresh);
        }
        catch (const std::runtime_error& e)
        {
            error = e.what();
        }
        EXPECT_EQ(error, file() + ": no tensor 'param/c' for the parameter 'c'");
        EXPECT_TRUE(fresh.state().empty());
    }

    TEST_F(damaged, a_tensor_with_no_parameter)
    {
        xoptim::adamw fresh;
        std::string error;
        try
        {
            xoptim::load_checkpoint(file(), std::make_tuple(xoptim::named("w", m.wv)), fresh);
        }
        catch (const std::runtime_error& e)
        {
            error = e.what();
        }
        EXPECT_EQ(error, file() + ": unexpected tensor 'param/b' (no such parameter or optimizer state here)");
        EXPECT_TRUE(fresh.state().empty());
    }

    TEST_F(damaged, a_shape_of_a_hundred_thousand_dimensions_is_named_briefly)
    {
        const auto f = xoptim::io::safetensors_file::parse(good, "x");
        xoptim::io::safetensors_writer w;
        for (const auto& [k, v] : f.metadata())
        {
            w.metadata(k, v);
        }
        for (const auto& t : f.tensors())
        {
            std::vector<std::size_t> shape = t.shape;
            if (t.name == "param/w")
            {
                shape.assign(100000, 1);  // the same 6 values
                shape.push_back(6);
            }
            w.add(t.name, t.dtype, shape, f.data(t), t.bytes());
        }
        const std::string s = w.serialize();
        EXPECT_EQ(refused(bytes(s.begin(), s.end())),
                  file("bad.safetensors") + ": tensor 'param/w' is F32 (1, 1, 1, 1, 1, 1, 1, 1, ...), the parameter 'w' "
                                            "is F32 (2, 3)");
    }

    TEST_F(damaged, a_future_version)
    {
        EXPECT_EQ(refused(with_metadata([](auto& meta) { meta["format_version"] = "3"; })),
                  file("bad.safetensors") + ": format version 3 is newer than this xoptim reads (2)");
    }

    TEST_F(damaged, not_a_checkpoint_or_another_optimizer)
    {
        EXPECT_EQ(refused(with_metadata([](auto& meta) { meta.erase("format"); })),
                  file("bad.safetensors") + ": metadata has no \"format\"");
        EXPECT_EQ(refused(with_metadata([](auto& meta) { meta["optimizer.optimizer"] = "lion"; })),
                  file("bad.safetensors") + ": 'optimizer' was 'lion' in the checkpoint, it is adamw here");
        EXPECT_EQ(refused(with_metadata([](auto& meta) { meta.erase("xxh64/param/w"); })),
                  file("bad.safetensors") + ": no checksum for tensor 'param/w'");
        EXPECT_EQ(refused(with_metadata([](auto& meta) { meta["optimizer.step"] = "-1"; })),
                  file("bad.safetensors") + ": metadata \"optimizer.step\" is not a count: '-1'");
    }

    // The error of save_checkpoint(file, params, trainer), checking that the file is as it was.
    template <class P, class Trainer>
    std::string save_error(const std::string& path, P&& params, const Trainer& trainer)
    {
        const bytes before = read_file(path);
        std::string error;
        try
        {
            xoptim::save_checkpoint(path, std::forward<P>(params), trainer);
        }
        catch (const std::runtime_error& e)
        {
            error = e.what();
        }
        EXPECT_EQ(read_file(path), before);
        return error;
    }

    TEST_F(checkpoint, a_save_of_other_parameters_than_the_trained_ones_is_refused)
    {
        model m;
        xoptim::adamw opt;
        step_and_save(m, opt);
        std::vector<float> other(4, 2.0f);
        EXPECT_EQ(save_error(file(), std::make_tuple(xoptim::named("v", other), xoptim::named("b", m.b)), opt),
                  file() + ": the trainer keeps state for a parameter 'w', which is not among the parameters given");
        EXPECT_EQ(save_error(file(), std::tuple_cat(m.params(), std::make_tuple(xoptim::named("c", other))), opt),
                  file() + ": the trainer keeps no state for parameter 'c' (it was stepped with other parameters)");
        m.wv = xoptim::view(m.w.data(), {3, 2});
        EXPECT_EQ(save_error(file(), m.params(), opt),
                  file() + ": the trainer's state of parameter 'w' is for shape (2, 3), the parameter is (3, 2)");
        // The file still loads.
        m.wv = xoptim::view(m.w.data(), {2, 3});
        xoptim::adamw loaded;
        xoptim::load_checkpoint(file(), m.params(), loaded);
        EXPECT_EQ(state_bytes(loaded), state_bytes(opt));
    }

    // A load replaces the trainer's state: into a trainer that keeps state for other
    // parameters it is refused, before anything changes (it had zeroed that state and
    // left a trainer that could neither step nor save).
    TEST_F(checkpoint, a_load_into_a_trainer_of_other_parameters_is_refused)
    {
        model m;
        xoptim::adamw saved;
        step_and_save(m, saved);
        std::vector<float> v(4, 2.0f), gv(4, 0.5f);
        xoptim::adamw other;
        other.step(std::make_tuple(xoptim::named("v", v)), std::tie(gv));
        const auto state = state_bytes(other);
        EXPECT_EQ(load_error(file(), m, other),
                  file() + ": the trainer keeps state for a parameter 'v', which is not among the parameters given");
        EXPECT_EQ(state_bytes(other), state);
        EXPECT_EQ(other.step_count(), 1u);
        other.step(std::make_tuple(xoptim::named("v", v)), std::tie(gv));
        EXPECT_EQ(other.step_count(), 2u);
        // A trainer of these parameters loads (the state is the file's).
        xoptim::load_checkpoint(file(), m.params(), saved);
        EXPECT_EQ(saved.step_count(), 1u);
    }

    // A checkpoint keys its tensors by name: two parameters of one name are refused by
    // the walk of the set (as every walk that makes or follows state refuses them),
    // before anything is written or read.
    TEST_F(checkpoint, two_parameters_of_one_name_are_refused)
    {
        std::vector<float> a(3, 1.0f), x(3, 7.0f), y(3, 9.0f);
        xoptim::adamw one;
        xoptim::save_checkpoint(file(), std::make_tuple(xoptim::named("w", a)), one);
        const bytes saved = read_file(file());
        const std::string twice
            = ": parameter 'w': two parameters have this name (state follows names: give each its own)";
        EXPECT_EQ(xoptim_test::message_of([&] {
                      xoptim::save_checkpoint(file(), std::make_tuple(xoptim::named("w", x), xoptim::named("w", y)),
                                              one);
                  }),
                  "xoptim::save_checkpoint" + twice);
        EXPECT_EQ(read_file(file()), saved);
        xoptim::adamw two;
        EXPECT_EQ(xoptim_test::message_of([&] {
                      xoptim::load_checkpoint(file(), std::make_tuple(xoptim::named("w", x), xoptim::named("w", y)),
                                              two);
                  }),
                  "xoptim::load_checkpoint" + twice);
        EXPECT_EQ(x, std::vector<float>(3, 7.0f));
        EXPECT_EQ(y, std::vector<float>(3, 9.0f));
        EXPECT_TRUE(two.state().empty());
    }

    TEST_F(checkpoint, a_long_file_name_is_saved)
    {
        // 253 bytes: the temporary file beside it is named within a name's 255.
        const std::string name = std::string(250, 'c') + ".st";
        model m;
        xoptim::adamw opt;
        xoptim::save_checkpoint(file(name.c_str()), m.params(), opt);
        xoptim::save_checkpoint(file(name.c_str()), m.params(), opt);  // over the first
        xoptim::adamw loaded;
        xoptim::load_checkpoint(file(name.c_str()), m.params(), loaded);
        EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir_), std::filesystem::directory_iterator()), 1);
    }

    // The process's C locale set to `name` (made from Debian's locales package into
    // `dir` by localedef) while it lives, "C" again after.
    class c_locale
    {
    public:
        c_locale(const std::filesystem::path& dir, const char* name)
        {
            std::filesystem::create_directories(dir);
            const std::string make = std::string("localedef -i de_DE -f UTF-8 '") + (dir / name).string() + "' >/dev/null 2>&1";
            ok_ = std::system(make.c_str()) == 0 && setenv("LOCPATH", dir.c_str(), 1) == 0
                  && std::setlocale(LC_ALL, name) != nullptr;
        }

        c_locale(const c_locale&) = delete;
        c_locale& operator=(const c_locale&) = delete;

        ~c_locale()
        {
            std::setlocale(LC_ALL, "C");
            unsetenv("LOCPATH");
        }

        bool ok() const noexcept
        {
            return ok_;
        }

    private:
        bool ok_ = false;
    };

    TEST_F(checkpoint, numbers_are_written_and_read_the_same_in_any_locale)
    {
        std::vector<float> w(6, 0.5f), g(6, 0.25f);
        const auto params = [&] { return std::make_tuple(xoptim::named("w", w)); };
        xoptim::adamw_schedulefree trained;
        {
            const c_locale german(dir_ / "locale", "de_DE.UTF-8");
            ASSERT_TRUE(german.ok()) << "localedef could not make de_DE.UTF-8 (Debian's locales package)";
            char text[8];
            std::snprintf(text, sizeof text, "%.1f", 0.5);
            ASSERT_STREQ(text, "0,5");  // in force: printf writes a decimal comma
            trained.step(params(), std::tie(g));
            xoptim::save_checkpoint(file(), params(), trained);
            const auto meta = xoptim::io::safetensors_file::read(file()).metadata();
            EXPECT_EQ(meta.at("optimizer.host.lr_max"), "0.0025000000000000001");
            EXPECT_NE(meta.at("optimizer.hyperparameters").find("\"betas\": [0.90000000000000002, 0.999"), std::string::npos)
                << meta.at("optimizer.hyperparameters");
            EXPECT_EQ(xoptim::warmup_cosine(0.0025, 8, 2, 0.1).describe(),
                      "warmup_cosine(base=0.0025, warmup_steps=2, total_steps=8, min_ratio=0.1)");
            xoptim::adamw_schedulefree loaded;
            xoptim::load_checkpoint(file(), params(), loaded);
            EXPECT_EQ(state_bytes(loaded), state_bytes(trained));
        }
        xoptim::adamw_schedulefree loaded;  // in the "C" locale, the file of the German one
        xoptim::load_checkpoint(file(), params(), loaded);
        EXPECT_EQ(state_bytes(loaded), state_bytes(trained));
    }

    TEST_F(checkpoint, a_failed_save_leaves_the_previous_file)
    {
        model m;
        xoptim::adamw opt;
        xoptim::save_checkpoint(file(), m.params(), opt);
        const bytes before = read_file(file());
        std::vector<float> big(100000, 1.0f);
        rlimit old_limit{};
        ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
        rlimit small = old_limit;
        small.rlim_cur = 64 * 1024;
        const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);  // write() fails with EFBIG instead
        ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
        std::string error;
        try
        {
            xoptim::save_checkpoint(file(), big, xoptim::signsgd());
        }
        catch (const std::runtime_error& e)
        {
            error = e.what();
        }
        setrlimit(RLIMIT_FSIZE, &old_limit);
        std::signal(SIGXFSZ, old_handler);
        EXPECT_NE(error.find(file()), std::string::npos) << error;
        EXPECT_EQ(read_file(file()), before);
        EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir_), std::filesystem::directory_iterator()), 1);
    }
}
