#!/usr/bin/env bash
# The thread tests under ThreadSanitizer (GCC, -fsanitize=thread) in build-tsan/: steps
# from two threads on the shared pool, set_num_threads during steps, a step from another
# pool's worker, steps nested in pool tasks, forked children, a thread stepping at exit. Any
# report fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
build=build-tsan
targets=(test_concurrency test_threads exit_while_stepping)

source tools/configure.sh
configure "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS="-fsanitize=thread -fno-omit-frame-pointer" \
  -DXOPTIM_BUILD_BENCHMARKS=OFF -DXOPTIM_BUILD_EXAMPLES=OFF > /dev/null
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"

# die_after_fork=0: a forked child starts threads of its own (what the fork test checks).
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:die_after_fork=0"
for t in "${targets[@]}"; do
  "$build/tests/$t"
done
