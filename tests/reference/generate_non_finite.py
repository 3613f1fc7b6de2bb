#!/usr/bin/python3
"""Infinite parameters and non-finite gradients: where torch skips a term whose factor is 0
(weight decay 0) an infinite parameter stays infinite, and where torch clamps (Adafactor's
eps1^2 floor) a NaN stays NaN.

- SGD, Adam and AdamW: torch.optim 1.13 (foreach=False), float32 and float64. One tensor
  holding +-inf among finite values; the gradient of step 3 has +inf at element 1, that of
  step 4 NaN at element 5. Every step's parameter bits and the final states' bits.
- Adafactor: tests/reference/ref2026/adafactor.py (the float64 transcription of
  torch.optim.Adafactor and of transformers' Adafactor, cited there), float32 and float64.
  torch's form with a NaN in one gradient element at step 3 (a vector and a matrix);
  transformers' form with weight decay 0 and an infinite parameter.

Run from anywhere with the Debian interpreter (torch 1.13 and numpy):

    /usr/bin/python3 tests/reference/generate_non_finite.py

Writes tests/reference/non_finite.json: for each case the optimizer and its
hyperparameters (xoptim-replay's keys), the dtype, the shape, the initial parameter, the
gradients of every step, the parameter after every step, and (torch cases) the final
states, all as the values' bits (float32: 32-bit, float64: 64-bit integers).
Deterministic: running it again gives identical bytes.
"""

import json
import os
import struct
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from ref2026 import adafactor  # noqa: E402

STEPS = 6
INF = float("inf")
NAN = float("nan")


def bits(values, dtype):
    fmt = "<f" if dtype == "float32" else "<d"
    ifmt = "<I" if dtype == "float32" else "<Q"
    return [struct.unpack(ifmt, struct.pack(fmt, float(x)))[0] for x in np.asarray(values).ravel()]


def gradients(n, steps, seed):
    rng = np.random.RandomState(seed)
    grads = []
    for t in range(1, steps + 1):
        g = rng.uniform(-1.0, 1.0, n)
        if t == 3:
            g[1] = INF
        if t == 4:
            g[5] = NAN
        grads.append(g)
    return grads


TORCH_CASES = [
    ("sgd_plain", "sgd", dict(lr=0.1)),
    ("sgd_momentum", "sgd", dict(lr=0.1, momentum=0.9)),
    ("sgd_nesterov_maximize", "sgd", dict(lr=0.1, momentum=0.9, nesterov=True, maximize=True)),
    ("sgd_dampening", "sgd", dict(lr=0.1, momentum=0.9, dampening=0.5)),
    ("sgd_weight_decay", "sgd", dict(lr=0.1, momentum=0.9, weight_decay=0.1)),
    ("adam", "adam", dict(lr=0.01)),
    ("adam_amsgrad_maximize", "adam", dict(lr=0.01, amsgrad=True, maximize=True)),
    ("adam_weight_decay", "adam", dict(lr=0.01, weight_decay=0.1)),
    ("adamw_no_decay", "adamw", dict(lr=0.01, weight_decay=0.0)),
    ("adamw", "adamw", dict(lr=0.01, weight_decay=0.01)),
]
TORCH_INIT = [0.5, -0.25, INF, 1.0, -INF, 0.75, -1.5]


def torch_case(name, optimizer, hyper, dtype):
    tdt = torch.float32 if dtype == "float32" else torch.float64
    p = torch.tensor(TORCH_INIT, dtype=tdt, requires_grad=True)
    make = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[optimizer]
    opt = make([p], foreach=False, **hyper)
    grads = gradients(len(TORCH_INIT), STEPS, 7)
    after = []
    for g in grads:
        p.grad = torch.tensor(g, dtype=tdt)
        opt.step()
        after.append(bits(p.detach().numpy(), dtype))
    state = opt.state[p]
    states = {k: bits(v.numpy(), dtype) for k, v in sorted(state.items())
              if k != "step" and v is not None}
    return {"name": name, "optimizer": optimizer, "hyper": hyper, "dtype": dtype, "shape": [len(TORCH_INIT)],
            "init": bits(TORCH_INIT, dtype), "grads": [bits(np.asarray(g, dtype), dtype) for g in grads],
            "after": after, "states": states, "exact": True}


ADAFACTOR_CASES = [
    # (name, hyper, shape, element made infinite in the parameter or None)
    ("adafactor_nan_grad_vector", adafactor.torch_hyper(), [17], None),
    ("adafactor_nan_grad_matrix", adafactor.torch_hyper(), [7, 6], None),
    ("adafactor_hf_inf_param_vector",
     adafactor.transformers_hyper(lr=1e-2, relative_step=False, scale_parameter=False), [17], 4),
    ("adafactor_hf_inf_param_matrix",
     adafactor.transformers_hyper(lr=1e-2, relative_step=False, scale_parameter=False, beta1=0.9), [7, 6], 10),
]


def adafactor_case(name, hyper, shape, inf_at, dtype):
    dt = np.float32 if dtype == "float32" else np.float64
    n = int(np.prod(shape))
    rng = np.random.RandomState(11)
    p0 = rng.uniform(-1.0, 1.0, n).astype(dt)
    if inf_at is not None:
        p0[inf_at] = INF
    raw = [rng.uniform(-1.0, 1.0, n) for _ in range(STEPS)]
    if inf_at is None:
        raw[2][3] = NAN  # step 3
    grads = [g.astype(dt) for g in raw]
    opt = adafactor.Adafactor(hyper, [p0.reshape(shape).copy()], dt)
    after = []
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        for g in grads:
            opt.step([g.reshape(shape)])
            after.append(bits(opt.p[0], dtype))
    return {"name": name, "optimizer": "adafactor", "hyper": hyper, "dtype": dtype, "shape": shape,
            "init": bits(p0, dtype), "grads": [bits(g, dtype) for g in grads], "after": after, "states": {},
            "exact": False}


def main():
    cases = []
    for dtype in ("float32", "float64"):
        cases += [torch_case(n, o, h, dtype) for n, o, h in TORCH_CASES]
        cases += [adafactor_case(n, h, s, i, dtype) for n, h, s, i in ADAFACTOR_CASES]
    out = {"generator": "tests/reference/generate_non_finite.py", "torch": torch.__version__, "steps": STEPS,
           "cases": cases}
    with open(os.path.join(HERE, "non_finite.json"), "w") as f:
        json.dump(out, f, indent=0, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
