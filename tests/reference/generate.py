#!/usr/bin/python3
"""Generate the reference trajectories and replay cases used by the xoptim tests.

Run from anywhere with the Debian interpreter that has torch and numpy:

    /usr/bin/python3 tests/reference/generate.py

Writes (paths relative to the repository root):
  tests/reference/trajectories.json      trajectories for the GoogleTest suites
  tests/reference/newton_schulz.json     Newton-Schulz outputs (Muon's orthogonalization)
  tests/replay_cases/<NAME>/...          conformance cases for the replay tool

Everything is deterministic: inputs come from the integer hash u() below, which
tests/support/reference.hpp reproduces bit for bit, so the C++ tests never need torch.
"""

import fnmatch
import json
import math
import os
import shutil
import sys

import numpy as np
import torch

MASK = (1 << 64) - 1
STEPS = 60
CHECKPOINTS = [1, 2, 3, 10, 30, 60]
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # Newton-Schulz (a, b, c), SPEC section 3

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)


# --------------------------------------------------------------------------- inputs
def u(seed, t, i):
    """Deterministic value in [-1, 1), a multiple of 2^-23 (exact in float32)."""
    x = (seed * 0x9E3779B97F4A7C15 + t * 0xBF58476D1CE4E5B9 + i * 0x94D049BB133111EB) & MASK
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & MASK
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & MASK
    x ^= x >> 31
    return ((x >> 40) - 2 ** 23) / 2 ** 23


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def init_values(seed, n):
    return [u(seed, 0, i) for i in range(n)]


def grad_values(seed, t, n, gscale, zero_every):
    return [0.0 if (zero_every > 0 and i % zero_every == 0) else u(seed, t, i) * gscale
            for i in range(n)]


DTYPES = {"float32": torch.float32, "float64": torch.float64}
NP_DTYPES = {"float32": "<f4", "float64": "<f8"}


# --------------------------------------------------------------------------- hypers
def sgd_hyper(**kw):
    h = dict(lr=0.05, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
             maximize=False)
    h.update(kw)
    return h


def adam_hyper(adamw, **kw):
    h = dict(lr=1e-2, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.01 if adamw else 0.0,
             amsgrad=False, maximize=False, bias_correction=True)
    h.update(kw)
    return h


def lion_hyper(**kw):
    h = dict(lr=1e-4, betas=[0.9, 0.99], weight_decay=0.0)
    h.update(kw)
    return h


def muon_hyper(**kw):
    h = dict(lr=0.02, momentum=0.95, nesterov=True, weight_decay=0.0, ns_steps=5,
             ns_coefficients=list(NS_COEFFICIENTS), eps=1e-7, lr_adjust="original")
    h.update(kw)
    return h


def signsgd_hyper(**kw):
    h = dict(lr=1e-2, weight_decay=0.1)
    h.update(kw)
    return h


# --------------------------------------------------------------------------- steppers
# make_stepper(optimizer, hyper, params) -> step(grads) updating params in place.
def make_stepper(optimizer, hyper, params):
    h = hyper
    if optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=h["lr"], momentum=h["momentum"],
                              dampening=h["dampening"], weight_decay=h["weight_decay"],
                              nesterov=h["nesterov"], maximize=h["maximize"], foreach=False)
        return torch_step(opt, params)
    if optimizer in ("adam", "adamw") and h["bias_correction"]:
        cls = torch.optim.Adam if optimizer == "adam" else torch.optim.AdamW
        opt = cls(params, lr=h["lr"], betas=tuple(h["betas"]), eps=h["eps"],
                  weight_decay=h["weight_decay"], amsgrad=h["amsgrad"],
                  maximize=h["maximize"], foreach=False)
        return torch_step(opt, params)
    if optimizer == "adamw":  # no bias correction: MLX form, formula reference
        return adamw_nobc_stepper(h, params)
    if optimizer == "lion":
        return lion_stepper(h, params)
    if optimizer == "signsgd":
        return signsgd_stepper(h, params)
    if optimizer == "muon":
        return muon_stepper(h, params)
    raise ValueError(optimizer)


