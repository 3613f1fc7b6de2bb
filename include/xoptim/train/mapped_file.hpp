// A read-only memory-mapped file, and a dataset of fixed-width tokens on top of one.
//
// Training reads a corpus far larger than it needs at once, at random offsets, from several
// loader threads: a mapping lets the kernel page it in on demand and share the pages
// between threads (and processes) without copies or locks. Only POSIX calls are used.
#ifndef XOPTIM_TRAIN_MAPPED_FILE_HPP
#define XOPTIM_TRAIN_MAPPED_FILE_HPP

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

// Tokens are read from the mapping as they are stored (little-endian).
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "xoptim/train/mapped_file.hpp supports little-endian hosts only"
#endif

namespace xoptim::train
{
    // The whole of a file, mapped read-only; move-only, unmapped on destruction.
    //
    // The file must not be truncated while it is mapped: reading a page past the new end
    // raises SIGBUS. Replacing it by rename (as the token cache does) is safe: the mapping
    // keeps the old contents.
    class mapped_file
    {
    public:

        // An empty mapping: size() 0, data() nullptr.
        mapped_file() noexcept = default;

        // Maps `path`; std::runtime_error "PATH: cannot ...: REASON" on failure. A file of
        // size 0 is valid and gives an empty mapping.
        explicit mapped_file(const std::string& path);

        mapped_file(mapped_file&& other) noexcept;
        mapped_file& operator=(mapped_file&& other) noexcept;
        mapped_file(const mapped_file&) = delete;
        mapped_file& operator=(const mapped_file&) = delete;
        ~mapped_file();

        const unsigned char* data() const noexcept
        {
            return m_data;
        }

        std::size_t size() const noexcept
        {
            return m_size;
        }

        bool empty() const noexcept
        {
            return m_size == 0;
        }

        const std::string& path() const noexcept
        {
            return m_path;
        }

        // The file's modification time (ns since the epoch) as seen when it was mapped:
        // taken from the same open file as the mapping, so it describes these bytes.
        std::int64_t mtime_ns() const noexcept
        {
            return m_mtime_ns;
        }

        // The file these bytes are (device, inode), from the same open file: a path
        // renamed over since names another one.
        std::pair<std::uint64_t, std::uint64_t> identity() const noexcept
        {
            return m_identity;
        }

    private:

        void unmap() noexcept;

        std::string m_path;
        unsigned char* m_data = nullptr;
        std::size_t m_size = 0;
        std::int64_t m_mtime_ns = 0;
        std::pair<std::uint64_t, std::uint64_t> m_identity{};
    };

    // A contiguous run of tokens: what token_dataset::slice returns (std::span in C++17).
    template <class T>
    class token_span
    {
    public:

        token_span() noexcept = default;

        token_span(const T* data, std::size_t size) noexcept : m_data(data), m_size(size)
        {
        }

        const T* data() const noexcept
        {
            return m_data;
        }

        std::size_t size() const noexcept
        {
            return m_size;
        }

        bool empty() const noexcept
        {
            return m_size == 0;
        }

        const T& operator[](std::size_t i) const noexcept
        {
            return m_data[i];
        }

        const T* begin() const noexcept
        {
            return m_data;
        }

        const T* end() const noexcept
        {
            return m_data + m_size;
        }

    private:

        const T* m_data = nullptr;
        std::size_t m_size = 0;
    };

    // Tokens of type T (uint8_t, uint16_t or uint32_t, stored little-endian) in a mapped
    // file, from byte `offset` on. Owns its mapping; move-only; safe to read from any
    // number of threads at once.
    template <class T>
    class token_dataset
    {
        static_assert(std::is_same_v<T, std::uint8_t> || std::is_same_v<T, std::uint16_t>
                          || std::is_same_v<T, std::uint32_t>,
                      "xoptim::train::token_dataset: the token type must be uint8_t, uint16_t or uint32_t");

    public:

        // The count of tokens that fill the file after `offset`.
        static constexpr std::size_t whole_file = std::numeric_limits<std::size_t>::max();

        token_dataset() noexcept = default;

        // Throws std::invalid_argument naming the file where offset is not a multiple of
        // sizeof(T) (tokens are read in place, so they must be aligned), where the tokens
        // would run past the end of the file, or, with `whole_file`, where the bytes after
        // offset are not a whole number of tokens.
        explicit token_dataset(mapped_file file, std::size_t offset = 0, std::size_t count = whole_file);

        // A moved-from dataset is empty, not a view of a mapping it no longer owns.
        token_dataset(token_dataset&& other) noexcept
            : m_file(std::move(other.m_file)),
              m_tokens(std::exchange(other.m_tokens, nullptr)),
              m_size(std::exchange(other.m_size, 0))
        {
        }

        token_dataset& operator=(token_dataset&& other) noexcept
        {
            if (this != &other)
            {
                m_file = std::move(other.m_file);
                m_tokens = std::exchange(other.m_tokens, nullptr);
                m_size = std::exchange(other.m_size, 0);
            }
            return *this;
        }

        std::size_t size() const noexcept
        {
            return m_size;
        }

        bool empty() const noexcept
        {
            return m_size == 0;
        }

        const T* data() const noexcept
        {
            return m_tokens;
        }

        T operator[](std::size_t i) const noexcept
        {
            return m_tokens[i];
        }

        // As operator[], with std::out_of_range past the end.
        T at(std::size_t i) const;

