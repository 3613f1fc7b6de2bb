// Buffers sized by what a file says. A reader allocates them only after the header that
// gives the size has been checked against the file, and through resize_for_file, which
// refuses sizes beyond the machine's memory with a std::runtime_error naming the file
// (a sparse file of a terabyte, a header that claims one) instead of letting
// std::bad_alloc, or the sanitizers' allocation limits, end the program.
#ifndef XOPTIM_IO_READ_BUFFER_HPP
#define XOPTIM_IO_READ_BUFFER_HPP

#include <cstddef>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>

namespace xoptim::io
{
    // Bytes of physical memory; the largest size_t where the system does not say.
    inline std::size_t physical_memory() noexcept
    {
        const long pages = ::sysconf(_SC_PHYS_PAGES);
        const long page_size = ::sysconf(_SC_PAGE_SIZE);
        if (pages <= 0 || page_size <= 0 || std::size_t(pages) > std::numeric_limits<std::size_t>::max() / std::size_t(page_size))
        {
            return std::numeric_limits<std::size_t>::max();
        }
        return std::size_t(pages) * std::size_t(page_size);
    }

    // Resizes `buffer` to `bytes` bytes for the contents of `path`; `what` names them in
    // the message ("the data section").
    template <class Byte>
    void resize_for_file(std::vector<Byte>& buffer, std::size_t bytes, const std::string& path, const char* what)
    {
        static_assert(sizeof(Byte) == 1, "xoptim::io::resize_for_file: a buffer of bytes");
        const std::size_t memory = physical_memory();
        const auto refuse = [&] {
            throw std::runtime_error(path + ": " + what + " of " + std::to_string(bytes)
                                     + " bytes does not fit in memory (" + std::to_string(memory) + " bytes here)");
        };
        if (bytes > memory)
        {
            refuse();
        }
        try
        {
            buffer.resize(bytes);
        }
        catch (const std::bad_alloc&)
        {
            refuse();
        }
    }
}

#endif
