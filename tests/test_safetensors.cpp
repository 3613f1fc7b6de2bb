#include <xoptim/io/safetensors.hpp>

#include <gtest/gtest.h>

#include "support/temp_dir.hpp"

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace fs = std::filesystem;
using xoptim::io::safetensors_file;
using xoptim::io::safetensors_writer;
using xoptim::io::st_dtype;
using xoptim::io::st_tensor_info;

namespace
{
    std::string read_bytes(const fs::path& p)
    {
        std::ifstream in(p, std::ios::binary);
        return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    }

    void write_bytes(const fs::path& p, const std::string& content)
    {
        std::ofstream out(p, std::ios::binary);
        out.write(content.data(), static_cast<std::streamsize>(content.size()));
    }

    std::vector<unsigned char> to_vector(const std::string& s)
    {
        return {s.begin(), s.end()};
    }

    std::uint64_t header_length(const std::string& file)
    {
        std::uint64_t n = 0;
        for (int i = 7; i >= 0; --i)
        {
            n = n << 8 | static_cast<unsigned char>(file[static_cast<std::size_t>(i)]);
        }
        return n;
    }

    // A file with a header of our choosing, for structures no edit of a good file reaches.
    std::string make_file(const std::string& json, const std::string& data = {})
    {
        std::string out(8, '\0');
        for (int i = 0; i < 8; ++i)
        {
            out[static_cast<std::size_t>(i)] = static_cast<char>((json.size() >> (8 * i)) & 0xff);
        }
        return out + json + data;
    }

    // Replaces the one occurrence of `from` by `to` of the same length, keeping the header length valid.
    std::string edited(std::string file, const std::string& from, const std::string& to)
    {
        EXPECT_EQ(from.size(), to.size());
        const std::size_t at = file.find(from);
        EXPECT_NE(at, std::string::npos) << from;
        EXPECT_EQ(file.find(from, at + 1), std::string::npos) << from;
        return file.replace(at, from.size(), to);
    }

    std::string parse_error(const std::string& file)
    {
        try
        {
            safetensors_file::parse(to_vector(file), "bad.safetensors");
        }
        catch (const std::runtime_error& e)
        {
            return e.what();
        }
        return "(no error)";
    }

    template <class T>
    std::vector<T> values(const safetensors_file& file, const std::string& name)
    {
        const st_tensor_info* info = file.find(name);
        if (info == nullptr)
        {
            ADD_FAILURE() << "no tensor " << name;
            return {};
        }
        std::vector<T> out(info->bytes() / sizeof(T));
        if (!out.empty())
        {
            std::memcpy(out.data(), file.data(*info), info->bytes());
        }
        return out;
    }

    const std::vector<float> f32_values = {0.5f, -1.25f, 3.0f, 1e-3f, -0.0f, 65504.0f};
    const double f64_value = -2.5;
    const std::vector<std::uint8_t> u8_values = {0, 1, 127, 128, 255};
    const std::vector<std::uint16_t> bf16_values = {0x3f80, 0xc000, 0x3e80, 0x0000};  // 1, -2, 0.25, 0

    // Mixed element sizes, a 0-d tensor and a zero-size one.
    safetensors_writer sample_writer()
    {
        safetensors_writer w;
        w.add("layer.weight", st_dtype::F32, {2, 3}, f32_values.data(), 24);
        w.add("scalar", st_dtype::F64, {}, &f64_value, 8);
        w.add("bytes", st_dtype::U8, {5}, u8_values.data(), 5);
        w.add("half", st_dtype::BF16, {2, 2}, bf16_values.data(), 8);
        w.add("empty", st_dtype::F32, {0, 3}, nullptr, 0);
        w.metadata("format", "pt");
        w.metadata("text", "quote\" backslash\\ newline\n tab\t ctrl\x01 e-acute \xc3\xa9 emoji \xf0\x9f\x98\x80");
        return w;
    }

    // Two F32 tensors: "a" [2, 3] at [0, 24) and "b" [2] at [24, 32).
    std::string two_tensor_file()
    {
        static const std::vector<float> a(6, 1.0f), b(2, 2.0f);
        safetensors_writer w;
        w.add("a", st_dtype::F32, {2, 3}, a.data(), 24);
        w.add("b", st_dtype::F32, {2}, b.data(), 8);
        return w.serialize();
    }

