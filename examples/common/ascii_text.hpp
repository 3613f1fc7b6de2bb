// Text for the character-level examples: the King James Bible (public domain) from
// Debian's bible-kjv and bible-kjv-text packages (`bible` prints it), ASCII characters as
// tokens, and a check that a file given with --text is text at all.
#ifndef XOPTIM_EXAMPLES_ASCII_TEXT_HPP
#define XOPTIM_EXAMPLES_ASCII_TEXT_HPP

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace examples
{
    constexpr std::size_t ascii_vocab = 128;

    // The Bible as `bible` prints it, verse numbers dropped, into `file`.
    inline void write_bible(const std::filesystem::path& file)
    {
        std::FILE* pipe = popen("bible 'Gen1:1-Rev22:21' 2>/dev/null", "r");
        std::string text;
        char line[4096];
        while (pipe != nullptr && std::fgets(line, sizeof line, pipe) != nullptr)
        {
            const char* p = line;
            while (*p == ' ')
            {
                ++p;
            }
            const char* q = p;
            while (*q >= '0' && *q <= '9')
            {
                ++q;
            }
            text += (q != p && *q == ' ') ? q + 1 : p;
        }
        if (pipe == nullptr || pclose(pipe) != 0 || text.size() < 1000000)
        {
            throw std::runtime_error("cannot read the King James Bible through `bible`: install it with\n"
                                     "  tools/install-deps.sh (or apt-get install bible-kjv bible-kjv-text)\n"
                                     "or give a text file with --text FILE");
        }
        std::ofstream out(file, std::ios::binary);
        out << text;
        if (!out.flush())
        {
            throw std::runtime_error("cannot write " + file.string());
        }
    }

    // Bytes as ids; anything outside ASCII becomes '?'.
    struct ascii_tokenizer
    {
        std::vector<std::uint8_t> operator()(std::string_view text) const
        {
            std::vector<std::uint8_t> ids(text.size());
            for (std::size_t i = 0; i < text.size(); ++i)
            {
                const auto c = static_cast<unsigned char>(text[i]);
                ids[i] = c < ascii_vocab ? c : '?';
            }
            return ids;
        }
    };

    // Throws std::runtime_error naming `name` unless `bytes` look like text: not empty, no
    // NUL byte, and at most 10% of bytes outside printable ASCII, tab and line ends (a
    // little UTF-8 is fine: it becomes '?').
    inline void check_text(const std::string& name, std::string_view bytes)
    {
        if (bytes.empty())
        {
            throw std::runtime_error(name + " is empty");
        }
        std::size_t odd = 0;
        for (std::size_t i = 0; i < bytes.size(); ++i)
        {
            const auto c = static_cast<unsigned char>(bytes[i]);
            if (c == 0)
            {
                throw std::runtime_error(name + " is not text: a NUL byte at offset " + std::to_string(i)
                                         + " (a binary file?)");
            }
            odd += (c < 32 && c != '\t' && c != '\n' && c != '\r') || c >= 127;
        }
        if (odd * 10 > bytes.size())
        {
            throw std::runtime_error(name + " is not text: " + std::to_string(odd) + " of its " + std::to_string(bytes.size())
                                     + " bytes are neither printable ASCII nor line ends (a binary file?)");
        }
    }
}

#endif