def hybrid_route(name, shape, adamw_patterns):
    """Muon for matrices (ndim >= 2) whose name matches no AdamW pattern (SPEC section 3)."""
    excluded = any(fnmatch.fnmatchcase(name, pat) for pat in adamw_patterns)
    return "muon" if len(shape) >= 2 and not excluded else "adamw"


def hybrid_stepper(h, routing, names, params):
    """Muon and torch.optim.AdamW, each on the parameters routed to it."""
    routes = [hybrid_route(n, p.shape, routing["adamw_patterns"]) for n, p in zip(names, params)]
    picks = {k: [i for i, r in enumerate(routes) if r == k] for k in ("muon", "adamw")}
    steppers = {k: make_stepper(k, h[k], [params[i] for i in picks[k]]) for k in picks if picks[k]}

    def step(grads):
        for k, stepper in steppers.items():
            stepper([grads[i] for i in picks[k]])
    return step, routes


def muon_stepper(h, params):
    """Muon as SPEC section 3 writes it, in torch ops of the case's dtype."""
    lr, mu, wd = h["lr"], h["momentum"], h["weight_decay"]
    m = [torch.zeros_like(p) for p in params]

    def step(grads):
        with torch.no_grad():
            for k, (p, g) in enumerate(zip(params, grads)):
                m[k] = mu * m[k] + (1 - mu) * g
                u = (1 - mu) * g + mu * m[k] if h["nesterov"] else m[k]
                O = newton_schulz(u, steps=h["ns_steps"], eps=h["eps"],
                                  coefficients=tuple(h["ns_coefficients"]))
                rows, cols = O.shape
                if h["lr_adjust"] == "original":
                    scale = math.sqrt(max(1.0, rows / cols))
                else:
                    scale = 0.2 * math.sqrt(max(rows, cols))
                p.mul_(1 - lr * wd)
                p.sub_(lr * scale * O.reshape(p.shape))
    return step


def torch_step(opt, params):
    def step(grads):
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
    return step


def adamw_nobc_stepper(h, params):
    assert not h["maximize"]
    lr, (b1, b2), eps, wd = h["lr"], h["betas"], h["eps"], h["weight_decay"]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    vmax = [torch.zeros_like(p) for p in params]

    def step(grads):
        with torch.no_grad():
            for k, (p, g) in enumerate(zip(params, grads)):
                p.mul_(1 - lr * wd)
                m[k] = b1 * m[k] + (1 - b1) * g
                v[k] = b2 * v[k] + (1 - b2) * g * g
                if h["amsgrad"]:
                    vmax[k] = torch.maximum(vmax[k], v[k])
                    denom = torch.sqrt(vmax[k]) + eps
                else:
                    denom = torch.sqrt(v[k]) + eps
                p.sub_(lr * m[k] / denom)
    return step


def lion_stepper(h, params):
    lr, (b1, b2), wd = h["lr"], h["betas"], h["weight_decay"]
    m = [torch.zeros_like(p) for p in params]

    def step(grads):
        with torch.no_grad():
            for k, (p, g) in enumerate(zip(params, grads)):
                c = b1 * m[k] + (1 - b1) * g
                p.copy_(p * (1 - lr * wd) - lr * torch.sign(c))
                m[k] = b2 * m[k] + (1 - b2) * g
    return step


def signsgd_stepper(h, params):
    lr, wd = h["lr"], h["weight_decay"]

    def step(grads):
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.copy_(p * (1 - lr * wd) - lr * torch.sign(g))  # torch.sign(0) == 0
    return step


# --------------------------------------------------------------------------- trajectories
SHAPES_A = [[7, 5], [33], [4, 3, 2], [1], [17]]
SHAPES_B = [[3, 11], [8], [2, 2, 2, 2], [19], [2, 9]]
# Muon takes matrices: wide, tall, square and a 4-D tensor viewed as (shape[0], rest).
MUON_SHAPES = [[12, 20], [20, 12], [8, 8], [4, 3, 2, 2]]


