// A tokenization cache: tokenize a text corpus once, keep the token ids in a file beside it,
// and memory-map that file on later runs for as long as the corpus is unchanged.
//
// The cache file is an 80-byte header, then the tokens (little-endian, token_width bytes
// each):
//
//   offset  size  field
//        0     8  magic "XOTOKENS"
//        8     4  format version (1)
//       12     4  token width in bytes (1, 2 or 4)
//       16     8  source size in bytes
//       24     8  source mtime, ns since the epoch (INT64_MIN: "too recent to trust", below)
//       32     8  XXH64 of the source's bytes
//       40     8  tokenizer tag (the caller's name for the tokenizer's version)
//       48     8  token count
//       56     8  XXH64 of the token bytes
//       64     8  reserved, 0
//       72     8  XXH64 of bytes [0, 72): a damaged header is never trusted
//
// On load the cache is reused as it is when its header is sound, its format, width and
// tokenizer tag are the ones asked for, its size matches its token count, and the source
// has the recorded size and mtime: no byte of the source is read. Where only the mtime
// differs (a touch, a copy, a checkout) the source is hashed; the same hash means the same
// text, so the tokens are kept and the header's mtime is rewritten in place (best effort: a
// read-only cache is used as it is and hashed again next time). Anything else rebuilds.
//
// Size + mtime cannot see a change made within the file system's timestamp granularity
// of the previous one (the "racy clean" problem git has too). So a source whose mtime is
// less than 2 s before the time the cache is written gets the INT64_MIN mtime, which
// never matches: the next load hashes the source, and records the mtime once it is old.
#ifndef XOPTIM_TRAIN_TOKEN_CACHE_HPP
#define XOPTIM_TRAIN_TOKEN_CACHE_HPP

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xoptim/io/atomic_file.hpp>
#include <xoptim/io/xxh64.hpp>
#include <xoptim/train/mapped_file.hpp>

namespace xoptim::train
{
    enum class cache_status
    {
        reused,    // the cache matched the source's size and mtime: the source was not read
        verified,  // the source's mtime changed but its hash did not: tokens kept
        built      // the source was tokenized and the cache (re)written
    };

    constexpr const char* cache_status_name(cache_status s) noexcept
    {
        switch (s)
        {
            case cache_status::reused: return "reused";
            case cache_status::verified: return "verified";
            case cache_status::built: return "built";
        }
        return "?";
    }

    struct token_cache_options
    {
        // The source alone does not say which tokenizer made the tokens: change this tag
        // (a version number, an XXH64 of the vocabulary) when the tokenizer changes, and a
        // cache built with another tag is rebuilt.
        std::uint64_t tokenizer_tag = 0;

        // Also hash the cached tokens on load (one read of the whole cache). Off by default:
        // the cache is written atomically and fsync'ed, so a complete header means complete
        // tokens unless the disk itself corrupts them.
        bool verify_tokens = false;
    };

    template <class T>
    struct cached_tokens
    {
        token_dataset<T> tokens;
        cache_status status = cache_status::built;
        std::string reason;  // why the cache was not reused as it was; empty when it was

        bool rebuilt() const noexcept
        {
            return status == cache_status::built;
        }
    };

    // The char-level tokenizer: each byte of the source is its own token id (0-255).
    struct byte_tokenizer
    {
        std::vector<std::uint8_t> operator()(std::string_view text) const
        {
            return std::vector<std::uint8_t>(text.begin(), text.end());
        }
    };

    // Tokens of `source_path`, from `cache_path` where that is valid for the source (see the
    // top of this file), else from `tokenize(std::string_view bytes)`, which returns a
    // container of integer token ids (std::vector<I> or anything with begin/end), written
    // to `cache_path` atomically (a temporary file beside it, fsync, rename) before mapping.
    //
    // T is the stored token type: uint8_t, uint16_t or uint32_t. Throws std::runtime_error
    // naming the path where the source cannot be read or the cache cannot be written, and
    // naming the source, position and value where the tokenizer returns an id that does
    // not fit in T. An unreadable, damaged or truncated cache is not an error: it is rebuilt,
    // and `reason` says what was wrong with it.
    template <class T, class Tokenizer>
    cached_tokens<T> load_or_build_tokens(const std::string& source_path, const std::string& cache_path,
                                          Tokenizer&& tokenize, const token_cache_options& options = {});

