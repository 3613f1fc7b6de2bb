// libFuzzer target for the token cache: whatever file lies where the cache should be,
// load_or_build_tokens gives the source's tokens (rebuilding and rewriting the cache
// where it cannot trust it), never an error and never a crash.
//
// Input: one selector byte, then the cache file. Selector bit 0 turns on verify_tokens,
// bit 1 asks for 16-bit tokens (else 8-bit), bit 2 asks for tokenizer tag 7 (else 0).
// Oracle: with verify_tokens, or whenever the cache was rebuilt, the tokens are exactly
// the source's bytes, and the cache now on disk is reused by the next load. Without
// verify_tokens a cache whose sound header matches the source is used as it is
// (documented: its tokens are not hashed).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <sys/stat.h>

#include <xoptim/train/token_cache.hpp>

#include "fuzz_support.hpp"

namespace
{
    namespace train = xoptim::train;

    [[noreturn]] void wrong(const std::string& what)
    {
        std::fprintf(stderr, "fuzz_token_cache: %s\n", what.c_str());
        std::abort();
    }

    const std::string& source()
    {
        static const std::string text = [] {
            std::string t = "In the beginning was the token, and the token was with the cache.\n";
            for (int i = 0; i < 200; ++i)
            {
                t += char(i * 37 % 256);  // every byte value shows up
            }
            return t;
        }();
        return text;
    }

    std::string source_path()
    {
        return (xoptim_fuzz::scratch() / "source.txt").string();
    }

    template <class T>
    train::cached_tokens<T> load(const std::string& cache, const train::token_cache_options& o)
    {
        return train::load_or_build_tokens<T>(source_path(), cache, [](std::string_view text) {
            return std::vector<std::uint32_t>(reinterpret_cast<const unsigned char*>(text.data()),
                                              reinterpret_cast<const unsigned char*>(text.data()) + text.size());
        }, o);
    }

    template <class T>
    bool is_source(const train::token_dataset<T>& tokens)
    {
        if (tokens.size() != source().size())
        {
            return false;
        }
        for (std::size_t i = 0; i < tokens.size(); ++i)
        {
            if (tokens[i] != static_cast<unsigned char>(source()[i]))
            {
                return false;
            }
        }
        return true;
    }

    template <class T>
    void check(const std::string& cache, const train::token_cache_options& o)
    {
        const auto got = load<T>(cache, o);
        if ((o.verify_tokens || got.rebuilt()) && !is_source(got.tokens))
        {
            wrong(std::string("tokens are not the source's (") + train::cache_status_name(got.status) + ")");
        }
        if (got.rebuilt())
        {
            const auto again = load<T>(cache, o);
            if (again.rebuilt() || !is_source(again.tokens))
            {
                wrong("a rebuilt cache is not reused: " + again.reason);
            }
        }
    }
}

extern "C" int LLVMFuzzerInitialize(int*, char***)
{
    // An old source: its mtime is trusted (not in the racy window), so a sound cache is reused.
    const std::string path = xoptim_fuzz::write(
        "source.txt", reinterpret_cast<const std::uint8_t*>(source().data()), source().size());
    const timespec when[2] = {{1'000'000'000, 0}, {1'000'000'000, 0}};
    if (::utimensat(AT_FDCWD, path.c_str(), when, 0) != 0)
    {
        std::abort();
    }
    if (!xoptim_fuzz::seeds_dir().empty())
    {
        for (int selector = 0; selector < 8; ++selector)
        {
            train::token_cache_options o;
            o.verify_tokens = selector & 1;
            o.tokenizer_tag = selector & 4 ? 7 : 0;
            const std::string cache = (xoptim_fuzz::scratch() / ("seed" + std::to_string(selector))).string();
            if (selector & 2)
            {
                load<std::uint16_t>(cache, o);
            }
            else
            {
                load<std::uint8_t>(cache, o);
            }
            xoptim_fuzz::write_seed("cache" + std::to_string(selector),
                                    std::string(1, char(selector)) + xoptim_fuzz::read(cache));
        }
        std::exit(0);
    }
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    if (size == 0)
    {
        return 0;
    }
    const std::string cache = xoptim_fuzz::write("tokens.cache", data + 1, size - 1);
    train::token_cache_options o;
    o.verify_tokens = data[0] & 1;
    o.tokenizer_tag = data[0] & 4 ? 7 : 0;
    if (data[0] & 2)
    {
        check<std::uint16_t>(cache, o);
    }
    else
    {
        check<std::uint8_t>(cache, o);
    }
    return 0;
}
