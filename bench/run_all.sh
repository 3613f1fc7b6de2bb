#!/usr/bin/env bash
# Runs every benchmark of docs/benchmarks.md one after the other and summarizes them:
#
#   bench/run_all.sh BUILD_DIR OUT_DIR
#
# BUILD_DIR: a build with XOPTIM_BUILD_BENCHMARKS=ON (bench/bench_step, bench/bench_libtorch
# if LibTorch was found). OUT_DIR receives step.json, libtorch.json, compile.json,
# summary.json and summary.md. OpenBLAS tuning variables are removed from the
# environment, as in the published figures.
set -euo pipefail

build="${1:?usage: $0 BUILD_DIR OUT_DIR}"
out="${2:?usage: $0 BUILD_DIR OUT_DIR}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$out"
clean_env=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE)

# Repetitions of different benchmarks are interleaved at random, so that slow
# phases of a shared machine spread over all columns instead of hitting one.
"${clean_env[@]}" "$build/bench/bench_step" --benchmark_enable_random_interleaving=true \
  --benchmark_out="$out/step.json" --benchmark_out_format=json
files=("$out/step.json")
if [[ -x "$build/bench/bench_libtorch" ]]; then
  "${clean_env[@]}" "$build/bench/bench_libtorch" --benchmark_enable_random_interleaving=true \
    --benchmark_out="$out/libtorch.json" --benchmark_out_format=json
  files+=("$out/libtorch.json")
fi
"${clean_env[@]}" "$build/bench/bench_newton_schulz" --benchmark_enable_random_interleaving=true \
  --benchmark_out="$out/ns.json" --benchmark_out_format=json
"${clean_env[@]}" "$root/bench/compile_time.sh" --runs 5 --json "$out/compile.json"
python3 "$root/tools/bench_summary.py" "${files[@]}" --compile "$out/compile.json" \
  --json-out "$out/summary.json" | tee "$out/summary.md"
