#!/usr/bin/env python3
"""Compile time of the same units under several compilers, interleaved (docs/benchmarks.md).

    bench/compiler_time.py [--runs N] [--compilers g++,clang++] [UNIT.cpp ...]

Each round compiles every unit once with every compiler (-std=c++17 -O2 -march=native,
to an object file) and records the compiler's CPU time (user + system of the child
process: on a shared machine far steadier than wall time) and its wall time. Prints the
medians and each compiler's ratio to the first. Units default to bench/compile/*.cpp.
"""
import argparse
import glob
import os
import resource
import statistics
import subprocess
import tempfile
import time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def compile_once(cxx, unit, out):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    subprocess.run([cxx, "-std=c++17", "-O2", "-march=native", "-I", os.path.join(root, "include"),
                    "-c", unit, "-o", out], check=True)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, wall


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--compilers", default="g++,clang++")
    parser.add_argument("units", nargs="*")
    args = parser.parse_args()
    compilers = args.compilers.split(",")
    units = args.units or sorted(glob.glob(os.path.join(root, "bench", "compile", "*.cpp")))
    cpu = {(c, u): [] for c in compilers for u in units}
    wall = {(c, u): [] for c in compilers for u in units}
    with tempfile.TemporaryDirectory() as work:
        for _ in range(args.runs):
            for u in units:
                for c in compilers:
                    t, w = compile_once(c, u, os.path.join(work, "unit.o"))
                    cpu[(c, u)].append(t)
                    wall[(c, u)].append(w)
    for c in compilers:
        print(c + ": " + subprocess.run([c, "--version"], capture_output=True, text=True).stdout.splitlines()[0])
    print(f"runs: {args.runs}, interleaved; flags: -std=c++17 -O2 -march=native\n")
    print("| unit | " + " | ".join(f"{c} CPU s" for c in compilers) + " | "
          + " | ".join(f"{c} / {compilers[0]}" for c in compilers[1:]) + " | " + " | ".join(f"{c} wall s" for c in compilers) + " |")
    print("|---|" + "---:|" * (3 * len(compilers) - 1))
    for u in units:
        med = [statistics.median(cpu[(c, u)]) for c in compilers]
        med_wall = [statistics.median(wall[(c, u)]) for c in compilers]
        print(f"| {os.path.relpath(u, root)} | " + " | ".join(f"{m:.2f}" for m in med) + " | "
              + " | ".join(f"{m / med[0]:.2f}" for m in med[1:]) + " | " + " | ".join(f"{m:.2f}" for m in med_wall) + " |")


if __name__ == "__main__":
    main()
