// What a tiny_gpt run is told on the command line (tiny_gpt.cpp parses it).
#ifndef XOPTIM_EXAMPLES_TINY_GPT_SETTINGS_HPP
#define XOPTIM_EXAMPLES_TINY_GPT_SETTINGS_HPP

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <xoptim/train/gpt.hpp>

namespace tiny_gpt
{
    namespace fs = std::filesystem;

    struct settings
    {
        xoptim::train::gpt_config model;  // 4 layers, d_model 128, 4 heads, context 128, ASCII
        std::size_t batch = 16;           // sequences of `context` characters per micro-batch
        std::size_t accumulate = 1;       // micro-batches per optimizer step (their mean gradient)
        std::size_t steps = 1000;
        std::size_t warmup = 100;  // linear warmup, then cosine down to 10% at `steps`
        double clip = 1.0;         // global gradient norm
        std::size_t eval_every = 25;
        std::size_t validation_windows = 64;
        std::size_t workers = 2;  // loader threads
        std::size_t threads = 0;  // xoptim's pool; 0: all hardware threads
        fs::path out = "tiny_gpt_out";
        fs::path text;  // empty: the King James Bible
        std::vector<std::string> optimizers;  // empty: all
        std::optional<double> lr;             // instead of the optimizer's default
        double adamw_lr = 0;                  // the hybrid's AdamW part (AdamW's lr unless given)
        bool sweep = false;
        fs::path resume;
        std::size_t stop_after = 0;  // > 0: stop (and save) after this step, schedules still over `steps`
        std::size_t save_every = 0;  // > 0: a checkpoint every this many steps too
        std::string prompt = "And God said";
        std::size_t sample_chars = 160;
        double temperature = 0.8;
    };

}

#endif
