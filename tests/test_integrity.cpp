// Checkpoints and files under attack: hostile text in a file stays out of messages.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <thread>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xoptim/io/checkpoint.hpp>
#include <xoptim/io/npy.hpp>
#include <xoptim/io/quote.hpp>

#include "support/files.hpp"
#include "support/fingerprint.hpp"
#include "support/message_of.hpp"
#include "support/rewrite.hpp"
#include "support/temp_dir.hpp"
#include "support/tiny_training.hpp"

namespace
{
    using xoptim_test::bytes;
    using xoptim_test::metadata;
    using xoptim_test::tiny_model;

    using xoptim_test::read_file;
    using xoptim_test::write_file;

    // The file with `edit` applied to its metadata.
    bytes edited(const bytes& good, const std::function<void(metadata&)>& edit)
    {
        const std::string s = xoptim_test::rewritten(good, edit);
        return bytes(s.begin(), s.end());
    }

    // A message fit for a log: one line, printable ASCII, short.
    void expect_tame(const std::string& message)
    {
        EXPECT_LT(message.size(), 400u) << message.substr(0, 400);
        EXPECT_TRUE(std::all_of(message.begin(), message.end(), [](char c) { return c >= 0x20 && c < 0x7f; }))
            << message.substr(0, 400);
    }

    // A sparse file of `size` bytes starting with `head`: no disk space, but a reader that
    // sizes a buffer by the file asks for all of it. False where the file system refuses.
    bool sparse_file(const std::string& path, std::uint64_t size, const std::string& head)
    {
        const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        const bool ok = fd >= 0 && ::write(fd, head.data(), head.size()) == ssize_t(head.size())
                        && ::ftruncate(fd, off_t(size)) == 0;
        if (fd >= 0)
        {
            ::close(fd);
        }
        return ok;
    }

    // A safetensors header of one U8 tensor filling a file of `file_size` bytes.
    std::string huge_tensor_header(std::uint64_t file_size)
    {
        std::string json;
        for (std::size_t length = 0; length != json.size() || json.empty();)
        {
            length = json.size();
            const std::string n = std::to_string(file_size - 8 - length);
            json = "{\"huge\":{\"dtype\":\"U8\",\"shape\":[" + n + "],\"data_offsets\":[0," + n + "]}}";
            json.append((8 - json.size() % 8) % 8, ' ');
        }
        std::string out(8, '\0');
        for (int i = 0; i < 8; ++i)
        {
            out[std::size_t(i)] = char((json.size() >> (8 * i)) & 0xff);
        }
        return out + json;
    }

    template <class T>
    T& unwrap(T& t)
    {
        return t;
    }

    template <class T>
    T& unwrap(std::reference_wrapper<T> t)
    {
        return t.get();
    }

    class integrity : public xoptim_test::temp_dir_test
    {
    protected:
        std::string file(const char* name = "c.safetensors") const
        {
            return (dir_ / name).string();
        }

        // The message of the std::runtime_error a load of `b` gives into a fresh trainer.
        // (By value: a fresh trainer; std::ref: that one.)
        template <class Trainer>
        std::string load_error(const bytes& b, Trainer trainer)
        {
            write_file(file("bad.safetensors"), b);
            tiny_model m;
            try
            {
                xoptim::load_checkpoint(file("bad.safetensors"), m.params(), unwrap(trainer));
            }
            catch (const std::runtime_error& e)
            {
                return e.what();
            }
            return "no std::runtime_error";
        }
    };

    TEST(quoted, escapes_and_truncates)
    {
        EXPECT_EQ(xoptim::io::quote("adamw"), "'adamw'");
        EXPECT_EQ(xoptim::io::quote(std::string("a\nb\r\t'\\\x01\x7f\xc3\xa9", 10)), "'a\\nb\\r\\t\\'\\\\\\x01\\x7f\\xc3'");
        EXPECT_EQ(xoptim::io::quote(std::string(100000, 'x')), "'" + std::string(100, 'x') + "'... (100000 bytes)");
        EXPECT_EQ(xoptim::io::quote(""), "''");
    }

