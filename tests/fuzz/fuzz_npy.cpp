// libFuzzer target for the npy reader: any file either reads or throws
// std::runtime_error naming the path; a file that reads holds exactly shape x item size
// bytes, its values come out as its dtype, and it is written back and read again the same.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <xoptim/io/npy.hpp>

#include "fuzz_support.hpp"

namespace
{
    [[noreturn]] void wrong(const std::string& what)
    {
        std::fprintf(stderr, "fuzz_npy: %s\n", what.c_str());
        std::abort();
    }

    template <class T>
    void round_trip(const xoptim::io::npy_array& a)
    {
        const std::vector<T> values = a.values<T>();
        if (values.size() != a.size())
        {
            wrong("values() gave " + std::to_string(values.size()) + " of " + std::to_string(a.size()));
        }
        const std::string again = (xoptim_fuzz::scratch() / "again.npy").string();
        xoptim::io::write_npy(again, values.data(), a.shape);
        const auto b = xoptim::io::read_npy(again);
        if (b.dtype != a.dtype || b.shape != a.shape || b.bytes != a.bytes)
        {
            wrong("written back, the array reads differently");
        }
    }
}

extern "C" int LLVMFuzzerInitialize(int*, char***)
{
    if (!xoptim_fuzz::seeds_dir().empty())
    {
        const float f[6] = {1, -2, 3.5f, 0, -0.0f, 1e-40f};
        const double d[3] = {1e300, -1, 0.25};
        const auto seed = [](const char* name, const auto* data, std::vector<std::size_t> shape) {
            const std::string path = (xoptim_fuzz::scratch() / "seed.npy").string();
            xoptim::io::write_npy(path, data, shape);
            xoptim_fuzz::write_seed(name, xoptim_fuzz::read(path));
        };
        seed("f4_2x3", f, {2, 3});
        seed("f4_scalar", f, {});
        seed("f4_empty", f, {0, 5});
        seed("f8_3", d, {3});
        // Version 2.0 and 3.0 headers, and a Python 2 style shape.
        const std::string dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (3L,), }";
        std::string header = dict + std::string(64 - (12 + dict.size() + 1) % 64, ' ') + "\n";
        const auto u32 = [](std::size_t n) {
            return std::string{char(n & 0xff), char((n >> 8) & 0xff), char((n >> 16) & 0xff), char(n >> 24)};
        };
        const std::string data(reinterpret_cast<const char*>(d), sizeof d);
        xoptim_fuzz::write_seed("f8_v2_long", std::string("\x93NUMPY\x02\x00", 8) + u32(header.size()) + header + data);
        xoptim_fuzz::write_seed("f8_v3", std::string("\x93NUMPY\x03\x00", 8) + u32(header.size()) + header + data);
        std::exit(0);
    }
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string path = xoptim_fuzz::write("input.npy", data, size);
    xoptim::io::npy_array a;
    try
    {
        a = xoptim::io::read_npy(path);
    }
    catch (const std::runtime_error& e)
    {
        if (std::string(e.what()).rfind(path + ": ", 0) != 0)
        {
            wrong(std::string("an error that does not name the file: ") + e.what());
        }
        return 0;
    }
    std::size_t item = a.dtype == "<f4" ? 4 : a.dtype == "<f8" ? 8 : 0;
    if (item == 0 || a.bytes.size() != a.size() * item)
    {
        wrong("read an array of dtype '" + a.dtype + "' with " + std::to_string(a.bytes.size()) + " bytes for "
              + std::to_string(a.size()) + " elements");
    }
    if (item == 4)
    {
        round_trip<float>(a);
    }
    else
    {
        round_trip<double>(a);
    }
    return 0;
}
