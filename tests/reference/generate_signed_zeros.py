#!/usr/bin/env python3
"""Signed zeros through torch.optim.SGD (PyTorch 1.13, foreach=False): the parameter and
gradient values +0, -0, 0.5, -0.5 in every pairing, 3 steps of the same gradient, for
every momentum/nesterov/dampening/weight-decay/maximize combination torch accepts. Writes
tests/reference/signed_zeros.json: each case's hyperparameters and the float32 bits of
the parameters after each step (a -0 and a +0 are different bits).

Regenerate (from the repository root, with the Debian interpreter that has torch):

    /usr/bin/python3 tests/reference/generate_signed_zeros.py
"""
import itertools
import json
import struct

import torch

P_VALUES = [0.0, -0.0, 0.5, -0.5]
G_VALUES = [0.0, -0.0, 0.25, -0.25]
STEPS = 3


def bits(values):
    return [struct.unpack("<I", struct.pack("<f", x))[0] for x in values]


def main():
    p0 = [a for a in P_VALUES for _ in G_VALUES]
    g = [b for _ in P_VALUES for b in G_VALUES]
    cases = []
    for momentum, nesterov, dampening, weight_decay, maximize in itertools.product(
            [0.0, 0.9], [False, True], [0.0, 0.5], [0.0, 0.1], [False, True]):
        if nesterov and (momentum == 0 or dampening != 0):
            continue
        p = torch.tensor(p0, dtype=torch.float32, requires_grad=True)
        hyper = {"lr": 0.1, "momentum": momentum, "dampening": dampening,
                 "weight_decay": weight_decay, "nesterov": nesterov, "maximize": maximize}
        opt = torch.optim.SGD([p], foreach=False, **hyper)
        after = []
        for _ in range(STEPS):
            p.grad = torch.tensor(g, dtype=torch.float32)
            opt.step()
            after.append(bits(p.detach().tolist()))
        cases.append({"hyper": hyper, "bits": after})
    out = {"generator": "tests/reference/generate_signed_zeros.py", "torch": torch.__version__,
           "params": bits(p0), "grads": bits(g), "cases": cases}
    with open("tests/reference/signed_zeros.json", "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