    class safetensors_test : public xoptim_test::temp_dir_test
    {
    protected:

        std::string path(const std::string& name) const
        {
            return (dir_ / name).string();
        }

        std::vector<std::string> dir_entries() const
        {
            std::vector<std::string> names;
            for (const auto& e : fs::directory_iterator(dir_))
            {
                names.push_back(e.path().filename().string());
            }
            std::sort(names.begin(), names.end());
            return names;
        }
    };
}

TEST(safetensors_dtype, names_sizes_and_parsing)
{
    using xoptim::io::st_dtype_from_name;
    using xoptim::io::st_dtype_name;
    using xoptim::io::st_dtype_size;
    const st_dtype all[] = {st_dtype::F64, st_dtype::F32, st_dtype::BF16, st_dtype::F16, st_dtype::I64,
                            st_dtype::I32, st_dtype::U32,  st_dtype::I8,   st_dtype::U8};
    const std::size_t sizes[] = {8, 4, 2, 2, 8, 4, 4, 1, 1};
    for (std::size_t i = 0; i < 9; ++i)
    {
        EXPECT_EQ(st_dtype_size(all[i]), sizes[i]);
        EXPECT_EQ(st_dtype_from_name(st_dtype_name(all[i])), all[i]);
    }
    EXPECT_STREQ(st_dtype_name(st_dtype::BF16), "BF16");
    EXPECT_FALSE(st_dtype_from_name("f32"));
    EXPECT_FALSE(st_dtype_from_name("BOOL"));
    static_assert(xoptim::io::st_dtype_of<float>() == st_dtype::F32);
    static_assert(xoptim::io::st_dtype_of<std::int64_t>() == st_dtype::I64);
}

TEST_F(safetensors_test, round_trip)
{
    const std::string file = path("model.safetensors");
    sample_writer().write(file);
    EXPECT_EQ(dir_entries(), std::vector<std::string>{"model.safetensors"});

    const safetensors_file read = safetensors_file::read(file);
    ASSERT_EQ(read.tensors().size(), 5u);
    std::vector<std::string> names;
    for (const st_tensor_info& t : read.tensors())
    {
        names.push_back(t.name);
        // Largest elements first, so every tensor starts at a multiple of its element size.
        EXPECT_EQ(t.begin % xoptim::io::st_dtype_size(t.dtype), 0u) << t.name;
    }
    EXPECT_EQ(names, (std::vector<std::string>{"bytes", "empty", "half", "layer.weight", "scalar"}));

    const st_tensor_info* w = read.find("layer.weight");
    ASSERT_NE(w, nullptr);
    EXPECT_EQ(w->dtype, st_dtype::F32);
    EXPECT_EQ(w->shape, (std::vector<std::size_t>{2, 3}));
    EXPECT_EQ(values<float>(read, "layer.weight"), f32_values);
    EXPECT_TRUE(std::signbit(values<float>(read, "layer.weight")[4]));

    const st_tensor_info* s = read.find("scalar");
    ASSERT_NE(s, nullptr);
    EXPECT_TRUE(s->shape.empty());
    EXPECT_EQ(values<double>(read, "scalar"), std::vector<double>{f64_value});
    EXPECT_EQ(values<std::uint8_t>(read, "bytes"), u8_values);
    EXPECT_EQ(read.find("half")->dtype, st_dtype::BF16);
    EXPECT_EQ(values<std::uint16_t>(read, "half"), bf16_values);
    const st_tensor_info* e = read.find("empty");
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->shape, (std::vector<std::size_t>{0, 3}));
    EXPECT_EQ(e->bytes(), 0u);
    EXPECT_EQ(read.find("missing"), nullptr);

    EXPECT_EQ(read.metadata().size(), 2u);
    EXPECT_EQ(read.metadata().at("format"), "pt");
    EXPECT_EQ(read.metadata().at("text"),
              "quote\" backslash\\ newline\n tab\t ctrl\x01 e-acute \xc3\xa9 emoji \xf0\x9f\x98\x80");

    st_tensor_info foreign = *w;
    foreign.end = 1 << 20;
    EXPECT_THROW(read.data(foreign), std::out_of_range);
}

