// safetensors files: the checkpoint format of Hugging Face's safetensors library.
//
// A file is an 8-byte little-endian header length N, N bytes of JSON, then the data section:
//
//   {"__metadata__": {"key": "value", ...},
//    "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
//
// Offsets count bytes from the start of the data section; the tensors must cover it exactly,
// without holes or overlaps. Data is raw, little-endian, C order. Files written here are
// read by Python's safetensors, and by numpy + json alone (tests/support/read_safetensors.py).
//
// The JSON reader and writer handle only what the format uses (objects, strings, non-negative
// integers, arrays of integers) and are strict: a reader that shrugs at a damaged header
// would load garbage weights. Every error names the file and the problem, and the tensor
// where there is one. Only the standard library and POSIX file calls are used.
#ifndef XOPTIM_IO_SAFETENSORS_HPP
#define XOPTIM_IO_SAFETENSORS_HPP

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "atomic_file.hpp"
#include "json.hpp"
#include "quote.hpp"
#include "read_buffer.hpp"
#include "separate.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

// Data bytes are copied to and from memory as they are, so the host must match the file.
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "xoptim/io/safetensors.hpp supports little-endian hosts only"
#endif

namespace xoptim::io
{
    // The element types this layer reads and writes, named as safetensors names them.
    // Files holding other safetensors types (BOOL, U16, F8_E4M3, ...) are refused on read.
    enum class st_dtype
    {
        F64,
        F32,
        BF16,
        F16,
        I64,
        I32,
        U32,
        I8,
        U8
    };

    // Bytes per element; 0 for a value that is not an enumerator.
    constexpr std::size_t st_dtype_size(st_dtype t) noexcept
    {
        switch (t)
        {
            case st_dtype::F64:
            case st_dtype::I64:
                return 8;
            case st_dtype::F32:
            case st_dtype::I32:
            case st_dtype::U32:
                return 4;
            case st_dtype::BF16:
            case st_dtype::F16:
                return 2;
            case st_dtype::I8:
            case st_dtype::U8:
                return 1;
        }
        return 0;
    }

    // The header string: "F64", "F32", ...; "?" for a value that is not an enumerator.
    constexpr const char* st_dtype_name(st_dtype t) noexcept
    {
        switch (t)
        {
            case st_dtype::F64: return "F64";
            case st_dtype::F32: return "F32";
            case st_dtype::BF16: return "BF16";
            case st_dtype::F16: return "F16";
            case st_dtype::I64: return "I64";
            case st_dtype::I32: return "I32";
            case st_dtype::U32: return "U32";
            case st_dtype::I8: return "I8";
            case st_dtype::U8: return "U8";
        }
        return "?";
    }

    // The inverse of st_dtype_name; nothing for a string it does not produce (case matters).
    inline std::optional<st_dtype> st_dtype_from_name(std::string_view name) noexcept
    {
        constexpr st_dtype all[] = {st_dtype::F64, st_dtype::F32, st_dtype::BF16, st_dtype::F16, st_dtype::I64,
                                    st_dtype::I32, st_dtype::U32,  st_dtype::I8,   st_dtype::U8};
        for (st_dtype t : all)
        {
            if (name == st_dtype_name(t))
            {
                return t;
            }
        }
        return std::nullopt;
    }

    // The dtype of a C++ element type (BF16 and F16 have none: pass them as raw bytes).
    template <class T>
    constexpr st_dtype st_dtype_of() noexcept
    {
        static_assert(std::is_same_v<T, double> || std::is_same_v<T, float> || std::is_same_v<T, std::int64_t>
                          || std::is_same_v<T, std::int32_t> || std::is_same_v<T, std::uint32_t>
                          || std::is_same_v<T, std::int8_t> || std::is_same_v<T, std::uint8_t>,
                      "xoptim::io::st_dtype_of: no safetensors dtype for this type");
        if constexpr (std::is_same_v<T, double>) return st_dtype::F64;
        else if constexpr (std::is_same_v<T, float>) return st_dtype::F32;
        else if constexpr (std::is_same_v<T, std::int64_t>) return st_dtype::I64;
        else if constexpr (std::is_same_v<T, std::int32_t>) return st_dtype::I32;
        else if constexpr (std::is_same_v<T, std::uint32_t>) return st_dtype::U32;
        else if constexpr (std::is_same_v<T, std::int8_t>) return st_dtype::I8;
        else return st_dtype::U8;
    }

    struct st_tensor_info
    {
        std::string name;
        st_dtype dtype = st_dtype::F32;
        std::vector<std::size_t> shape;  // empty for a 0-d tensor (one element)
        std::size_t begin = 0;           // byte offsets into the data section: [begin, end)
        std::size_t end = 0;

        std::size_t bytes() const noexcept
        {
            return end - begin;
        }
    };

    // Collects tensors and metadata, then writes one file.
    //
    // Tensor data is referenced, not copied, so that saving a large model does not hold it
    // twice: the memory passed to add() must stay valid and unchanged until the last write()
    // or serialize() that should contain it has returned.
    //
    // Layout: the data section holds the tensors by element size, largest first, then by
    // name (the order safetensors itself uses), so every tensor starts at a multiple of its
    // element size; the header is padded with spaces so the data section starts at a
    // multiple of 8 in the file.
    class safetensors_writer
    {
    public:

