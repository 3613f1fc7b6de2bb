// NumPy .npy reader/writer for little-endian float32/float64 arrays in C order.
// Reads format versions 1.0, 2.0 and 3.0; writes version 1.0 as numpy does.
#ifndef XOPTIM_IO_NPY_HPP
#define XOPTIM_IO_NPY_HPP

#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include "atomic_file.hpp"
#include "quote.hpp"
#include "read_buffer.hpp"

// Data bytes are copied to and from memory as they are, so the host must match the file.
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "xoptim/io/npy.hpp supports little-endian hosts only"
#endif

namespace xoptim::io
{

    static_assert(std::numeric_limits<float>::is_iec559 && sizeof(float) == 4 && std::numeric_limits<double>::is_iec559
                      && sizeof(double) == 8,
                  "xoptim/io/npy.hpp needs IEEE 754 float and double");

    struct npy_array
    {
        std::string dtype;               // "<f4" or "<f8"
        std::vector<std::size_t> shape;  // empty for a 0-d array
        std::vector<char> bytes;         // C order, little-endian

        std::size_t size() const;  // product of shape; 1 for a 0-d array

        template <class T>
        std::vector<T> values() const;  // throws std::runtime_error if T does not match dtype
    };

    npy_array read_npy(const std::string& path);

    template <class T>
    void write_npy(const std::string& path, const T* data, const std::vector<std::size_t>& shape);

    namespace detail
    {

        inline constexpr std::string_view npy_magic{"\x93NUMPY", 6};
        inline constexpr std::size_t npy_align = 64;
        // A header holds a dtype, a flag and a shape: a few hundred bytes. Longer ones are
        // damaged or hostile (numpy itself refuses more than 10,000 by default).
        inline constexpr std::uint64_t npy_max_header = 1 << 20;

        [[noreturn]] inline void fail(const std::string& path, const std::string& problem)
        {
            throw std::runtime_error(path + ": " + problem);
        }

        template <class T>
        constexpr const char* dtype_of()
        {
            static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                          "npy arrays hold only float or double elements");
            return std::is_same_v<T, float> ? "<f4" : "<f8";
        }

        // 0 for anything this reader does not support.
        inline std::size_t item_size(std::string_view dtype)
        {
            if (dtype == "<f4")
                return 4;
            if (dtype == "<f8")
                return 8;
            return 0;
        }

