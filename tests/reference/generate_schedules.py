#!/usr/bin/python3
"""Reference values for the schedules of include/xoptim/schedule/schedule.hpp.

Standard library only. Run from anywhere:

    /usr/bin/python3 tests/reference/generate_schedules.py

Writes tests/reference/schedules.json, read by tests/test_schedule.cpp:

    {"generator": "tests/reference/generate_schedules.py",
     "cases": [{"name": str,
                "schedule": {"kind": str, <argument>: value, ...},
                "values": [[step, value], ...]}, ...]}

"schedule" is the JSON form of tools/schedule_json.hpp, every argument written, named as
the C++ factory's arguments; join holds {"schedules": [...], "boundaries": [...]} and a
product {"factors": [...]}. Each formula is written out here from SPEC section 4 and the
MLX / PyTorch definitions, in the order of operations the header uses, so the values agree
to the last bit wherever the platform's cos and pow do. The k-th optimizer step
(k = 0, 1, 2, ...) uses schedule(k). Floats are written with repr, so they read back exactly;
the output is deterministic.
"""

import json
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


# --------------------------------------------------------------------------- formulas
def constant(a):
    return lambda k: a["value"]


def linear(a):
    # MLX linear_schedule, held at `to` from k = steps.
    f, t, n = a["from"], a["to"], a["steps"]
    return lambda k: t if k >= n else f + (t - f) * k / n


def cosine_decay(a):
    base, n, r = a["base"], a["steps"], a["min_ratio"]
    return lambda k: base * (r + (1 - r) * 0.5 * (1 + math.cos(math.pi * min(k, n) / n)))


def warmup_cosine(a):
    # SPEC section 4.
    base, w, total, r = a["base"], a["warmup_steps"], a["total_steps"], a["min_ratio"]

    def f(k):
        if k < w:
            return base * k / w
        if k >= total:
            return base * r
        progress = (k - w) / (total - w)
        return base * (r + (1 - r) * 0.5 * (1 + math.cos(math.pi * progress)))

    return f


