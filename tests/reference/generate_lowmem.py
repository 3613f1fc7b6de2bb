#!/usr/bin/python3
"""Reference values for the storage codecs (include/xoptim/engine/codecs.hpp).

1. bitsandbytes' 8-bit dynamic maps. bitsandbytes is not installed here; its
   create_dynamic_map (bitsandbytes/functional.py) is written out below, line for line,
   in torch as it computes it (torch.linspace in float32, the sums in Python floats, the
   result a float32 tensor, sorted):

       non_sign_bits = total_bits - 1
       additional_items = 2 ** (non_sign_bits - max_exponent_bits) - 1    # 0 for 8 / 7
       for i in range(max_exponent_bits):
           fraction_items = 2 ** (i + non_sign_bits - max_exponent_bits) + 1 if signed
                            else 2 ** (i + non_sign_bits - max_exponent_bits + 1) + 1
           boundaries = linspace(0.1, 1, fraction_items)
           means = (boundaries[:-1] + boundaries[1:]) / 2.0
           data += 10 ** (-(max_exponent_bits - 1) + i) * means    (and the negatives if signed)
       data += [0, 1.0]

2. bf16 round-to-nearest-even: torch's float32 -> bfloat16 conversion, bits.

Run from anywhere:

    /usr/bin/python3 tests/reference/generate_lowmem.py

Writes tests/reference/lowmem.json, read by tests/test_lowmem.cpp:

    {"generator": "tests/reference/generate_lowmem.py", "torch": str,
     "dynamic_signed": [float x 256], "dynamic_unsigned": [float x 256],
     "bf16": {"x_bits": [uint32, ...], "bf16_bits": [uint16, ...]}}

Floats are written with repr() of the float32 value as a Python float: exact.
"""
import json
import os
import struct

import torch


def create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8):
    data = []
    non_sign_bits = total_bits - 1
    additional_items = 2 ** (non_sign_bits - max_exponent_bits) - 1
    for i in range(max_exponent_bits):
        fraction_items = int(
            2 ** (i + non_sign_bits - max_exponent_bits) + 1
            if signed
            else 2 ** (i + non_sign_bits - max_exponent_bits + 1) + 1
        )
        boundaries = torch.linspace(0.1, 1, fraction_items)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        if signed:
            data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    assert additional_items == 0
    data.append(0)
    data.append(1.0)
    assert len(data) == 2 ** total_bits
    values, _ = torch.tensor(data).sort()
    return [float(v) for v in values]


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def bf16_cases():
    specials = [0.0, -0.0, 1.0, -1.0, 3.140625, 1e-40, -1e-40, 1e-45, 3.4028234663852886e38,
                float("inf"), float("-inf"), 65504.0, 1.0 / 3.0]
    bits = [f32_bits(x) for x in specials]
    bits.append(0x7FC00000)  # quiet NaN
    bits.append(0x7F800001)  # signalling NaN: stays a NaN
    # Ties and near-ties: the 16 dropped bits 0x8000 exactly (even and odd kept part),
    # one below and one above.
    for base in (0x3F800000, 0x3F810000, 0x40490000, 0xC0490000, 0x7F7F0000):
        for low in (0x7FFF, 0x8000, 0x8001, 0xFFFF):
            bits.append(base | low)
    g = torch.Generator().manual_seed(6)
    for scale in (1e-30, 1e-3, 1.0, 1e3, 1e30):
        bits += [f32_bits(float(v)) for v in (torch.randn(64, generator=g) * scale).tolist()]
    x = torch.tensor(bits, dtype=torch.int64).to(torch.int32).view(torch.float32)
    out = x.to(torch.bfloat16).view(torch.int16).to(torch.int32) & 0xFFFF
    return bits, [int(v) for v in out.tolist()]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    x_bits, bf16_bits = bf16_cases()
    out = {
        "generator": "tests/reference/generate_lowmem.py",
        "torch": torch.__version__,
        "dynamic_signed": create_dynamic_map(signed=True),
        "dynamic_unsigned": create_dynamic_map(signed=False),
        "bf16": {"x_bits": x_bits, "bf16_bits": bf16_bits},
    }
    with open(os.path.join(here, "lowmem.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
