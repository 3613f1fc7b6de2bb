#!/usr/bin/python3
"""Reference values for include/xoptim/quant/groupwise.hpp.

MLX is not installed here, so its affine quantization is written out in numpy, op for op,
from MLX's own fallback (mlx/ops.cpp: affine_quantize, pack_and_quantize, and the bit
unpacking of affine_dequantize), in float32 as MLX computes it:

    w_max, w_min   per group of group_size along the last axis
    mask   = |w_min| > |w_max|
    scale  = max((w_max - w_min) / (2^bits - 1), 1e-7);  scale = mask ? scale : -scale
    edge   = mask ? w_min : w_max
    q0     = round(edge / scale)                  # round half to even, as mx.round
    scale  = q0 != 0 ? edge / q0 : scale
    bias   = q0 != 0 ? edge : 0
    q      = clip(round((w - bias) / scale), 0, 2^bits - 1)
    w_hat  = q * scale + bias

Packing is MLX's generic path (the one it takes for 3, 5 and 6 bits): each code is split
into its bits, low first, the bits of a row are concatenated, and every 32 of them form a
uint32 word with the first bit least significant. For 2, 4 and 8 bits MLX's shortcut
(code k of a word shifted by k * bits) gives the same words.

The symmetric mode is xoptim's own (no MLX counterpart); its formula is written here too:

    scale = absmax / (2^(bits-1) - 1)
    q     = scale > 0 ? clip(round(w / scale), -(2^(bits-1) - 1), 2^(bits-1) - 1) : 0
    code  = q + 2^(bits-1)                        # offset binary, packed as above
    w_hat = (code - 2^(bits-1)) * scale

Run from anywhere:

    /usr/bin/python3 tests/reference/generate_quant.py

Writes tests/reference/quant.json, read by tests/test_quant.cpp:

    {"generator": "tests/reference/generate_quant.py",
     "cases": [{"name": str, "mode": "affine" | "symmetric", "bits": int,
                "group_size": int, "shape": [rows, cols],
                "w": [float, ...],              # row-major inputs
                "packed": [int, ...],           # uint32 words, (rows, cols * bits / 32)
                "scales": [float, ...],         # (rows, cols / group_size)
                "biases": [float, ...],         # same; [] for symmetric
                "dequantized": [float, ...]}, ...]}

Floats are the Python repr of exact float32 values (parse as double; casting to float is
exact). The output is deterministic.
"""

import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
F32 = np.float32


