// What the file-reading fuzz targets share: a scratch directory of their own (in memory
// where /dev/shm exists, removed at exit), writing an input to a file there, and writing
// seed files for the repository's corpus when XOPTIM_FUZZ_WRITE_SEEDS names a directory.
#ifndef XOPTIM_TESTS_FUZZ_FUZZ_SUPPORT_HPP
#define XOPTIM_TESTS_FUZZ_FUZZ_SUPPORT_HPP

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <stdlib.h>
#include <unistd.h>

namespace xoptim_fuzz
{
    inline const std::filesystem::path& scratch()
    {
        static const std::filesystem::path dir = [] {
            std::string where = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
            std::string pattern = where + "/xoptim_fuzz_XXXXXX";
            if (::mkdtemp(pattern.data()) == nullptr)
            {
                std::abort();
            }
            std::atexit([] { std::filesystem::remove_all(scratch()); });
            return std::filesystem::path(pattern);
        }();
        return dir;
    }

    inline std::string write(const std::string& name, const std::uint8_t* data, std::size_t size)
    {
        const std::string path = (scratch() / name).string();
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(data), std::streamsize(size));
        if (!out)
        {
            std::abort();
        }
        return path;
    }

    // Where seed files go, or empty: a run with XOPTIM_FUZZ_WRITE_SEEDS=DIR writes the
    // target's seeds there and exits (tools/fuzz.sh --seeds).
    inline std::string seeds_dir()
    {
        const char* dir = std::getenv("XOPTIM_FUZZ_WRITE_SEEDS");
        return dir != nullptr ? dir : "";
    }

    inline void write_seed(const std::string& name, const std::string& bytes)
    {
        std::filesystem::create_directories(seeds_dir());
        std::ofstream out(std::filesystem::path(seeds_dir()) / name, std::ios::binary | std::ios::trunc);
        out.write(bytes.data(), std::streamsize(bytes.size()));
    }

    inline std::string read(const std::string& path)
    {
        std::ifstream in(path, std::ios::binary);
        return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    }
}

#endif