    namespace token_cache_detail
    {
        inline constexpr char magic[8] = {'X', 'O', 'T', 'O', 'K', 'E', 'N', 'S'};
        inline constexpr std::uint32_t version = 1;
        inline constexpr std::size_t header_size = 80;
        inline constexpr std::size_t checked_size = 72;  // bytes the header checksum covers
        inline constexpr std::int64_t untrusted_mtime = std::numeric_limits<std::int64_t>::min();
        inline constexpr std::int64_t racy_window_ns = 2'000'000'000;

        struct header
        {
            std::uint32_t width = 0;
            std::uint64_t source_size = 0;
            std::int64_t source_mtime_ns = 0;
            std::uint64_t source_hash = 0;
            std::uint64_t tokenizer_tag = 0;
            std::uint64_t token_count = 0;
            std::uint64_t tokens_hash = 0;
        };

        template <class U>
        void put(unsigned char* out, std::size_t at, U value) noexcept
        {
            std::memcpy(out + at, &value, sizeof(U));  // little-endian hosts only
        }

        template <class U>
        U get(const unsigned char* in, std::size_t at) noexcept
        {
            U value;
            std::memcpy(&value, in + at, sizeof(U));
            return value;
        }

        inline std::array<unsigned char, header_size> encode(const header& h) noexcept
        {
            std::array<unsigned char, header_size> out{};
            std::memcpy(out.data(), magic, sizeof(magic));
            put(out.data(), 8, version);
            put(out.data(), 12, h.width);
            put(out.data(), 16, h.source_size);
            put(out.data(), 24, h.source_mtime_ns);
            put(out.data(), 32, h.source_hash);
            put(out.data(), 40, h.tokenizer_tag);
            put(out.data(), 48, h.token_count);
            put(out.data(), 56, h.tokens_hash);
            put(out.data(), 72, io::xxh64(out.data(), checked_size));
            return out;
        }

        // Empty where the header is sound, else what is wrong with it.
        inline std::string decode(const unsigned char* in, std::size_t size, header& h)
        {
            if (size < header_size)
            {
                return "cache file of " + std::to_string(size) + " bytes is shorter than its header";
            }
            if (std::memcmp(in, magic, sizeof(magic)) != 0)
            {
                return "not a token cache (bad magic)";
            }
            if (get<std::uint64_t>(in, 72) != io::xxh64(in, checked_size))
            {
                return "header checksum mismatch";
            }
            const auto v = get<std::uint32_t>(in, 8);
            if (v != version)
            {
                return "format version " + std::to_string(v) + ", this reader writes " + std::to_string(version);
            }
            h.width = get<std::uint32_t>(in, 12);
            h.source_size = get<std::uint64_t>(in, 16);
            h.source_mtime_ns = get<std::int64_t>(in, 24);
            h.source_hash = get<std::uint64_t>(in, 32);
            h.tokenizer_tag = get<std::uint64_t>(in, 40);
            h.token_count = get<std::uint64_t>(in, 48);
            h.tokens_hash = get<std::uint64_t>(in, 56);
            return {};
        }

        inline std::int64_t now_ns() noexcept
        {
            return std::chrono::duration_cast<std::chrono::nanoseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                .count();
        }

        // The mtime to record: one too close to now could be followed by a change that
        // keeps it, so it is recorded as untrusted and the next load hashes the source.
        inline std::int64_t recorded_mtime(std::int64_t mtime_ns) noexcept
        {
            return now_ns() - mtime_ns < racy_window_ns ? untrusted_mtime : mtime_ns;
        }

        [[noreturn]] inline void fail(const std::string& path, const std::string& what, int error)
        {
            throw std::runtime_error(path + ": " + what + ": " + std::strerror(error));
        }

        // Rewrites the header of a cache whose tokens are still right: of the file `cache`
        // mapped, and of no other (another run may have renamed a cache of its own over the
        // path since; its tokens are not these). Best effort: where it fails the cache is
        // still valid, the source is just hashed again next time. A reader that sees a
        // half-written header fails its checksum and rebuilds.
        inline void refresh_header(const mapped_file& cache, const header& h) noexcept
        {
            const int fd = ::open(cache.path().c_str(), O_WRONLY | O_CLOEXEC);
            if (fd < 0)
            {
                return;
            }
            struct stat st;
            const bool same = ::fstat(fd, &st) == 0
                              && cache.identity()
                                     == std::pair<std::uint64_t, std::uint64_t>(static_cast<std::uint64_t>(st.st_dev),
                                                                                static_cast<std::uint64_t>(st.st_ino));
            const auto bytes = encode(h);
            if (same && ::pwrite(fd, bytes.data(), bytes.size(), 0) == static_cast<ssize_t>(bytes.size()))
            {
                ::fsync(fd);
            }
            ::close(fd);
        }