def case_specs():
    """(base name, optimizer, hyper, gscale, zero_every)."""
    s = []
    s += [
        ("sgd_plain", "sgd", sgd_hyper(), 1.0, 0),
        ("sgd_momentum", "sgd", sgd_hyper(momentum=0.9), 1.0, 0),
        ("sgd_momentum_dampening", "sgd", sgd_hyper(momentum=0.9, dampening=0.1), 1.0, 0),
        ("sgd_nesterov", "sgd", sgd_hyper(momentum=0.9, nesterov=True), 0.25, 0),
        ("sgd_wd", "sgd", sgd_hyper(weight_decay=0.01), 1.0, 0),
        ("sgd_wd_momentum", "sgd", sgd_hyper(weight_decay=0.01, momentum=0.9), 1.0, 0),
        ("sgd_maximize", "sgd", sgd_hyper(maximize=True), 1.0, 0),
        ("sgd_maximize_momentum_wd", "sgd",
         sgd_hyper(maximize=True, momentum=0.9, weight_decay=0.01), 0.25, 0),
    ]
    s += [
        ("adam_default", "adam", adam_hyper(False), 1.0, 0),
        ("adam_wd", "adam", adam_hyper(False, weight_decay=0.1), 0.25, 0),
        ("adam_amsgrad", "adam", adam_hyper(False, amsgrad=True), 1.0, 0),
        ("adam_maximize", "adam", adam_hyper(False, maximize=True), 1.0, 0),
        ("adam_amsgrad_maximize_wd", "adam",
         adam_hyper(False, amsgrad=True, maximize=True, weight_decay=0.1), 0.25, 0),
        ("adam_small_grad", "adam", adam_hyper(False), 2.0 ** -10, 0),
        ("adam_tiny_grad", "adam", adam_hyper(False), 2.0 ** -24, 0),
    ]
    s += [
        ("adamw_default", "adamw", adam_hyper(True), 1.0, 0),
        ("adamw_wd", "adamw", adam_hyper(True, weight_decay=0.1), 0.25, 0),
        ("adamw_amsgrad", "adamw", adam_hyper(True, amsgrad=True), 1.0, 0),
        ("adamw_maximize", "adamw", adam_hyper(True, maximize=True), 1.0, 0),
        ("adamw_betas_eps", "adamw", adam_hyper(True, betas=[0.8, 0.95], eps=1e-6),
         2.0 ** -18, 0),
    ]
    s += [
        ("lion_default", "lion", lion_hyper(), 1.0, 7),
        ("lion_wd", "lion", lion_hyper(lr=3e-3, weight_decay=0.1), 0.25, 7),
    ]
    s += [
        ("signsgd_default", "signsgd", signsgd_hyper(), 1.0, 7),
        ("signsgd_wd0", "signsgd", signsgd_hyper(weight_decay=0.0), 0.25, 7),
    ]
    s += [
        ("adamw_nobc_default", "adamw", adam_hyper(True, bias_correction=False), 1.0, 0),
        ("adamw_nobc_wd", "adamw",
         adam_hyper(True, bias_correction=False, weight_decay=0.1), 0.25, 0),
        ("adamw_nobc_amsgrad", "adamw",
         adam_hyper(True, bias_correction=False, amsgrad=True), 1.0, 7),
    ]
    s += [
        ("muon_default", "muon", muon_hyper(), 1.0, 0),
        ("muon_no_nesterov", "muon", muon_hyper(nesterov=False), 1.0, 0),
        ("muon_match_rms_adamw_wd", "muon",
         muon_hyper(lr=1e-3, weight_decay=0.1, lr_adjust="match_rms_adamw"), 0.25, 0),
    ]
    return s


