#!/usr/bin/env python3
"""Summarize xoptim benchmark results (docs/benchmarks.md). Runs nothing itself.

Reads Google Benchmark JSON files (--benchmark_out=FILE --benchmark_out_format=json)
of bench_step and bench_libtorch, and optionally the JSON of bench/compile_time.sh,
then prints a markdown table of the medians and the ratios with their targets, and
writes the same as JSON.

    tools/bench_summary.py step.json libtorch.json --compile compile.json --json-out summary.json

Benchmark names follow bench/bench_common.hpp: <algorithm>/<impl>/<case>/threads:<n>.
Only the "median" aggregates are used (run with repetitions). Where the same benchmark
is in several files (bench_libtorch also times xoptim AdamW), a ratio takes both of its
figures from one file when it can, so that they were measured side by side.
"""

import argparse
import json
import sys

UNIT_TO_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}

CASE_A = "1x2^24"
CASE_B = "4096x4096"


def load_medians(paths):
    """Returns {key: {file: row}} for every median aggregate, key = (algo, impl, case, threads)."""
    results = {}
    contexts = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        contexts[path] = data.get("context", {})
        cvs = {}
        for b in data.get("benchmarks", []):
            if b.get("aggregate_name") == "cv":
                cvs[b.get("run_name")] = b.get("real_time")
        for b in data.get("benchmarks", []):
            if b.get("run_type") != "aggregate" or b.get("aggregate_name") != "median":
                continue
            parts = b["run_name"].split("/")
            if len(parts) < 4 or not parts[3].startswith("threads:"):
                continue
            key = (parts[0], parts[1], parts[2], int(parts[3].split(":", 1)[1]))
            ms = b["real_time"] * UNIT_TO_MS[b.get("time_unit", "ns")]
            row = {
                "name": "/".join(parts[:4]),
                "median_ms": ms,
                "cpu_ms": b["cpu_time"] * UNIT_TO_MS[b.get("time_unit", "ns")],
                "gbytes_per_s": b.get("bytes_per_second", 0.0) / 1e9,
                "cv_percent": 100.0 * cvs[b["run_name"]] if b["run_name"] in cvs else None,
                "repetitions": b.get("repetitions"),
                "file": path,
            }
            results.setdefault(key, {})[path] = row
    return results, contexts


def max_threads(results):
    return max((k[3] for k in results), default=1)


def pair(results, num, den):
    """Finds figures for keys num and den, from one file if both are there."""
    a, b = results.get(num, {}), results.get(den, {})
    if not a or not b:
        return None
    common = [f for f in a if f in b]
    if common:
        f = common[0]
        return a[f], b[f]
    return next(iter(a.values())), next(iter(b.values()))