TEST(safetensors_format, header_layout)
{
    const std::vector<float> a = {1.0f, 2.0f};
    const std::uint8_t b[3] = {7, 8, 9};
    safetensors_writer w;
    w.add("b", st_dtype::U8, {3}, b, 3);
    w.add("a", st_dtype::F32, {2}, a.data(), 8);
    w.metadata("k", "v");
    const std::string file = w.serialize();

    const std::uint64_t n = header_length(file);
    EXPECT_EQ((8 + n) % 8, 0u);
    ASSERT_EQ(file.size(), 8 + n + 11);
    const std::string json = file.substr(8, n);
    const std::string expected = R"({"__metadata__":{"k":"v"},)"
                                 R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                 R"("b":{"dtype":"U8","shape":[3],"data_offsets":[8,11]}})";
    EXPECT_EQ(json.substr(0, expected.size()), expected);
    EXPECT_EQ(json.substr(expected.size()), std::string(n - expected.size(), ' '));
    EXPECT_EQ(file.substr(8 + n, 8), std::string(reinterpret_cast<const char*>(a.data()), 8));
    EXPECT_EQ(file.substr(8 + n + 8), "\x07\x08\x09");

    // Nothing to write is still a file: "{}" padded to 8 bytes.
    EXPECT_EQ(safetensors_writer().serialize(), std::string("\x08\0\0\0\0\0\0\0{}      ", 16));
}

TEST(safetensors_format, writer_rejects_bad_tensors)
{
    const float x[4] = {};
    const auto message = [&](auto&& call) -> std::string {
        try
        {
            call();
        }
        catch (const std::invalid_argument& e)
        {
            return e.what();
        }
        return "(no error)";
    };
    safetensors_writer w;
    w.add("x", st_dtype::F32, {4}, x, 16);
    EXPECT_NE(message([&] { w.add("x", st_dtype::F32, {4}, x, 16); }).find("tensor 'x': the name is already taken"),
              std::string::npos);
    EXPECT_NE(message([&] { w.add("", st_dtype::F32, {4}, x, 16); }).find("the name is empty"), std::string::npos);
    EXPECT_NE(message([&] { w.add("__metadata__", st_dtype::F32, {4}, x, 16); }).find("reserved"),
              std::string::npos);
    EXPECT_NE(message([&] { w.add("y", st_dtype::F32, {4}, x, 12); })
                  .find("tensor 'y': 12 bytes given, shape [4] of F32 needs 16"),
              std::string::npos);
    EXPECT_NE(message([&] { w.add("y", st_dtype::F64, {1u << 31, 1u << 31, 1u << 31}, x, 16); })
                  .find("does not fit in size_t"),
              std::string::npos);
    EXPECT_NE(message([&] { w.add("y", st_dtype::F32, {4}, nullptr, 16); }).find("data is null"), std::string::npos);
    EXPECT_NE(message([&] { w.add("bad\xff", st_dtype::F32, {4}, x, 16); }).find("not valid UTF-8"),
              std::string::npos);
    EXPECT_NE(message([&] { w.metadata("k", "\xc0\x80"); }).find("not valid UTF-8"), std::string::npos);
}