        // Throws std::invalid_argument naming the tensor where the name is empty, taken,
        // "__metadata__" or not UTF-8, or where bytes != product(shape) * st_dtype_size(dtype).
        void add(std::string name, st_dtype dtype, std::vector<std::size_t> shape, const void* data,
                 std::size_t bytes);

        // Sets one entry of the header's "__metadata__" map, replacing an earlier value for
        // the key. Throws std::invalid_argument where the key or value is not UTF-8.
        void metadata(std::string key, std::string value);

        // Writes the file atomically: a temporary file beside the target is written, flushed
        // to disk, renamed over the target, and the directory is flushed. On failure the
        // temporary file is removed, an existing target is left as it was, and the
        // std::runtime_error names the path and the system's reason.
        void write(const std::string& path) const;

        // The whole file in memory, byte for byte what write() puts on disk.
        std::string serialize() const;

    private:

        struct entry
        {
            st_dtype dtype;
            std::vector<std::size_t> shape;
            const void* data;
            std::size_t bytes;
        };

        struct placed
        {
            const std::string* name;
            const entry* tensor;
            std::size_t begin;
        };

        std::vector<placed> layout() const;
        std::string header(const std::vector<placed>& order, const std::string& what) const;

        std::map<std::string, entry> m_tensors;
        std::map<std::string, std::string> m_metadata;
    };

    namespace safetensors_detail
    {
        // An open file descriptor, closed when it goes.
        class file_handle
        {
        public:
            explicit file_handle(int fd) noexcept : m_fd(fd) {}
            file_handle(file_handle&& other) noexcept : m_fd(other.m_fd)
            {
                other.m_fd = -1;
            }
            file_handle& operator=(file_handle&&) = delete;
            ~file_handle()
            {
                if (m_fd >= 0)
                {
                    ::close(m_fd);
                }
            }

            int get() const noexcept
            {
                return m_fd;
            }

        private:
            int m_fd;
        };
    }

    // A safetensors file, checked on reading. The header is read and checked first: its
    // length against the file's, its tensors against the data section (they must tile
    // it). Only then is the data section read, into a buffer of exactly that size, so no
    // allocation is ever sized by a number the file made up.
    class safetensors_file
    {
    public:

        // Reads and checks a whole file; std::runtime_error "PATH: problem" on any failure.
        static safetensors_file read(const std::string& path);

        // Reads and checks the header only, leaving the file open: a caller checks the
        // tensors' names, dtypes and shapes against what it expects, then read_data()
        // brings in the data section (whose size is then bounded by what it expected).
        static safetensors_file read_header(const std::string& path);

        // Reads the data section of a file opened by read_header (nothing for one that
        // has its data); std::runtime_error "PATH: problem" where it does not fit in
        // memory or the file changed since its header was read.
        void read_data();

        // Checks the bytes of a file; messages start with `what`.
        static safetensors_file parse(std::vector<unsigned char> bytes, const std::string& what);

        const std::map<std::string, std::string>& metadata() const noexcept
        {
            return m_metadata;
        }

        // Sorted by name.
        const std::vector<st_tensor_info>& tensors() const noexcept
        {
            return m_tensors;
        }

        // nullptr where there is no tensor of that name.
        const st_tensor_info* find(const std::string& name) const;

        // The tensor's bytes (info.bytes() of them). Only byte alignment is guaranteed (files
        // from other writers may place tensors anywhere): copy out with std::memcpy.
        // Throws std::out_of_range for an info whose range is not inside this file's data,
        // std::logic_error before read_data().
        const unsigned char* data(const st_tensor_info& info) const;

    private:

        // Checks the header text (`size` bytes) against a data section of `data_size` bytes,
        // or (safetensors_detail::as_the_tensors_say) of as many as its tensors take.
        void parse_header(const unsigned char* text, std::size_t size, std::size_t data_size);

        std::string m_what;                      // the path, or what parse was given
        // Open between read_header and read_data; shared, so a copy can read the data too
        // (of a pipe or device, only the first read_data of the copies gets it).
        std::shared_ptr<const safetensors_detail::file_handle> m_file;
        std::size_t m_data_offset = 0;           // file offset of the data section
        bool m_sequential = false;               // a pipe or device: its data section comes next
        std::size_t m_data_size = 0;
        bool m_has_data = false;
        std::vector<unsigned char> m_bytes;  // the data section, from m_data_begin on
        std::size_t m_data_begin = 0;
        std::map<std::string, std::string> m_metadata;
        std::vector<st_tensor_info> m_tensors;
    };

    // The definitions: in every unit, or in the instantiation unit only (io/separate.hpp).
#if XOPTIM_IO_DEFINE
    namespace safetensors_detail
    {
        // safetensors' own limit; larger lengths are corrupt or hostile, not real headers.
        inline constexpr std::uint64_t max_header_size = 100'000'000;

