#!/usr/bin/env bash
# The whole test suite: a Release build (with benchmarks) and an ASan/UBSan Debug build.
# README and .ci/run both call this script.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

cmake -S . -B build -DXOPTIM_BUILD_BENCHMARKS=ON
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j2

export ASAN_OPTIONS=halt_on_error=1:detect_leaks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# -Wno-uninitialized: GCC 12 flags the `__Y = __Y` idiom inside its own AVX-512 intrinsics
# at -O1 (GCC bug 105593).
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_CXX_FLAGS="-O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -Wno-uninitialized" \
  -DXOPTIM_BUILD_BENCHMARKS=OFF
cmake --build build-asan -j "$jobs"
ctest --test-dir build-asan --output-on-failure -j2

# The thread tests under ThreadSanitizer.
tools/tsan.sh

# The file readers and the checkpoint load path under libFuzzer (clang, ASan + UBSan),
# FUZZ_SECONDS each (default 30).
FUZZ_SECONDS=${FUZZ_SECONDS:-30} tools/fuzz.sh
