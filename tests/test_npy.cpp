#include <xoptim/io/npy.hpp>

#include <gtest/gtest.h>

#include "support/temp_dir.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace std::string_literals;
using xoptim::io::npy_array;
using xoptim::io::read_npy;
using xoptim::io::write_npy;

namespace
{

    const std::string numpy_dir = XOPTIM_TEST_DATA_DIR "/../data/npy";

    std::string read_file(const fs::path& p)
    {
        std::ifstream in(p, std::ios::binary);
        return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    }

    void write_file(const fs::path& p, const std::string& content)
    {
        std::ofstream out(p, std::ios::binary);
        out.write(content.data(), static_cast<std::streamsize>(content.size()));
    }

    // A .npy file with an arbitrary header text and payload; the header length field follows the version.
    std::string npy_bytes(const std::string& header, const std::string& data = {}, unsigned char major = 1)
    {
        std::string out("\x93NUMPY", 6);
        out += static_cast<char>(major);
        out += '\0';
        const std::size_t length_size = major == 1 ? 2 : 4;
        for (std::size_t i = 0; i < length_size; ++i)
            out += static_cast<char>((header.size() >> (8 * i)) & 0xff);
        return out + header + data;
    }

    std::string f8_data(std::size_t n)
    {
        return std::string(n * sizeof(double), '\0');
    }

    class npy_test : public xoptim_test::temp_dir_test
    {
    protected:

        std::string path(const std::string& name) const
        {
            return (dir_ / name).string();
        }

        std::string write_raw(const std::string& name, const std::string& content) const
        {
            write_file(path(name), content);
            return path(name);
        }

        std::vector<std::string> dir_entries() const
        {
            std::vector<std::string> names;
            for (const auto& e : fs::directory_iterator(dir_))
                names.push_back(e.path().filename().string());
            return names;
        }
    };

    // Every failure must be one line, start with the path and name the problem.
    void expect_read_error(const std::string& path, const std::string& problem)
    {
        try
        {
            read_npy(path);
            ADD_FAILURE() << "no exception for " << path << ", expected: " << problem;
        }
        catch (const std::runtime_error& e)
        {
            const std::string message = e.what();
            EXPECT_EQ(message.rfind(path + ": ", 0), 0u) << message;
            EXPECT_NE(message.find(problem), std::string::npos) << "expected '" << problem << "' in: " << message;
            EXPECT_EQ(message.find('\n'), std::string::npos) << message;
        }
    }

    template <class T>
    std::vector<T> sample(std::size_t n)
    {
        std::vector<T> v(n);
        for (std::size_t i = 0; i < n; ++i)
            v[i] = static_cast<T>(i) / T(3) - T(2);
        return v;
    }

}  // namespace

template <class T>
class npy_round_trip : public npy_test
{
};
using element_types = ::testing::Types<float, double>;
struct element_type_names
{
    template <class T>
    static std::string GetName(int)
    {
        return sizeof(T) == 4 ? "float" : "double";
    }
};
TYPED_TEST_SUITE(npy_round_trip, element_types, element_type_names);