        inline constexpr const char* metadata_key = "__metadata__";

        [[noreturn]] inline void fail(const std::string& what, const std::string& problem)
        {
            throw std::runtime_error(what + ": " + problem);
        }

        inline bool checked_mul(std::size_t a, std::size_t b, std::size_t& out) noexcept
        {
            if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a)
            {
                return false;
            }
            out = a * b;
            return true;
        }

        // Bytes of a tensor; false where they do not fit in size_t.
        inline bool byte_count(const std::vector<std::size_t>& shape, st_dtype dtype, std::size_t& out) noexcept
        {
            out = st_dtype_size(dtype);
            for (std::size_t d : shape)
            {
                if (!checked_mul(out, d, out))
                {
                    return false;
                }
            }
            return true;
        }

        inline std::string shape_text(const std::vector<std::size_t>& shape)
        {
            constexpr std::size_t max_dims = 8;  // a hostile file may have millions
            std::string out = "[";
            for (std::size_t i = 0; i < shape.size() && i < max_dims; ++i)
            {
                out += (i == 0 ? "" : ", ") + std::to_string(shape[i]);
            }
            return out + (shape.size() > max_dims ? ", ...]" : "]");
        }

        // Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlong forms, no
        // surrogates, nothing above U+10FFFF); 0 where there is none.
        inline std::size_t utf8_length(const unsigned char* p, std::size_t avail) noexcept
        {
            const unsigned char c = p[0];
            if (c < 0x80) return 1;
            // The sequence's length (0: c cannot start one) and its second byte's range.
            const std::size_t n = c < 0xc2 ? 0 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : c < 0xf5 ? 4 : 0;
            const unsigned lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80;
            const unsigned hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
            if (n == 0 || avail < n || p[1] < lo || p[1] > hi)
                return 0;
            for (std::size_t i = 2; i < n; ++i)
            {
                if (p[i] < 0x80 || p[i] > 0xbf) return 0;
            }
            return n;
        }

        inline bool valid_utf8(std::string_view s) noexcept
        {
            const auto* p = reinterpret_cast<const unsigned char*>(s.data());
            for (std::size_t i = 0; i < s.size();)
            {
                const std::size_t n = utf8_length(p + i, s.size() - i);
                if (n == 0) return false;
                i += n;
            }
            return true;
        }

        inline void append_utf8(std::string& out, std::uint32_t cp)
        {
            if (cp < 0x80)
            {
                out += static_cast<char>(cp);
            }
            else if (cp < 0x800)
            {
                out += static_cast<char>(0xc0 | (cp >> 6));
                out += static_cast<char>(0x80 | (cp & 0x3f));
            }
            else if (cp < 0x10000)
            {
                out += static_cast<char>(0xe0 | (cp >> 12));
                out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
                out += static_cast<char>(0x80 | (cp & 0x3f));
            }
            else
            {
                out += static_cast<char>(0xf0 | (cp >> 18));
                out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
                out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
                out += static_cast<char>(0x80 | (cp & 0x3f));
            }
        }

        // Reads the header: one pass over the text, checking syntax and structure together.
        // Where a value has the wrong JSON type the message names the field; where the text is
        // not JSON at all it says so and gives the byte offset.
        class header_parser
        {
        public:

            header_parser(const std::string& what, const unsigned char* text, std::size_t size,
                          std::size_t data_size)
                : m_what(what), m_text(text), m_size(size), m_data_size(data_size)
            {
            }

            void parse(std::map<std::string, std::string>& metadata, std::vector<st_tensor_info>& tensors)
            {
                skip_space();
                if (at_end())
                {
                    syntax("the header is empty");
                }
                if (peek() != '{')
                {
                    wrong_type("header is not a JSON object");
                }
                ++m_pos;
                bool seen_metadata = false;
                std::set<std::string> names;
                skip_space();
                if (!consume('}'))
                {
                    for (;;)
                    {
                        skip_space();
                        std::string key = parse_key();
                        if (key == metadata_key)
                        {
                            if (seen_metadata)
                            {
                                fail(m_what, "duplicate key '__metadata__'");
                            }
                            seen_metadata = true;
                            parse_metadata(metadata);
                        }
                        else
                        {
                            if (!names.insert(key).second)
                            {
                                fail(m_what, "duplicate tensor name " + quote(key));
                            }
                            tensors.push_back(parse_tensor(std::move(key)));
                        }
                        skip_space();
                        if (consume(','))
                        {
                            continue;
                        }
                        expect('}', "',' or '}' after a member of the header object");
                        break;
                    }
                }
                skip_space();
                if (!at_end())
                {
                    syntax("unexpected text after the header object");
                }
            }

        private:

            [[noreturn]] void syntax(const std::string& problem) const
            {
                fail(m_what, "invalid JSON header: " + problem + " (at byte " + std::to_string(m_pos)
                                 + " of the header)");
            }

            // A value of the wrong JSON type is a structure error; anything that cannot start
            // a JSON value at all is a syntax error.
            [[noreturn]] void wrong_type(const std::string& problem) const
            {
                if (at_end())
                {
                    syntax("the header ends early");
                }
                if (peek() == '\0' || std::strchr("\"{[-0123456789tfn", peek()) == nullptr)
                {
                    syntax("expected a value");
                }
                fail(m_what, problem);
            }