        // Whether a tokenizer's result is a range of integer ids (bool is not an id).
        template <class R, class = void>
        struct is_id_range : std::false_type
        {
        };

        template <class R>
        using id_type_of = std::decay_t<decltype(*std::begin(std::declval<const R&>()))>;

        template <class R>
        struct is_id_range<R, std::void_t<id_type_of<R>, decltype(std::end(std::declval<const R&>()))>>
            : std::bool_constant<std::is_integral_v<id_type_of<R>> && !std::is_same_v<id_type_of<R>, bool>>
        {
        };

        template <class T, class Ids>
        std::vector<T> narrow_tokens(const Ids& ids, const std::string& source_path)
        {
            using id_type = std::decay_t<decltype(*std::begin(ids))>;
            std::vector<T> out;
            out.reserve(static_cast<std::size_t>(std::distance(std::begin(ids), std::end(ids))));
            std::size_t position = 0;
            for (const id_type id : ids)
            {
                // Compared as wide integers: a negative id or one above T's maximum is caught
                // whatever id_type is.
                const bool negative = std::is_signed_v<id_type> && static_cast<long long>(id) < 0;
                if (negative || static_cast<unsigned long long>(id) > std::numeric_limits<T>::max())
                {
                    const std::string value = negative ? std::to_string(static_cast<long long>(id))
                                                       : std::to_string(static_cast<unsigned long long>(id));
                    throw std::runtime_error(source_path + ": the tokenizer returned token id " + value
                                             + " at position " + std::to_string(position)
                                             + ", which does not fit in " + std::to_string(8 * sizeof(T))
                                             + " bits (largest " + std::to_string(std::numeric_limits<T>::max())
                                             + ")");
                }
                out.push_back(static_cast<T>(id));
                ++position;
            }
            return out;
        }