TEST(safetensors_format, malformed_files_are_rejected)
{
    const std::string good = two_tensor_file();
    ASSERT_NO_THROW(safetensors_file::parse(to_vector(good), "good"));

    struct bad_case
    {
        const char* label;
        std::string file;
        const char* message;
    };
    const std::string colon = R"("a":)";
    ASSERT_LT(good.size(), 256u);
    std::string too_long = good;
    too_long[0] = static_cast<char>(good.size());  // longer than the bytes after the length field
    std::string huge = good;
    huge[3] = 0x10;  // about 268 MB
    std::string bit_flip = good;
    bit_flip[good.find(colon) + 3] ^= 0x01;  // ':' becomes ';'

    const bad_case cases[] = {
        {"truncated", good.substr(0, 5), "file too short: 5 bytes"},
        {"length past the end", too_long, "bytes after the length field"},
        {"absurd length", huge, "-byte limit"},
        {"bit flip", bit_flip, "invalid JSON header: expected ':' after a key"},
        {"unknown dtype", edited(good, "\"F32\",\"shape\":[2,3]", "\"F31\",\"shape\":[2,3]"),
         "tensor 'a': unknown dtype 'F31'"},
        {"offsets beyond data", edited(good, "[24,32]", "[24,99]"),
         "tensor 'b': data_offsets end 99 is beyond the data section (32 bytes)"},
        {"begin after end", edited(good, "[24,32]", "[32,24]"), "tensor 'b': data_offsets begin 32 is after end 24"},
        {"overlap", edited(good, "[24,32]", "[16,24]"), "tensors 'a' and 'b' overlap in the data section"},
        {"size mismatch", edited(good, "[24,32]", "[24,28]"),
         "tensor 'b': size mismatch: shape [2] of F32 needs 8 bytes, data_offsets span 4"},
        {"trailing data", good + std::string(8, '\0'), "bytes [32, 40) at its end belong to no tensor"},
        {"hole", make_file(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})", "abcd"),
         "hole in the data section: bytes [0, 2) belong to no tensor"},
        {"duplicate name", edited(good, R"("b":{)", R"("a":{)"), "duplicate tensor name 'a'"},
        {"shape not an array", edited(good, "[2]", "\"2\""), "tensor 'b': shape must be an array of non-negative"},
        {"fractional shape", edited(good, "[2,3]", "[2.3]"), "tensor 'a': shape must be an array of non-negative"},
        {"negative shape", make_file(R"({"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}})"),
         "tensor 'a': shape must be an array of non-negative integers"},
        {"shape overflow",
         make_file(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,2],"data_offsets":[0,0]}})"),
         "tensor 'a': shape overflow"},
        {"extra key", edited(good, R"("dtype":"F32","shape":[2,3])", R"("dtypo":"F32","shape":[2,3])"),
         "tensor 'a': unexpected key 'dtypo'"},
        {"missing key", make_file(R"({"a":{"dtype":"U8","shape":[0]}})"), "tensor 'a': missing key 'data_offsets'"},
        {"three offsets", make_file(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0,0]}})"),
         "tensor 'a': data_offsets must be two integers [begin, end] (got 3)"},
        {"entry not an object", make_file(R"({"a":[1]})"), "tensor 'a': entry must be an object"},
        {"not an object", make_file("[1]"), "header is not a JSON object"},
        {"trailing garbage", make_file("{} x"), "invalid JSON header: unexpected text after the header object"},
        {"metadata not strings", make_file(R"({"__metadata__":{"k":1}})"), "__metadata__ must be an object of strings"},
        {"metadata not an object", make_file(R"({"__metadata__":"k"})"), "__metadata__ must be an object of strings"},
        {"invalid UTF-8", make_file("{\"__metadata__\":{\"k\":\"\xc3\x28\"}}"), "invalid UTF-8 in a string"},
        {"lone surrogate", make_file(R"({"__metadata__":{"k":"\ud800x"}})"), "unpaired surrogate"},
        {"raw control character", make_file("{\"__metadata__\":{\"k\":\"\n\"}}"), "control character"},
        {"empty header", make_file("        "), "the header is empty"},
        {"unterminated", make_file(R"({"a":{"dtype":"U8")"), "the header ends early"},
    };
    for (const bad_case& c : cases)
    {
        const std::string error = parse_error(c.file);
        EXPECT_EQ(error.rfind("bad.safetensors: ", 0), 0u) << c.label << ": " << error;
        EXPECT_NE(error.find(c.message), std::string::npos) << c.label << ": " << error;
    }
}

TEST(safetensors_format, json_escapes_and_zero_offsets_are_accepted)
{
    // Escapes a writer other than ours may use; zero-size tensors anywhere they touch nothing.
    const std::string file =
        make_file(R"({"__metadata__":{"\u0041\/":"\ud83d\ude00\n"} , "z":{"shape":[0],"dtype":"I8","data_offsets":[2,2]},)"
                  R"( "a" : {"data_offsets":[0,2],"shape":[2],"dtype":"I8"}})",
                  "xy");
    const safetensors_file read = safetensors_file::parse(to_vector(file), "ok");
    EXPECT_EQ(read.metadata().at("A/"), "\xf0\x9f\x98\x80\n");
    ASSERT_EQ(read.tensors().size(), 2u);
    EXPECT_EQ(read.tensors()[0].name, "a");
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(read.data(read.tensors()[0])), 2), "xy");
}