            bool at_end() const noexcept
            {
                return m_pos >= m_size;
            }

            char peek() const noexcept
            {
                return at_end() ? '\0' : static_cast<char>(m_text[m_pos]);
            }

            void skip_space() noexcept
            {
                while (!at_end() && (peek() == ' ' || peek() == '\t' || peek() == '\n' || peek() == '\r'))
                {
                    ++m_pos;
                }
            }

            bool consume(char c) noexcept
            {
                if (at_end() || peek() != c)
                {
                    return false;
                }
                ++m_pos;
                return true;
            }

            void expect(char c, const char* what)
            {
                if (!consume(c))
                {
                    syntax(at_end() ? std::string("the header ends early") : std::string("expected ") + what);
                }
            }

            std::string parse_key()
            {
                if (peek() != '"')
                {
                    syntax(at_end() ? "the header ends early" : "expected a string key");
                }
                std::string key = parse_string();
                skip_space();
                expect(':', "':' after a key");
                skip_space();
                return key;
            }

            unsigned hex4()
            {
                unsigned value = 0;
                for (int i = 0; i < 4; ++i, ++m_pos)
                {
                    const char c = peek();
                    unsigned digit = 0;
                    if (c >= '0' && c <= '9') digit = static_cast<unsigned>(c - '0');
                    else if (c >= 'a' && c <= 'f') digit = static_cast<unsigned>(c - 'a' + 10);
                    else if (c >= 'A' && c <= 'F') digit = static_cast<unsigned>(c - 'A' + 10);
                    else syntax("\\u needs four hex digits");
                    value = value * 16 + digit;
                }
                return value;
            }

            // At the opening quote.
            std::string parse_string()
            {
                ++m_pos;
                std::string out;
                for (;;)
                {
                    if (at_end())
                    {
                        syntax("unterminated string");
                    }
                    const unsigned char c = m_text[m_pos];
                    if (c == '"')
                    {
                        ++m_pos;
                        return out;
                    }
                    if (c < 0x20)
                    {
                        syntax("control character in a string (it must be escaped)");
                    }
                    if (c >= 0x80)
                    {
                        const std::size_t n = utf8_length(m_text + m_pos, m_size - m_pos);
                        if (n == 0)
                        {
                            syntax("invalid UTF-8 in a string");
                        }
                        out.append(reinterpret_cast<const char*>(m_text + m_pos), n);
                        m_pos += n;
                        continue;
                    }
                    ++m_pos;
                    if (c != '\\')
                    {
                        out += static_cast<char>(c);
                        continue;
                    }
                    const char e = peek();
                    ++m_pos;
                    switch (e)
                    {
                        case '"': out += '"'; break;
                        case '\\': out += '\\'; break;
                        case '/': out += '/'; break;
                        case 'b': out += '\b'; break;
                        case 'f': out += '\f'; break;
                        case 'n': out += '\n'; break;
                        case 'r': out += '\r'; break;
                        case 't': out += '\t'; break;
                        case 'u': out += parse_unicode_escape(); break;
                        default: --m_pos; syntax("invalid escape in a string");
                    }
                }
            }

            // After "\u": one code point, from a surrogate pair where it takes two escapes.
            std::string parse_unicode_escape()
            {
                std::uint32_t cp = hex4();
                if (cp >= 0xdc00 && cp <= 0xdfff)
                {
                    syntax("unpaired surrogate in a \\u escape");
                }
                if (cp >= 0xd800 && cp <= 0xdbff)
                {
                    if (!consume('\\') || !consume('u'))
                    {
                        syntax("unpaired surrogate in a \\u escape");
                    }
                    const std::uint32_t low = hex4();
                    if (low < 0xdc00 || low > 0xdfff)
                    {
                        syntax("unpaired surrogate in a \\u escape");
                    }
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
                }
                std::string out;
                append_utf8(out, cp);
                return out;
            }

            // Reports its own errors through `problem` (a wrong type) or as syntax errors.
            std::uint64_t parse_uint(const std::string& problem)
            {
                const char first = peek();
                if (first < '0' || first > '9')
                {
                    wrong_type(problem);
                }
                std::uint64_t value = 0;
                const std::size_t begin = m_pos;
                while (peek() >= '0' && peek() <= '9')
                {
                    const auto digit = static_cast<std::uint64_t>(peek() - '0');
                    if (value > (std::numeric_limits<std::uint64_t>::max() - digit) / 10)
                    {
                        fail(m_what, problem + " (a value does not fit in 64 bits)");
                    }
                    value = value * 10 + digit;
                    ++m_pos;
                }
                if (first == '0' && m_pos - begin > 1)
                {
                    m_pos = begin;
                    syntax("number with a leading zero");
                }
                if (peek() == '.' || peek() == 'e' || peek() == 'E')
                {
                    fail(m_what, problem);  // a fraction or exponent: valid JSON, not an integer
                }
                return value;
            }

