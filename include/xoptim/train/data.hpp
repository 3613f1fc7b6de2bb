// The training data pipeline: memory-mapped token datasets, the tokenization cache and the
// batch loader (docs/training.md, "Data pipeline"). Include a part alone to compile less.
#ifndef XOPTIM_TRAIN_DATA_HPP
#define XOPTIM_TRAIN_DATA_HPP

#include <xoptim/train/loader.hpp>
#include <xoptim/train/mapped_file.hpp>
#include <xoptim/train/token_cache.hpp>

#endif
