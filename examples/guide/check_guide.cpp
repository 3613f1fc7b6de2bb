// Keeps docs/guide.md and the programs under examples/guide/ the same text, so the
// guide's code is the code the test suite compiles and runs.
//
//     check_guide GUIDE ROOT                       every code block of GUIDE has a source
//                                                  marker; snippet and file blocks equal
//                                                  their source under ROOT
//     check_guide GUIDE ROOT --run NAME EXE ARGS   runs EXE ARGS, which must exit with 0;
//                                                  its standard output must equal the
//                                                  guide's `output: NAME` block, if any
//
// The line before each fenced block names where its text comes from:
//
//     <!-- snippet: examples/guide/parameters.cpp#containers -->   the lines between two
//                          `//! [containers]` (or `#! [containers]`) lines of that file,
//                          their common indentation removed, other markers left out
//     <!-- file: examples/guide/consumer/CMakeLists.txt -->        the whole file
//     <!-- output: parameters -->     what examples/guide/parameters.cpp prints
//     <!-- compile_error: tests/compile_fail/model_without_const_params.cpp -->
//                          one line, matched by that file's `// expect: REGEX`, which
//                          its compile_fail ctest matches against the compiler's output
#include <cstdio>
#include <fstream>
#include <iostream>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <sys/wait.h>
#include <vector>

namespace
{
    using lines = std::vector<std::string>;

    struct block
    {
        std::size_t line;    // of the opening fence, 1-based
        std::string kind;    // snippet, file or output
        std::string source;  // what the marker names
        lines text;
    };

    lines split(const std::string& text)
    {
        lines out;
        std::istringstream in(text);
        for (std::string l; std::getline(in, l);)
        {
            out.push_back(l);
        }
        return out;
    }

    lines read_lines(const std::string& path)
    {
        std::ifstream in(path);
        if (!in)
        {
            throw std::runtime_error(path + ": cannot open");
        }
        std::ostringstream s;
        s << in.rdbuf();
        return split(s.str());
    }

    std::string trim(const std::string& s)
    {
        const auto b = s.find_first_not_of(" \t");
        const auto e = s.find_last_not_of(" \t");
        return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
    }

    bool starts_with(const std::string& s, const std::string& prefix)
    {
        return s.compare(0, prefix.size(), prefix) == 0;
    }

    // Every fenced block with the marker on the line before it; a block without one is an error.
    std::vector<block> blocks_of(const std::string& guide)
    {
        const lines md = read_lines(guide);
        std::vector<block> out;
        for (std::size_t i = 0; i < md.size(); ++i)
        {
            if (!starts_with(md[i], "```"))
            {
                continue;
            }
            block b;
            b.line = i + 1;
            const std::string marker = i > 0 ? trim(md[i - 1]) : std::string();
            for (const char* kind : {"snippet", "file", "output", "compile_error"})
            {
                const std::string open = std::string("<!-- ") + kind + ": ";
                if (starts_with(marker, open) && marker.size() > open.size() + 4
                    && marker.compare(marker.size() - 4, 4, " -->") == 0)
                {
                    b.kind = kind;
                    b.source = marker.substr(open.size(), marker.size() - open.size() - 4);
                }
            }
            if (b.kind.empty())
            {
                throw std::runtime_error(guide + ":" + std::to_string(b.line)
                                         + ": code block without a source marker on the line before it "
                                           "(<!-- snippet: FILE#NAME -->, <!-- file: FILE -->, <!-- output: NAME --> "
                                           "or <!-- compile_error: FILE -->)");
            }
            for (++i; i < md.size() && !starts_with(md[i], "```"); ++i)
            {
                b.text.push_back(md[i]);
            }
            if (i == md.size())
            {
                throw std::runtime_error(guide + ":" + std::to_string(b.line) + ": code block is not closed");
            }
            out.push_back(std::move(b));
        }
        return out;
    }

    bool is_region_marker(const std::string& line)
    {
        const std::string t = trim(line);
        return (starts_with(t, "//! [") || starts_with(t, "#! [")) && t.back() == ']';
    }

    // The lines between the two `//! [name]` markers, without other markers and without
    // their common indentation.
    lines region(const std::string& path, const std::string& name)
    {
        const lines all = read_lines(path);
        lines out;
        int seen = 0;
        for (const auto& l : all)
        {
            const std::string t = trim(l);
            if (t == "//! [" + name + "]" || t == "#! [" + name + "]")
            {
                ++seen;
            }
            else if (seen == 1 && !is_region_marker(l))
            {
                out.push_back(l);
            }
        }
        if (seen != 2)
        {
            throw std::runtime_error(path + ": region [" + name + "] needs exactly two markers, found "
                                     + std::to_string(seen));
        }
        std::size_t indent = std::string::npos;
        for (const auto& l : out)
        {
            if (!trim(l).empty())
            {
                indent = std::min(indent, l.find_first_not_of(' '));
            }
        }
        for (auto& l : out)
        {
            l = trim(l).empty() ? std::string() : l.substr(indent);
        }
        return out;
    }