        template <class T, class Tokenizer>
        cached_tokens<T> load_or_build(const std::string& source_path, const std::string& cache_path,
                                       Tokenizer& tokenize, const token_cache_options& options)
        {
            namespace d = token_cache_detail;

            struct stat source_stat;
            if (::stat(source_path.c_str(), &source_stat) != 0)
            {
                d::fail(source_path, "cannot stat token source", errno);
            }

            cached_tokens<T> result;
            mapped_file source;
            std::uint64_t source_hash = 0;
            bool hashed = false;

            // Validate what is there; on any mismatch `reason` says what, and we rebuild.
            struct stat cache_stat;
            if (::stat(cache_path.c_str(), &cache_stat) != 0)
            {
                result.reason =
                    errno == ENOENT ? "no cache file" : std::string("cannot stat cache: ") + std::strerror(errno);
            }
            else if (cache_stat.st_dev == source_stat.st_dev && cache_stat.st_ino == source_stat.st_ino)
            {
                throw std::invalid_argument(
                    cache_path + ": the token cache is the source file " + source_path
                    + " itself (a build would write over it); give the cache a path of its own");
            }
            else
            {
                mapped_file cache;
                try
                {
                    cache = mapped_file(cache_path);
                }
                catch (const std::runtime_error& e)
                {
                    result.reason = e.what();
                }
                d::header h;
                if (result.reason.empty())
                {
                    result.reason = d::decode(cache.data(), cache.size(), h);
                }
                if (result.reason.empty())
                {
                    const std::uint64_t body = cache.size() - d::header_size;
                    if (h.width != sizeof(T))
                    {
                        result.reason =
                            "token width " + std::to_string(h.width) + ", wanted " + std::to_string(sizeof(T));
                    }
                    else if (h.tokenizer_tag != options.tokenizer_tag)
                    {
                        result.reason = "built by tokenizer tag " + std::to_string(h.tokenizer_tag) + ", wanted "
                                        + std::to_string(options.tokenizer_tag);
                    }
                    else if (h.token_count > body / sizeof(T) || body != h.token_count * sizeof(T))
                    {
                        result.reason = "cache file has " + std::to_string(body) + " bytes of tokens, its header says "
                                        + std::to_string(h.token_count) + " tokens of " + std::to_string(sizeof(T))
                                        + " bytes (truncated?)";
                    }
                    else if (options.verify_tokens
                             && io::xxh64(cache.data() + d::header_size, static_cast<std::size_t>(body))
                                    != h.tokens_hash)
                    {
                        result.reason = "token checksum mismatch";
                    }
                    else if (static_cast<std::uint64_t>(source_stat.st_size) != h.source_size)
                    {
                        result.reason = "source size changed from " + std::to_string(h.source_size) + " to "
                                        + std::to_string(source_stat.st_size) + " bytes";
                    }
                }
                if (result.reason.empty())
                {
                    const std::int64_t mtime = static_cast<std::int64_t>(source_stat.st_mtim.tv_sec) * 1'000'000'000
                                               + source_stat.st_mtim.tv_nsec;
                    const auto count = static_cast<std::size_t>(h.token_count);
                    if (mtime == h.source_mtime_ns)
                    {
                        result.status = cache_status::reused;
                        result.tokens = token_dataset<T>(std::move(cache), d::header_size, count);
                        return result;
                    }
                    source = mapped_file(source_path);
                    source_hash = io::xxh64(source.data(), source.size());
                    hashed = true;
                    if (source.size() == h.source_size && source_hash == h.source_hash)
                    {
                        h.source_mtime_ns = d::recorded_mtime(source.mtime_ns());
                        d::refresh_header(cache, h);
                        result.status = cache_status::verified;
                        result.reason = "source mtime changed, contents did not";
                        result.tokens = token_dataset<T>(std::move(cache), d::header_size, count);
                        return result;
                    }
                    result.reason = "source contents changed";
                }
            }

            // Build. Size, mtime and hash all come from the mapped bytes themselves, so a
            // change made to the source while we read it shows as a stale mtime next time.
            if (!hashed)
            {
                source = mapped_file(source_path);
                source_hash = io::xxh64(source.data(), source.size());
            }
            const std::string_view text(reinterpret_cast<const char*>(source.data()), source.size());
            auto ids = tokenize(text);
            std::vector<T> converted;
            const std::vector<T>* tokens = nullptr;
            if constexpr (std::is_same_v<std::decay_t<decltype(ids)>, std::vector<T>>)
            {
                tokens = &ids;
            }
            else
            {
                converted = d::narrow_tokens<T>(ids, source_path);
                tokens = &converted;
            }
            const std::size_t token_bytes = tokens->size() * sizeof(T);

            d::header h;
            h.width = sizeof(T);
            h.source_size = source.size();
            h.source_mtime_ns = d::recorded_mtime(source.mtime_ns());
            h.source_hash = source_hash;
            h.tokenizer_tag = options.tokenizer_tag;
            h.token_count = tokens->size();
            h.tokens_hash = io::xxh64(tokens->data(), token_bytes);
            const auto head = d::encode(h);
            {
                // Written as checkpoints are; a directory that cannot be flushed after the rename
            // is let go: the new cache is complete and in place either way.
            io::atomic_file file(cache_path, false);
                file.write(head.data(), head.size());
                file.write(tokens->data(), token_bytes);
                file.commit();
            }
            result.status = cache_status::built;
            result.tokens = token_dataset<T>(mapped_file(cache_path), d::header_size, tokens->size());
            return result;
        }
    }

    template <class T, class Tokenizer>
    cached_tokens<T> load_or_build_tokens(const std::string& source_path, const std::string& cache_path,
                                          Tokenizer&& tokenize, const token_cache_options& options)
    {
        static_assert(std::is_same_v<T, std::uint8_t> || std::is_same_v<T, std::uint16_t>
                          || std::is_same_v<T, std::uint32_t>,
                      "xoptim::train::load_or_build_tokens: the token type must be uint8_t, uint16_t or uint32_t");
        static_assert(std::is_invocable_v<Tokenizer&, std::string_view>,
                      "xoptim::train::load_or_build_tokens: the tokenizer must be callable with std::string_view "
                      "(the source's bytes)");
        if constexpr (std::is_invocable_v<Tokenizer&, std::string_view>)
        {
            static_assert(token_cache_detail::is_id_range<std::invoke_result_t<Tokenizer&, std::string_view>>::value,
                          "xoptim::train::load_or_build_tokens: the tokenizer must return a container of integer "
                          "token ids (std::vector<std::uint16_t>, ...)");
            // Only a valid call is instantiated, so a mistake reads as the one message above.
            if constexpr (token_cache_detail::is_id_range<std::invoke_result_t<Tokenizer&, std::string_view>>::value)
            {
                return token_cache_detail::load_or_build<T>(source_path, cache_path, tokenize, options);
            }
        }
        return {};
    }
}

#endif