        // Tokens [first, first + count); std::out_of_range where that runs past the end.
        token_span<T> slice(std::size_t first, std::size_t count) const;

        const T* begin() const noexcept
        {
            return m_tokens;
        }

        const T* end() const noexcept
        {
            return m_tokens + m_size;
        }

        const mapped_file& file() const noexcept
        {
            return m_file;
        }

    private:

        mapped_file m_file;
        const T* m_tokens = nullptr;
        std::size_t m_size = 0;
    };

    // ---------------------------------------------------------------------------------
    // Definitions

    inline mapped_file::mapped_file(const std::string& path) : m_path(path)
    {
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0)
        {
            throw std::runtime_error(path + ": cannot open: " + std::strerror(errno));
        }
        struct stat st;
        if (::fstat(fd, &st) != 0)
        {
            const int error = errno;
            ::close(fd);
            throw std::runtime_error(path + ": cannot stat: " + std::strerror(error));
        }
        if (!S_ISREG(st.st_mode))
        {
            ::close(fd);
            throw std::runtime_error(path + ": cannot map: "
                                     + (S_ISDIR(st.st_mode) ? "is a directory" : "not a regular file"));
        }
        m_size = static_cast<std::size_t>(st.st_size);
        m_mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
        m_identity = {static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)};
        // mmap refuses a length of 0; an empty file is an empty mapping.
        if (m_size > 0)
        {
            void* p = ::mmap(nullptr, m_size, PROT_READ, MAP_SHARED, fd, 0);
            if (p == MAP_FAILED)
            {
                const int error = errno;
                ::close(fd);
                throw std::runtime_error(path + ": cannot map: " + std::strerror(error));
            }
            m_data = static_cast<unsigned char*>(p);
        }
        // The mapping holds its own reference to the file.
        ::close(fd);
    }

    inline mapped_file::mapped_file(mapped_file&& other) noexcept
        : m_path(std::move(other.m_path)),
          m_data(std::exchange(other.m_data, nullptr)),
          m_size(std::exchange(other.m_size, 0)),
          m_mtime_ns(std::exchange(other.m_mtime_ns, 0)),
          m_identity(std::exchange(other.m_identity, {}))
    {
    }

    inline mapped_file& mapped_file::operator=(mapped_file&& other) noexcept
    {
        if (this != &other)
        {
            unmap();
            m_path = std::move(other.m_path);
            m_data = std::exchange(other.m_data, nullptr);
            m_size = std::exchange(other.m_size, 0);
            m_mtime_ns = std::exchange(other.m_mtime_ns, 0);
            m_identity = std::exchange(other.m_identity, {});
        }
        return *this;
    }

    inline mapped_file::~mapped_file()
    {
        unmap();
    }

    inline void mapped_file::unmap() noexcept
    {
        if (m_data != nullptr)
        {
            ::munmap(m_data, m_size);
            m_data = nullptr;
            m_size = 0;
        }
    }

    template <class T>
    token_dataset<T>::token_dataset(mapped_file file, std::size_t offset, std::size_t count)
        : m_file(std::move(file))
    {
        const std::string& path = m_file.path();
        const std::size_t bytes = m_file.size();
        if (offset % sizeof(T) != 0)
        {
            throw std::invalid_argument(path + ": token offset " + std::to_string(offset)
                                        + " is not a multiple of the token size " + std::to_string(sizeof(T)));
        }
        if (offset > bytes)
        {
            throw std::invalid_argument(path + ": token offset " + std::to_string(offset)
                                        + " is past the end of the file (" + std::to_string(bytes) + " bytes)");
        }
        const std::size_t available = (bytes - offset) / sizeof(T);
        if (count == whole_file)
        {
            if ((bytes - offset) % sizeof(T) != 0)
            {
                throw std::invalid_argument(path + ": " + std::to_string(bytes - offset)
                                            + " bytes of tokens is not a multiple of the token size "
                                            + std::to_string(sizeof(T)));
            }
            count = available;
        }
        else if (count > available)
        {
            throw std::invalid_argument(path + ": " + std::to_string(count) + " tokens of " + std::to_string(sizeof(T))
                                        + " bytes from offset " + std::to_string(offset)
                                        + " run past the end of the file (" + std::to_string(bytes) + " bytes)");
        }
        m_size = count;
        // The mapping is page-aligned and offset a multiple of sizeof(T): reading in place
        // is aligned. The memory has no declared type, so viewing it as T is allowed.
        m_tokens = m_file.data() == nullptr ? nullptr : reinterpret_cast<const T*>(m_file.data() + offset);
    }

    template <class T>
    T token_dataset<T>::at(std::size_t i) const
    {
        if (i >= m_size)
        {
            throw std::out_of_range(m_file.path() + ": token " + std::to_string(i) + " is out of range (size "
                                    + std::to_string(m_size) + ")");
        }
        return m_tokens[i];
    }

    template <class T>
    token_span<T> token_dataset<T>::slice(std::size_t first, std::size_t count) const
    {
        if (first > m_size || count > m_size - first)
        {
            throw std::out_of_range(m_file.path() + ": tokens [" + std::to_string(first) + ", "
                                    + std::to_string(first) + " + " + std::to_string(count)
                                    + ") are out of range (size " + std::to_string(m_size) + ")");
        }
        return token_span<T>(m_tokens + first, count);
    }
}

#endif
