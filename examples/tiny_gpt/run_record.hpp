// What a checkpoint was trained with, written beside it (CHECKPOINT.run, "key value"
// lines), so that --resume can say what differs before it loads anything: the model's
// shape (the checkpoint's tensor shapes cannot tell the number of heads), the optimizer,
// its learning rates and schedule, the batch and the text. A resumed run continues the
// very same run, bit for bit, or does not start.
#ifndef XOPTIM_EXAMPLES_TINY_GPT_RUN_RECORD_HPP
#define XOPTIM_EXAMPLES_TINY_GPT_RUN_RECORD_HPP

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include <xoptim/io/atomic_file.hpp>

#include "corpus.hpp"
#include "settings.hpp"

namespace tiny_gpt
{
    using run_record = std::vector<std::pair<std::string, std::string>>;

    inline fs::path record_path(const fs::path& checkpoint)
    {
        return checkpoint.string() + ".run";
    }

    // `detail`: what else sets the optimizer (the hybrid's AdamW lr), or empty.
    inline run_record make_record(const settings& s, const corpus& c, const std::string& optimizer, double lr,
                                  const std::string& detail)
    {
        const auto number = [](double v) {  // the shortest text that reads back as v
            for (int digits = 6;; ++digits)
            {
                char b[32];
                std::snprintf(b, sizeof b, "%.*g", digits, v);
                if (digits == 17 || std::strtod(b, nullptr) == v)
                {
                    return std::string(b);
                }
            }
        };
        char digest[24];
        std::snprintf(digest, sizeof digest, "%016llx", static_cast<unsigned long long>(c.digest()));
        return {{"layers", std::to_string(s.model.layers)},
                {"d_model", std::to_string(s.model.d_model)},
                {"heads", std::to_string(s.model.heads)},
                {"context", std::to_string(s.model.context)},
                {"vocab", std::to_string(s.model.vocab)},
                {"tied_head", s.model.tied_head ? "yes" : "no"},
                {"seed", std::to_string(s.model.seed)},
                {"optimizer", optimizer},
                {"lr", number(lr)},
                {"optimizer_detail", detail.empty() ? "-" : detail},
                {"batch", std::to_string(s.batch)},
                {"accumulate", std::to_string(s.accumulate)},
                {"steps", std::to_string(s.steps)},
                {"warmup", std::to_string(s.warmup)},
                {"clip", number(s.clip)},
                {"text_xxh64", digest}};
    }

    inline void write_record(const fs::path& checkpoint, const run_record& r)
    {
        std::string text = "# tiny_gpt: the run " + checkpoint.filename().string() + " belongs to\n";
        for (const auto& [key, value] : r)
        {
            text += key + " " + value + "\n";
        }
        xoptim::io::atomic_file file(record_path(checkpoint).string());
        file.write(text.data(), text.size());
        file.commit();
    }

    inline run_record read_record(const fs::path& checkpoint)
    {
        std::ifstream in(record_path(checkpoint));
        if (!in)
        {
            throw std::runtime_error("cannot resume from " + checkpoint.string() + ": no " + record_path(checkpoint).string()
                                     + " beside it to say which model and optimizer it belongs to");
        }
        run_record r;
        std::string line;
        while (std::getline(in, line))
        {
            const auto space = line.find(' ');
            if (!line.empty() && line[0] != '#' && space != std::string::npos)
            {
                r.emplace_back(line.substr(0, space), line.substr(space + 1));
            }
        }
        if (std::none_of(r.begin(), r.end(), [](const auto& kv) { return kv.first == "seed"; }))
        {
            r.emplace_back("seed", "1");  // written before --seed existed: the only seed then
        }
        return r;
    }

    // "with layers 6 (here 4), optimizer lion (here adamw)", or empty when they agree.
    inline std::string compare(const run_record& saved, const run_record& here)
    {
        std::string out;
        for (const auto& [key, value] : here)
        {
            std::string was = "nothing";
            for (const auto& [k, v] : saved)
            {
                was = k == key ? v : was;
            }
            if (was != value)
            {
                out += (out.empty() ? "with " : ", ") + key + " " + was + " (here " + value + ")";
            }
        }
        return out;
    }
}

#endif
