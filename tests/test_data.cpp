// The data pipeline: mapped files, token datasets, the token cache and the batch loader.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xoptim/train/data.hpp>

namespace
{
    namespace fs = std::filesystem;
    namespace train = xoptim::train;
    using namespace std::chrono_literals;

    // A fresh directory per test, removed afterwards.
    class temp_dir
    {
    public:

        temp_dir()
        {
            static std::atomic<int> counter{0};
            m_path = fs::temp_directory_path()
                     / ("xoptim_test_data_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
            fs::remove_all(m_path);
            fs::create_directories(m_path);
        }

        ~temp_dir()
        {
            std::error_code ignored;
            fs::remove_all(m_path, ignored);
        }

        std::string file(const std::string& name) const
        {
            return (m_path / name).string();
        }

        std::set<std::string> names() const
        {
            std::set<std::string> out;
            for (const auto& entry : fs::directory_iterator(m_path))
            {
                out.insert(entry.path().filename().string());
            }
            return out;
        }

    private:

        fs::path m_path;
    };

    void write_file(const std::string& path, const std::string& bytes)
    {
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        ASSERT_TRUE(out.good()) << path;
    }

    std::string read_file(const std::string& path)
    {
        std::ifstream in(path, std::ios::binary);
        return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }

    // Sets a file's mtime to `seconds` after the epoch: old enough that the cache trusts it.
    void set_mtime(const std::string& path, long seconds, long nanoseconds = 0)
    {
        const struct timespec times[2] = {{seconds, nanoseconds}, {seconds, nanoseconds}};
        ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, 0), 0) << path;
    }

    // A byte tokenizer that counts its calls.
    struct counting_tokenizer
    {
        int* calls;

        std::vector<std::uint8_t> operator()(std::string_view text) const
        {
            ++*calls;
            return train::byte_tokenizer()(text);
        }
    };

    template <class T>
    std::string tokens_text(const train::token_dataset<T>& d)
    {
        return std::string(d.begin(), d.end());
    }
}

// ---- mapped_file, token_dataset ----

TEST(mapped_file, maps_the_file_contents)
{
    temp_dir dir;
    write_file(dir.file("a"), "hello mapped world");
    train::mapped_file f(dir.file("a"));
    ASSERT_EQ(f.size(), 18u);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(f.data()), f.size()), "hello mapped world");
    EXPECT_EQ(f.path(), dir.file("a"));

    train::mapped_file moved(std::move(f));
    EXPECT_EQ(moved.size(), 18u);
    EXPECT_EQ(f.size(), 0u);
    EXPECT_EQ(f.data(), nullptr);
}

TEST(mapped_file, empty_file_is_an_empty_mapping)
{
    temp_dir dir;
    write_file(dir.file("empty"), "");
    train::mapped_file f(dir.file("empty"));
    EXPECT_EQ(f.size(), 0u);
    EXPECT_TRUE(f.empty());
    EXPECT_EQ(f.data(), nullptr);
    EXPECT_EQ(train::token_dataset<std::uint16_t>(std::move(f)).size(), 0u);
}

TEST(mapped_file, missing_file_error_names_the_path_and_the_reason)
{
    temp_dir dir;
    const std::string path = dir.file("not_there.bin");
    try
    {
        train::mapped_file f(path);
        FAIL() << "no exception";
    }
    catch (const std::runtime_error& e)
    {
        EXPECT_EQ(std::string(e.what()), path + ": cannot open: No such file or directory");
    }
}

TEST(mapped_file, directory_is_refused)
{
    temp_dir dir;
    EXPECT_THROW(train::mapped_file(dir.file("")), std::runtime_error);
}

TEST(token_dataset, reads_little_endian_tokens_in_place)
{
    temp_dir dir;
    write_file(dir.file("t"), std::string("\x01\x02\x03\x04\xff\xff", 6));
    train::token_dataset<std::uint16_t> d(train::mapped_file(dir.file("t")));
    ASSERT_EQ(d.size(), 3u);
    EXPECT_EQ(d[0], 0x0201);
    EXPECT_EQ(d[1], 0x0403);
    EXPECT_EQ(d.at(2), 0xffff);
    EXPECT_THROW(d.at(3), std::out_of_range);
    const train::token_span<std::uint16_t> s = d.slice(1, 2);
    ASSERT_EQ(s.size(), 2u);
    EXPECT_EQ(s[0], 0x0403);
    EXPECT_EQ(s.data(), d.data() + 1);
    EXPECT_THROW(d.slice(2, 2), std::out_of_range);

    train::token_dataset<std::uint16_t> tail(train::mapped_file(dir.file("t")), 2, 1);
    EXPECT_EQ(tail.size(), 1u);
    EXPECT_EQ(tail[0], 0x0403);
}

