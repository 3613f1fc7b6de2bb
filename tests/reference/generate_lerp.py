#!/usr/bin/env python3
"""ATen's two-form lerp (torch.lerp with a scalar weight, its scalar kernel in
aten/src/ATen/native/Lerp.h: weight < 0.5 ? self + weight * (end - self)
: end - (end - self) * (1 - weight)) in numpy float32 and float64 arithmetic, every
operation rounded on its own. The cases are chosen where one fused multiply-add would
round differently, so that a build which contracts the host's a * b + c fails against
them. Writes tests/reference/lerp.json: per dtype, [start, end, weight, expected] as bits.

Regenerate (from the repository root, with the Debian interpreter that has numpy):

    /usr/bin/python3 tests/reference/generate_lerp.py
"""
import json
from fractions import Fraction

import numpy as np

CASES_PER_FORM = 12


def two_roundings(start, end, weight, dt):
    diff = dt(end - start)
    if abs(weight) < dt(0.5):
        return dt(start + dt(weight * diff))
    return dt(end - dt(diff * dt(dt(1) - weight)))


def fused(start, end, weight, dt):
    diff = dt(end - start)
    if abs(weight) < dt(0.5):
        exact = Fraction(float(weight)) * Fraction(float(diff)) + Fraction(float(start))
    else:
        exact = Fraction(float(end)) - Fraction(float(diff)) * Fraction(float(dt(dt(1) - weight)))
    return dt(float(exact))


def bits(x, dt):
    return int(np.array([x], dtype=dt).view(np.uint32 if dt == np.float32 else np.uint64)[0])


def cases(dt, rng):
    out = []
    for small in (True, False):
        found = 0
        while found < CASES_PER_FORM:
            start, end = dt(rng.standard_normal()), dt(rng.standard_normal())
            weight = dt(rng.uniform(0.0, 0.5) if small else rng.uniform(0.5, 1.0))
            expected = two_roundings(start, end, weight, dt)
            if expected == fused(start, end, weight, dt):
                continue
            out.append([bits(start, dt), bits(end, dt), bits(weight, dt), bits(expected, dt)])
            found += 1
    return out


def main():
    rng = np.random.default_rng(20261207)
    data = {"float32": cases(np.float32, rng), "float64": cases(np.float64, rng)}
    with open("tests/reference/lerp.json", "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