def ratio_rows(results, compile_data):
    top = max_threads(results)
    rows = []

    def add(label, num, den, target=None, op=None, invert=False, note=""):
        p = pair(results, num, den)
        entry = {
            "ratio": label,
            "numerator": "/".join(map(str, num[:3])) + f"/threads:{num[3]}",
            "denominator": "/".join(map(str, den[:3])) + f"/threads:{den[3]}",
            "target": target,
            "op": op,
            "note": note,
        }
        if p is None:
            entry.update(value=None, met=None)
        else:
            n, d = p
            value = n["median_ms"] / d["median_ms"]
            if invert:  # speedups: den / num
                value = 1.0 / value
            entry.update(value=value, numerator_ms=n["median_ms"], denominator_ms=d["median_ms"], source=n["file"])
            if target is not None:
                entry["met"] = value <= target if op == "<=" else value >= target
            else:
                entry["met"] = None
        rows.append(entry)

    add("xoptim AdamW / floor (2^24, 1 thread)", ("adamw", "xoptim", CASE_A, 1), ("floor_r4w3", "xsimd", CASE_A, 1),
        1.10, "<=", note="floor: 4 arrays read, 3 written, one add each")
    add("xtensor 3 statements / xoptim AdamW (2^24, 1 thread)", ("adamw", "xtensor", CASE_A, 1),
        ("adamw", "xoptim", CASE_A, 1), 1.5, ">=")
    add("xtensor 3 statements / xoptim AdamW (4096x4096, 1 thread)", ("adamw", "xtensor", CASE_B, 1),
        ("adamw", "xoptim", CASE_B, 1), 1.5, ">=")
    add("LibTorch AdamW / xoptim AdamW (4096x4096, 1 thread)", ("adamw", "libtorch", CASE_B, 1),
        ("adamw", "xoptim", CASE_B, 1), 8, ">=")
    add(f"LibTorch AdamW / xoptim AdamW (4096x4096, {top} threads)", ("adamw", "libtorch", CASE_B, top),
        ("adamw", "xoptim", CASE_B, top), 8, ">=")
    add("LibTorch AdamW / xoptim AdamW (2^24, 1 thread)", ("adamw", "libtorch", CASE_A, 1),
        ("adamw", "xoptim", CASE_A, 1), note="no target")
    # Ceilings: what the ratios above would be with xoptim exactly at the memory floor.
    for case in (CASE_A, CASE_B):
        add(f"xtensor 3 statements / floor ({case}, 1 thread)", ("adamw", "xtensor", case, 1),
            ("floor_r4w3", "xsimd", case, 1), note="ceiling of xtensor / xoptim")
    add("LibTorch AdamW / floor (4096x4096, 1 thread)", ("adamw", "libtorch", CASE_B, 1),
        ("floor_r4w3", "xsimd", CASE_B, 1), note="ceiling of LibTorch / xoptim; other process")
    add("xoptim AdamW 4096x4096 / 2^24 (1 thread)", ("adamw", "xoptim", CASE_B, 1), ("adamw", "xoptim", CASE_A, 1),
        1.15, "<=")
    add("floor (4r/3w) 4096x4096 / 2^24 (1 thread)", ("floor_r4w3", "xsimd", CASE_B, 1),
        ("floor_r4w3", "xsimd", CASE_A, 1), note="the memory system's own cost of 4,096 tensors")
    add("xoptim AdamW / floor (4096x4096, 1 thread)", ("adamw", "xoptim", CASE_B, 1),
        ("floor_r4w3", "xsimd", CASE_B, 1), note="no target")
    add(f"xoptim AdamW speedup, {top} threads vs 1 (2^24)", ("adamw", "xoptim", CASE_A, top),
        ("adamw", "xoptim", CASE_A, 1), 1.7, ">=", invert=True)
    add(f"floor (4r/3w) speedup, {top} threads vs 1 (2^24)", ("floor_r4w3", "xsimd", CASE_A, top),
        ("floor_r4w3", "xsimd", CASE_A, 1), invert=True, note="the memory system's own scaling: no target")
    add(f"xoptim AdamW speedup, {top} threads vs 1 (4096x4096)", ("adamw", "xoptim", CASE_B, top),
        ("adamw", "xoptim", CASE_B, 1), invert=True, note="no target")
    for case in (CASE_A, CASE_B):
        for t in sorted({1, top}):
            add(f"SGD-momentum / floor 3r/2w ({case}, {t} thread{'s' if t > 1 else ''})",
                ("sgd_momentum", "xoptim", case, t), ("floor_r3w2", "xsimd", case, t),
                note="both read p, g, buf and write p, buf")
            add(f"Lion / floor 3r/2w ({case}, {t} thread{'s' if t > 1 else ''})",
                ("lion", "xoptim", case, t), ("floor_r3w2", "xsimd", case, t),
                note="both read p, g, m and write p, m")
    add("xoptim AdamW / floor, in cache (2^14, 1 thread)", ("adamw", "xoptim", "1x2^14", 1),
        ("floor_r4w3", "xsimd", "1x2^14", 1), note="arithmetic cost, no DRAM traffic: diagnostic")
    add("xtensor / xoptim AdamW, in cache (2^14, 1 thread)", ("adamw", "xtensor", "1x2^14", 1),
        ("adamw", "xoptim", "1x2^14", 1), note="diagnostic")

    if compile_data:
        med = compile_data.get("median_seconds", {})
        for unit, target in (("adamw_tuple10_xtensor", 1.3), ("adamw_tuple10_vector", None)):
            entry = {
                "ratio": f"compile time {unit} / xtensor_baseline",
                "numerator": unit,
                "denominator": "xtensor_baseline",
                "target": target,
                "op": "<=" if target else None,
                "note": "" if target else "no target",
            }
            if unit in med and med.get("xtensor_baseline"):
                value = med[unit] / med["xtensor_baseline"]
                entry.update(value=value, numerator_s=med[unit], denominator_s=med["xtensor_baseline"],
                             met=(value <= target) if target else None)
            else:
                entry.update(value=None, met=None)
            rows.append(entry)
    return rows


def fmt_ms(ms):
    return f"{ms:.4g}"


def markdown(results, ratios, compile_data):
    out = ["| benchmark | median ms | GB/s (bytes to move) | cv % | file |", "|---|---:|---:|---:|---|"]
    order = {CASE_A: 0, CASE_B: 1}
    for key in sorted(results, key=lambda k: (order.get(k[2], 2), k[0], k[1], k[3])):
        for row in results[key].values():
            cv = "" if row["cv_percent"] is None else f"{row['cv_percent']:.1f}"
            out.append(f"| {row['name']} | {fmt_ms(row['median_ms'])} | {row['gbytes_per_s']:.1f} | {cv} "
                       f"| {row['file'].rsplit('/', 1)[-1]} |")
    if compile_data:
        out += ["", "| compile unit | median s |", "|---|---:|"]
        for unit, s in compile_data.get("median_seconds", {}).items():
            out.append(f"| {unit} | {s:.2f} |")
    out += ["", "| ratio | measured | target | met |", "|---|---:|---:|---|"]
    for r in ratios:
        value = "n/a" if r["value"] is None else f"{r['value']:.2f}"
        target = "" if r["target"] is None else f"{r['op']} {r['target']}"
        met = {True: "met", False: "**not met**", None: ""}[r["met"]]
        if r["met"] is None and r["target"] is not None:
            met = "not measured"
        note = f" ({r['note']})" if r["note"] and r["target"] is None else ""
        out.append(f"| {r['ratio']}{note} | {value} | {target} | {met} |")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", help="Google Benchmark JSON output files")
    ap.add_argument("--compile", help="JSON written by bench/compile_time.sh --json")
    ap.add_argument("--json-out", help="write the summary (medians, ratios) here")
    args = ap.parse_args(argv)

    results, contexts = load_medians(args.files)
    if not results:
        print("bench_summary: no median aggregates found (run with repetitions)", file=sys.stderr)
        return 1
    compile_data = None
    if args.compile:
        with open(args.compile, encoding="utf-8") as f:
            compile_data = json.load(f)
    ratios = ratio_rows(results, compile_data)
    print(markdown(results, ratios, compile_data))
    if args.json_out:
        summary = {
            "medians": [row for key in sorted(results) for row in results[key].values()],
            "ratios": ratios,
            "compile": compile_data,
            "contexts": contexts,
        }
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