            std::vector<std::size_t> parse_uint_array(const std::string& problem)
            {
                if (peek() != '[')
                {
                    wrong_type(problem);
                }
                ++m_pos;
                std::vector<std::size_t> out;
                skip_space();
                if (consume(']'))
                {
                    return out;
                }
                for (;;)
                {
                    skip_space();
                    const std::uint64_t value = parse_uint(problem);
                    if constexpr (sizeof(std::size_t) < sizeof(std::uint64_t))
                    {
                        if (value > std::numeric_limits<std::size_t>::max())
                        {
                            fail(m_what, problem + " (a value does not fit in size_t)");
                        }
                    }
                    out.push_back(static_cast<std::size_t>(value));
                    skip_space();
                    if (consume(','))
                    {
                        continue;
                    }
                    expect(']', "',' or ']' in an array");
                    return out;
                }
            }

            // Members of an object whose '{' is next; calls member(key) at each value.
            template <class F>
            void parse_members(F&& member)
            {
                ++m_pos;
                skip_space();
                if (consume('}'))
                {
                    return;
                }
                for (;;)
                {
                    skip_space();
                    std::string key = parse_key();
                    member(std::move(key));
                    skip_space();
                    if (consume(','))
                    {
                        continue;
                    }
                    expect('}', "',' or '}' in an object");
                    return;
                }
            }

            void parse_metadata(std::map<std::string, std::string>& metadata)
            {
                if (peek() != '{')
                {
                    wrong_type("__metadata__ must be an object of strings");
                }
                parse_members([&](std::string key) {
                    if (peek() != '"')
                    {
                        wrong_type("__metadata__ must be an object of strings (the value of " + quote(key)
                                   + " is not a string)");
                    }
                    std::string value = parse_string();
                    if (!metadata.emplace(key, std::move(value)).second)
                    {
                        fail(m_what, "__metadata__: duplicate key " + quote(key));
                    }
                });
            }

            st_tensor_info parse_tensor(std::string name)
            {
                const std::string where = "tensor " + quote(name) + ": ";
                if (peek() != '{')
                {
                    wrong_type(where + "entry must be an object with dtype, shape and data_offsets");
                }
                st_tensor_info info;
                info.name = std::move(name);
                bool seen_dtype = false, seen_shape = false, seen_offsets = false;
                const auto mark = [&](bool& seen, const std::string& key) {
                    if (seen)
                    {
                        fail(m_what, where + "duplicate key " + quote(key));
                    }
                    seen = true;
                };
                std::vector<std::size_t> offsets;
                parse_members([&](std::string key) {
                    if (key == "dtype")
                    {
                        mark(seen_dtype, key);
                        if (peek() != '"')
                        {
                            wrong_type(where + "dtype must be a string");
                        }
                        const std::string text = parse_string();
                        const std::optional<st_dtype> dtype = st_dtype_from_name(text);
                        if (!dtype)
                        {
                            fail(m_what, where + "unknown dtype " + quote(text)
                                             + " (supported: F64, F32, BF16, F16, I64, I32, U32, I8, U8)");
                        }
                        info.dtype = *dtype;
                    }
                    else if (key == "shape")
                    {
                        mark(seen_shape, key);
                        info.shape = parse_uint_array(where + "shape must be an array of non-negative integers");
                    }
                    else if (key == "data_offsets")
                    {
                        mark(seen_offsets, key);
                        offsets = parse_uint_array(where + "data_offsets must be two integers [begin, end]");
                        if (offsets.size() != 2)
                        {
                            fail(m_what, where + "data_offsets must be two integers [begin, end] (got "
                                             + std::to_string(offsets.size()) + ")");
                        }
                    }
                    else
                    {
                        fail(m_what, where + "unexpected key " + quote(key)
                                         + " (expected dtype, shape and data_offsets)");
                    }
                });
                if (!seen_dtype) fail(m_what, where + "missing key 'dtype'");
                if (!seen_shape) fail(m_what, where + "missing key 'shape'");
                if (!seen_offsets) fail(m_what, where + "missing key 'data_offsets'");

                info.begin = offsets[0];
                info.end = offsets[1];
                if (info.begin > info.end)
                {
                    fail(m_what, where + "data_offsets begin " + std::to_string(info.begin) + " is after end "
                                     + std::to_string(info.end));
                }
                if (info.end > m_data_size)
                {
                    fail(m_what, where + "data_offsets end " + std::to_string(info.end)
                                     + " is beyond the data section (" + std::to_string(m_data_size) + " bytes)");
                }
                std::size_t needed = 0;
                if (!byte_count(info.shape, info.dtype, needed))
                {
                    fail(m_what, where + "shape overflow: " + shape_text(info.shape) + " of "
                                     + st_dtype_name(info.dtype) + " does not fit in size_t bytes");
                }
                if (needed != info.bytes())
                {
                    fail(m_what, where + "size mismatch: shape " + shape_text(info.shape) + " of "
                                     + st_dtype_name(info.dtype) + " needs " + std::to_string(needed)
                                     + " bytes, data_offsets span " + std::to_string(info.bytes()));
                }
                return info;
            }

