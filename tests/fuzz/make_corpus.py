#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_safetensors into corpus/safetensors/ (standard library only).

Valid files cover every dtype, metadata with escapes, 0-d and zero-size tensors; broken ones
are near misses that the reader must refuse. Run again after changing this script; the fuzzer
itself never writes into the repository (tools/fuzz.sh copies the corpus to a scratch dir).
"""
import json
import os
import struct

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "safetensors")
SIZES = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "I64": 8, "I32": 4, "U32": 4, "I8": 1, "U8": 1}


def file_bytes(header_text, data=b""):
    raw = header_text.encode("utf-8")
    raw += b" " * ((8 - (8 + len(raw)) % 8) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


def safetensors(tensors, metadata=None):
    """tensors: list of (name, dtype, shape); data bytes count up from 0."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    for name, dtype, shape in tensors:
        count = 1
        for d in shape:
            count *= d
        size = count * SIZES[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    return file_bytes(json.dumps(header, separators=(",", ":")), bytes(i % 251 for i in range(offset)))


VALID = {
    "empty": file_bytes("{}"),
    "metadata_only": safetensors([], {"format": "pt", "note": "quote\" \\ \n \u00e9 \U0001F600"}),
    "one_f32": safetensors([("w", "F32", [2, 3])]),
    "all_dtypes": safetensors([(d.lower(), d, [2]) for d in SIZES]),
    "scalar_and_empty": safetensors([("s", "F64", []), ("e", "F32", [0, 4]), ("b", "U8", [3])],
                                    {"step": "7"}),
    "escaped_names": file_bytes('{"\\u0041\\/x":{"dtype":"I8","shape":[1],"data_offsets":[0,1]}}', b"\x01"),
}

BROKEN = {
    "truncated": safetensors([("w", "F32", [2, 3])])[:20],
    "bad_dtype": file_bytes('{"w":{"dtype":"F99","shape":[1],"data_offsets":[0,4]}}', b"abcd"),
    "overlap": file_bytes('{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},'
                          '"b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}', b"abcd"),
    "hole": file_bytes('{"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}', b"abcd"),
    "size_mismatch": file_bytes('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', b"abcd"),
    "bad_json": file_bytes('{"a":{"dtype";"U8","shape":[1],"data_offsets":[0,1]}}', b"a"),
    "huge_length": struct.pack("<Q", 1 << 40) + b"{}",
}


def main():
    os.makedirs(HERE, exist_ok=True)
    for group, files in (("valid", VALID), ("broken", BROKEN)):
        for name, content in files.items():
            with open(os.path.join(HERE, f"{group}_{name}.safetensors"), "wb") as f:
                f.write(content)


if __name__ == "__main__":
    main()