TEST_F(safetensors_test, read_errors_name_the_path)
{
    const std::string missing = path("missing.safetensors");
    EXPECT_THROW(
        {
            try
            {
                safetensors_file::read(missing);
            }
            catch (const std::runtime_error& e)
            {
                EXPECT_EQ(std::string(e.what()), missing + ": cannot open: No such file or directory");
                throw;
            }
        },
        std::runtime_error);
    try
    {
        safetensors_file::read(dir_.string());
        ADD_FAILURE() << "reading a directory did not throw";
    }
    catch (const std::runtime_error& e)
    {
        EXPECT_EQ(std::string(e.what()), dir_.string() + ": cannot read: is a directory");
    }
    write_bytes(path("short"), "abc");
    try
    {
        safetensors_file::read(path("short"));
        ADD_FAILURE() << "a short file did not throw";
    }
    catch (const std::runtime_error& e)
    {
        EXPECT_EQ(std::string(e.what()).rfind(path("short") + ": file too short", 0), 0u) << e.what();
    }
}

namespace
{
    // What reading `bytes` through a named pipe gives: the tensors' names and data, or
    // the error. A thread writes them and closes its end.
    std::string read_through_pipe(const std::string& fifo, const std::string& bytes)
    {
        std::signal(SIGPIPE, SIG_IGN);  // a reader that stops early
        fs::remove(fifo);
        EXPECT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
        std::thread writer([&] {
            const int fd = ::open(fifo.c_str(), O_WRONLY);
            for (std::size_t done = 0; fd >= 0 && done < bytes.size();)
            {
                const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
                if (n <= 0)
                {
                    break;
                }
                done += std::size_t(n);
            }
            ::close(fd);
        });
        std::string out;
        try
        {
            const safetensors_file f = safetensors_file::read(fifo);
            for (const st_tensor_info& t : f.tensors())
            {
                out += t.name + ":" + std::string(reinterpret_cast<const char*>(f.data(t)), t.end - t.begin) + ";";
            }
        }
        catch (const std::runtime_error& e)
        {
            out = e.what();
        }
        writer.join();
        return out;
    }
}

// A pipe is read in order: the header as long as its length field says, the data section
// as long as its tensors say, then nothing may follow. A wrong header is refused before
// any data is read, and /dev/zero after its first 8 bytes (it had been read up to the
// machine's memory).
TEST_F(safetensors_test, a_pipe_is_read_as_far_as_its_header_says)
{
    const std::string good = two_tensor_file();
    const std::string fifo = path("pipe");
    const safetensors_file regular = safetensors_file::parse(to_vector(good), "good");
    std::string expected;
    for (const st_tensor_info& t : regular.tensors())
    {
        expected += t.name + ":" + std::string(reinterpret_cast<const char*>(regular.data(t)), t.end - t.begin) + ";";
    }
    EXPECT_EQ(read_through_pipe(fifo, good), expected);
    EXPECT_EQ(read_through_pipe(fifo, good.substr(0, good.size() - 1)),
              fifo + ": the data section ends after 31 of the 32 bytes its tensors take");
    EXPECT_EQ(read_through_pipe(fifo, good + "x"),
              fifo + ": more bytes follow the 32 bytes of the data section its tensors take");
    const std::size_t header = std::size_t(header_length(good));
    EXPECT_EQ(read_through_pipe(fifo, good.substr(0, 8 + header - 1)),
              fifo + ": header length " + std::to_string(header) + " exceeds the " + std::to_string(header - 1)
                  + " bytes after the length field");
    EXPECT_EQ(read_through_pipe(fifo, "1234"),
              fifo + ": file too short: 4 bytes, a safetensors file starts with an 8-byte header length");
    std::string zero_error = "no error";
    try
    {
        safetensors_file::read("/dev/zero");
    }
    catch (const std::runtime_error& e)
    {
        zero_error = e.what();
    }
    EXPECT_EQ(zero_error, "/dev/zero: invalid JSON header: the header is empty (at byte 0 of the header)");
}

TEST_F(safetensors_test, write_replaces_an_existing_file)
{
    const std::string file = path("m.safetensors");
    write_bytes(file, "old contents");
    sample_writer().write(file);
    EXPECT_EQ(read_bytes(file), sample_writer().serialize());
    EXPECT_EQ(dir_entries(), std::vector<std::string>{"m.safetensors"});
}

