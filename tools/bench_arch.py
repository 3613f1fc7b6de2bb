#!/usr/bin/env python3
"""One build's step table for docs/benchmarks.md ("Per instruction set"). Runs nothing.

Reads the Google Benchmark JSON of bench_step and bench_lowmem from one build (one
instruction set) and prints a markdown table: each step (AdamW with float, 8-bit and
bf16 states, SGD-momentum, Lion) against the memory floor that moves its bytes,
compiled for the same instruction set, for cases A and B (and C where run) at 1 thread
and all, and the low-memory steps against float AdamW of the same run (wall time; at 1
thread also CPU time).

    tools/bench_arch.py step.json lowmem.json
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_summary import CASE_A, CASE_B, fmt_ms, load_medians, max_threads, pair  # noqa: E402

# In cache (bench_lowmem and bench_step's AdamW and its floor only): the arithmetic alone,
# for an emulated build (XOPTIM_BENCH_CASES).
CASE_C = "1x2^14"

STEPS = [
    # (label, algorithm, floor, compared with float AdamW)
    ("AdamW, float states", "adamw", "floor_r4w3", False),
    ("AdamW, 8-bit states", "adamw_8bit", "floor_8bit", True),
    ("AdamW, bf16 states", "adamw_bf16", "floor_bf16", True),
    ("SGD-momentum", "sgd_momentum", "floor_r3w2", False),
    ("Lion", "lion", "floor_r3w2", False),
]


def table(results, contexts):
    top = max_threads(results)
    arch = sorted({c.get("xsimd_arch", "?") for c in contexts.values()})
    simd = sorted({c["xoptim_simd_arch"] for c in contexts.values() if "xoptim_simd_arch" in c}) or ["?"]
    lines = [f"xoptim::simd_arch(): {', '.join(simd)}; xsimd architecture: {', '.join(arch)}", "",
             "| step | case | threads | xoptim (ms) | floor (ms) | xoptim / floor | / float AdamW | / float AdamW, CPU time |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for case in (CASE_A, CASE_B, CASE_C):
        for threads in sorted({1, top}):
            for label, algo, floor, vs_float in STEPS:
                p = pair(results, (algo, "xoptim", case, threads), (floor, "xsimd", case, threads))
                if p is None:
                    continue
                step, fl = p
                cell = cpu_cell = ""
                if vs_float:
                    q = pair(results, (algo, "xoptim", case, threads), ("adamw", "xoptim", case, threads))
                    cell = f"{q[0]['median_ms'] / q[1]['median_ms']:.2f}" if q else ""
                    # One thread runs on the timing thread, whose CPU time leaves out the
                    # time other processes of a shared machine held the core.
                    if q and threads == 1:
                        cpu_cell = f"{q[0]['cpu_ms'] / q[1]['cpu_ms']:.2f}"
                lines.append(f"| {label} | {case} | {threads} | {fmt_ms(step['median_ms'])} | {fmt_ms(fl['median_ms'])} "
                             f"| {step['median_ms'] / fl['median_ms']:.2f} | {cell} | {cpu_cell} |")
    return "\n".join(lines)


def main(argv=None):
    paths = (argv if argv is not None else sys.argv[1:])
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    results, contexts = load_medians(paths)
    print(table(results, contexts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
