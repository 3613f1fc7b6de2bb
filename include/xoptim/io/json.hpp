// JSON text as xoptim writes it, for safetensors headers and checkpoint metadata alike:
// strings escaped as JSON requires (UTF-8 kept as it is), numbers with 17 significant
// digits (the same double back, in any locale), arrays of counts. Reading is the safetensors header
// parser's (safetensors.hpp); a checkpoint's metadata values are read through it.
#ifndef XOPTIM_IO_JSON_HPP
#define XOPTIM_IO_JSON_HPP

#include <cmath>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "number_text.hpp"

namespace xoptim::io
{
    // A JSON string literal; the text must be valid UTF-8, which is kept as it is.
    inline void append_json_string(std::string& out, std::string_view s)
    {
        static constexpr char hex[] = "0123456789abcdef";
        out += '"';
        for (char ch : s)
        {
            const auto c = static_cast<unsigned char>(ch);
            switch (ch)
            {
                case '"': out += "\\\""; break;
                case '\\': out += "\\\\"; break;
                case '\b': out += "\\b"; break;
                case '\f': out += "\\f"; break;
                case '\n': out += "\\n"; break;
                case '\r': out += "\\r"; break;
                case '\t': out += "\\t"; break;
                default:
                    if (c < 0x20)
                    {
                        out += "\\u00";
                        out += hex[c >> 4];
                        out += hex[c & 0xf];
                    }
                    else
                    {
                        out += ch;
                    }
            }
        }
        out += '"';
    }

    inline void append_json_array(std::string& out, const std::vector<std::size_t>& values)
    {
        out += '[';
        for (std::size_t i = 0; i < values.size(); ++i)
        {
            if (i != 0) out += ',';
            out += std::to_string(values[i]);
        }
        out += ']';
    }

    inline std::string json_string(std::string_view s)
    {
        std::string out;
        append_json_string(out, s);
        return out;
    }

    // null for NaN and infinities, which JSON has no literal for.
    inline std::string json_number(double x)
    {
        return std::isfinite(x) ? general_text(x, 17) : "null";
    }
}

#endif
