// Text read from a file, as it appears in an error message. A file may hold anything:
// newlines that forge log lines, terminal escapes, megabytes of text. Every reader
// (safetensors, checkpoints, npy) quotes what it read through this one function, so a
// message stays one short line of printable ASCII whatever the file holds.
#ifndef XOPTIM_IO_QUOTE_HPP
#define XOPTIM_IO_QUOTE_HPP

#include <cstddef>
#include <string>
#include <string_view>

namespace xoptim::io
{
    // At most this many bytes of a file's text are shown.
    inline constexpr std::size_t quote_max_bytes = 100;

    // 'text' in single quotes: printable ASCII as it is, a quote or backslash escaped,
    // \n \r \t as such, every other byte as \xNN. Text longer than quote_max_bytes is cut
    // there and followed by its length: 'aaaa...aaaa'... (100000 bytes).
    inline std::string quote(std::string_view text)
    {
        static constexpr char hex[] = "0123456789abcdef";
        std::string out = "'";
        for (std::size_t i = 0; i < text.size() && i < quote_max_bytes; ++i)
        {
            const auto c = static_cast<unsigned char>(text[i]);
            switch (c)
            {
                case '\'': out += "\\'"; break;
                case '\\': out += "\\\\"; break;
                case '\n': out += "\\n"; break;
                case '\r': out += "\\r"; break;
                case '\t': out += "\\t"; break;
                default:
                    if (c >= 0x20 && c < 0x7f)
                    {
                        out += static_cast<char>(c);
                    }
                    else
                    {
                        out += "\\x";
                        out += hex[c >> 4];
                        out += hex[c & 0xf];
                    }
            }
        }
        out += '\'';
        if (text.size() > quote_max_bytes)
        {
            out += "... (" + std::to_string(text.size()) + " bytes)";
        }
        return out;
    }
}

#endif
