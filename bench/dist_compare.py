#!/usr/bin/python3
"""Distributed AdamW: xoptim (bench_dist) and PyTorch DDP + ZeroRedundancyOptimizer
(bench_dist_torch.py) on the same sizes and ranks, run interleaved round after round so
that the machine's load falls on both alike; prints medians over rounds and the ratios
(docs/benchmarks.md, "Distributed").

    /usr/bin/python3 bench/dist_compare.py BUILD_DIR [--rounds 3] [--ranks 1 2 4]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = ["1x2^24", "4096x4096"]


def xoptim_run(build, ranks):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    out = subprocess.run(["mpirun", "--oversubscribe", "-np", str(ranks), os.path.join(build, "bench", "bench_dist"),
                          "--benchmark_filter=dist_adamw", "--benchmark_format=json"],
                         check=True, capture_output=True, text=True, env=env).stdout
    found = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("aggregate_name") == "median":
            _, mode, case = b["name"].split("/")[:3]
            found[(mode, case)] = {k: b[k] for k in ("real_time", "pack_ms", "comm_ms", "update_ms", "gather_ms",
                                                     "payload_MB", "minimum_MB", "state_MB", "state_share")}
    return found


def torch_run(ranks, case):
    out = subprocess.run([sys.executable, os.path.join(HERE, "bench_dist_torch.py"), "--ranks", str(ranks), "--case",
                          case], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("build")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    args = p.parse_args()
    ours, theirs = {}, {}
    for r in range(args.rounds):
        for n in args.ranks:
            for key, value in xoptim_run(args.build, n).items():
                ours.setdefault((n,) + key, []).append(value)
            if n > 1:
                for case in CASES:
                    theirs.setdefault((n, case), []).append(torch_run(n, case))
        print(f"round {r + 1} of {args.rounds} done", file=sys.stderr, flush=True)

    def median(runs, key):
        return statistics.median(run[key] for run in runs)

    print("| ranks | mode | case | step ms | pack | comm | update | gather | payload MB | minimum MB | "
          "state MB/rank | state share |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (n, mode, case), runs in sorted(ours.items()):
        print(f"| {n} | {mode} | {case} | {median(runs, 'real_time'):.1f} | {median(runs, 'pack_ms'):.1f} | "
              f"{median(runs, 'comm_ms'):.1f} | {median(runs, 'update_ms'):.1f} | {median(runs, 'gather_ms'):.1f} | "
              f"{median(runs, 'payload_MB'):.1f} | {median(runs, 'minimum_MB'):.1f} | {median(runs, 'state_MB'):.1f} | "
              f"{median(runs, 'state_share'):.4f} |")
    print()
    print("| ranks | case | xoptim ZeRO-1 step ms | torch step ms | torch DDP backward - bare backward | "
          "torch ZeRO step | torch / xoptim | torch / xoptim with MPI's reduce-scatter collective |")
    print("|---|---|---|---|---|---|---|---|")
    for (n, case), runs in sorted(theirs.items()):
        x = median(ours[(n, "zero1", case)], "real_time")
        xc = median(ours[(n, "zero1_collective", case)], "real_time")
        t = median(runs, "step")
        comm = statistics.median(run["backward_ddp"] - run["backward_bare"] for run in runs)
        print(f"| {n} | {case} | {x:.1f} | {t:.1f} | {comm:.1f} | {median(runs, 'zero_step'):.1f} | {t / x:.2f} | "
              f"{t / xc:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
