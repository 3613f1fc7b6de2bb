#!/usr/bin/env bash
# The step table of one build (one instruction set) for docs/benchmarks.md:
#
#   bench/run_arch.sh BUILD_DIR OUT_DIR
#
# BUILD_DIR: a build with XOPTIM_BUILD_BENCHMARKS=ON (bench/bench_step, bench/bench_lowmem),
# configured for the instruction set to measure (see docs/benchmarks.md). OUT_DIR gets
# step.json, lowmem.json and table.md. XOPTIM_BENCH_LAUNCHER runs the programs through an
# emulator (e.g. "qemu-aarch64 -L /usr/aarch64-linux-gnu"); XOPTIM_BENCH_CASES picks the
# cases (a regular expression, default both big ones). OpenBLAS tuning variables are
# removed from the environment, as in the published figures.
set -euo pipefail

build="${1:?usage: $0 BUILD_DIR OUT_DIR}"
out="${2:?usage: $0 BUILD_DIR OUT_DIR}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cases="${XOPTIM_BENCH_CASES:-1x2\^24|4096x4096}"
mkdir -p "$out"
read -r -a launcher <<< "${XOPTIM_BENCH_LAUNCHER:-}"
run=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "${launcher[@]}")

# Repetitions of different benchmarks are interleaved at random, so that slow phases of
# a shared machine spread over all columns instead of hitting one.
"${run[@]}" "$build/bench/bench_step" --benchmark_enable_random_interleaving=true \
  --benchmark_filter="^(adamw|sgd_momentum|lion|floor_r4w3|floor_r3w2)/(xoptim|xsimd)/($cases)/" \
  --benchmark_out="$out/step.json" --benchmark_out_format=json > /dev/null
"${run[@]}" "$build/bench/bench_lowmem" --benchmark_enable_random_interleaving=true \
  --benchmark_filter="^(adamw|adamw_8bit|adamw_bf16|floor_8bit|floor_bf16)/(xoptim|xsimd)/($cases)/" \
  --benchmark_out="$out/lowmem.json" --benchmark_out_format=json > /dev/null
python3 "$root/tools/bench_arch.py" "$out/step.json" "$out/lowmem.json" | tee "$out/table.md"