TYPED_TEST(npy_round_trip, shapes)
{
    using T = TypeParam;
    const std::vector<std::vector<std::size_t>> shapes = {{}, {0}, {1}, {3, 4}, {2, 3, 5}};
    for (const auto& shape : shapes)
    {
        std::size_t n = 1;
        for (std::size_t d : shape)
            n *= d;
        const std::vector<T> data = sample<T>(n);
        const std::string p = this->path("a.npy");
        write_npy(p, data.data(), shape);

        const npy_array a = read_npy(p);
        EXPECT_EQ(a.dtype, sizeof(T) == 4 ? "<f4" : "<f8");
        EXPECT_EQ(a.shape, shape);
        EXPECT_EQ(a.size(), n);
        EXPECT_EQ(a.template values<T>(), data);

        // Layout numpy relies on: version 1.0, data aligned to 64 bytes, header ends with '\n'.
        const std::string raw = read_file(p);
        ASSERT_GE(raw.size(), 10u);
        EXPECT_EQ(raw.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
        const std::size_t header_size = static_cast<unsigned char>(raw[8])
                                        | static_cast<std::size_t>(static_cast<unsigned char>(raw[9])) << 8;
        EXPECT_EQ((10 + header_size) % 64, 0u);
        EXPECT_EQ(raw[10 + header_size - 1], '\n');
        EXPECT_EQ(raw.size(), 10 + header_size + n * sizeof(T));
        EXPECT_EQ(this->dir_entries(), std::vector<std::string>{"a.npy"});  // no temporary left behind
    }
}

TYPED_TEST(npy_round_trip, special_values_are_bit_exact)
{
    using T = TypeParam;
    using limits = std::numeric_limits<T>;
    const std::vector<T> data = {limits::infinity(),   -limits::infinity(), limits::quiet_NaN(), T(-0.0),
                                 limits::denorm_min(), limits::max(),       limits::lowest(),    limits::epsilon()};
    const std::string p = this->path("special.npy");
    write_npy(p, data.data(), {2, 4});
    const std::vector<T> back = read_npy(p).template values<T>();
    ASSERT_EQ(back.size(), data.size());
    EXPECT_EQ(std::memcmp(back.data(), data.data(), data.size() * sizeof(T)), 0);
}

TEST_F(npy_test, write_replaces_an_existing_file)
{
    const std::string p = path("a.npy");
    const std::vector<double> first = sample<double>(6), second = {42.0};
    write_npy(p, first.data(), {2, 3});
    write_npy(p, second.data(), {1});
    const npy_array a = read_npy(p);
    EXPECT_EQ(a.shape, std::vector<std::size_t>{1});
    EXPECT_EQ(a.values<double>(), second);
    EXPECT_EQ(dir_entries(), std::vector<std::string>{"a.npy"});
}

TEST_F(npy_test, failed_write_leaves_nothing_behind)
{
    const std::vector<float> data = sample<float>(4);

    const std::string missing_dir = path("no_such_dir/a.npy");
    EXPECT_THROW(write_npy(missing_dir, data.data(), {4}), std::runtime_error);
    EXPECT_TRUE(dir_entries().empty());

    // The temporary file is written, then renaming it onto a non-empty directory fails.
    fs::create_directories(dir_ / "target" / "child");
    try
    {
        write_npy(path("target"), data.data(), {4});
        ADD_FAILURE() << "no exception";
    }
    catch (const std::runtime_error& e)
    {
        EXPECT_EQ(std::string(e.what()).rfind(path("target") + ": ", 0), 0u) << e.what();
    }
    EXPECT_EQ(dir_entries(), std::vector<std::string>{"target"});
}

TEST_F(npy_test, write_rejects_null_data_and_overflowing_shapes)
{
    EXPECT_THROW(write_npy<double>(path("a.npy"), nullptr, {3}), std::invalid_argument);
    write_npy<double>(path("empty.npy"), nullptr, {0, 7});
    EXPECT_EQ(read_npy(path("empty.npy")).shape, (std::vector<std::size_t>{0, 7}));

    const double x = 1;
    const std::size_t big = std::numeric_limits<std::size_t>::max() / 4;
    EXPECT_THROW(write_npy(path("b.npy"), &x, {big, 8}), std::runtime_error);
    EXPECT_EQ(dir_entries(), std::vector<std::string>{"empty.npy"});
}

TEST_F(npy_test, values_checks_the_element_type)
{
    const std::vector<float> data = sample<float>(3);
    write_npy(path("a.npy"), data.data(), {3});
    const npy_array a = read_npy(path("a.npy"));
    EXPECT_EQ(a.values<float>(), data);
    try
    {
        (void)a.values<double>();
        ADD_FAILURE() << "no exception";
    }
    catch (const std::runtime_error& e)
    {
        EXPECT_NE(std::string(e.what()).find("<f4"), std::string::npos) << e.what();
    }

    npy_array inconsistent = a;
    inconsistent.bytes.pop_back();
    EXPECT_THROW((void)inconsistent.values<float>(), std::runtime_error);
}

// Files written by numpy 1.24 with tests/data/npy/make_npy.py.
TEST(npy_numpy_files, float32_2d)
{
    const npy_array a = read_npy(numpy_dir + "/f4_3x4.npy");
    EXPECT_EQ(a.dtype, "<f4");
    EXPECT_EQ(a.shape, (std::vector<std::size_t>{3, 4}));
    const std::vector<float> v = a.values<float>();
    ASSERT_EQ(v.size(), 12u);
    for (std::size_t i = 0; i < v.size(); ++i)
        EXPECT_EQ(v[i], static_cast<float>(i) / 3.0f) << i;
}

TEST(npy_numpy_files, float64_3d)
{
    const npy_array a = read_npy(numpy_dir + "/f8_2x3x5.npy");
    EXPECT_EQ(a.dtype, "<f8");
    EXPECT_EQ(a.shape, (std::vector<std::size_t>{2, 3, 5}));
    const std::vector<double> v = a.values<double>();
    ASSERT_EQ(v.size(), 30u);
    for (std::size_t i = 0; i < v.size(); ++i)
        EXPECT_EQ(v[i], static_cast<double>(i) / 7.0 - 2.0) << i;
}

TEST(npy_numpy_files, scalar_and_empty)
{
    const npy_array s = read_npy(numpy_dir + "/f8_scalar.npy");
    EXPECT_TRUE(s.shape.empty());
    EXPECT_EQ(s.size(), 1u);
    EXPECT_EQ(s.values<double>(), std::vector<double>{3.141592653589793});

    const npy_array e = read_npy(numpy_dir + "/f4_empty.npy");
    EXPECT_EQ(e.shape, std::vector<std::size_t>{0});
    EXPECT_EQ(e.size(), 0u);
    EXPECT_TRUE(e.values<float>().empty());
}

TEST(npy_numpy_files, version_2_and_3)
{
    const npy_array v2 = read_npy(numpy_dir + "/f8_5_v2.npy");
    EXPECT_EQ(v2.shape, std::vector<std::size_t>{5});
    const std::vector<double> d = v2.values<double>();
    ASSERT_EQ(d.size(), 5u);
    for (std::size_t i = 0; i < d.size(); ++i)
        EXPECT_EQ(d[i], static_cast<double>(i) * 0.1) << i;

    const npy_array v3 = read_npy(numpy_dir + "/f4_2x2_v3.npy");
    EXPECT_EQ(v3.shape, (std::vector<std::size_t>{2, 2}));
    const std::vector<float> expected = {1.5f, -2.25f, static_cast<float>(1e-3), static_cast<float>(3e38)};
    EXPECT_EQ(v3.values<float>(), expected);
}

TEST(npy_numpy_files, rejected)
{
    expect_read_error(numpy_dir + "/f8_fortran.npy", "fortran order");
    expect_read_error(numpy_dir + "/f8_big_endian.npy", "unsupported dtype '>f8'");
}

TEST_F(npy_test, header_syntax_variants)
{
    const std::vector<std::string> headers = {
        "{'shape': (2, 3), 'fortran_order': False, 'descr': '<f8'}",
        "{ \"descr\" : \"<f8\" ,\n\t'fortran_order':False,'shape':(2,3,)  ,  }   \n",
        "  {'fortran_order': False, 'shape': ( 2 , 3 ), 'descr': '<f8', }\n",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2L, 3L), }\n",  // Python 2 numpy
    };
    for (const std::string& h : headers)
    {
        const std::string p = write_raw("v.npy", npy_bytes(h, f8_data(6)));
        const npy_array a = read_npy(p);
        EXPECT_EQ(a.shape, (std::vector<std::size_t>{2, 3})) << h;
        EXPECT_EQ(a.dtype, "<f8") << h;
    }
    const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }\n";
    const std::string four_bytes("\x00\x00\x80\x3f", 4);  // 1.0f
    for (unsigned char major : {2, 3})
    {
        const npy_array a = read_npy(write_raw("v.npy", npy_bytes(dict, four_bytes, major)));
        EXPECT_EQ(a.values<float>(), std::vector<float>{1.0f});
    }
}