// A write that fails halfway (here: the file size limit, which binds root too) must leave
// the previous file byte-identical and no temporary file behind.
TEST_F(safetensors_test, failed_write_keeps_the_previous_file)
{
    const std::string file = path("m.safetensors");
    sample_writer().write(file);
    const std::string before = read_bytes(file);

    const std::vector<float> big(1 << 18);  // 1 MiB
    safetensors_writer w;
    w.add("big", st_dtype::F32, {big.size()}, big.data(), big.size() * sizeof(float));

    rlimit old_limit{};
    ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
    rlimit small = old_limit;
    small.rlim_cur = 64 * 1024;
    const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);  // make write() fail with EFBIG instead
    ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
    std::string error;
    try
    {
        w.write(file);
    }
    catch (const std::runtime_error& e)
    {
        error = e.what();
    }
    setrlimit(RLIMIT_FSIZE, &old_limit);
    std::signal(SIGXFSZ, old_handler);

    EXPECT_EQ(error.rfind(file + ": cannot write temporary file", 0), 0u) << error;
    EXPECT_NE(error.find(std::strerror(EFBIG)), std::string::npos) << error;
    EXPECT_EQ(read_bytes(file), before);
    EXPECT_EQ(dir_entries(), std::vector<std::string>{"m.safetensors"});
}

TEST_F(safetensors_test, failed_writes_name_the_path_and_reason)
{
    const auto error_of = [](const std::string& target) -> std::string {
        try
        {
            sample_writer().write(target);
        }
        catch (const std::runtime_error& e)
        {
            return e.what();
        }
        return "(no error)";
    };

    fs::create_directory(dir_ / "sub");
    EXPECT_EQ(error_of(path("sub")), path("sub") + ": cannot write: is a directory");
    EXPECT_TRUE(fs::is_empty(dir_ / "sub"));

    const std::string nowhere = path("no/such/dir/m.safetensors");
    const std::string error = error_of(nowhere);
    EXPECT_EQ(error.rfind(nowhere + ": cannot create temporary file", 0), 0u) << error;
    EXPECT_NE(error.find("No such file or directory"), std::string::npos) << error;

    // Permissions do not bind root, which many containers run tests as.
    if (geteuid() != 0)
    {
        const std::string file = path("ro/m.safetensors");
        fs::create_directory(dir_ / "ro");
        sample_writer().write(file);
        const std::string before = read_bytes(file);
        fs::permissions(dir_ / "ro", fs::perms::owner_read | fs::perms::owner_exec);
        const std::string denied = error_of(file);
        fs::permissions(dir_ / "ro", fs::perms::owner_all);
        EXPECT_NE(denied.find("Permission denied"), std::string::npos) << denied;
        EXPECT_EQ(read_bytes(file), before);
    }
    EXPECT_EQ(dir_entries(), (std::vector<std::string>(geteuid() != 0 ? std::vector<std::string>{"ro", "sub"}
                                                                         : std::vector<std::string>{"sub"})));
}

#ifdef XOPTIM_NUMPY_PYTHON
// A reader that knows only the published format (numpy + json) sees what we wrote.
TEST_F(safetensors_test, numpy_reads_our_files)
{
    const std::string file = path("model.safetensors");
    sample_writer().write(file);
    const std::string command = std::string("'" XOPTIM_NUMPY_PYTHON "' '" XOPTIM_READ_SAFETENSORS_PY "' '") + file
                                + "' 2>&1";
    std::FILE* pipe = popen(command.c_str(), "r");
    ASSERT_NE(pipe, nullptr);
    std::string output;
    char buffer[4096];
    for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;)
    {
        output.append(buffer, n);
    }
    const int status = pclose(pipe);
    ASSERT_TRUE(WIFEXITED(status)) << output;
    EXPECT_EQ(WEXITSTATUS(status), 0) << output;
    EXPECT_EQ(output,
              "metadata {\"format\": \"pt\", \"text\": \"quote\\\" backslash\\\\ newline\\n tab\\t ctrl\\u0001 "
              "e-acute \\u00e9 emoji \\ud83d\\ude00\"}\n"
              "bytes U8 [5] [0 1 127 128 255]\n"
              "empty F32 [0, 3] []\n"
              "half BF16 [2, 2] [1.0 -2.0 0.25 0.0]\n"
              "layer.weight F32 [2, 3] [0.5 -1.25 3.0 0.0010000000474974513 -0.0 65504.0]\n"
              "scalar F64 [] [-2.5]\n");
}
#endif