def run_trajectory(optimizer, hyper, dtype, case_seed, shapes, gscale, zero_every, steps,
                   checkpoints):
    tdt = DTYPES[dtype]
    seeds = [case_seed * 1000 + k for k in range(len(shapes))]
    params = [torch.tensor(init_values(sd, numel(sh)), dtype=tdt).reshape(sh)
              for sd, sh in zip(seeds, shapes)]
    step = make_stepper(optimizer, hyper, params)
    out = {}
    for t in range(1, steps + 1):
        grads = [torch.tensor(grad_values(sd, t, numel(sh), gscale, zero_every),
                              dtype=tdt).reshape(sh)
                 for sd, sh in zip(seeds, shapes)]
        step(grads)
        if t in checkpoints:
            # tolist() yields Python floats holding the exact float32/float64 value;
            # json writes repr(), which round-trips exactly.
            out[str(t)] = [p.detach().reshape(-1).tolist() for p in params]
    return out


def generate_trajectories():
    cases = []
    case_seed = 0
    for idx, (base, optimizer, hyper, gscale, zero_every) in enumerate(case_specs()):
        shapes = MUON_SHAPES if optimizer == "muon" else SHAPES_A if idx % 2 == 0 else SHAPES_B
        for dtype, suffix in (("float32", "f32"), ("float64", "f64")):
            case_seed += 1
            cps = run_trajectory(optimizer, hyper, dtype, case_seed, shapes, gscale,
                                 zero_every, STEPS, CHECKPOINTS)
            cases.append({
                "name": f"{base}_{suffix}",
                "optimizer": optimizer,
                "hyper": hyper,
                "dtype": dtype,
                "seed": case_seed,
                "gscale": gscale,
                "zero_every": zero_every,
                "shapes": shapes,
                "steps": STEPS,
                "checkpoints": cps,
            })
    doc = {
        "generator": "tests/reference/generate.py",
        "torch": torch.__version__,
        "cases": cases,
    }
    path = os.path.join(HERE, "trajectories.json")
    with open(path, "w") as f:
        # one case per line: small and diff-friendly
        f.write("{\n")
        f.write(f'"generator": {json.dumps(doc["generator"])},\n')
        f.write(f'"torch": {json.dumps(doc["torch"])},\n')
        f.write('"cases": [\n')
        f.write(",\n".join(json.dumps(c, separators=(",", ":")) for c in cases))
        f.write("\n]\n}\n")
    # self-check: the file parses back to exactly the same values
    with open(path) as f:
        assert json.load(f) == json.loads(json.dumps(doc))
    return path, [c["name"] for c in cases]