            const std::string& m_what;
            const unsigned char* m_text;
            std::size_t m_size;
            std::size_t m_data_size;
            std::size_t m_pos = 0;
        };

    }

    XOPTIM_IO_INLINE void safetensors_writer::add(std::string name, st_dtype dtype, std::vector<std::size_t> shape,
                                                  const void* data, std::size_t bytes)
    {
        namespace d = safetensors_detail;
        const std::string where = "xoptim::io::safetensors_writer::add: tensor " + quote(name) + ": ";
        if (name.empty())
        {
            throw std::invalid_argument(where + "the name is empty");
        }
        if (name == d::metadata_key)
        {
            throw std::invalid_argument(where + "the name is reserved for the metadata");
        }
        if (!d::valid_utf8(name))
        {
            throw std::invalid_argument(where + "the name is not valid UTF-8");
        }
        if (m_tensors.count(name) != 0)
        {
            throw std::invalid_argument(where + "the name is already taken");
        }
        if (st_dtype_size(dtype) == 0)
        {
            throw std::invalid_argument(where + "invalid dtype value");
        }
        std::size_t needed = 0;
        if (!d::byte_count(shape, dtype, needed))
        {
            throw std::invalid_argument(where + "shape " + d::shape_text(shape) + " of " + st_dtype_name(dtype)
                                        + " does not fit in size_t bytes");
        }
        if (bytes != needed)
        {
            throw std::invalid_argument(where + std::to_string(bytes) + " bytes given, shape "
                                        + d::shape_text(shape) + " of " + st_dtype_name(dtype) + " needs "
                                        + std::to_string(needed));
        }
        if (data == nullptr && bytes != 0)
        {
            throw std::invalid_argument(where + "data is null");
        }
        m_tensors.emplace(std::move(name), entry{dtype, std::move(shape), data, bytes});
    }

    XOPTIM_IO_INLINE void safetensors_writer::metadata(std::string key, std::string value)
    {
        namespace d = safetensors_detail;
        if (!d::valid_utf8(key) || !d::valid_utf8(value))
        {
            throw std::invalid_argument("xoptim::io::safetensors_writer::metadata: key or value of "
                                        + quote(key) + " is not valid UTF-8");
        }
        m_metadata[std::move(key)] = std::move(value);
    }

    XOPTIM_IO_INLINE std::vector<safetensors_writer::placed> safetensors_writer::layout() const
    {
        std::vector<placed> order;
        order.reserve(m_tensors.size());
        for (const auto& [name, tensor] : m_tensors)
        {
            order.push_back({&name, &tensor, 0});
        }
        // Stable: the map already holds names in order.
        std::stable_sort(order.begin(), order.end(), [](const placed& a, const placed& b) {
            return st_dtype_size(a.tensor->dtype) > st_dtype_size(b.tensor->dtype);
        });
        std::size_t offset = 0;
        for (placed& p : order)
        {
            p.begin = offset;
            offset += p.tensor->bytes;  // cannot overflow: each tensor is memory the caller holds
        }
        return order;
    }

    XOPTIM_IO_INLINE std::string safetensors_writer::header(const std::vector<placed>& order,
                                                            const std::string& what) const
    {
        namespace d = safetensors_detail;
        std::string json = "{";
        if (!m_metadata.empty())
        {
            append_json_string(json, d::metadata_key);
            json += ":{";
            bool first = true;
            for (const auto& [key, value] : m_metadata)
            {
                if (!first) json += ',';
                first = false;
                append_json_string(json, key);
                json += ':';
                append_json_string(json, value);
            }
            json += '}';
        }
        for (const placed& p : order)
        {
            if (json.size() > 1) json += ',';
            append_json_string(json, *p.name);
            json += ":{\"dtype\":\"";
            json += st_dtype_name(p.tensor->dtype);
            json += "\",\"shape\":";
            append_json_array(json, p.tensor->shape);
            json += ",\"data_offsets\":";
            append_json_array(json, {p.begin, p.begin + p.tensor->bytes});
            json += '}';
        }
        json += '}';
        // Spaces after the JSON are whitespace to a JSON reader; they put the data section
        // at a multiple of 8 in the file.
        json.append((8 - json.size() % 8) % 8, ' ');
        if (json.size() > d::max_header_size)
        {
            d::fail(what, "header of " + std::to_string(json.size()) + " bytes exceeds the "
                              + std::to_string(d::max_header_size) + "-byte limit of safetensors readers");
        }
        std::string out(8, '\0');
        for (int i = 0; i < 8; ++i)
        {
            out[static_cast<std::size_t>(i)] = static_cast<char>((std::uint64_t(json.size()) >> (8 * i)) & 0xff);
        }
        return out + json;
    }

    XOPTIM_IO_INLINE void safetensors_writer::write(const std::string& path) const
    {
        const std::vector<placed> order = layout();
        const std::string head = header(order, path);
        atomic_file file(path);
        file.write(head.data(), head.size());
        for (const placed& p : order)
        {
            file.write(p.tensor->data, p.tensor->bytes);
        }
        file.commit();
    }

    XOPTIM_IO_INLINE std::string safetensors_writer::serialize() const
    {
        const std::vector<placed> order = layout();
        std::string out = header(order, "xoptim::io::safetensors_writer::serialize");
        for (const placed& p : order)
        {
            out.append(static_cast<const char*>(p.tensor->data), p.tensor->bytes);
        }
        return out;
    }

    namespace safetensors_detail
    {
        // The header length in the first 8 bytes, checked against the `available` bytes
        // after them.
        inline std::size_t header_length(const unsigned char* first8, std::uint64_t available, const std::string& what)
        {
            std::uint64_t header_size = 0;
            for (int i = 7; i >= 0; --i)
            {
                header_size = header_size << 8 | first8[i];
            }
            if (header_size > max_header_size)
            {
                fail(what, "header length " + std::to_string(header_size) + " exceeds the "
                               + std::to_string(max_header_size) + "-byte limit");
            }
            if (header_size > available)
            {
                fail(what, "header length " + std::to_string(header_size) + " exceeds the "
                               + std::to_string(available) + " bytes after the length field");
            }
            return static_cast<std::size_t>(header_size);
        }

        [[noreturn]] inline void too_short(const std::string& what, std::size_t size)
        {
            fail(what, "file too short: " + std::to_string(size)
                           + " bytes, a safetensors file starts with an 8-byte header length");
        }

        // read_at's offset for a pipe or device: the bytes that come next.
        inline constexpr std::uint64_t next_bytes = std::numeric_limits<std::uint64_t>::max();

        // Reads up to n bytes at `offset` (or next_bytes); fewer only at the end of the file.
        inline std::size_t read_at(int fd, unsigned char* out, std::size_t n, std::uint64_t offset,
                                   const std::string& path)
        {
            std::size_t filled = 0;
            while (filled < n)
            {
                const std::size_t chunk = std::min<std::size_t>(n - filled, std::size_t(1) << 30);
                const ssize_t got = offset == next_bytes
                                        ? ::read(fd, out + filled, chunk)
                                        : ::pread(fd, out + filled, chunk, static_cast<off_t>(offset + filled));
                if (got < 0 && errno == EINTR)
                {
                    continue;
                }
                if (got < 0)
                {
                    fail(path, std::string("cannot read: ") + std::strerror(errno));
                }
                if (got == 0)
                {
                    break;
                }
                filled += static_cast<std::size_t>(got);
            }
            return filled;
        }

        [[noreturn]] inline void changed(const std::string& path)
        {
            fail(path, "the file changed while it was read (its size is not the one its header was read with)");
        }

        // parse_header's data size for a file of unknown size (a pipe): where its tensors end.
        inline constexpr std::size_t as_the_tensors_say = std::numeric_limits<std::size_t>::max();
    }

    XOPTIM_IO_INLINE safetensors_file safetensors_file::read(const std::string& path)
    {
        safetensors_file file = read_header(path);
        file.read_data();
        return file;
    }

    XOPTIM_IO_INLINE safetensors_file safetensors_file::read_header(const std::string& path)
    {
        namespace d = safetensors_detail;
        d::file_handle fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
        if (fd.get() < 0)
        {
            d::fail(path, std::string("cannot open: ") + std::strerror(errno));
        }
        struct stat st;
        if (::fstat(fd.get(), &st) != 0)
        {
            d::fail(path, std::string("cannot read: ") + std::strerror(errno));
        }
        if (S_ISDIR(st.st_mode))
        {
            d::fail(path, "cannot read: is a directory");
        }
        // A pipe or device has no size to check the header against: its header is read as
        // long as its length field says (within max_header_size), its data section is as
        // long as its tensors say, and read_data reads that much, in order, and checks that
        // nothing follows. A file whose header is wrong is refused before its data is read.
        const bool regular = S_ISREG(st.st_mode);
        const auto size = static_cast<std::uint64_t>(st.st_size);
        unsigned char first8[8];
        if (regular && size < 8)
        {
            d::too_short(path, static_cast<std::size_t>(size));
        }
        if (const std::size_t got = d::read_at(fd.get(), first8, 8, regular ? 0 : d::next_bytes, path); got != 8)
        {
            regular ? d::changed(path) : d::too_short(path, got);
        }
        const std::size_t header_size = d::header_length(first8, regular ? size - 8 : d::max_header_size, path);
        std::vector<unsigned char> header(header_size);
        if (const std::size_t got = d::read_at(fd.get(), header.data(), header_size, regular ? 8 : d::next_bytes, path);
            got != header_size)
        {
            regular ? d::changed(path)
                    : d::fail(path, "header length " + std::to_string(header_size) + " exceeds the "
                                        + std::to_string(got) + " bytes after the length field");
        }
        safetensors_file file;
        file.m_what = path;
        file.m_sequential = !regular;
        file.parse_header(header.data(), header_size,
                          regular ? static_cast<std::size_t>(size - 8 - header_size) : d::as_the_tensors_say);
        file.m_data_offset = 8 + header_size;
        file.m_file = std::make_shared<const d::file_handle>(std::move(fd));
        return file;
    }

    XOPTIM_IO_INLINE void safetensors_file::read_data()
    {
        namespace d = safetensors_detail;
        if (m_has_data)
        {
            return;
        }
        if (m_file == nullptr)
        {
            throw std::logic_error("xoptim::io::safetensors_file::read_data: no file open (read_header first)");
        }
        std::vector<unsigned char> bytes;
        resize_for_file(bytes, m_data_size, m_what, "the data section");
        unsigned char beyond = 0;
        const std::size_t got = d::read_at(m_file->get(), bytes.data(), m_data_size,
                                           m_sequential ? d::next_bytes : m_data_offset, m_what);
        if (got != m_data_size
            || d::read_at(m_file->get(), &beyond, 1, m_sequential ? d::next_bytes : m_data_offset + m_data_size, m_what)
                   != 0)
        {
            if (!m_sequential)
            {
                d::changed(m_what);
            }
            d::fail(m_what, got != m_data_size ? "the data section ends after " + std::to_string(got) + " of the "
                                                     + std::to_string(m_data_size) + " bytes its tensors take"
                                               : "more bytes follow the " + std::to_string(m_data_size)
                                                     + " bytes of the data section its tensors take");
        }
        m_file.reset();
        m_bytes = std::move(bytes);
        m_data_begin = 0;
        m_has_data = true;
    }

    XOPTIM_IO_INLINE safetensors_file safetensors_file::parse(std::vector<unsigned char> bytes, const std::string& what)
    {
        namespace d = safetensors_detail;
        if (bytes.size() < 8)
        {
            d::too_short(what, bytes.size());
        }
        const std::size_t header_size = d::header_length(bytes.data(), bytes.size() - 8, what);
        safetensors_file file;
        file.m_what = what;
        file.parse_header(bytes.data() + 8, header_size, bytes.size() - 8 - header_size);
        file.m_data_offset = 8 + header_size;
        file.m_bytes = std::move(bytes);
        file.m_data_begin = file.m_data_offset;
        file.m_has_data = true;
        return file;
    }

    XOPTIM_IO_INLINE void safetensors_file::parse_header(const unsigned char* text, std::size_t size,
                                                         std::size_t data_size)
    {
        namespace d = safetensors_detail;
        const std::string& what = m_what;
        d::header_parser(what, text, size, data_size).parse(m_metadata, m_tensors);
        m_data_size = data_size;
        if (data_size == d::as_the_tensors_say)
        {
            m_data_size = 0;
            for (const st_tensor_info& t : m_tensors)
            {
                m_data_size = std::max(m_data_size, t.end);
            }
        }

        // The tensors must tile the data section: no byte belongs to two tensors or to none.
        std::vector<const st_tensor_info*> by_offset;
        by_offset.reserve(m_tensors.size());
        for (const st_tensor_info& t : m_tensors)
        {
            by_offset.push_back(&t);
        }
        std::sort(by_offset.begin(), by_offset.end(), [](const st_tensor_info* a, const st_tensor_info* b) {
            return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
        });
        std::size_t covered = 0;
        const st_tensor_info* previous = nullptr;
        for (const st_tensor_info* t : by_offset)
        {
            if (t->begin < covered)
            {
                d::fail(what, "tensors " + quote(previous->name) + " and " + quote(t->name)
                                  + " overlap in the data section (bytes [" + std::to_string(previous->begin)
                                  + ", " + std::to_string(previous->end) + ") and [" + std::to_string(t->begin)
                                  + ", " + std::to_string(t->end) + "))");
            }
            if (t->begin > covered)
            {
                d::fail(what, "hole in the data section: bytes [" + std::to_string(covered) + ", "
                                  + std::to_string(t->begin) + ") belong to no tensor");
            }
            covered = t->end;
            previous = t;
        }
        if (covered != m_data_size)
        {
            d::fail(what, "hole in the data section: bytes [" + std::to_string(covered) + ", "
                              + std::to_string(m_data_size) + ") at its end belong to no tensor");
        }

        std::sort(m_tensors.begin(), m_tensors.end(),
                  [](const st_tensor_info& a, const st_tensor_info& b) { return a.name < b.name; });
    }

    XOPTIM_IO_INLINE const st_tensor_info* safetensors_file::find(const std::string& name) const
    {
        const auto it = std::lower_bound(m_tensors.begin(), m_tensors.end(), name,
                                         [](const st_tensor_info& t, const std::string& n) { return t.name < n; });
        return it != m_tensors.end() && it->name == name ? &*it : nullptr;
    }

    XOPTIM_IO_INLINE const unsigned char* safetensors_file::data(const st_tensor_info& info) const
    {
        if (!m_has_data)
        {
            throw std::logic_error("xoptim::io::safetensors_file::data: the data section is not read yet (read_data)");
        }
        if (info.begin > info.end || info.end > m_data_size)
        {
            throw std::out_of_range("xoptim::io::safetensors_file::data: tensor " + quote(info.name)
                                    + " is not inside this file's data section");
        }
        return m_bytes.data() + m_data_begin + info.begin;
    }
#endif
}

#endif