    TEST_F(integrity, hostile_metadata_text_stays_out_of_messages)
    {
        tiny_model m;
        auto trainer = xoptim_test::make_stepper();
        xoptim_test::train(m, trainer, 3);
        xoptim::save_checkpoint(file(), m.params(), trainer);
        const bytes good = read_file(file());
        const std::string hostile = "\n\r" + std::string(100000, 'A') + "\nERROR forged log line\r\n";
        for (const char* key : {"format", "format_version", "optimizer.0.optimizer", "optimizer.0.storage",
                                "optimizer.1.step", "stepper.skipped_steps", "stepper.pending_micro_batches"})
        {
            SCOPED_TRACE(key);
            const std::string error =
                load_error(edited(good, [&](metadata& meta) { meta[key] = hostile; }), xoptim_test::make_stepper());
            EXPECT_EQ(error.rfind(file("bad.safetensors") + ": ", 0), 0u) << error.substr(0, 400);
            expect_tame(error);
        }
    }

    TEST_F(integrity, hostile_tensor_names_stay_out_of_messages)
    {
        tiny_model m;
        xoptim::adamw opt;
        xoptim::save_checkpoint(file(), m.params(), opt);
        const auto f = xoptim::io::safetensors_file::read(file());
        xoptim::io::safetensors_writer w;
        for (const auto& [k, v] : f.metadata())
        {
            w.metadata(k, v);
        }
        for (const auto& t : f.tensors())
        {
            w.add(t.name, t.dtype, t.shape, f.data(t), t.bytes());
        }
        const float x = 1;
        w.add("\n" + std::string(5000, 'B') + "\x1b[2J", xoptim::io::st_dtype::F32, {1}, &x, 4);
        const std::string s = w.serialize();
        const std::string error = load_error(bytes(s.begin(), s.end()), xoptim::adamw());
        EXPECT_NE(error.find("unexpected tensor '\\nBBB"), std::string::npos) << error.substr(0, 400);
        expect_tame(error);
    }

    TEST_F(integrity, hostile_npy_header_text_stays_out_of_messages)
    {
        const std::string key = "'\x1b[2J" + std::string(3000, 'k') + "'";
        const std::string dict = "{'descr': '<f8', " + key + ": 1, " + key + ": 2}";
        std::string raw = std::string("\x93NUMPY\x01\x00", 8);
        raw += char(dict.size() & 0xff);
        raw += char(dict.size() >> 8);
        raw += dict;
        write_file(dir_ / "h.npy", bytes(raw.begin(), raw.end()));
        std::string error;
        try
        {
            xoptim::io::read_npy((dir_ / "h.npy").string());
        }
        catch (const std::runtime_error& e)
        {
            error = e.what();
        }
        EXPECT_NE(error, "");
        expect_tame(error);
    }