# --------------------------------------------------------------------------- replay cases
REPLAY = [
    # name, optimizer, hyper, dtype, steps, seed, gscale, [(param name, shape)], {extra case.json keys}
    ("adamw_f32", "adamw", adam_hyper(True), "float32", 6, 9001, 1.0,
     [("layer0.weight", (3, 4)), ("layer0.bias", (4,)), ("head.weight", (2, 3, 2))]),
    ("sgd_nesterov_f64", "sgd", sgd_hyper(momentum=0.9, nesterov=True, weight_decay=0.01),
     "float64", 5, 9002, 1.0,
     [("layer0.weight", (3, 4)), ("bias", (5,))]),
    ("adam_amsgrad_f32", "adam", adam_hyper(False, amsgrad=True), "float32", 8, 9003, 0.5,
     [("embed.weight", (5, 3)), ("layer0.weight", (2, 3, 2)), ("bias", (5,))]),
    ("lion_f32", "lion", lion_hyper(lr=3e-3, weight_decay=0.1), "float32", 7, 9004, 1.0,
     [("layer0.weight", (3, 4)), ("bias", (5,))]),
    ("muon_f32", "muon", muon_hyper(weight_decay=0.01), "float32", 6, 9005, 1.0,
     [("layer0.weight", (6, 10)), ("conv.weight", (4, 2, 3, 3))]),
    # SPEC section 3's four parameters plus a bias; "layers.0.*" keeps the first layer on AdamW
    ("hybrid_f32", "hybrid", {"muon": muon_hyper(lr=0.05, weight_decay=0.01),
                              "adamw": adam_hyper(True, lr=3e-3)}, "float32", 6, 9006, 1.0,
     [("embedding.weight", (10, 6)), ("layers.0.weight", (8, 6)), ("linear1.weight", (12, 8)),
      ("linear1.bias", (12,)), ("linear2.weight", (8, 12)), ("output.weight", (5, 8))],
     {"routing": {"adamw_patterns": ["*embed*", "*head*", "output*", "layers.0.*"]}}),
    # Around the step: scheduled lr and weight decay, global-norm clipping, the mean of 4
    # micro-batch gradients (steps x 4 gradient files)
    ("adamw_around_f32", "adamw", adam_hyper(True, lr=1e-2, betas=[0.9, 0.95], weight_decay=0.1), "float32", 6,
     9007, 2.0, [("layer0.weight", (3, 4)), ("layer0.bias", (4,)), ("head.weight", (2, 3, 2))],
     {"schedule": {"lr": {"kind": "warmup_cosine", "base": 1e-2, "warmup_steps": 2, "total_steps": 5,
                          "min_ratio": 0.1},
                   "weight_decay": {"kind": "linear", "from": 0.1, "to": 0.0, "steps": 4}},
      "clip_global_norm": 1.0, "accumulate": 4}),
]


def schedule_value(s, k):
    """The schedules the replay cases use, evaluated at optimizer step k."""
    if s["kind"] == "warmup_cosine":
        return warmup_cosine(s["base"], s["warmup_steps"], s["total_steps"], s["min_ratio"])(k)
    if s["kind"] == "linear":
        return s["from"] + (s["to"] - s["from"]) * min(k, s["steps"]) / s["steps"]
    raise ValueError(s["kind"])


def around_stepper(optimizer, hyper, params, extra):
    """torch.optim with its hyperparameters set from the schedules before each step,
    gradients averaged over the micro-batches and clipped by clip_grad_norm_."""
    assert optimizer == "adamw" and hyper["bias_correction"]
    opt = torch.optim.AdamW(params, lr=hyper["lr"], betas=tuple(hyper["betas"]), eps=hyper["eps"],
                            weight_decay=hyper["weight_decay"], foreach=False)
    k = extra.get("accumulate", 1)
    micro = []
    steps = [0]

    def step(grads):
        micro.append(grads)
        if len(micro) < k:
            return
        for n, p in enumerate(params):
            p.grad = sum((m[n] for m in micro[1:]), micro[0][n].clone()) / k
        micro.clear()
        if "clip_global_norm" in extra:
            torch.nn.utils.clip_grad_norm_(params, extra["clip_global_norm"])
        for name, s in extra.get("schedule", {}).items():
            opt.param_groups[0][name] = schedule_value(s, steps[0])
        opt.step()
        steps[0] += 1
    return step


