#!/usr/bin/env python3
"""Compiles every translation unit of a compile_commands.json with -fsyntax-only (parsing,
template instantiation and every diagnostic, no code generation), in parallel, and prints
the diagnostics of those that fail. Exit status 1 if any fails.

    tools/compile_check.py BUILD/compile_commands.json [-j N]
"""

import argparse
import concurrent.futures
import json
import shlex
import subprocess
import sys


def syntax_only(entry):
    args = shlex.split(entry["command"]) if "command" in entry else list(entry["arguments"])
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == "-o":
            skip = True
        elif a != "-c":
            out.append(a)
    out.insert(1, "-fsyntax-only")
    r = subprocess.run(out, cwd=entry["directory"], capture_output=True, text=True)
    return entry["file"], r.returncode, r.stderr


def main():
    p = argparse.ArgumentParser()
    p.add_argument("commands")
    p.add_argument("-j", type=int, default=2)
    a = p.parse_args()
    entries = json.load(open(a.commands))
    failed = 0
    with concurrent.futures.ThreadPoolExecutor(a.j) as pool:
        for file, code, err in pool.map(syntax_only, entries):
            if code != 0:
                failed += 1
                print(f"compile_check: {file} failed:\n{err}", file=sys.stderr)
    print(f"compile_check: {len(entries) - failed} of {len(entries)} translation units compile")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
