#!/usr/bin/env bash
# Compile-time benchmark (docs/benchmarks.md). Compiles each translation unit of
# bench/compile/ N times (default 5) with the build's flags and prints the median
# wall-clock seconds and the ratios to the xtensor baseline:
#
#   bench/compile_time.sh [--runs N] [--json FILE] [--before DIR] [-- EXTRA_FLAGS...]
#
# --before DIR also compiles each unit against DIR/include, another checkout of the project
# (git worktree add DIR COMMIT), in the same rounds: NAME@before; the units that include
# <xoptim/instances.hpp> or <xoptim/compiled.hpp> only where that checkout has it. (Before io/separate.hpp,
# training_unit_separate@before is that checkout's _extern unit.) A failed compile stops
# the script.
#
#   adamw_tuple10_xtensor  adamw_tuple10.cpp: xoptim::adamw over std::tie of 10 xt::xtensor<float, N>
#   adamw_tuple10_vector   adamw_tuple10.cpp -DXOPTIM_TUPLE10_VECTOR: the same over 10 std::vector<float>
#   adamw_tuple10_xtensor_compiled, adamw_tuple10_vector_compiled
#                          the same two with -DXOPTIM_TUPLE10_COMPILED: xoptim::compiled<xoptim::adamw>
#                          (<xoptim/compiled.hpp> only; the step is the instantiation unit's, not counted)
#   training_unit          training_unit.cpp: a model struct, AdamW under the stepper, a checkpoint
#   training_unit_extern   training_unit.cpp -DXOPTIM_EXTERN_INSTANCES: the same with <xoptim/instances.hpp>
#                          (the steps compiled once in the project's instantiation unit, not counted)
#   training_unit_separate the same with -DXOPTIM_SEPARATE_IO too (io/separate.hpp: the checkpoint's
#                          functions that depend on no type also in the instantiation unit)
#   xtensor_baseline       xtensor_baseline.cpp: <xtensor/xtensor.hpp> and one assignment
#
# CXX picks the compiler (default g++). Run from anywhere; paths are relative to the repository.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs=5
json=""
before=""
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --json) json="$2"; shift 2 ;;
    --before) before="$(cd "$2" && pwd)"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "usage: $0 [--runs N] [--json FILE] [--before DIR] [-- EXTRA_FLAGS...]" >&2; exit 2 ;;
  esac
done

cxx="${CXX:-g++}"
flags=(-std=c++17 -O2 -march=native "${extra[@]}")
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

names=(adamw_tuple10_xtensor adamw_tuple10_vector adamw_tuple10_xtensor_compiled adamw_tuple10_vector_compiled
       training_unit training_unit_extern training_unit_separate
       xtensor_baseline)
declare -A source=(
  [adamw_tuple10_xtensor]="$root/bench/compile/adamw_tuple10.cpp"
  [adamw_tuple10_vector]="$root/bench/compile/adamw_tuple10.cpp -DXOPTIM_TUPLE10_VECTOR"
  [adamw_tuple10_xtensor_compiled]="$root/bench/compile/adamw_tuple10.cpp -DXOPTIM_TUPLE10_COMPILED"
  [adamw_tuple10_vector_compiled]="$root/bench/compile/adamw_tuple10.cpp -DXOPTIM_TUPLE10_VECTOR -DXOPTIM_TUPLE10_COMPILED"
  [training_unit]="$root/bench/compile/training_unit.cpp"
  [training_unit_extern]="$root/bench/compile/training_unit.cpp -DXOPTIM_EXTERN_INSTANCES"
  [training_unit_separate]="$root/bench/compile/training_unit.cpp -DXOPTIM_EXTERN_INSTANCES -DXOPTIM_SEPARATE_IO"
  [xtensor_baseline]="$root/bench/compile/xtensor_baseline.cpp"
)
declare -A include=()
for n in "${names[@]}"; do
  include[$n]="$root/include"
done
if [[ -n "$before" ]]; then
  for n in "${names[@]}"; do
    if [[ $n != xtensor_baseline && ( ${source[$n]} != *XOPTIM_EXTERN_INSTANCES* || -e $before/include/xoptim/instances.hpp )
          && ( ${source[$n]} != *XOPTIM_TUPLE10_COMPILED* || -e $before/include/xoptim/compiled.hpp ) ]]; then
      names+=("$n@before")
      source[$n@before]=${source[$n]}
      include[$n@before]="$before/include"
    fi
  done
fi
declare -A median

# One compile to an object file; prints its wall-clock seconds.
compile_once() {
  local start end
  start=$(date +%s.%N)
  # shellcheck disable=SC2086  # source[] holds "file [-Ddefine]" on purpose
  if ! "$cxx" "${flags[@]}" -I "${include[$1]}" -c ${source[$1]} -o "$work/$1.o"; then
    echo "compile_time.sh: $1 does not compile" >&2
    return 1
  fi
  end=$(date +%s.%N)
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.4f", b - a }'
}

echo "compiler: $("$cxx" --version | head -n1)"
echo "flags:    ${flags[*]}"
echo "runs:     $runs (interleaved: each round compiles every unit once)"
declare -A times
for ((r = 0; r < runs; ++r)); do
  for n in "${names[@]}"; do
    times[$n]+="$(compile_once "$n") "
  done
done

for n in "${names[@]}"; do
  median[$n]=$(echo "${times[$n]}" | tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}')
done

base=${median[xtensor_baseline]}
printf '\n| unit | median s | / xtensor_baseline | all runs (s) |\n|---|---:|---:|---|\n'
for n in "${names[@]}"; do
  ratio=$(awk -v a="${median[$n]}" -v b="$base" 'BEGIN { print a / b }')
  printf '| %s | %.3f | %.2f | %s|\n' "$n" "${median[$n]}" "$ratio" "$(for t in ${times[$n]}; do printf '%.2f ' "$t"; done)"
done
if [[ -n "$before" ]]; then
  printf '\n| unit | after / before |\n|---|---:|\n'
  for n in "${names[@]}"; do
    if [[ -n "${median[$n@before]:-}" ]]; then
      printf '| %s | %.2f |\n' "$n" "$(awk -v a="${median[$n]}" -v b="${median[$n@before]}" 'BEGIN { print a / b }')"
    fi
  done
  for n in training_unit_extern training_unit_separate; do
    printf '| %s (vs training_unit@before) | %.2f |\n' "$n" \
      "$(awk -v a="${median[$n]}" -v b="${median[training_unit@before]}" 'BEGIN { print a / b }')"
  done
fi

if [[ -n "$json" ]]; then
  {
    printf '{\n  "compiler": "%s",\n  "flags": "%s",\n  "runs": %d,\n  "median_seconds": {' \
      "$("$cxx" --version | head -n1)" "${flags[*]}" "$runs"
    sep=""
    for n in "${names[@]}"; do
      printf '%s\n    "%s": %s' "$sep" "$n" "${median[$n]}"
      sep=","
    done
    printf '\n  }\n}\n'
  } >"$json"
  echo "wrote $json"
fi
