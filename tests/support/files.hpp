// Whole files as bytes, for tests that damage them.
#ifndef XOPTIM_TESTS_SUPPORT_FILES_HPP
#define XOPTIM_TESTS_SUPPORT_FILES_HPP

#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

namespace xoptim_test
{
    using bytes = std::vector<unsigned char>;

    inline bytes read_file(const std::filesystem::path& p)
    {
        std::ifstream in(p, std::ios::binary);
        return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    }

    inline void write_file(const std::filesystem::path& p, const bytes& b)
    {
        std::ofstream out(p, std::ios::binary);
        out.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
    }
}

#endif
