#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) in build-fuzz/ and fuzzes the
# safetensors reader for FUZZ_SECONDS seconds (default 60; 0 builds only). The seed corpus
# is copied to a scratch directory, so the repository's corpus is never modified; a crashing
# input is kept in build-fuzz/artifacts/ and the script exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
build=build-fuzz

CXX=clang++ cmake -S . -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DXOPTIM_BUILD_FUZZERS=ON -DXOPTIM_BUILD_TESTS=OFF -DXOPTIM_BUILD_EXAMPLES=OFF -DXOPTIM_BUILD_BENCHMARKS=OFF
cmake --build "$build" -j "$(nproc)" --target fuzz_safetensors

# libFuzzer reads -max_total_time=0 as "no limit".
if [ "$seconds" -le 0 ]; then
  echo "fuzz.sh: FUZZ_SECONDS=$seconds, not running the fuzzer"
  exit 0
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -R tests/fuzz/corpus/safetensors "$scratch/corpus"
mkdir -p "$build/artifacts"
export ASAN_OPTIONS=halt_on_error=1:detect_leaks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
"$build/tests/fuzz/fuzz_safetensors" "$scratch/corpus" \
  -dict=tests/fuzz/safetensors.dict -max_total_time="$seconds" -max_len=4096 -rss_limit_mb=2048 \
  -timeout=10 -artifact_prefix="$build/artifacts/" -print_final_stats=1
