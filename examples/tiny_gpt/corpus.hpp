// The text tiny_gpt trains on: characters as tokens (ASCII), the first 90% to train on,
// the last 10% to validate, batches of random windows and a fixed validation set.
#ifndef XOPTIM_EXAMPLES_TINY_GPT_CORPUS_HPP
#define XOPTIM_EXAMPLES_TINY_GPT_CORPUS_HPP

#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <xoptim/io/xxh64.hpp>
#include <xoptim/train/layers.hpp>
#include <xoptim/train/mapped_file.hpp>
#include <xoptim/train/token_cache.hpp>

#include "../common/ascii_text.hpp"

namespace tiny_gpt
{
    namespace fs = std::filesystem;

    // `batch` windows of `context` characters (ids) and the characters after each one
    // (targets), row-major (batch, context).
    struct lm_batch
    {
        std::vector<std::int32_t> ids, targets;
    };

    class corpus
    {
    public:

        // `text` empty: the King James Bible, written into `out` through `bible` on first
        // use. Throws naming the file when it is empty, not text, or too short for
        // `context`. The tokens are cached beside the text's copy in `out`.
        corpus(fs::path text, const fs::path& out, std::size_t context, std::size_t validation_windows);

        const std::string& name() const noexcept
        {
            return m_name;
        }

        std::size_t size() const noexcept
        {
            return m_cached.tokens.size();
        }

        std::size_t train_size() const noexcept
        {
            return m_train_end;
        }

        // XXH64 of the tokens: which text a checkpoint was trained on.
        std::uint64_t digest() const noexcept
        {
            return m_digest;
        }

        // Batch `index` of a run with `seed`: random windows of the training part, the same
        // for the same index and seed (safe to call from several threads at once).
        void fill(std::uint64_t seed, std::size_t index, std::size_t batch, lm_batch& b) const;

        // The validation windows, evenly spaced over the last 10%.
        const lm_batch& validation() const noexcept
        {
            return m_validation;
        }

        std::string describe() const;

    private:

        void window(std::size_t at, std::size_t row, lm_batch& b) const;

        std::string m_name;
        std::size_t m_context;
        xoptim::train::cached_tokens<std::uint8_t> m_cached;
        std::size_t m_train_end = 0;
        std::uint64_t m_digest = 0;
        lm_batch m_validation;
    };

    inline corpus::corpus(fs::path text, const fs::path& out, std::size_t context, std::size_t validation_windows)
        : m_context(context)
    {
        fs::create_directories(out);
        if (text.empty())
        {
            text = out / "kjv.txt";
            if (!fs::exists(text))
            {
                examples::write_bible(text);
            }
        }
        m_name = text.string();
        {
            const xoptim::train::mapped_file source(m_name);
            examples::check_text(m_name, {reinterpret_cast<const char*>(source.data()), source.size()});
            // Each part holds at least one window of context + 1 characters.
            const std::size_t needed = 10 * (context + 1) + 10;
            if (source.size() < needed)
            {
                throw std::runtime_error(m_name + " has " + std::to_string(source.size())
                                         + " characters, too short for a context of " + std::to_string(context)
                                         + ": at least " + std::to_string(needed)
                                         + " are needed (90% to train on and 10% to validate, each holding one context"
                                           " and the character after it)");
            }
        }
        m_cached = xoptim::train::load_or_build_tokens<std::uint8_t>(
            m_name, (out / (text.filename().string() + ".tokens")).string(), examples::ascii_tokenizer{});
        m_train_end = size() * 9 / 10;
        m_digest = xoptim::io::xxh64(m_cached.tokens.data(), size());
        const std::size_t first = m_train_end, span = size() - first - context - 1;
        m_validation.ids.resize(validation_windows * context);
        m_validation.targets.resize(validation_windows * context);
        for (std::size_t w = 0; w < validation_windows; ++w)
        {
            window(first + span * w / std::max<std::size_t>(1, validation_windows - 1), w, m_validation);
        }
    }

    inline void corpus::window(std::size_t at, std::size_t row, lm_batch& b) const
    {
        const std::uint8_t* t = m_cached.tokens.data() + at;
        for (std::size_t j = 0; j < m_context; ++j)
        {
            b.ids[row * m_context + j] = t[j];
            b.targets[row * m_context + j] = t[j + 1];
        }
    }

    inline void corpus::fill(std::uint64_t seed, std::size_t index, std::size_t batch, lm_batch& b) const
    {
        b.ids.resize(batch * m_context);
        b.targets.resize(batch * m_context);
        const std::size_t span = m_train_end - m_context;  // window starts in [0, span)
        for (std::size_t r = 0; r < batch; ++r)
        {
            const double u = (xoptim::train::hash_uniform(1'000'003 * seed + index, r) + 1) * 0.5;  // [0, 1)
            window(std::size_t(u * double(span)) % span, r, b);
        }
    }

    inline std::string corpus::describe() const
    {
        return m_name + ": " + std::to_string(size()) + " characters (" + std::to_string(m_train_end)
               + " to train on, " + std::to_string(size() - m_train_end) + " to validate, "
               + std::to_string(m_validation.ids.size()) + " positions in the validation windows); token cache "
               + xoptim::train::cache_status_name(m_cached.status)
               + (m_cached.reason.empty() ? "" : " (" + m_cached.reason + ")");
    }
}

#endif