def generate_replay_cases():
    root = os.path.join(TESTS, "replay_cases")
    made = []
    for name, optimizer, hyper, dtype, steps, seed, gscale, plist, *extras in REPLAY:
        extra = extras[0] if extras else {}
        d = os.path.join(root, name)
        if os.path.isdir(d):
            shutil.rmtree(d)
        os.makedirs(os.path.join(d, "expected"))
        npdt = NP_DTYPES[dtype]
        tdt = DTYPES[dtype]
        seeds = [seed * 1000 + k for k in range(len(plist))]
        inits = [np.array(init_values(sd, numel(sh)), dtype=npdt).reshape(sh)
                 for sd, (_, sh) in zip(seeds, plist)]
        for (pname, _), a in zip(plist, inits):
            np.save(os.path.join(d, f"{pname}.init.npy"), a)
        params = [torch.from_numpy(a.astype(npdt[1:]).copy()) for a in inits]
        assert all(p.dtype == tdt for p in params)
        doc = {"optimizer": optimizer, "hyper": hyper}
        doc.update(extra)
        calls = steps * extra.get("accumulate", 1)
        if optimizer == "hybrid":
            stepper, routes = hybrid_stepper(hyper, extra["routing"], [pn for pn, _ in plist], params)
            with open(os.path.join(d, "expected", "routing.txt"), "w") as f:
                for (pname, shape), r in zip(plist, routes):
                    f.write(f"{pname} {tuple(shape)} -> {r}\n")  # Python's tuple form, as format_shape
        elif extra:
            stepper = around_stepper(optimizer, hyper, params, extra)
        else:
            stepper = make_stepper(optimizer, hyper, params)
        for t in range(1, calls + 1):
            grads = [np.array(grad_values(sd, t, numel(sh), gscale, 0), dtype=npdt).reshape(sh)
                     for sd, (_, sh) in zip(seeds, plist)]
            for (pname, _), g in zip(plist, grads):
                np.save(os.path.join(d, f"{pname}.grad.{t}.npy"), g)
            stepper([torch.from_numpy(g.astype(npdt[1:]).copy()) for g in grads])
        for (pname, _), p in zip(plist, params):
            np.save(os.path.join(d, "expected", f"{pname}.final.npy"),
                    p.detach().numpy().astype(npdt))
        with open(os.path.join(d, "case.json"), "w") as f:
            doc.update({"steps": steps, "dtype": dtype, "params": [pn for pn, _ in plist]})
            json.dump(doc, f, indent=2)
            f.write("\n")
        made.append(d)
    return made


# Newton-Schulz (quintic), the formula of SPEC section 3 written in torch: the matrix is
# transposed when it has more rows than columns, normalized by its Frobenius norm plus
# eps, and iterated X = a*X + (b*A + c*A@A) @ X with A = X @ X.T.
def newton_schulz(G, steps=5, eps=1e-7, coefficients=NS_COEFFICIENTS):
    a, b, c = coefficients
    X = G.reshape(G.shape[0], -1)
    tall = X.shape[0] > X.shape[1]
    if tall:
        X = X.T
    X = X / (X.norm() + eps)
    for _ in range(steps):
        A = X @ X.T
        B = b * A + c * A @ A
        X = a * X + B @ X
    if tall:
        X = X.T
    return X


def generate_newton_schulz():
    """Newton-Schulz outputs for square, wide, tall and 4-D inputs (viewed as
    (shape[0], rest)), float32 and float64, input element i = u(seed, 0, i)."""
    cases = []
    shapes = [("square", [48, 48]), ("wide", [24, 80]), ("tall", [80, 24]), ("conv", [8, 4, 3, 3])]
    for k, (name, shape) in enumerate(shapes):
        for dtype, torch_dtype in (("float32", torch.float32), ("float64", torch.float64)):
            seed = 700 + k
            G = torch.tensor(init_values(seed, numel(shape)), dtype=torch_dtype).reshape(shape)
            for steps in (1, 5):
                out = newton_schulz(G, steps=steps)
                cases.append({"name": f"{name}_{dtype}_{steps}", "dtype": dtype, "seed": seed, "shape": shape,
                              "steps": steps, "eps": 1e-7, "coefficients": list(NS_COEFFICIENTS),
                              "output": [float(x) for x in out.flatten().tolist()]})
    path = os.path.join(HERE, "newton_schulz.json")
    with open(path, "w") as f:
        json.dump({"generator": "tests/reference/generate.py", "torch": torch.__version__, "cases": cases}, f)
        f.write("\n")
    return path


# --------------------------------------------------------------------------- around the step
def warmup_cosine(base, warmup, total, min_ratio):
    """SPEC section 4: the value for the k-th optimizer step (k = 0, 1, ...)."""
    def value(k):
        if k < warmup:
            return base * k / warmup
        progress = min(1.0, (k - warmup) / (total - warmup))
        return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
    return value


