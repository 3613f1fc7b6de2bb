// Checkpoints and files under attack: hostile text in a file stays out of messages.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <map>

#include <fcntl.h>
#include <unistd.h>

#include <xoptim/io/checkpoint.hpp>
#include <xoptim/io/npy.hpp>
#include <xoptim/io/quote.hpp>

#include "support/fingerprint.hpp"
#include "support/temp_dir.hpp"
#include "support/tiny_training.hpp"

namespace
{
    using bytes = std::vector<unsigned char>;
    using metadata = std::map<std::string, std::string>;
    using xoptim_test::tiny_model;

    bytes read_file(const std::filesystem::path& p)
    {
        std::ifstream in(p, std::ios::binary);
        return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    }

    void write_file(const std::filesystem::path& p, const bytes& b)
    {
        std::ofstream out(p, std::ios::binary);
        out.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
    }

    // The file with `edit` applied to its metadata.
    bytes edited(const bytes& good, const std::function<void(metadata&)>& edit)
    {
        const auto f = xoptim::io::safetensors_file::parse(good, "good");
        metadata meta = f.metadata();
        edit(meta);
        xoptim::io::safetensors_writer w;
        for (const auto& [k, v] : meta)
        {
            w.metadata(k, v);
        }
        for (const auto& t : f.tensors())
        {
            w.add(t.name, t.dtype, t.shape, f.data(t), t.bytes());
        }
        const std::string s = w.serialize();
        return bytes(s.begin(), s.end());
    }

    // A message fit for a log: one line, printable ASCII, short.
    void expect_tame(const std::string& message)
    {
        EXPECT_LT(message.size(), 400u) << message.substr(0, 400);
        EXPECT_TRUE(std::all_of(message.begin(), message.end(), [](char c) { return c >= 0x20 && c < 0x7f; }))
            << message.substr(0, 400);
    }

    // The message of the std::runtime_error f() throws; any other outcome says what it was.
    template <class F>
    std::string runtime_error_of(F&& f)
    {
        try
        {
            f();
        }
        catch (const std::runtime_error& e)
        {
            return e.what();
        }
        catch (const std::exception& e)
        {
            return std::string("not a std::runtime_error: ") + e.what();
        }
        return "no exception";
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

    class integrity : public xoptim_test::temp_dir_test
    {
    protected:
        std::string file(const char* name = "c.safetensors") const
        {
            return (dir_ / name).string();
        }

        // The message of the std::runtime_error a load of `b` gives into a fresh trainer.
        template <class Trainer>
        std::string load_error(const bytes& b, Trainer trainer)
        {
            write_file(file("bad.safetensors"), b);
            tiny_model m;
            try
            {
                xoptim::load_checkpoint(file("bad.safetensors"), m.params(), trainer);
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
        std::string error = runtime_error_of([&] { xoptim::io::safetensors_file::read(zeros); });
        EXPECT_EQ(error, zeros + ": invalid JSON header: the header is empty (at byte 0 of the header)");

        // A header that describes the whole terabyte: read as safetensors, then as a checkpoint.
        const std::string huge = file("huge.safetensors");
        ASSERT_TRUE(sparse_file(huge, tib, huge_tensor_header(tib)));
        ASSERT_NO_THROW(xoptim::io::safetensors_file::read_header(huge));
        error = runtime_error_of([&] { xoptim::io::safetensors_file::read(huge); });
        EXPECT_EQ(error.rfind(huge + ": the data section of ", 0), 0u) << error;
        tiny_model m;
        xoptim::adamw opt;
        error = runtime_error_of([&] { xoptim::load_checkpoint(huge, m.params(), opt); });
        EXPECT_EQ(error, huge + ": metadata has no \"format\"");
        EXPECT_TRUE(opt.state().empty());

        // An npy header of a terabyte array.
        const std::string dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (137438953000,), }";
        std::string head = std::string("\x93NUMPY\x01\x00", 8) + char(dict.size() + 1) + '\0' + dict + "\n";
        const std::string npy = file("huge.npy");
        ASSERT_TRUE(sparse_file(npy, head.size() + 137438953000ull * 8, head));
        error = runtime_error_of([&] { xoptim::io::read_npy(npy); });
        EXPECT_EQ(error.rfind(npy + ": the data of ", 0), 0u) << error;
    }
}