    TEST_F(integrity, a_terabyte_file_is_refused_by_name_before_any_allocation)
    {
        constexpr std::uint64_t tib = std::uint64_t(1) << 40;
        const std::string zeros = file("zeros.safetensors");
        if (!sparse_file(zeros, tib, ""))
        {
            GTEST_SKIP() << "the file system refuses a sparse file of 1 TiB";
        }
        std::string error = xoptim_test::message_of<std::runtime_error>([&] { xoptim::io::safetensors_file::read(zeros); });
        EXPECT_EQ(error, zeros + ": invalid JSON header: the header is empty (at byte 0 of the header)");

        // A header that describes the whole terabyte: read as safetensors, then as a checkpoint.
        const std::string huge = file("huge.safetensors");
        ASSERT_TRUE(sparse_file(huge, tib, huge_tensor_header(tib)));
        ASSERT_NO_THROW(xoptim::io::safetensors_file::read_header(huge));
        error = xoptim_test::message_of<std::runtime_error>([&] { xoptim::io::safetensors_file::read(huge); });
        EXPECT_EQ(error.rfind(huge + ": the data section of ", 0), 0u) << error;
        tiny_model m;
        xoptim::adamw opt;
        error = xoptim_test::message_of<std::runtime_error>([&] { xoptim::load_checkpoint(huge, m.params(), opt); });
        EXPECT_EQ(error, huge + ": metadata has no \"format\"");
        EXPECT_TRUE(opt.state().empty());

        // An npy header of a terabyte array.
        const std::string dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (137438953000,), }";
        std::string head = std::string("\x93NUMPY\x01\x00", 8) + char(dict.size() + 1) + '\0' + dict + "\n";
        const std::string npy = file("huge.npy");
        ASSERT_TRUE(sparse_file(npy, head.size() + 137438953000ull * 8, head));
        error = xoptim_test::message_of<std::runtime_error>([&] { xoptim::io::read_npy(npy); });
        EXPECT_EQ(error.rfind(npy + ": the data of ", 0), 0u) << error;
    }

    TEST_F(integrity, a_file_read_in_two_steps_must_not_change_between_them)
    {
        tiny_model m;
        xoptim::adamw opt;
        xoptim::save_checkpoint(file(), m.params(), opt);
        const bytes good = read_file(file());
        auto header = xoptim::io::safetensors_file::read_header(file());
        const auto copy = header;  // a copy shares the open file
        EXPECT_THROW(header.data(header.tensors()[0]), std::logic_error);
        write_file(file(), bytes(good.begin(), good.end() - 4));  // truncated in between
        EXPECT_EQ(xoptim_test::message_of<std::runtime_error>([&] { header.read_data(); }),
                  file() + ": the file changed while it was read (its size is not the one its header was read with)");
        write_file(file(), good);
        auto again = copy;
        again.read_data();
        EXPECT_EQ(again.tensors().size(), xoptim::io::safetensors_file::parse(good, "good").tensors().size());
    }

    TEST_F(integrity, a_checkpoint_read_from_a_pipe)
    {
        tiny_model m;
        xoptim::adamw opt;
        xoptim::save_checkpoint(file(), m.params(), opt);
        const bytes good = read_file(file());
        const std::string fifo = file("fifo");
        ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
        std::thread writer([&] { write_file(fifo, good); });
        xoptim::adamw loaded;
        EXPECT_NO_THROW(xoptim::load_checkpoint(fifo, m.params(), loaded));
        writer.join();
        EXPECT_EQ(loaded.state().size(), 3u);
    }

    // A file `seconds_ago` old (its modification time).
    void make_file(const std::filesystem::path& p, int seconds_ago)
    {
        write_file(p, bytes(100, 'x'));
        const timespec when[2] = {{::time(nullptr) - seconds_ago, 0}, {::time(nullptr) - seconds_ago, 0}};
        ::utimensat(AT_FDCWD, p.c_str(), when, 0);
    }

    // Temporary files a crashed save left beside its target go with the next save to that
    // target; those of live writers (locked, or younger than ten minutes), of other
    // targets, and anything not named as a temporary file stay.
    TEST_F(integrity, a_save_removes_what_crashed_saves_to_its_path_left)
    {
        const std::filesystem::path target = dir_ / "c.safetensors";
        const int hour = 3600;
        make_file(dir_ / "c.safetensors.tmp123", hour);         // crashed: goes
        make_file(dir_ / "c.safetensors.tmp4294967295", hour);  // crashed: goes
        make_file(dir_ / "c.safetensors.tmp456", hour);         // a live writer's (locked below)
        make_file(dir_ / "c.safetensors.tmp789", 10);           // just written: may be a live writer's
        make_file(dir_ / "c.safetensors.tmp12x", hour);         // not a temporary file's name
        make_file(dir_ / "c.safetensors.tmp", hour);
        make_file(dir_ / "d.safetensors.tmp111", hour);         // another target's
        std::filesystem::create_directory(dir_ / "c.safetensors.tmp222");
        std::filesystem::create_symlink(dir_ / "d.safetensors.tmp111", dir_ / "c.safetensors.tmp333");
        const int live = ::open((dir_ / "c.safetensors.tmp456").c_str(), O_RDONLY);
        ASSERT_GE(live, 0);
        ASSERT_EQ(::flock(live, LOCK_EX | LOCK_NB), 0);

        tiny_model m;
        xoptim::adamw opt;
        xoptim::save_checkpoint(target.string(), m.params(), opt);
        ::close(live);

        std::set<std::string> left;
        for (const auto& e : std::filesystem::directory_iterator(dir_))
        {
            left.insert(e.path().filename().string());
        }
        EXPECT_EQ(left, (std::set<std::string>{"c.safetensors", "c.safetensors.tmp456", "c.safetensors.tmp789",
                                               "c.safetensors.tmp12x", "c.safetensors.tmp", "d.safetensors.tmp111",
                                               "c.safetensors.tmp222", "c.safetensors.tmp333"}));
        xoptim::adamw loaded;
        EXPECT_NO_THROW(xoptim::load_checkpoint(target.string(), m.params(), loaded));

        // The npy writer (tools, tests) and the token cache write through the same file.
        make_file(dir_ / "a.npy.tmp5", hour);
        const double x = 1;
        xoptim::io::write_npy((dir_ / "a.npy").string(), &x, {1});
        EXPECT_FALSE(std::filesystem::exists(dir_ / "a.npy.tmp5"));
    }

    // The stepped hybrid's checkpoint and what loading it into a fresh one gives.
    class counters : public integrity
    {
    protected:
        void SetUp() override
        {
            integrity::SetUp();
            tiny_model m;
            auto trainer = xoptim_test::make_stepper();
            xoptim_test::train(m, trainer, 7);
            xoptim::save_checkpoint(file(), m.params(), trainer);
            good = read_file(file());
            loaded = loaded_from(file());
        }

        std::string loaded_from(const std::string& path)
        {
            tiny_model m;
            auto trainer = xoptim_test::make_stepper();
            xoptim::load_checkpoint(path, m.params(), trainer);
            return m.bytes() + xoptim_test::fingerprint_of(trainer);
        }

        bytes good;
        std::string loaded;
    };

    TEST_F(counters, a_flipped_bit_in_a_step_count_or_counter_is_refused)
    {
        for (const std::string key : {"optimizer.0.step", "optimizer.1.step", "stepper.skipped_steps",
                                      "stepper.pending_micro_batches", "optimizer.1.hyperparameters"})
        {
            SCOPED_TRACE(key);
            const std::string pattern = "\"" + key + "\":\"";
            const auto at = std::search(good.begin(), good.end(), pattern.begin(), pattern.end());
            ASSERT_NE(at, good.end());
            bytes b = good;
            b[std::size_t(at - good.begin()) + pattern.size()] ^= 1;  // '2' -> '3', '1' -> '0', '{' -> 'z'
            EXPECT_EQ(load_error(b, xoptim_test::make_stepper()),
                      file("bad.safetensors") + ": the metadata is damaged (its checksum does not match)");
        }
    }

    TEST_F(counters, a_file_of_format_version_1_is_refused_and_upgraded)
    {
        // The file as format version `version` wrote it, without a metadata checksum.
        const auto unsigned_file = [&](const char* version) {
            return xoptim_test::rewritten(
                good,
                [&](metadata& meta) {
                    meta.erase("xxh64/__metadata__");
                    meta["format_version"] = version;
                },
                {false, false});
        };
        const std::string v1 = unsigned_file("1");
        EXPECT_EQ(load_error(bytes(v1.begin(), v1.end()), xoptim_test::make_stepper()),
                  file("bad.safetensors") + ": format version 1 has no checksum of its metadata (step counts, "
                                            "counters); rewrite it once with xoptim::upgrade_checkpoint "
                                            "(docs/checkpoints.md)");
        xoptim::upgrade_checkpoint(file("bad.safetensors"), file("upgraded.safetensors"));
        EXPECT_EQ(read_file(file("upgraded.safetensors")), good);
        xoptim::upgrade_checkpoint(file("bad.safetensors"), file("bad.safetensors"));  // in place
        EXPECT_EQ(loaded_from(file("bad.safetensors")), loaded);
        xoptim::upgrade_checkpoint(file(), file("again.safetensors"));  // a current file: as it is
        EXPECT_EQ(read_file(file("again.safetensors")), good);

        // Damaged tensors are not upgraded; nor is a version-2 file without its checksum.
        bytes damaged(v1.begin(), v1.end());
        damaged.back() ^= 1;
        write_file(dir_ / "damaged.safetensors", damaged);
        EXPECT_NE(xoptim_test::message_of<std::runtime_error>([&] { xoptim::upgrade_checkpoint(file("damaged.safetensors"), file("x")); })
                      .find("is damaged (its checksum does not match), not upgraded"),
                  std::string::npos);
        EXPECT_FALSE(std::filesystem::exists(file("x")));
        const std::string v2 = unsigned_file("2");
        EXPECT_EQ(load_error(bytes(v2.begin(), v2.end()), xoptim_test::make_stepper()),
                  file("bad.safetensors") + ": no checksum of the metadata (\"xxh64/__metadata__\")");
    }

    // A file the reader takes but a writer cannot write (a tensor named ""): refused,
    // naming the file, as every other problem of an upgrade is.
    TEST_F(counters, an_upgrade_of_a_tensor_without_a_name_is_refused_naming_the_file)
    {
        const std::string json = R"({"__metadata__":{"format":"xoptim.checkpoint","format_version":"1",)"
                                 R"("xxh64/":"ef46db3751d8e999"},"":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}})";
        bytes b(8, 0);
        for (std::size_t i = 0; i < 8; ++i)
        {
            b[i] = static_cast<unsigned char>(json.size() >> (8 * i));
        }
        b.insert(b.end(), json.begin(), json.end());
        write_file(dir_ / "v1.safetensors", b);
        EXPECT_EQ(xoptim_test::message_of<std::runtime_error>(
                      [&] { xoptim::upgrade_checkpoint(file("v1.safetensors"), file("v2.safetensors")); }),
                  file("v1.safetensors") + ": a tensor has an empty name, not upgraded");
        EXPECT_FALSE(std::filesystem::exists(file("v2.safetensors")));
    }

    // A load refused after it made a fresh trainer's state (a damaged tensor is found
    // last) leaves nothing of it: no state, the options as they were (not the schedules'
    // values at the first step), no parameter names remembered.
    TEST_F(counters, a_refused_load_changes_nothing_observable)
    {
        bytes damaged = good;
        damaged.back() ^= 1;
        auto fresh = xoptim_test::make_stepper();
        const std::string before = xoptim_test::fingerprint_of(fresh);
        const std::string error = load_error(damaged, std::ref(fresh));
        EXPECT_NE(error.find("is damaged (its checksum does not match)"), std::string::npos) << error;
        EXPECT_EQ(xoptim_test::fingerprint_of(fresh), before);
        // The next call may pass other parameters: nothing was remembered of these.
        std::vector<float> w(12, 0.5f), g(12, 0.25f);
        const auto other = xoptim::view(w.data(), {4, 3});
        EXPECT_NO_THROW(fresh(xoptim::named("other.weight", other), g));

        tiny_model m;
        auto opt = xoptim_test::make_adamw();
        xoptim_test::train(m, opt, 2);
        xoptim::save_checkpoint(file("adamw.safetensors"), m.params(), opt);
        bytes adamw_file = read_file(file("adamw.safetensors"));
        adamw_file.back() ^= 1;
        auto fresh_adamw = xoptim_test::make_adamw();
        const std::string before_adamw = xoptim_test::fingerprint_of(fresh_adamw);
        EXPECT_NE(load_error(adamw_file, std::ref(fresh_adamw)), "");
        EXPECT_EQ(xoptim_test::fingerprint_of(fresh_adamw), before_adamw);
        EXPECT_EQ(fresh_adamw.options().lr, xoptim::adamw_options{}.lr);

        // A stepper that keeps no accumulators walks the parameters too.
        xoptim::stepper<xoptim::adamw> plain(xoptim_test::make_adamw());
        xoptim_test::train(m, plain, 2);
        xoptim::save_checkpoint(file("plain.safetensors"), m.params(), plain);
        bytes plain_file = read_file(file("plain.safetensors"));
        plain_file.back() ^= 1;
        xoptim::stepper<xoptim::adamw> fresh_plain(xoptim_test::make_adamw());
        const std::string before_plain = xoptim_test::fingerprint_of(fresh_plain);
        EXPECT_NE(load_error(plain_file, std::ref(fresh_plain)), "");
        EXPECT_EQ(xoptim_test::fingerprint_of(fresh_plain), before_plain);
        EXPECT_NO_THROW(fresh_plain(xoptim::named("other.weight", other), g));
    }

    // Found by fuzz_checkpoint: a checkpoint saved before the first step holds no state
    // tensors; loaded into a trainer that has state, the load must leave that state as a
    // first step finds it (zeros), not the moments of the run it replaces.
    TEST_F(integrity, a_checkpoint_saved_before_the_first_step_replaces_existing_state)
    {
        tiny_model m;
        xoptim::adamw never;
        xoptim::save_checkpoint(file(), m.params(), never);
        auto trained = xoptim_test::make_stepper();
        xoptim_test::train(m, trained, 7);
        auto untouched = xoptim_test::make_stepper();
        xoptim::save_checkpoint(file("never.safetensors"), m.params(), untouched);

        tiny_model fresh_model;
        auto fresh = xoptim_test::make_stepper();
        xoptim::load_checkpoint(file("never.safetensors"), fresh_model.params(), fresh);
        xoptim::load_checkpoint(file("never.safetensors"), m.params(), trained);
        // (The options are the live trainers' own, kept by a load.)
        EXPECT_EQ(xoptim_test::fingerprint_of(trained, false), xoptim_test::fingerprint_of(fresh, false));

        xoptim::adamw stepped;
        xoptim_test::train(m, stepped, 2);
        xoptim::adamw fresh_adamw;
        xoptim::load_checkpoint(file(), fresh_model.params(), fresh_adamw);
        xoptim::load_checkpoint(file(), m.params(), stepped);
        EXPECT_EQ(xoptim_test::fingerprint_of(stepped, false), xoptim_test::fingerprint_of(fresh_adamw, false));
        EXPECT_EQ(m.bytes(), fresh_model.bytes());
    }

    // The stepped hybrid's checkpoint (2 steps, 1 skipped, 1 micro-batch pending) with
    // every bit flipped in turn.
    class flips : public counters
    {
    protected:
        void SetUp() override
        {
            counters::SetUp();
            const auto f = xoptim::io::safetensors_file::parse(good, "good");
            header_end = 8 + (good.size() - 8) - data_size(f);
            // What each flipped file is loaded into: another run, 3 calls in. Loaded from a
            // file of its own, since training it afresh each time would be slow (BLAS threads).
            tiny_model other;
            other.fill(1.0);
            auto trained = xoptim_test::make_stepper();
            xoptim_test::train(other, trained, 3);
            xoptim::save_checkpoint(file("other.safetensors"), other.params(), trained);
        }

        static std::size_t data_size(const xoptim::io::safetensors_file& f)
        {
            std::size_t n = 0;
            for (const auto& t : f.tensors())
            {
                n += t.bytes();
            }
            return n;
        }

        // What loading the file with bit `bit` of byte `at` flipped, into a model and
        // stepper 3 calls into another run, does: "" where it loaded exactly the original
        // state, else the error (or what went wrong). The byte is flipped in place and
        // back: rewriting the file each time would have the file system flush it.
        std::string load_flipped(int fd, std::size_t at, int bit)
        {
            const auto put = [&](unsigned char c) {
                if (::pwrite(fd, &c, 1, off_t(at)) != 1)
                {
                    throw std::logic_error("cannot write the test file");
                }
            };
            put(good[at] ^ static_cast<unsigned char>(1u << bit));
            const std::string outcome = load();
            put(good[at]);
            return outcome;
        }

        std::string load()
        {
            tiny_model m;
            auto trainer = xoptim_test::make_stepper();
            xoptim::load_checkpoint(file("other.safetensors"), m.params(), trainer);
            const std::string before = m.bytes() + xoptim_test::fingerprint_of(trainer);
            const std::string path = file("flipped.safetensors");
            try
            {
                xoptim::load_checkpoint(path, m.params(), trainer);
            }
            catch (const std::runtime_error& e)
            {
                const std::string error = e.what();
                if (m.bytes() + xoptim_test::fingerprint_of(trainer) != before)
                {
                    return "CHANGED by a refused load: " + error;
                }
                return error.rfind(path + ": ", 0) == 0 && error.size() > path.size() + 2 ? error
                                                                                            : "UNNAMED: " + error;
            }
            return m.bytes() + xoptim_test::fingerprint_of(trainer) == loaded ? "" : "DIFFERENT";
        }

        std::size_t header_end = 0;
    };

    // Every bit of the header and one bit of every data byte, flipped in turn: each load
    // fails with a message naming the file, or loads exactly the original state.
    TEST_F(flips, every_flipped_bit_fails_by_name_or_changes_nothing)
    {
        std::size_t failed = 0, identical = 0, different = 0;
        std::map<std::string, std::size_t> problems;
        write_file(file("flipped.safetensors"), good);
        const int fd = ::open(file("flipped.safetensors").c_str(), O_WRONLY);
        ASSERT_GE(fd, 0);
        const auto flip = [&](std::size_t at, int bit) {
            const std::string outcome = load_flipped(fd, at, bit);
            if (outcome.empty())
            {
                ++identical;
                return;
            }
            const bool named = outcome.rfind("DIFFERENT", 0) != 0 && outcome.rfind("CHANGED", 0) != 0
                               && outcome.rfind("UNNAMED", 0) != 0;
            named ? ++failed : ++different;
            if (!named && different <= 10)
            {
                ADD_FAILURE() << "byte " << at << " bit " << bit << ": " << outcome.substr(0, 300);
            }
            // The problem without the path and the details after it, to count kinds.
            const std::string problem = outcome.substr(outcome.find(": ") + 2);
            ++problems[problem.substr(0, std::min(problem.find_first_of("'\"(0123456789", 1), std::size_t(40)))];
        };
        for (std::size_t at = 0; at < header_end; ++at)
        {
            for (int bit = 0; bit < 8; ++bit)
            {
                flip(at, bit);
            }
        }
        for (std::size_t at = header_end; at < good.size(); ++at)
        {
            flip(at, int(at % 8));
        }
        ::close(fd);
        std::cout << "bit-flip sweep of a " << good.size() << "-byte checkpoint (" << header_end
                  << " header bytes, every bit; " << good.size() - header_end << " data bytes, one bit each): "
                  << failed << " failed to load, " << identical << " loaded identical, " << different
                  << " loaded different\n";
        for (const auto& [problem, count] : problems)
        {
            std::cout << "  " << count << " x " << problem << "\n";
        }
        EXPECT_EQ(different, 0u);
        EXPECT_EQ(failed + identical + different, header_end * 8 + good.size() - header_end);
    }
}
