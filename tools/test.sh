#!/usr/bin/env bash
# The whole test suite, one stage per function, each timed. README and .ci/run both call
# this script; `tools/test.sh STAGE...` runs only the stages named (tools/test.sh --list).
# tools/install-deps.sh installs everything the stages need.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

# The tests the per-ISA stages run (labels: one per test program, tests/CMakeLists.txt);
# test_newton_schulz_2026 runs the bf16 products' portable code where there is no AVX-512 BF16.
isa_tests=(test_engine test_codecs test_lowmem test_trajectories test_newton_schulz_2026 test_reach)
# The programs the ASan + UBSan stage builds and runs: raw memory (kernels and their tails,
# the 8-bit codecs, states of their own shape, the file and checkpoint readers under
# attack, the token cache, the stepper's buffers, the distributed plan). Sanitizing every
# program takes about three times the native build, past CI's time;
# `ASAN_TESTS=all tools/test.sh asan` runs every test under the sanitizers.
asan_tests=(test_engine test_codecs test_lowmem test_reach test_integrity test_data test_stepper test_dist_local)
# ARM64 under qemu adds the checkpoint and Muon tests.
arm64_tests=("${isa_tests[@]}" test_checkpoint test_muon)

source tools/configure.sh

# Builds the given targets (all when none) in $1 and runs their tests.
build_and_test() {
  local dir=$1
  shift
  if [ $# -eq 0 ]; then
    cmake --build "$dir" -j "$jobs"
    ctest --test-dir "$dir" --output-on-failure -j2
  else
    cmake --build "$dir" -j "$jobs" --target "$@"
    local labels
    labels=$(IFS='|'; echo "$*")
    ctest --test-dir "$dir" --output-on-failure -j2 -L "^($labels)\$"
  fi
}

# GCC for this CPU (-march=native), Release: every test, the examples and the guide's programs. Says whether
# the CPU has AVX-512, so whether the AVX-512 paths ran.
stage_native() {
  if grep -qw avx512f /proc/cpuinfo; then
    echo "native: this CPU has AVX-512: the AVX-512 paths run"
  else
    echo "native: this CPU has no AVX-512: the AVX-512 paths are NOT run (only AVX2 and the portable code)"
  fi
  # The benchmarks are compiled by the clang stage (compile_check): building them here too
  # would not fit CI's time.
  configure build -DXOPTIM_BUILD_BENCHMARKS=OFF
  build_and_test build
}

# The thread tests under ThreadSanitizer.
stage_tsan() {
  tools/tsan.sh
}

# The file readers and the checkpoint load path under libFuzzer (clang, ASan + UBSan),
# FUZZ_SECONDS each (default 30).
stage_fuzz() {
  FUZZ_SECONDS=${FUZZ_SECONDS:-30} tools/fuzz.sh
}

# GCC, ASan + UBSan, Debug at -O1: the programs of asan_tests (ASAN_TESTS=all: every test;
# the examples and the guide's programs run in the native stage).
stage_asan() {
  export ASAN_OPTIONS=halt_on_error=1:detect_leaks=1
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
  # -Wno-uninitialized: GCC 12 flags the `__Y = __Y` idiom inside its own AVX-512 intrinsics
  # at -O1 (GCC bug 105593).
  # -g1: line tables only (reports keep file and line; full DWARF of the template-heavy
  # tests costs the assembler minutes per file).
  # asan-instrumentation-with-call-threshold=0: every access checked by a call into the
  # runtime instead of inline code (the same checks): the stage's build takes half the
  # CPU (test_lowmem 197 s -> 88 s), its tests run slower (48 s), the stage 412 s -> 292 s.
  configure build-asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-g1 \
    -DCMAKE_CXX_FLAGS="-O1 --param=asan-instrumentation-with-call-threshold=0 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -Wno-uninitialized" \
    -DXOPTIM_BUILD_BENCHMARKS=OFF -DXOPTIM_BUILD_EXAMPLES=OFF
  if [ "${ASAN_TESTS:-}" = all ]; then
    build_and_test build-asan
  else
    build_and_test build-asan "${asan_tests[@]}"
  fi
}

# clang 14 with libstdc++, for this CPU, Release, BLIS as Muon's CBLAS (OpenBLAS is the
# native stage's): every translation unit of the project (tests, examples, tools,
# benchmarks) compiled by clang (-fsyntax-only: a full clang build and run of every test
# would not fit CI's time), then the per-ISA tests built and run.
stage_clang() {
  configure build-clang -DCMAKE_CXX_COMPILER=clang++ -DXOPTIM_BUILD_BENCHMARKS=ON \
    -DXOPTIM_BLAS_VENDOR=BLIS -DCMAKE_EXPORT_COMPILE_COMMANDS=ON
  python3 tools/compile_check.py build-clang/compile_commands.json -j "$jobs"
  build_and_test build-clang "${isa_tests[@]}"
}

# GCC for generic x86-64 (SSE2) and for x86-64-v3 (AVX2, FMA): the engine, codec,
# low-memory and trajectory tests.
stage_sse2() {
  configure build-sse2 -DXOPTIM_NATIVE=OFF -DCMAKE_CXX_FLAGS=-march=x86-64 -DXOPTIM_BUILD_BENCHMARKS=OFF \
    -DXOPTIM_BUILD_EXAMPLES=OFF
  build_and_test build-sse2 "${isa_tests[@]}"
}

# On a CPU whose widest SIMD is AVX2 + FMA, the native stage's build is this one (the same
# instruction-set macros, xsimd's fma3<avx2>) and runs every test: when native is among
# this run's stages, avx2 says so and stops.
stage_avx2() {
  if [[ " ${stages[*]} " == *" native "* ]] && grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo \
    && ! grep -qw avx512f /proc/cpuinfo; then
    echo "avx2: this CPU's widest SIMD is AVX2 + FMA: the native stage built and ran these tests for it"
    return 0
  fi
  configure build-avx2 -DXOPTIM_NATIVE=OFF -DCMAKE_CXX_FLAGS=-march=x86-64-v3 -DXOPTIM_BUILD_BENCHMARKS=OFF \
    -DXOPTIM_BUILD_EXAMPLES=OFF
  build_and_test build-avx2 "${isa_tests[@]}"
}

# ARM64 (NEON): cross-built with g++-aarch64-linux-gnu, run under qemu-aarch64.
stage_arm64() {
  configure build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake \
    -DXOPTIM_BUILD_BENCHMARKS=OFF -DXOPTIM_BUILD_EXAMPLES=OFF
  build_and_test build-arm64 "${arm64_tests[@]}"
}

all_stages=(native asan clang tsan fuzz sse2 avx2 arm64)
if [ "${1:-}" = "--list" ]; then
  echo "${all_stages[@]}"
  exit 0
fi
stages=("$@")
if [ $# -eq 0 ]; then
  stages=("${all_stages[@]}")
fi
for stage in "${stages[@]}"; do
  if ! declare -F "stage_$stage" >/dev/null; then
    echo "tools/test.sh: no stage '$stage' (stages: ${all_stages[*]})" >&2
    exit 2
  fi
done

# What a failed stage left for the summary, which is what a CI log's tail shows: the
# tests that failed (each run once more, to tell a flaky test from a broken one, its last
# lines shown) or, when no test failed, the stage's last compiler or CMake errors.
explain_failure() {
  local stage=$1 log=$2 dir=${stage_dirs[$1]:-}
  local list=$dir/Testing/Temporary/LastTestsFailed.log
  if [ -n "$dir" ] && [ -s "$list" ]; then
    echo "--- $stage: failed tests ---"
    cut -d: -f2- "$list" | while read -r name; do
      echo "--- $stage: $name, run again:"
      ctest --test-dir "$dir" -R "^${name}\$" --output-on-failure 2>&1 | tail -n 25
    done
  else
    echo "--- $stage: last errors in its log ---"
    grep -E "error|Error|FAILED|failed" "$log" | tail -n 25
  fi
}

# The build folder of each stage, where ctest leaves the names of the tests that failed.
declare -A stage_dirs=([native]=build [asan]=build-asan [clang]=build-clang [sse2]=build-sse2
                       [avx2]=build-avx2 [arm64]=build-arm64)

# Every stage runs, even after one fails; the summary gives each one's time and result.
# A stage runs in a subshell with errexit on (an `if` around it would turn errexit off).
summary=()
explanations=()
failed=0
logs=$(mktemp -d)
for stage in "${stages[@]}"; do
  echo "=== stage $stage ==="
  start=$SECONDS
  if [ -n "${stage_dirs[$stage]:-}" ]; then
    rm -f "${stage_dirs[$stage]}/Testing/Temporary/LastTestsFailed.log"  # from an earlier run
  fi
  # CPU time beside wall time: on a shared machine the wall time says little alone.
  TIMEFORMAT="=== stage $stage: %R s wall, %U s user + %S s system CPU ==="
  set +e
  time (set -e; "stage_$stage") 2>&1 | tee "$logs/$stage.log"
  rc=${PIPESTATUS[0]}
  set -e
  if [ $rc -eq 0 ]; then result=passed; else result=FAILED; failed=1; fi
  summary+=("$(printf '%-8s %-7s %5d s' "$stage" "$result" $((SECONDS - start)))")
  echo "=== stage $stage: $result ==="
  if [ $rc -ne 0 ]; then
    explanations+=("$(explain_failure "$stage" "$logs/$stage.log" 2>&1)")
  fi
done
if [ ${#explanations[@]} -gt 0 ]; then
  echo "=== why ==="
  printf '%s\n' "${explanations[@]}"
fi
echo "=== summary ==="
printf '%s\n' "${summary[@]}"
exit $failed
