#!/usr/bin/env python3
"""Reads a safetensors file with numpy and json only, as a third-party reader would.

Usage: read_safetensors.py FILE

Prints the metadata as sorted, ASCII-escaped JSON, then one line per tensor in name order:
    NAME DTYPE [SHAPE] [VALUES]
with float values as Python's repr of the double (BF16 widened to float32) and integers as
integers. Exits 1 with a message on anything the format forbids: a misaligned data section,
holes or overlaps, a byte count that does not match the shape.
"""
import json
import struct
import sys

import numpy as np

DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
          "U32": "<u4", "I8": "i1", "U8": "u1"}


def main(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    if (8 + n) % 8 != 0:
        sys.exit(f"data section starts at {8 + n}, not a multiple of 8")
    header = json.loads(blob[8:8 + n])
    data = memoryview(blob)[8 + n:]
    metadata = header.pop("__metadata__", {})
    print("metadata", json.dumps(metadata, sort_keys=True))

    spans = []
    for name in sorted(header):
        entry = header[name]
        if sorted(entry) != ["data_offsets", "dtype", "shape"]:
            sys.exit(f"{name}: keys {sorted(entry)}")
        begin, end = entry["data_offsets"]
        dtype = np.dtype(DTYPES[entry["dtype"]])
        count = int(np.prod(entry["shape"], dtype=np.int64))
        if end - begin != count * dtype.itemsize:
            sys.exit(f"{name}: {end - begin} bytes for shape {entry['shape']}")
        spans.append((begin, end))
        array = np.frombuffer(data[begin:end], dtype=dtype).reshape(entry["shape"])
        if entry["dtype"] == "BF16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        if array.dtype.kind == "f":
            values = [repr(float(x)) for x in array.ravel()]
        else:
            values = [str(int(x)) for x in array.ravel()]
        print(name, entry["dtype"], list(entry["shape"]), "[" + " ".join(values) + "]")

    covered = 0
    for begin, end in sorted(spans):
        if begin != covered:
            sys.exit(f"data section: gap or overlap at byte {begin}")
        covered = end
    if covered != len(data):
        sys.exit(f"data section: {len(data) - covered} bytes belong to no tensor")


if __name__ == "__main__":
    main(sys.argv[1])
