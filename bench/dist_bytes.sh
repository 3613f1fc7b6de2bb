#!/usr/bin/env bash
# Bytes each rank sends per distributed AdamW step, measured by OpenMPI's monitoring
# component (pml_monitoring: every byte a rank sends, collectives included), against the
# minimum 2 (N-1)/N x the gradient bytes (docs/benchmarks.md, "Distributed").
#
#   bench/dist_bytes.sh BUILD_DIR [RANKS...]      (default ranks: 2 4)
#
# Each configuration runs bench_dist --steps-only twice, with 0 and with 5 steps after
# the first; the difference over 5 is one step's bytes. OpenMPI only.
set -euo pipefail
build=${1:?usage: bench/dist_bytes.sh BUILD_DIR [RANKS...]}
shift
ranks=("$@")
[ ${#ranks[@]} -eq 0 ] && ranks=(2 4)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

sent() {  # total bytes rank 0 sent (point-to-point level, collectives included)
  awk '$1 == "E" { total += $4 } END { print total + 0 }' "$1.0.prof"
}

printf "%-14s %-10s %5s %14s %14s %8s\n" mode case ranks "bytes/step" minimum ratio
for n in "${ranks[@]}"; do
  for mode in data_parallel zero1 zero1_collective; do
    for case in "1x2^24" 4096x4096; do
      for steps in 0 5; do
        mpirun --oversubscribe -np "$n" --mca pml_monitoring_enable 1 --mca pml_monitoring_enable_output 3 \
          --mca pml_monitoring_filename "$scratch/m$steps" \
          "$build/bench/bench_dist" --steps-only "$mode" "$case" "$steps" > /dev/null 2>&1
      done
      awk -v a="$(sent "$scratch/m0")" -v b="$(sent "$scratch/m5")" -v n="$n" -v mode="$mode" -v c="$case" 'BEGIN {
        step = (b - a) / 5; minimum = 2 * (n - 1) / n * 16777216 * 4;
        printf "%-14s %-10s %5d %14.0f %14.0f %8.4f\n", mode, c, n, step, minimum, step / minimum }'
    done
  done
done