def step_decay(a):
    # PyTorch StepLR, MLX step_decay.
    base, n, gamma = a["base"], a["step_size"], a["gamma"]
    return lambda k: base * gamma ** float(k // n)


def exponential_decay(a):
    # PyTorch ExponentialLR, MLX exponential_decay.
    base, gamma = a["base"], a["gamma"]
    return lambda k: base * gamma ** float(k)


def join(a):
    # MLX join_schedules: schedule i + 1 sees k - boundaries[i] from boundaries[i] on.
    parts, bounds = [build(s) for s in a["schedules"]], a["boundaries"]

    def f(k):
        i = 0
        while i < len(bounds) and k >= bounds[i]:
            i += 1
        return parts[0](k) if i == 0 else parts[i](k - bounds[i - 1])

    return f


def product(a):
    factors = [build(s) for s in a["factors"]]

    def f(k):
        value = factors[0](k)
        for g in factors[1:]:
            value = value * g(k)
        return value

    return f


KINDS = {"constant": constant, "linear": linear, "cosine_decay": cosine_decay, "warmup_cosine": warmup_cosine,
         "step_decay": step_decay, "exponential_decay": exponential_decay, "join": join, "product": product}


def build(s):
    return KINDS[s["kind"]](s)


# --------------------------------------------------------------------------- steps
def counts(s):
    """The step counts a schedule turns at (its own and those of its parts)."""
    out = [s[key] for key in ("steps", "warmup_steps", "total_steps", "step_size") if key in s]
    for part in s.get("schedules", []) + s.get("factors", []):
        out += counts(part)
    return out


def steps_for(s):
    """A few fixed steps up to far after, and for each count or boundary n: n-1, n, n+1, n/2, 2n, 10n."""
    ks = {0, 1, 2, 3, 10, 100, 1000, 10 ** 6}
    turns = counts(s) + s.get("boundaries", [])
    for b in s.get("boundaries", []):  # a part's own turns, shifted to where it starts
        turns += [b + n for n in counts(s)]
    if "warmup_steps" in s:
        w, total = s["warmup_steps"], s["total_steps"]
        turns.append(w + (total - w) // 2)  # the middle of the cosine
    for n in turns:
        ks.update({n - 1, n, n + 1, n // 2, 2 * n, 10 * n})
    return sorted(k for k in ks if k >= 0)


# --------------------------------------------------------------------------- cases
def c(kind, **args):
    return dict(kind=kind, **args)


def lin(f, t, n):
    return {"kind": "linear", "from": f, "to": t, "steps": n}


CASES = [
    ("constant", c("constant", value=1e-3)),
    ("constant_zero", c("constant", value=0.0)),
    ("constant_negative", c("constant", value=-2.5)),
    ("linear_warmup", lin(0.0, 1e-3, 100)),
    ("linear_down_to_zero", lin(0.1, 0.0, 3)),
    ("linear_up", lin(0.9, 0.95, 7)),
    ("linear_one_step", lin(5e-4, 1e-3, 1)),
    ("linear_flat", lin(0.3, 0.3, 5)),
    ("cosine_decay_to_zero", c("cosine_decay", base=1e-3, steps=1000, min_ratio=0.0)),
    ("cosine_decay_min_ratio", c("cosine_decay", base=0.1, steps=7, min_ratio=0.1)),
    ("cosine_decay_one_step", c("cosine_decay", base=1.0, steps=1, min_ratio=0.5)),
    ("cosine_decay_ratio_one", c("cosine_decay", base=3e-4, steps=10, min_ratio=1.0)),
    ("warmup_cosine_defaults", c("warmup_cosine", base=1e-4, warmup_steps=2000, total_steps=10000, min_ratio=0.1)),
    ("warmup_cosine_long", c("warmup_cosine", base=6e-4, warmup_steps=2000, total_steps=100000, min_ratio=0.1)),
    ("warmup_cosine_no_warmup", c("warmup_cosine", base=3e-4, warmup_steps=0, total_steps=10, min_ratio=0.0)),
    ("warmup_cosine_short", c("warmup_cosine", base=1.0, warmup_steps=1, total_steps=2, min_ratio=0.5)),
    ("warmup_cosine_odd", c("warmup_cosine", base=0.07, warmup_steps=3, total_steps=17, min_ratio=0.25)),
    ("warmup_cosine_ratio_one", c("warmup_cosine", base=2e-3, warmup_steps=5, total_steps=9, min_ratio=1.0)),
    ("step_decay_torch_example", c("step_decay", base=0.05, step_size=30, gamma=0.1)),
    ("step_decay_every_step", c("step_decay", base=1.0, step_size=1, gamma=0.5)),
    ("step_decay_growth", c("step_decay", base=2e-3, step_size=7, gamma=1.5)),
    ("exponential_decay", c("exponential_decay", base=0.1, gamma=0.99)),
    ("exponential_decay_half", c("exponential_decay", base=1.0, gamma=0.5)),
    ("exponential_growth", c("exponential_decay", base=1e-3, gamma=1.01)),
    ("join_warmup_cosine", c("join", schedules=[lin(0.0, 1e-3, 100),
                                                c("cosine_decay", base=1e-3, steps=900, min_ratio=0.1)],
                             boundaries=[100])),
    ("join_three", c("join", schedules=[c("constant", value=1e-3),
                                        c("step_decay", base=1e-3, step_size=4, gamma=0.5),
                                        c("exponential_decay", base=1e-5, gamma=0.9)],
                     boundaries=[10, 50])),
    ("join_one", c("join", schedules=[lin(1.0, 0.0, 4)], boundaries=[])),
    ("join_at_zero", c("join", schedules=[c("constant", value=7.0), lin(0.0, 1.0, 3)], boundaries=[0])),
    ("product_scalar", c("product", factors=[c("constant", value=0.5),
                                             c("warmup_cosine", base=1e-3, warmup_steps=10, total_steps=50,
                                               min_ratio=0.1)])),
    ("product_two", c("product", factors=[c("cosine_decay", base=2.0, steps=20, min_ratio=0.0),
                                          c("exponential_decay", base=0.3, gamma=0.97)])),
    ("product_three", c("product", factors=[lin(0.0, 1.0, 5), c("constant", value=3e-4),
                                            c("step_decay", base=1.0, step_size=6, gamma=0.3)])),
    ("join_of_products", c("join", schedules=[c("product", factors=[c("constant", value=0.1),
                                                                    lin(0.0, 1.0, 8)]),
                                              c("product", factors=[c("constant", value=0.1),
                                                                    c("cosine_decay", base=1.0, steps=12,
                                                                      min_ratio=0.0)])],
                           boundaries=[8])),
]


def main():
    cases = []
    for name, s in CASES:
        f = build(s)
        values = []
        for k in steps_for(s):
            try:
                values.append([k, f(k)])
            except OverflowError:  # exponential growth far out: inf, not a reference
                pass
        cases.append({"name": name, "schedule": s, "values": values})
    path = os.path.join(HERE, "schedules.json")
    with open(path, "w") as out:
        # One case a line, so a change shows as a change to that case.
        out.write('{"generator": "tests/reference/generate_schedules.py", "cases": [\n')
        out.write(",\n".join(json.dumps(case) for case in cases))
        out.write("\n]}\n")
    print(f"{path}: {len(cases)} cases, {sum(len(c['values']) for c in cases)} values")
    return 0


if __name__ == "__main__":
    sys.exit(main())
