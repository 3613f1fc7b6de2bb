// Doubles as text and back, the same in every process: printf's %.*g and strtod follow
// the C locale the program sets (setlocale: "0,5" in a German one), which would make a
// checkpoint's metadata invalid JSON and a file saved under one locale unreadable under
// another. std::to_chars and std::from_chars use the "C" locale's form always.
#ifndef XOPTIM_IO_NUMBER_TEXT_HPP
#define XOPTIM_IO_NUMBER_TEXT_HPP

#include <charconv>
#include <string>
#include <string_view>
#include <system_error>

namespace xoptim::io
{
    // x as printf's "%.*g" with `precision` significant digits writes it in the "C" locale.
    inline std::string general_text(double x, int precision)
    {
        char buffer[32];
        const auto r = std::to_chars(buffer, buffer + sizeof buffer, x, std::chars_format::general, precision);
        return std::string(buffer, r.ptr);
    }

    // The whole of `text` as one number (decimal or exponent form, "inf", "nan"); false
    // where it is not, or is out of range.
    inline bool parse_number(std::string_view text, double& x) noexcept
    {
        const char* end = text.data() + text.size();
        const auto r = std::from_chars(text.data(), end, x);
        return r.ec == std::errc() && r.ptr == end;
    }
}

#endif
