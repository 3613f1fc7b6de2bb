#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) in build-fuzz/ and fuzzes each for
# FUZZ_SECONDS seconds (default 30; 0 builds only): the safetensors reader, the whole
# checkpoint load path (with its oracle), the npy reader and the token cache. Each starts
# from its seed corpus in tests/fuzz/corpus/NAME, copied to a scratch directory so the
# repository is never modified; a crashing input is kept in build-fuzz/artifacts/ and the
# script exits non-zero. The last lines give, per target, the executions and libFuzzer's
# coverage (cov: edges, ft: features).
#
#   tools/fuzz.sh --seeds   rewrites the seed corpora the library writes itself
#                           (checkpoint, npy, token_cache; tests/fuzz/make_corpus.py writes
#                           the safetensors one)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-30}
build=build-fuzz
targets=(safetensors checkpoint npy token_cache)

source tools/configure.sh
CXX=clang++ configure "$build" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DXOPTIM_BUILD_FUZZERS=ON -DXOPTIM_BUILD_TESTS=OFF -DXOPTIM_BUILD_EXAMPLES=OFF -DXOPTIM_BUILD_BENCHMARKS=OFF
cmake --build "$build" -j "$(nproc)" --target "${targets[@]/#/fuzz_}"

export ASAN_OPTIONS=halt_on_error=1:detect_leaks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

if [ "${1:-}" = "--seeds" ]; then
  for t in checkpoint npy token_cache; do
    rm -rf "tests/fuzz/corpus/$t"
    XOPTIM_FUZZ_WRITE_SEEDS="tests/fuzz/corpus/$t" "$build/tests/fuzz/fuzz_$t"
  done
  exit 0
fi

# libFuzzer reads -max_total_time=0 as "no limit".
if [ "$seconds" -le 0 ]; then
  echo "fuzz.sh: FUZZ_SECONDS=$seconds, not running the fuzzers"
  exit 0
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$build/artifacts"
# One target, its log in $scratch/$t.log; fails (exit 1) on a crash or an oracle violation.
run_target() {
  local t=$1
  cp -R "tests/fuzz/corpus/$t" "$scratch/$t"
  local dict=()
  if [ -f "tests/fuzz/$t.dict" ]; then dict=(-dict="tests/fuzz/$t.dict"); fi
  "$build/tests/fuzz/fuzz_$t" "$scratch/$t" "${dict[@]}" -max_total_time="$seconds" -max_len=16384 \
    -rss_limit_mb=2048 -timeout=10 -artifact_prefix="$build/artifacts/$t-" -print_final_stats=1 \
    > "$scratch/$t.log" 2>&1
}

# As many targets at once as there are cores (each fuzzer runs on one), each for $seconds.
jobs=$(nproc)
failed=0
summary=()
for ((i = 0; i < ${#targets[@]}; i += jobs)); do
  batch=("${targets[@]:i:jobs}")
  pids=()
  for t in "${batch[@]}"; do
    echo "fuzz.sh: fuzz_$t for $seconds s"
    run_target "$t" &
    pids+=($!)
  done
  for k in "${!batch[@]}"; do
    t=${batch[$k]}
    if ! wait "${pids[$k]}"; then
      tail -60 "$scratch/$t.log" >&2
      echo "fuzz.sh: fuzz_$t failed; the input is in $build/artifacts/" >&2
      failed=1
      continue
    fi
    grep -E "INITED|DONE|stat::" "$scratch/$t.log"
    done_line=$(grep -E "DONE" "$scratch/$t.log" | tail -1)
    runs=$(grep -oE "Done [0-9]+ runs" "$scratch/$t.log" | grep -oE "[0-9]+" || echo "?")
    summary+=("fuzz_$t: $runs executions in $seconds s; $(echo "$done_line" | grep -oE "cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*")")
  done
done
printf '%s\n' "${summary[@]}"
exit $failed