        inline bool checked_mul(std::size_t a, std::size_t b, std::size_t& out)
        {
            if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a)
                return false;
            out = a * b;
            return true;
        }

        inline bool checked_product(const std::vector<std::size_t>& shape, std::size_t& out)
        {
            out = 1;
            for (std::size_t d : shape)
                if (!checked_mul(out, d, out))
                    return false;
            return true;
        }

        struct npy_header
        {
            std::string descr;
            bool fortran_order = false;
            std::vector<std::size_t> shape;
        };

        // Parses the Python dict literal numpy writes, e.g.
        // {'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }
        class npy_header_parser
        {
        public:

            npy_header_parser(const std::string& path, std::string_view text, bool allow_long_suffix)
                : path_(path),
                  text_(text),
                  allow_long_suffix_(allow_long_suffix)
            {
            }

            npy_header parse()
            {
                npy_header h;
                bool seen_descr = false, seen_fortran = false, seen_shape = false;
                skip_space();
                expect('{', "'{' to open the dictionary");
                for (;;)
                {
                    skip_space();
                    if (consume('}'))
                        break;
                    const std::string key = parse_string();
                    skip_space();
                    expect(':', "':' after a key");
                    skip_space();
                    if (key == "descr")
                    {
                        mark_seen(seen_descr, key);
                        h.descr = parse_descr();
                    }
                    else if (key == "fortran_order")
                    {
                        mark_seen(seen_fortran, key);
                        h.fortran_order = parse_bool();
                    }
                    else if (key == "shape")
                    {
                        mark_seen(seen_shape, key);
                        h.shape = parse_shape();
                    }
                    else
                    {
                        error("unexpected key " + quote(key));
                    }
                    skip_space();
                    if (consume(','))
                        continue;
                    expect('}', "',' or '}' after a value");
                    break;
                }
                skip_space();
                if (pos_ != text_.size())
                    error("unexpected text after the dictionary");
                if (!seen_descr)
                    error("missing key 'descr'");
                if (!seen_fortran)
                    error("missing key 'fortran_order'");
                if (!seen_shape)
                    error("missing key 'shape'");
                return h;
            }

        private:

            [[noreturn]] void error(const std::string& what) const
            {
                fail(path_, "unparseable header: " + what + " (at offset " + std::to_string(pos_) + ")");
            }

            bool at_end() const
            {
                return pos_ >= text_.size();
            }
            char peek() const
            {
                return at_end() ? '\0' : text_[pos_];
            }

            void skip_space()
            {
                while (!at_end() && std::isspace(static_cast<unsigned char>(text_[pos_])))
                    ++pos_;
            }

            bool consume(char c)
            {
                if (at_end() || text_[pos_] != c)
                    return false;
                ++pos_;
                return true;
            }

            void expect(char c, const char* what)
            {
                if (!consume(c))
                    error(std::string("expected ") + what);
            }

            void mark_seen(bool& seen, const std::string& key)
            {
                if (seen)
                    error("duplicate key " + quote(key));
                seen = true;
            }

            std::string parse_string()
            {
                const char quote = peek();
                if (quote != '\'' && quote != '"')
                    error("expected a quoted string");
                const std::size_t begin = ++pos_;
                while (!at_end() && text_[pos_] != quote)
                {
                    if (text_[pos_] == '\\' || text_[pos_] == '\n')
                        error("unsupported character in string");
                    ++pos_;
                }
                if (at_end())
                    error("unterminated string");
                return std::string(text_.substr(begin, pos_++ - begin));
            }

            std::string parse_descr()
            {
                if (peek() == '[')
                    fail(path_, "unsupported dtype: structured arrays are not supported");
                return parse_string();
            }

            bool parse_bool()
            {
                const std::size_t begin = pos_;
                while (!at_end() && std::isalpha(static_cast<unsigned char>(text_[pos_])))
                    ++pos_;
                const std::string_view word = text_.substr(begin, pos_ - begin);
                if (word == "True")
                    return true;
                if (word == "False")
                    return false;
                pos_ = begin;
                error("expected True or False");
            }

            std::vector<std::size_t> parse_shape()
            {
                expect('(', "'(' to open the shape tuple");
                std::vector<std::size_t> shape;
                for (;;)
                {
                    skip_space();
                    if (consume(')'))
                        return shape;
                    shape.push_back(parse_dim());
                    skip_space();
                    if (consume(','))
                        continue;
                    // Python reads "(5)" as an int, not a tuple; numpy rejects it too.
                    if (shape.size() == 1 && peek() == ')')
                        error("one-element shape needs a trailing comma");
                    expect(')', "',' or ')' in the shape tuple");
                    return shape;
                }
            }

            std::size_t parse_dim()
            {
                if (peek() == '-')
                    error("negative dimension");
                if (!std::isdigit(static_cast<unsigned char>(peek())))
                    error("expected a dimension");
                std::size_t value = 0;
                while (std::isdigit(static_cast<unsigned char>(peek())))
                {
                    const auto digit = static_cast<std::size_t>(text_[pos_] - '0');
                    if (value > (std::numeric_limits<std::size_t>::max() - digit) / 10)
                        fail(path_, "shape element overflow: a dimension does not fit in size_t");
                    value = value * 10 + digit;
                    ++pos_;
                }
                // Python 2 numpy wrote long literals such as 3L; numpy itself accepts them in 1.0 and 2.0.
                if (allow_long_suffix_ && (peek() == 'L' || peek() == 'l'))
                    ++pos_;
                return value;
            }

            const std::string& path_;
            std::string_view text_;
            bool allow_long_suffix_;
            std::size_t pos_ = 0;
        };

        // Returns false where the stream ends early.
        inline bool read_exact(std::istream& in, char* out, std::size_t n)
        {
            if (n == 0)
                return true;
            in.read(out, static_cast<std::streamsize>(n));
            return static_cast<std::size_t>(in.gcount()) == n;
        }

        inline std::string npy_prefix_and_header(const std::string& path, const char* dtype,
                                                 const std::vector<std::size_t>& shape)
        {
            std::string dict = std::string("{'descr': '") + dtype + "', 'fortran_order': False, 'shape': (";
            for (std::size_t i = 0; i < shape.size(); ++i)
            {
                if (i != 0)
                    dict += ", ";
                dict += std::to_string(shape[i]);
            }
            if (shape.size() == 1)
                dict += ',';
            dict += "), }";

            constexpr std::size_t prefix_size = npy_magic.size() + 2 + 2;  // magic, version, uint16 length
            const std::size_t unpadded = prefix_size + dict.size() + 1;    // + '\n'
            dict.append((npy_align - unpadded % npy_align) % npy_align, ' ');
            dict += '\n';
            if (dict.size() > 0xffff)
                fail(path, "header too long for format version 1.0");

            std::string out(npy_magic);
            out += '\x01';
            out += '\x00';
            out += static_cast<char>(dict.size() & 0xff);
            out += static_cast<char>((dict.size() >> 8) & 0xff);
            return out + dict;
        }

    }  // namespace detail

    inline std::size_t npy_array::size() const
    {
        std::size_t n = 0;
        if (!detail::checked_product(shape, n))
            throw std::overflow_error("npy_array::size: shape element overflow");
        return n;
    }

    template <class T>
    std::vector<T> npy_array::values() const
    {
        const char* wanted = detail::dtype_of<T>();
        if (dtype != wanted)
            throw std::runtime_error("npy_array::values: requested dtype '" + std::string(wanted)
                                     + "' but the array holds " + quote(dtype));
        const std::size_t n = size();
        if (n > bytes.size() / sizeof(T) || bytes.size() != n * sizeof(T))
            throw std::runtime_error("npy_array::values: " + std::to_string(bytes.size())
                                     + " bytes do not match a shape of " + std::to_string(n) + " elements");
        std::vector<T> out(n);
        if (n != 0)
            std::memcpy(out.data(), bytes.data(), bytes.size());
        return out;
    }

    inline npy_array read_npy(const std::string& path)
    {
        std::error_code ec;
        if (std::filesystem::is_directory(path, ec))
            detail::fail(path, "cannot open: is a directory");
        errno = 0;
        std::ifstream in(path, std::ios::binary);
        if (!in)
        {
            const int error = errno;  // libstdc++ keeps open()'s errno; other libraries may not set it
            detail::fail(path,
                         error != 0 ? std::string("cannot open file: ") + std::strerror(error) : "cannot open file");
        }

        in.seekg(0, std::ios::end);
        const std::streamoff end = in.tellg();
        in.seekg(0, std::ios::beg);
        if (end < 0 || !in)
            detail::fail(path, "cannot open: cannot determine the file size");
        const auto file_size = static_cast<std::uint64_t>(end);

        char magic[6];
        if (!detail::read_exact(in, magic, sizeof magic) || std::string_view(magic, sizeof magic) != detail::npy_magic)
            detail::fail(path, "bad magic: not a .npy file");

        unsigned char version[2];
        if (!detail::read_exact(in, reinterpret_cast<char*>(version), 2))
            detail::fail(path, "truncated header: file ends inside the version");
        const bool v1 = version[0] == 1 && version[1] == 0;
        if (!v1 && !(version[0] == 2 && version[1] == 0) && !(version[0] == 3 && version[1] == 0))
            detail::fail(path, "unsupported version " + std::to_string(version[0]) + "." + std::to_string(version[1])
                                   + " (expected 1.0, 2.0 or 3.0)");

        // Version 1.0 stores the header length as uint16, later versions as uint32, both little-endian.
        unsigned char length_bytes[4] = {};
        const std::size_t length_size = v1 ? 2 : 4;
        if (!detail::read_exact(in, reinterpret_cast<char*>(length_bytes), length_size))
            detail::fail(path, "truncated header: file ends inside the header length");
        std::uint64_t header_size = 0;
        for (std::size_t i = length_size; i-- > 0;)
            header_size = header_size << 8 | length_bytes[i];

        const std::uint64_t header_begin = detail::npy_magic.size() + 2 + length_size;
        // Checked before allocating so a corrupt length cannot request gigabytes.
        if (header_size > file_size - header_begin)
            detail::fail(path, "truncated header: header length " + std::to_string(header_size) + " exceeds the "
                                   + std::to_string(file_size - header_begin) + " bytes left in the file");
        if (header_size > detail::npy_max_header)
            detail::fail(path, "header length " + std::to_string(header_size) + " exceeds the "
                                   + std::to_string(detail::npy_max_header) + "-byte limit");
        std::string header_text(static_cast<std::size_t>(header_size), '\0');
        if (!detail::read_exact(in, header_text.data(), header_text.size()))
            detail::fail(path, "truncated header: file ends inside the header");

        // Versions 1.0 and 2.0 may come from Python 2, which wrote shapes like (3L, 4L).
        const bool allow_long_suffix = version[0] < 3;
        detail::npy_header header = detail::npy_header_parser(path, header_text, allow_long_suffix).parse();

        const std::size_t item = detail::item_size(header.descr);
        if (item == 0)
            detail::fail(path, "unsupported dtype " + quote(header.descr) + " (expected '<f4' or '<f8')");
        if (header.fortran_order)
            detail::fail(path, "fortran order arrays are not supported");

        std::size_t count = 0, data_size = 0;
        if (!detail::checked_product(header.shape, count) || !detail::checked_mul(count, item, data_size))
            detail::fail(path, "shape element overflow: the data size does not fit in size_t");

        const std::uint64_t data_left = file_size - header_begin - header_size;
        if (data_left != data_size)
            detail::fail(path, "data size does not match shape: expected " + std::to_string(data_size)
                                   + " bytes, file has " + std::to_string(data_left)
                                   + (data_left < data_size ? " (too short)" : " (trailing bytes)"));

        npy_array out;
        out.dtype = std::move(header.descr);
        out.shape = std::move(header.shape);
        resize_for_file(out.bytes, data_size, path, "the data");
        if (!detail::read_exact(in, out.bytes.data(), data_size))
            detail::fail(path, "data size does not match shape: file ends inside the data (too short)");
        return out;
    }

    template <class T>
    void write_npy(const std::string& path, const T* data, const std::vector<std::size_t>& shape)
    {
        static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                      "write_npy writes only float or double arrays");
        std::size_t count = 0, data_size = 0;
        if (!detail::checked_product(shape, count) || !detail::checked_mul(count, sizeof(T), data_size))
            detail::fail(path, "shape element overflow: the data size does not fit in size_t");
        if (count != 0 && data == nullptr)
            throw std::invalid_argument(path + ": data is null but the shape holds " + std::to_string(count)
                                        + " elements");

        const std::string header = detail::npy_prefix_and_header(path, detail::dtype_of<T>(), shape);

        atomic_file file(path);
        file.write(header.data(), header.size());
        file.write(data, data_size);
        file.commit();
    }

}  // namespace xoptim::io

#endif