TEST_F(npy_test, malformed_files)
{
    const std::string good = "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }\n";

    expect_read_error(path("missing.npy"), "cannot open");
    expect_read_error(dir_.string(), "cannot open");

    expect_read_error(write_raw("empty.npy", ""), "bad magic");
    expect_read_error(write_raw("text.npy", "hello, world\n"), "bad magic");
    expect_read_error(write_raw("short.npy", "\x93NUM"), "bad magic");

    expect_read_error(write_raw("v4.npy", npy_bytes(good, f8_data(3), 4)), "unsupported version 4.0");
    std::string v11 = npy_bytes(good, f8_data(3));
    v11[7] = 1;
    expect_read_error(write_raw("v11.npy", v11), "unsupported version 1.1");

    const std::string full = npy_bytes(good);
    expect_read_error(write_raw("t1.npy", full.substr(0, 6)), "truncated header");
    expect_read_error(write_raw("t2.npy", full.substr(0, 9)), "truncated header");
    expect_read_error(write_raw("t3.npy", full.substr(0, 30)), "truncated header");
    expect_read_error(write_raw("t4.npy", npy_bytes(good, {}, 2).substr(0, 11)), "truncated header");
    std::string huge_length = npy_bytes(good, f8_data(3), 2);
    huge_length[8] = huge_length[9] = huge_length[10] = huge_length[11] = '\xff';
    expect_read_error(write_raw("t5.npy", huge_length), "truncated header");

    const std::vector<std::string> unparseable = {
        "",
        "['descr', '<f8']",
        "{'descr': '<f8', 'fortran_order': False}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), 'extra': 1}",
        "{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, 'shape': (3,)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (3)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': [3]}",
        "{'descr': '<f8', 'fortran_order': false, 'shape': (3,)}",
        "{'descr': '<f8', 'fortran_order': 0, 'shape': (3,)}",
        "{'descr': '<f8' 'fortran_order': False, 'shape': (3,)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (3,)} x",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (3,)",
        "{'descr: '<f8', 'fortran_order': False, 'shape': (3,)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (-3,)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (3.0,)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (,)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (3,,)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 1),,}",
        std::string("{'descr': '<f8', 'fortran_order': False, 'shape': (3,)}") + '\0',
    };
    for (std::size_t i = 0; i < unparseable.size(); ++i)
    {
        SCOPED_TRACE(unparseable[i]);
        expect_read_error(write_raw("u" + std::to_string(i) + ".npy", npy_bytes(unparseable[i], f8_data(3))),
                          "unparseable header");
    }
    // Python 2 long suffixes never appear in version 3.0 files.
    expect_read_error(write_raw("u3l.npy",
                                npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (3L,)}", f8_data(3), 3)),
                      "unparseable header");

    for (const std::string descr : {"'<i4'", "'>f8'", "'<f2'", "'f8'", "'=f8'", "'|f8'", "'float64'", "[('a', '<f8')]"})
    {
        SCOPED_TRACE(descr);
        const std::string h = "{'descr': " + descr + ", 'fortran_order': False, 'shape': (3,), }";
        expect_read_error(write_raw("d.npy", npy_bytes(h, f8_data(3))), "unsupported dtype");
    }

    const std::string nul_descr = "{'descr': '<f8\0', 'fortran_order': False, 'shape': (3,)}"s;
    expect_read_error(write_raw("d0.npy", npy_bytes(nul_descr, f8_data(3))), "unsupported dtype");

    expect_read_error(write_raw("f.npy",
                                npy_bytes("{'descr': '<f8', 'fortran_order': True, 'shape': (3,), }", f8_data(3))),
                      "fortran order");

    expect_read_error(write_raw("s.npy", npy_bytes(good, f8_data(2))), "data size does not match shape");
    expect_read_error(write_raw("s.npy", npy_bytes(good, f8_data(2))), "too short");
    expect_read_error(write_raw("s.npy", npy_bytes(good, f8_data(3) + "x")), "trailing bytes");
    expect_read_error(write_raw("s.npy", npy_bytes(good)), "too short");

    const std::string too_big = "{'descr': '<f8', 'fortran_order': False, 'shape': (123456789012345678901234567890,)}";
    expect_read_error(write_raw("o1.npy", npy_bytes(too_big)), "shape element overflow");
    const std::string product = "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 2)}";
    expect_read_error(write_raw("o2.npy", npy_bytes(product)), "shape element overflow");
    const std::string bytes = "{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904,)}";
    expect_read_error(write_raw("o3.npy", npy_bytes(bytes)), "shape element overflow");
}

TEST_F(npy_test, non_printable_header_text_stays_on_one_line)
{
    const std::string h = "{'descr': '<f8\nx\x01', 'fortran_order': False, 'shape': (3,)}";
    expect_read_error(write_raw("n.npy", npy_bytes(h, f8_data(3))), "unparseable header");
    const std::string h2 = std::string("{'descr': '<f8\x01\x7f', 'fortran_order': False, 'shape': (3,)}");
    expect_read_error(write_raw("n2.npy", npy_bytes(h2, f8_data(3))), "unsupported dtype");
}