AROUND_SHAPES = [(3, 4), (5,), (2, 3, 2), (0,)]


def generate_around_step():
    """torch.nn.utils.clip_grad_norm_ on a few gradient sets, and AdamW driven by a
    warmup-cosine LambdaLR with global-norm clipping and gradient accumulation (the
    mean of k micro-batch gradients), in float32 and float64. Gradients: micro-batch j
    of step t (t = 1..steps, j = 0..k-1) of parameter n, element i, is
    u(seed*1000 + n, (t-1)*k + j + 1, i) * gscale."""
    clip_cases = []
    for k, (max_norm, gscale) in enumerate([(1.0, 1.0), (100.0, 1.0), (0.5, 0.25), (2.0, 8.0)]):
        seed = 800 + k
        grads = [torch.tensor(grad_values(seed * 1000 + n, 1, numel(sh), gscale, 0),
                              dtype=torch.float32).reshape(sh) for n, sh in enumerate(AROUND_SHAPES)]
        params = [torch.zeros(sh, dtype=torch.float32, requires_grad=True) for sh in AROUND_SHAPES]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        clip_cases.append({"seed": seed, "gscale": gscale, "max_norm": max_norm, "norm": float(norm),
                           "clipped": [[float(x) for x in p.grad.flatten().tolist()] for p in params]})

    trajectories = []
    for dtype in ("float32", "float64"):
        seed, gscale, steps, accumulate, clip = 820, 2.0, 12, 3, 1.0
        sched = {"kind": "warmup_cosine", "base": 1e-2, "warmup_steps": 3, "total_steps": 10, "min_ratio": 0.1}
        hyper = adam_hyper(True, lr=sched["base"], betas=[0.9, 0.95], weight_decay=0.1)
        tdt = DTYPES[dtype]
        params = [torch.tensor(init_values(seed * 1000 + n, numel(sh)), dtype=tdt).reshape(sh)
                  for n, sh in enumerate(AROUND_SHAPES)]
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.AdamW(params, lr=hyper["lr"], betas=tuple(hyper["betas"]), eps=hyper["eps"],
                                weight_decay=hyper["weight_decay"], foreach=False)
        lr_at = warmup_cosine(sched["base"], sched["warmup_steps"], sched["total_steps"], sched["min_ratio"])
        lambda_lr = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: lr_at(k) / sched["base"])
        norms = []
        for t in range(1, steps + 1):
            for n, (p, sh) in enumerate(zip(params, AROUND_SHAPES)):
                micro = [torch.tensor(grad_values(seed * 1000 + n, (t - 1) * accumulate + j + 1, numel(sh),
                                                  gscale, 0), dtype=tdt).reshape(sh)
                         for j in range(accumulate)]
                p.grad = sum(micro[1:], micro[0].clone()) / accumulate
            norms.append(float(torch.nn.utils.clip_grad_norm_(params, clip)))
            opt.step()
            lambda_lr.step()
        trajectories.append({"dtype": dtype, "seed": seed, "gscale": gscale, "steps": steps,
                             "accumulate": accumulate, "clip_global_norm": clip, "schedule": {"lr": sched},
                             "hyper": hyper, "norms": norms,
                             "final": [[float(x) for x in p.detach().flatten().tolist()] for p in params]})
    path = os.path.join(HERE, "around_step.json")
    with open(path, "w") as f:
        json.dump({"generator": "tests/reference/generate.py", "torch": torch.__version__,
                   "shapes": [list(sh) for sh in AROUND_SHAPES], "clip": clip_cases,
                   "trajectories": trajectories}, f)
        f.write("\n")
    return path


def main():
    torch.set_num_threads(1)
    print(generate_around_step())
    print(generate_newton_schulz())
    path, names = generate_trajectories()
    print(f"{path}: {os.path.getsize(path)} bytes, {len(names)} cases")
    for d in generate_replay_cases():
        print(d)
    return 0


if __name__ == "__main__":
    sys.exit(main())