    // Empty when equal, else where they first differ.
    std::string difference(const lines& guide, const lines& source, const char* other = "the source")
    {
        for (std::size_t k = 0; k < std::max(guide.size(), source.size()); ++k)
        {
            const std::string* a = k < guide.size() ? &guide[k] : nullptr;
            const std::string* b = k < source.size() ? &source[k] : nullptr;
            if (a == nullptr || b == nullptr || *a != *b)
            {
                return "line " + std::to_string(k + 1) + " of the block: the guide has "
                       + (a ? "\"" + *a + "\"" : "nothing") + ", " + other + " has " + (b ? "\"" + *b + "\"" : "nothing");
            }
        }
        return {};
    }

    int check_sources(const std::string& guide, const std::string& root)
    {
        int failures = 0;
        std::size_t checked = 0;
        for (const auto& b : blocks_of(guide))
        {
            lines source;
            if (b.kind == "snippet")
            {
                const auto hash = b.source.find('#');
                if (hash == std::string::npos)
                {
                    throw std::runtime_error(guide + ":" + std::to_string(b.line) + ": snippet needs FILE#NAME");
                }
                source = region(root + "/" + b.source.substr(0, hash), b.source.substr(hash + 1));
            }
            else if (b.kind == "file")
            {
                source = read_lines(root + "/" + b.source);
            }
            else if (b.kind == "compile_error")
            {
                const lines test = read_lines(root + "/" + b.source);
                const std::string prefix = "// expect: ";
                if (test.empty() || !starts_with(test[0], prefix))
                {
                    throw std::runtime_error(b.source + ": the first line is not `// expect: REGEX`");
                }
                if (b.text.size() != 1 || !std::regex_search(b.text[0], std::regex(test[0].substr(prefix.size()))))
                {
                    std::cerr << guide << ":" << b.line << ": the message shown is not one line matching the "
                              << "expectation of " << b.source << "\n";
                    ++failures;
                }
                ++checked;
                continue;
            }
            else
            {
                read_lines(root + "/examples/guide/" + b.source + ".cpp");  // the program exists
                continue;
            }
            const std::string diff = difference(b.text, source);
            if (!diff.empty())
            {
                std::cerr << guide << ":" << b.line << ": differs from " << b.source << ": " << diff << "\n";
                ++failures;
            }
            ++checked;
        }
        std::cout << checked << " code blocks checked against their sources, " << failures << " differ\n";
        return failures == 0 ? 0 : 1;
    }

    std::string quoted(const std::string& arg)
    {
        std::string out = "'";
        for (char c : arg)
        {
            out += c == '\'' ? std::string("'\\''") : std::string(1, c);
        }
        return out + "'";
    }

    int check_run(const std::string& guide, const std::string& name, const std::vector<std::string>& command)
    {
        std::string line;
        for (const auto& arg : command)
        {
            line += (line.empty() ? "" : " ") + quoted(arg);
        }
        FILE* pipe = popen(line.c_str(), "r");
        if (pipe == nullptr)
        {
            throw std::runtime_error("cannot run " + line);
        }
        std::string output;
        char buffer[4096];
        for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;)
        {
            output.append(buffer, n);
        }
        const int status = pclose(pipe);
        std::cout << output;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        {
            std::cerr << name << ": the program failed (status " << status << ")\n";
            return 1;
        }
        for (const auto& b : blocks_of(guide))
        {
            if (b.kind == "output" && b.source == name)
            {
                const std::string diff = difference(b.text, split(output), "the program's output");
                if (!diff.empty())
                {
                    std::cerr << guide << ":" << b.line << ": the output shown differs from what " << name
                              << " printed: " << diff << "\n";
                    return 1;
                }
            }
        }
        return 0;
    }
}

int main(int argc, char** argv)
{
    try
    {
        if (argc == 3)
        {
            return check_sources(argv[1], argv[2]);
        }
        if (argc >= 6 && std::string(argv[3]) == "--run")
        {
            return check_run(argv[1], argv[4], std::vector<std::string>(argv + 5, argv + argc));
        }
        std::cerr << "usage: check_guide GUIDE ROOT [--run NAME EXE ARGS...]\n";
        return 2;
    }
    catch (const std::exception& e)
    {
        std::cerr << "check_guide: " << e.what() << "\n";
        return 1;
    }
}