def affine(w, bits, group_size):
    rows, cols = w.shape
    g = w.reshape(rows, cols // group_size, group_size)
    n_bins = F32((1 << bits) - 1)
    w_max = g.max(axis=-1, keepdims=True)
    w_min = g.min(axis=-1, keepdims=True)
    mask = np.abs(w_min) > np.abs(w_max)
    scales = np.maximum((w_max - w_min) / n_bins, F32(1e-7))
    scales = np.where(mask, scales, -scales)
    edge = np.where(mask, w_min, w_max)
    q0 = np.round(edge / scales)
    with np.errstate(divide="ignore", invalid="ignore"):
        scales = np.where(q0 != 0, edge / q0, scales)
    biases = np.where(q0 == 0, F32(0), edge)
    q = np.clip(np.round((g - biases) / scales), F32(0), n_bins)
    w_hat = q * scales + biases
    assert scales.dtype == F32 and biases.dtype == F32 and w_hat.dtype == F32
    return q.astype(np.uint32).reshape(rows, cols), scales.reshape(rows, -1), biases.reshape(rows, -1), \
        w_hat.reshape(rows, cols)


def symmetric(w, bits, group_size):
    rows, cols = w.shape
    g = w.reshape(rows, cols // group_size, group_size)
    qmax = F32((1 << (bits - 1)) - 1)
    scales = np.abs(g).max(axis=-1, keepdims=True) / qmax
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(scales > 0, np.clip(np.round(g / scales), -qmax, qmax), F32(0))
    codes = (q + F32(1 << (bits - 1))).astype(np.uint32)
    w_hat = (codes.astype(F32) - F32(1 << (bits - 1))) * scales
    assert scales.dtype == F32 and w_hat.dtype == F32
    return codes.reshape(rows, cols), scales.reshape(rows, -1), np.zeros((rows, 0), F32), w_hat.reshape(rows, cols)


def pack(codes, bits):
    # mlx/ops.cpp pack_and_quantize, generic path: bits of each code, low first, then 32 per word.
    rows, cols = codes.shape
    bit = (codes[..., None] >> np.arange(bits, dtype=np.uint32)) & np.uint32(1)
    bit = bit.reshape(rows, -1, 32)
    return (bit << np.arange(32, dtype=np.uint32)).sum(axis=-1, dtype=np.uint64).astype(np.uint32)


def unpack(words, bits, cols):
    # mlx/ops.cpp affine_dequantize, generic path: the inverse of pack.
    rows = words.shape[0]
    bit = (words[..., None] >> np.arange(32, dtype=np.uint32)) & np.uint32(1)
    bit = bit.reshape(rows, cols, bits)
    return (bit << np.arange(bits, dtype=np.uint32)).sum(axis=-1, dtype=np.uint64).astype(np.uint32)


def case(name, mode, bits, group_size, w):
    w = np.asarray(w, dtype=F32)
    codes, scales, biases, w_hat = (affine if mode == "affine" else symmetric)(w, bits, group_size)
    words = pack(codes, bits)
    assert words.shape == (w.shape[0], w.shape[1] * bits // 32)
    assert (unpack(words, bits, w.shape[1]) == codes).all()
    if mode == "affine" and bits in (2, 4, 8):
        # MLX's shortcut for power-of-two widths packs the same words.
        per = 32 // bits
        c = codes.reshape(w.shape[0], -1, per).astype(np.uint64)
        shortcut = (c << (np.arange(per, dtype=np.uint64) * bits)).sum(axis=-1).astype(np.uint32)
        assert (shortcut == words).all()
    floats = lambda a: [float(x) for x in np.asarray(a, dtype=F32).ravel()]
    return {
        "name": name,
        "mode": mode,
        "bits": bits,
        "group_size": group_size,
        "shape": list(w.shape),
        "w": floats(w),
        "packed": [int(x) for x in words.ravel()],
        "scales": floats(scales),
        "biases": floats(biases),
        "dequantized": floats(w_hat),
    }


def special_rows():
    # Six rows of one group of 32 each, the edges of MLX's formula.
    # 4 bits: scale 3, bias -45, (w - bias) / scale = k + 0.5 exactly; a reciprocal would miss.
    ties = [-45.0, 0.0] + [-45.0 + 3 * (k + 0.5) for k in range(15)] * 2
    # One float below -16.5: (w + 45) / 3 rounds to 9, (w + 45) * float(1 / 3) to 10.
    ties[11] = float(np.nextafter(F32(-16.5), F32(-17)))
    outlier = [0.01 * ((k * 7) % 11 - 5) for k in range(32)]
    outlier[5] = 3.0
    return [
        [2.5] * 32,                             # constant > 0: scale -1e-7-ish, bias 2.5, codes 0
        [-0.75] * 32,                           # constant < 0
        [0.0] * 32,                             # zeros: q0 = 0, bias 0, scale -1e-7
        outlier,                                # one outlier: the rest share a few codes
        [1.0 + 0.03125 * k for k in range(32)], # all positive: the maximum is the edge
        ties,                                   # exact halves: round half to even
    ]


def main():
    rng = np.random.default_rng(20240601)
    cases = []
    for bits in (2, 3, 4, 5, 6, 8):
        for group_size in (32, 64, 128):
            w = np.stack([rng.standard_normal(128), 0.5 + 0.1 * rng.standard_normal(128)]).astype(F32)
            cases.append(case(f"affine_b{bits}_g{group_size}", "affine", bits, group_size, w))
    for bits in (3, 4):
        cases.append(case(f"affine_special_b{bits}", "affine", bits, 32, special_rows()))
    for bits, group_size in ((2, 32), (3, 32), (4, 64), (6, 64), (8, 128)):
        w = np.stack([rng.standard_normal(128), 0.5 + 0.1 * rng.standard_normal(128)]).astype(F32)
        cases.append(case(f"symmetric_b{bits}_g{group_size}", "symmetric", bits, group_size, w))
    cases.append(case("symmetric_special_b4", "symmetric", 4, 32, special_rows()))
    doc = {"generator": "tests/reference/generate_quant.py", "cases": cases}
    with open(os.path.join(HERE, "quant.json"), "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