TEST(token_dataset, refuses_partial_tokens_and_misaligned_offsets)
{
    temp_dir dir;
    write_file(dir.file("odd"), "abc");
    EXPECT_THROW(train::token_dataset<std::uint16_t>(train::mapped_file(dir.file("odd"))), std::invalid_argument);
    EXPECT_THROW(train::token_dataset<std::uint16_t>(train::mapped_file(dir.file("odd")), 1, 1), std::invalid_argument);
    EXPECT_THROW(train::token_dataset<std::uint8_t>(train::mapped_file(dir.file("odd")), 1, 3), std::invalid_argument);
}

// ---- token cache ----

TEST(token_cache, built_then_reused_without_tokenizing)
{
    temp_dir dir;
    const std::string src = dir.file("corpus.txt"), cache = dir.file("corpus.tok");
    write_file(src, "to be or not to be");
    set_mtime(src, 1'600'000'000, 123);
    int calls = 0;

    auto first = train::load_or_build_tokens<std::uint8_t>(src, cache, counting_tokenizer{&calls});
    EXPECT_EQ(first.status, train::cache_status::built);
    EXPECT_EQ(first.reason, "no cache file");
    EXPECT_EQ(tokens_text(first.tokens), "to be or not to be");

    auto second = train::load_or_build_tokens<std::uint8_t>(src, cache, counting_tokenizer{&calls});
    EXPECT_EQ(second.status, train::cache_status::reused);
    EXPECT_FALSE(second.rebuilt());
    EXPECT_EQ(second.reason, "");
    EXPECT_EQ(tokens_text(second.tokens), "to be or not to be");
    EXPECT_EQ(calls, 1);
    // Written atomically: nothing but the source and the cache is left behind.
    EXPECT_EQ(dir.names(), (std::set<std::string>{"corpus.txt", "corpus.tok"}));
}

TEST(token_cache, rebuilt_when_the_source_changes)
{
    temp_dir dir;
    const std::string src = dir.file("s"), cache = dir.file("c");
    int calls = 0;
    write_file(src, "abcd");
    set_mtime(src, 1'600'000'000);
    train::load_or_build_tokens<std::uint16_t>(src, cache, counting_tokenizer{&calls});

    write_file(src, "abce");  // same size, new contents, new mtime
    set_mtime(src, 1'600'000'100);
    auto same_size = train::load_or_build_tokens<std::uint16_t>(src, cache, counting_tokenizer{&calls});
    EXPECT_EQ(same_size.status, train::cache_status::built);
    EXPECT_EQ(same_size.reason, "source contents changed");
    ASSERT_EQ(same_size.tokens.size(), 4u);
    EXPECT_EQ(same_size.tokens[3], 'e');

    write_file(src, "abcdef");
    set_mtime(src, 1'600'000'200);
    auto longer = train::load_or_build_tokens<std::uint16_t>(src, cache, counting_tokenizer{&calls});
    EXPECT_EQ(longer.status, train::cache_status::built);
    EXPECT_EQ(longer.reason, "source size changed from 4 to 6 bytes");
    EXPECT_EQ(longer.tokens.size(), 6u);
    EXPECT_EQ(calls, 3);
}

TEST(token_cache, touched_source_is_verified_by_hash_and_not_retokenized)
{
    temp_dir dir;
    const std::string src = dir.file("s"), cache = dir.file("c");
    int calls = 0;
    write_file(src, "unchanged text");
    set_mtime(src, 1'600'000'000);
    train::load_or_build_tokens<std::uint8_t>(src, cache, counting_tokenizer{&calls});

    set_mtime(src, 1'600'000'500);
    auto touched = train::load_or_build_tokens<std::uint8_t>(src, cache, counting_tokenizer{&calls});
    EXPECT_EQ(touched.status, train::cache_status::verified);
    EXPECT_FALSE(touched.rebuilt());
    EXPECT_EQ(tokens_text(touched.tokens), "unchanged text");

    // The header now holds the new mtime: the next load does not even hash.
    auto again = train::load_or_build_tokens<std::uint8_t>(src, cache, counting_tokenizer{&calls});
    EXPECT_EQ(again.status, train::cache_status::reused);
    EXPECT_EQ(calls, 1);
}

// A change within the mtime's granularity keeps the mtime: a source written just now is
// never trusted by its mtime alone.
TEST(token_cache, fresh_source_is_hashed_so_a_change_keeping_the_mtime_is_seen)
{
    temp_dir dir;
    const std::string src = dir.file("s"), cache = dir.file("c");
    int calls = 0;
    write_file(src, "version one");
    struct stat st;
    ASSERT_EQ(::stat(src.c_str(), &st), 0);
    auto built = train::load_or_build_tokens<std::uint8_t>(src, cache, counting_tokenizer{&calls});
    EXPECT_EQ(built.status, train::cache_status::built);

    write_file(src, "version two");
    set_mtime(src, st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    auto changed = train::load_or_build_tokens<std::uint8_t>(src, cache, counting_tokenizer{&calls});
    EXPECT_EQ(changed.status, train::cache_status::built);
    EXPECT_EQ(tokens_text(changed.tokens), "version two");

    auto same = train::load_or_build_tokens<std::uint8_t>(src, cache, counting_tokenizer{&calls});
    EXPECT_EQ(same.status, train::cache_status::verified);
    EXPECT_EQ(calls, 2);
}

TEST(token_cache, damaged_or_truncated_cache_is_rebuilt)
{
    temp_dir dir;
    const std::string src = dir.file("s"), cache = dir.file("c");
    int calls = 0;
    write_file(src, "some corpus bytes");
    set_mtime(src, 1'600'000'000);
    train::load_or_build_tokens<std::uint32_t>(src, cache, counting_tokenizer{&calls});
    const std::string good = read_file(cache);
    ASSERT_EQ(good.size(), 80u + 17u * 4u);

    const auto reload = [&](const std::string& bytes) {
        write_file(cache, bytes);
        auto r = train::load_or_build_tokens<std::uint32_t>(src, cache, counting_tokenizer{&calls});
        EXPECT_EQ(r.status, train::cache_status::built);
        EXPECT_EQ(r.tokens.size(), 17u);
        EXPECT_EQ(r.tokens[0], std::uint32_t('s'));
        EXPECT_EQ(read_file(cache), good);
        return r.reason;
    };
    std::string flipped = good;
    flipped[20] ^= 1;
    EXPECT_EQ(reload(flipped), "header checksum mismatch");
    EXPECT_EQ(reload(good.substr(0, good.size() - 3)),
              "cache file has 65 bytes of tokens, its header says 17 tokens of 4 bytes (truncated?)");
    EXPECT_EQ(reload("xyz"), "cache file of 3 bytes is shorter than its header");
    EXPECT_EQ(reload(std::string(200, 'x')), "not a token cache (bad magic)");
    EXPECT_EQ(calls, 5);

    // A flipped token byte is only seen when asked for.
    std::string token_flip = good;
    token_flip[80] ^= 1;
    write_file(cache, token_flip);
    EXPECT_EQ(train::load_or_build_tokens<std::uint32_t>(src, cache, counting_tokenizer{&calls}).status,
              train::cache_status::reused);
    train::token_cache_options verify;
    verify.verify_tokens = true;
    auto checked = train::load_or_build_tokens<std::uint32_t>(src, cache, counting_tokenizer{&calls}, verify);
    EXPECT_EQ(checked.status, train::cache_status::built);
    EXPECT_EQ(checked.reason, "token checksum mismatch");
}

TEST(token_cache, other_token_width_or_tokenizer_tag_is_rebuilt)
{
    temp_dir dir;
    const std::string src = dir.file("s"), cache = dir.file("c");
    int calls = 0;
    write_file(src, "width");
    set_mtime(src, 1'600'000'000);
    train::load_or_build_tokens<std::uint8_t>(src, cache, counting_tokenizer{&calls});
    auto wide = train::load_or_build_tokens<std::uint16_t>(src, cache, counting_tokenizer{&calls});
    EXPECT_EQ(wide.status, train::cache_status::built);
    EXPECT_EQ(wide.reason, "token width 1, wanted 2");

    train::token_cache_options tagged;
    tagged.tokenizer_tag = 7;
    auto retagged = train::load_or_build_tokens<std::uint16_t>(src, cache, counting_tokenizer{&calls}, tagged);
    EXPECT_EQ(retagged.status, train::cache_status::built);
    EXPECT_EQ(retagged.reason, "built by tokenizer tag 0, wanted 7");
    EXPECT_EQ(train::load_or_build_tokens<std::uint16_t>(src, cache, counting_tokenizer{&calls}, tagged).status,
              train::cache_status::reused);
    EXPECT_EQ(calls, 3);
}

TEST(token_cache, token_id_that_does_not_fit_names_source_position_and_value)
{
    temp_dir dir;
    const std::string src = dir.file("s"), cache = dir.file("c");
    write_file(src, "ab");
    const auto tokenizer = [](std::string_view) { return std::vector<int>{5, 300}; };
    try
    {
        train::load_or_build_tokens<std::uint8_t>(src, cache, tokenizer);
        FAIL() << "no exception";
    }
    catch (const std::runtime_error& e)
    {
        EXPECT_EQ(std::string(e.what()),
                  src + ": the tokenizer returned token id 300 at position 1, "
                        "which does not fit in 8 bits (largest 255)");
    }
    EXPECT_EQ(dir.names(), std::set<std::string>{"s"});
    const auto negative = [](std::string_view) { return std::vector<long>{-1}; };
    EXPECT_THROW(train::load_or_build_tokens<std::uint32_t>(src, cache, negative), std::runtime_error);
    // Ids of another integer type that fit are converted.
    const auto wide = [](std::string_view) { return std::vector<std::int64_t>{65535, 0}; };
    EXPECT_EQ(train::load_or_build_tokens<std::uint16_t>(src, cache, wide).tokens[0], 65535);
}

TEST(token_cache, missing_source_names_the_path_and_empty_source_is_fine)
{
    temp_dir dir;
    const std::string missing = dir.file("missing");
    try
    {
        train::load_or_build_tokens<std::uint8_t>(missing, dir.file("c"), train::byte_tokenizer());
        FAIL() << "no exception";
    }
    catch (const std::runtime_error& e)
    {
        EXPECT_EQ(std::string(e.what()), missing + ": cannot stat token source: No such file or directory");
    }
    write_file(dir.file("empty"), "");
    auto empty = train::load_or_build_tokens<std::uint8_t>(dir.file("empty"), dir.file("c"), train::byte_tokenizer());
    EXPECT_EQ(empty.tokens.size(), 0u);
    EXPECT_EQ(read_file(dir.file("c")).size(), 80u);
}

// The cache's path naming the source itself (directly or not) is refused before anything
// is written: a build would have replaced the text by its tokens.
TEST(token_cache, a_cache_path_that_is_the_source_is_refused)
{
    temp_dir dir;
    const std::string src = dir.file("s");
    write_file(src, "the corpus");
    for (const std::string& cache : {src, dir.file("./s")})
    {
        try
        {
            train::load_or_build_tokens<std::uint8_t>(src, cache, train::byte_tokenizer());
            ADD_FAILURE() << "no exception for " << cache;
        }
        catch (const std::invalid_argument& e)
        {
            EXPECT_EQ(std::string(e.what()),
                      cache + ": the token cache is the source file " + src
                          + " itself (a build would write over it); give the cache a path of its own");
        }
        EXPECT_EQ(read_file(src), "the corpus");
    }
}

// A header refreshed after a verify goes to the file that was checked: where another run
// renamed a cache of its own over the path meanwhile, that one is left as it is.
TEST(token_cache, a_refreshed_header_goes_to_the_checked_file_only)
{
    temp_dir dir;
    const std::string src = dir.file("s"), cache = dir.file("c"), other = dir.file("o");
    write_file(src, "abc");
    set_mtime(src, 1'600'000'000);
    train::load_or_build_tokens<std::uint8_t>(src, cache, train::byte_tokenizer());
    write_file(other, "another run's cache");
    namespace d = train::token_cache_detail;
    const xoptim::train::mapped_file checked(cache);
    d::header h;
    ASSERT_EQ(d::decode(checked.data(), checked.size(), h), "");
    h.source_mtime_ns = 42;
    fs::rename(other, cache);
    d::refresh_header(checked, h);
    EXPECT_EQ(read_file(cache), "another run's cache");
}

TEST(token_cache, unwritable_cache_path_names_it)
{
    temp_dir dir;
    write_file(dir.file("s"), "x");
    const std::string cache = dir.file("no_such_dir/c");
    try
    {
        train::load_or_build_tokens<std::uint8_t>(dir.file("s"), cache, train::byte_tokenizer());
        FAIL() << "no exception";
    }
    catch (const std::runtime_error& e)
    {
        EXPECT_NE(std::string(e.what()).find(cache + ": cannot create temporary file"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("No such file or directory"), std::string::npos) << e.what();
    }
}

// ---- batch_loader ----

namespace
{
    struct test_batch
    {
        std::size_t index = 0;
        std::vector<int> tokens;
    };

    // A deterministic pseudo-random sleep per index, so workers finish out of order.
    void jitter(std::size_t index, int max_us)
    {
        const std::uint64_t h = (index + 1) * 0x9E3779B97F4A7C15ULL;
        std::this_thread::sleep_for(std::chrono::microseconds((h >> 40) % static_cast<std::uint64_t>(max_us)));
    }
}

TEST(batch_loader, delivers_every_batch_once_in_index_order)
{
    constexpr std::size_t n = 1000;
    std::vector<std::atomic<int>> fills(n);
    std::set<const test_batch*> buffers;
    std::set<const int*> token_memory;
    train::loader_options o;
    o.count = n;
    std::size_t expected = 0;
    {
        train::batch_loader<test_batch> loader(
            [&](std::size_t i, test_batch& b) {
                jitter(i, 200);
                ++fills[i];
                b.index = i;
                b.tokens.assign(16, static_cast<int>(i));
            },
            o);
        EXPECT_EQ(loader.buffers(), 6u + 8u + 1u);
        while (auto batch = loader.next())
        {
            ASSERT_EQ(batch.index(), expected);
            ASSERT_EQ(batch->index, expected);
            ASSERT_EQ(batch->tokens, std::vector<int>(16, static_cast<int>(expected)));
            buffers.insert(&*batch);
            token_memory.insert(batch->tokens.data());
            ++expected;
        }
        EXPECT_FALSE(loader.next());
        const train::loader_stats s = loader.stats();
        EXPECT_EQ(s.produced, n);
        EXPECT_EQ(s.delivered, n);
        EXPECT_EQ(s.workers, 8u);
        EXPECT_GT(s.fill_seconds, 0.0);
        EXPECT_GT(s.throughput(), 0.0);
        EXPECT_GE(s.wait_seconds, 0.0);
    }
    EXPECT_EQ(expected, n);
    for (std::size_t i = 0; i < n; ++i)
    {
        ASSERT_EQ(fills[i], 1) << "batch " << i;
    }
    // The pool is cycled and each buffer's vector keeps its memory: no allocation per batch.
    EXPECT_LE(buffers.size(), 15u);
    EXPECT_LE(token_memory.size(), 15u);
}

TEST(batch_loader, starts_at_first_and_ends_after_count)
{
    train::loader_options o;
    o.workers = 3;
    o.capacity = 4;
    o.first = 100;
    o.count = 5;
    train::batch_loader<test_batch> loader([](std::size_t i, test_batch& b) { b.index = i; }, o);
    std::vector<std::size_t> seen;
    while (auto batch = loader.next())
    {
        seen.push_back(batch->index);
    }
    EXPECT_EQ(seen, (std::vector<std::size_t>{100, 101, 102, 103, 104}));

    o.count = 0;
    train::batch_loader<test_batch> none([](std::size_t, test_batch&) {}, o);
    EXPECT_FALSE(none.next());
}

TEST(batch_loader, waits_while_the_fill_is_slower_than_the_consumer)
{
    train::loader_options o;
    o.workers = 2;
    o.capacity = 4;
    o.count = 10;
    train::batch_loader<test_batch> loader([](std::size_t, test_batch&) { std::this_thread::sleep_for(2ms); }, o);
    while (loader.next())
    {
    }
    const train::loader_stats s = loader.stats();
    // 10 fills of 2 ms on 2 workers take 10 ms; the consumer does nothing else.
    EXPECT_GT(s.wait_seconds, 0.005);
    EXPECT_GT(s.fill_seconds, 0.019);
    EXPECT_LT(s.throughput(), 2.0 / 0.002 * 1.01);
}

TEST(batch_loader, stops_promptly_with_a_full_queue_and_an_idle_consumer)
{
    train::loader_options o;  // endless, 8 workers, capacity 6
    std::atomic<std::size_t> filled{0};
    auto loader = std::make_unique<train::batch_loader<test_batch>>(
        [&](std::size_t i, test_batch& b) {
            b.tokens.assign(64, static_cast<int>(i));
            ++filled;
        },
        o);
    // Every buffer filled: the workers now wait for one to come back.
    while (filled < loader->buffers())
    {
        std::this_thread::sleep_for(1ms);
    }
    std::this_thread::sleep_for(5ms);
    EXPECT_EQ(loader->stats().produced, loader->buffers());
    const auto start = std::chrono::steady_clock::now();
    loader.reset();
    EXPECT_LT(std::chrono::steady_clock::now() - start, 500ms);
}

TEST(batch_loader, stop_from_another_thread_wakes_a_waiting_consumer)
{
    train::loader_options o;
    o.workers = 2;
    std::atomic<bool> release{false};
    train::batch_loader<test_batch> loader(
        [&](std::size_t, test_batch&) {
            while (!release)
            {
                std::this_thread::sleep_for(1ms);
            }
        },
        o);
    std::thread stopper([&] {
        std::this_thread::sleep_for(20ms);
        release = true;  // a fill is never interrupted: let the blocked ones return
        loader.stop();
    });
    // Either the first batch or, once stopped, the end: never a hang.
    while (loader.next())
    {
    }
    stopper.join();
    EXPECT_FALSE(loader.next());
}

TEST(batch_loader, exception_in_a_worker_reaches_the_consumer_at_its_index)
{
    for (const std::size_t bad : {std::size_t(0), std::size_t(37)})
    {
        train::loader_options o;
        o.count = 200;
        train::batch_loader<test_batch> loader(
            [bad](std::size_t i, test_batch& b) {
                jitter(i, 300);
                if (i == bad)
                {
                    throw std::runtime_error("bad record in batch " + std::to_string(i));
                }
                b.index = i;
            },
            o);
        std::size_t delivered = 0;
        try
        {
            while (auto batch = loader.next())
            {
                ASSERT_EQ(batch->index, delivered);
                ++delivered;
            }
            FAIL() << "no exception";
        }
        catch (const std::runtime_error& e)
        {
            EXPECT_EQ(std::string(e.what()), "bad record in batch " + std::to_string(bad));
        }
        EXPECT_EQ(delivered, bad);
        EXPECT_FALSE(loader.next()) << "stopped after the error";
        EXPECT_EQ(loader.stats().delivered, bad);
    }
}

TEST(batch_loader, holding_every_buffer_is_refused_not_a_deadlock)
{
    train::loader_options o;
    o.workers = 1;
    o.capacity = 1;
    train::batch_loader<test_batch> loader([](std::size_t i, test_batch& b) { b.index = i; }, o);
    ASSERT_EQ(loader.buffers(), 3u);
    auto a = loader.next(), b = loader.next(), c = loader.next();
    EXPECT_THROW(loader.next(), std::logic_error);
    b.release();
    auto d = loader.next();
    EXPECT_EQ(d.index(), 3u);
    EXPECT_EQ(d->index, 3u);
}

TEST(batch_loader, handle_may_outlive_its_loader)
{
    train::batch_loader<test_batch>::handle kept;
    {
        train::loader_options o;
        o.workers = 2;
        train::batch_loader<test_batch> loader([](std::size_t i, test_batch& b) { b.tokens.assign(4, int(i)); }, o,
                                               test_batch{0, std::vector<int>(4)});
        kept = loader.next();
    }
    ASSERT_TRUE(kept);
    EXPECT_EQ(kept->tokens, std::vector<int>(4, 0));
}

TEST(batch_loader, invalid_options_are_refused)
{
    train::loader_options o;
    o.workers = 0;
    EXPECT_THROW(train::batch_loader<test_batch>([](std::size_t, test_batch&) {}, o), std::invalid_argument);
    o.workers = 1;
    o.capacity = 0;
    EXPECT_THROW(train::batch_loader<test_batch>([](std::size_t, test_batch&) {}, o), std::invalid_argument);
    EXPECT_THROW(train::batch_loader<test_batch>(nullptr), std::invalid_argument);
    // A pool of capacity + workers + 1 buffers that wraps to 1 or 0.
    for (const std::size_t capacity :
         {std::numeric_limits<std::size_t>::max(), std::numeric_limits<std::size_t>::max() - 1})
    {
        o.capacity = capacity;
        try
        {
            train::batch_loader<test_batch>([](std::size_t, test_batch&) {}, o);
            ADD_FAILURE() << "capacity " << capacity << " accepted";
        }
        catch (const std::invalid_argument& e)
        {
            EXPECT_EQ(std::string(e.what()), "xoptim::train::batch_loader: capacity " + std::to_string(capacity)
                                                 + " with 1 workers is a pool of more buffers than a size_t counts");
        }
    }
}
