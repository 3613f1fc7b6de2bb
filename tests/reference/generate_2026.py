#!/usr/bin/python3
"""Reference trajectories for the optimizers of issue 16 (Adafactor, LAMB, Schedule-Free AdamW
and SGD, AdEMAMix, Muon with Polar Express tables, NorMuon and bf16 Newton-Schulz, cautious
AdamW and Lion, EMA of the weights).

torch 1.13 has none of them: each is a line-by-line transcription of its authors' reference
code (tests/reference/ref2026/<optimizer>.py, each citing repository, file and commit) in
numpy, run in float64 and in float32 under the arithmetic model of ref2026/common.py.
ref2026/checks.py cross-checks every transcription in float64 against a second, independent
form of the same reference before anything is written.

Run from anywhere with the Debian interpreter (torch 1.13 and numpy):

    /usr/bin/python3 tests/reference/generate_2026.py

Writes (paths relative to the repository root; format in tests/reference/README.md):
  tests/reference/trajectories_2026.json     trajectories, checkpoints, final states
  tests/reference/newton_schulz_2026.json    Polar Express and bf16 Newton-Schulz outputs

Deterministic: running it again gives identical bytes.
"""

import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from ref2026 import adafactor, ademamix, cautious, checks, common, ema, lamb, muon, schedulefree  # noqa: E402
from ref2026.common import CHECKPOINTS, DTYPES, STEPS, bf16_ulps, flat, grad_array, init_array, scaled_gap  # noqa: E402

# Vectors, matrices, rank 3 and 4, odd sizes, length 1.
SHAPES_E = [[7, 5], [33], [4, 3, 2], [1], [2, 3, 2, 3], [17]]
SHAPES_F = [[3, 11], [8], [2, 2, 2, 2], [19], [2, 9], [1, 1]]
# Adafactor: factored (rank >= 2, incl. a 1-row, a 1-column and a 1x1 matrix) and unfactored.
SHAPES_ADAFACTOR = [[7, 5], [33], [4, 3, 2], [1], [2, 3, 5, 3], [1, 6], [9, 1], [1, 1]]
# Muon: wide, tall, square, 4-D viewed as (shape[0], rest), odd, one row.
SHAPES_MUON = [[6, 10], [10, 6], [5, 5], [4, 3, 2, 2], [7, 13], [1, 5]]
SHAPES_MUON_BF16 = [[12, 20], [20, 12], [8, 8], [7, 13], [16, 24]]


def adamw_torch_hyper(**kw):
    h = dict(lr=1e-2, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.01, amsgrad=False, maximize=False,
             bias_correction=True)
    h.update(kw)
    return h


# --------------------------------------------------------------------------- cases
# (name, optimizer, hyper, shapes, gscale, zero_every, extra case keys, dtypes)
BOTH = ("float32", "float64")
F32 = ("float32",)


def specs():
    af, hf = adafactor.torch_hyper, adafactor.transformers_hyper
    sf, ss = schedulefree.adamw_hyper, schedulefree.sgd_hyper
    ca, cl = cautious.adamw_hyper, cautious.lion_hyper
    mu = muon.hyper
    pe = dict(ns_coefficients=muon.POLAR_EXPRESS, ns_norm_scale=1.01)
    bf = dict(ns_precision="bf16", ns_norm="clamp_eps", lr=0.02, weight_decay=0.01)
    A = SHAPES_ADAFACTOR
    return [
        ("adafactor_default", "adafactor", af(), A, 1.0, 0, {}, BOTH),
        ("adafactor_wd_lr", "adafactor", af(lr=0.05, weight_decay=0.1), A, 0.25, 0, {}, BOTH),
        ("adafactor_maximize_d", "adafactor", af(maximize=True, d=1.5, beta2_decay=-0.5), A, 1.0, 0, {}, BOTH),
        ("adafactor_eps", "adafactor", af(eps=[1e-6, 1e-2]), A, 2.0 ** -10, 0, {}, BOTH),
        ("adafactor_tiny_grad", "adafactor", af(), A, 2.0 ** -26, 0, {}, BOTH),
        ("adafactor_zero_grads", "adafactor", af(weight_decay=0.01), A, 1.0, 3, {}, BOTH),
        ("adafactor_hf_default", "adafactor", hf(), A, 1.0, 0, {}, BOTH),
        ("adafactor_hf_beta1_wd", "adafactor", hf(beta1=0.9, weight_decay=0.01), A, 0.25, 0, {}, BOTH),
        ("adafactor_hf_fixed_lr", "adafactor", hf(lr=1e-2, relative_step=False, scale_parameter=False,
                                                  clip_threshold=2.0), A, 1.0, 0, {}, BOTH),
        ("adafactor_hf_warmup_init", "adafactor", hf(warmup_init=True, decay_rate=-0.6), A, 1.0, 0, {}, BOTH),

        ("lamb_default", "lamb", lamb.hyper(), SHAPES_E, 1.0, 0, {}, BOTH),
        ("lamb_optax", "lamb", lamb.hyper(lr=1e-2, max_grad_norm=None, use_nvlamb=True, weight_decay=0.0),
         SHAPES_F, 1.0, 0, {}, BOTH),
        ("lamb_wd0_no_trust_ratio", "lamb", lamb.hyper(lr=1e-2, weight_decay=0.0), SHAPES_E, 1.0, 0, {}, BOTH),
        ("lamb_l2", "lamb", lamb.hyper(lr=1e-2, adam_w_mode=False, weight_decay=0.1), SHAPES_F, 0.25, 0, {}, BOTH),
        ("lamb_no_averaging_no_bc", "lamb", lamb.hyper(lr=1e-2, grad_averaging=False, bias_correction=False,
                                                       max_grad_norm=5.0), SHAPES_E, 1.0, 0, {}, BOTH),
        ("lamb_zero_param", "lamb", lamb.hyper(lr=1e-2, use_nvlamb=True, max_grad_norm=None), SHAPES_F, 1.0, 0,
         {"zero_init": [0, 3]}, BOTH),

        ("adamw_schedulefree_default", "adamw_schedulefree", sf(), SHAPES_E, 1.0, 0, {}, BOTH),
        ("adamw_schedulefree_warmup_wd", "adamw_schedulefree", sf(lr=0.01, warmup_steps=10, weight_decay=0.05),
         SHAPES_F, 1.0, 0, {}, BOTH),
        ("adamw_schedulefree_r_power", "adamw_schedulefree", sf(lr=0.02, warmup_steps=5, r=0.5, weight_lr_power=0.0,
                                                                betas=[0.95, 0.99]), SHAPES_E, 0.25, 0, {}, BOTH),
        ("adamw_schedulefree_paper", "adamw_schedulefree", sf(lr=0.01, warmup_steps=10, paper=True,
                                                              weight_decay=0.01), SHAPES_F, 1.0, 0, {}, BOTH),
        ("sgd_schedulefree_default", "sgd_schedulefree", ss(), SHAPES_E, 0.25, 0, {}, BOTH),
        ("sgd_schedulefree_warmup_wd", "sgd_schedulefree", ss(lr=0.5, momentum=0.95, warmup_steps=10,
                                                              weight_decay=0.01), SHAPES_F, 1.0, 0, {}, BOTH),
        ("sgd_schedulefree_r", "sgd_schedulefree", ss(lr=0.2, r=1.0, weight_lr_power=1.0, warmup_steps=3),
         SHAPES_E, 1.0, 0, {}, BOTH),

        ("ademamix_default", "ademamix", ademamix.hyper(lr=1e-2), SHAPES_E, 1.0, 0, {}, BOTH),
        ("ademamix_warmups", "ademamix", ademamix.hyper(lr=1e-2, alpha=5.0, betas=[0.9, 0.999, 0.999],
                                                        alpha_warmup=20, beta3_warmup=40), SHAPES_F, 1.0, 0, {}, BOTH),
        ("ademamix_beta1_zero_wd", "ademamix", ademamix.hyper(lr=1e-2, betas=[0.0, 0.999, 0.9999], weight_decay=0.1,
                                                              alpha_warmup=10, beta3_warmup=10), SHAPES_E, 0.25, 0, {},
         BOTH),

        ("adamw_cautious", "adamw", ca(lr=1e-2), SHAPES_E, 1.0, 0, {}, BOTH),
        ("adamw_cautious_count", "adamw", ca(lr=1e-2, caution_normalize="count_plus_one"), SHAPES_F, 1.0, 0, {},
         BOTH),
        ("adamw_cautious_amsgrad_maximize", "adamw", ca(lr=1e-2, amsgrad=True, maximize=True, weight_decay=0.1),
         SHAPES_E, 0.25, 7, {}, BOTH),
        ("lion_cautious", "lion", cl(lr=3e-3, weight_decay=0.1), SHAPES_F, 1.0, 7, {}, BOTH),
        ("lion_cautious_count", "lion", cl(lr=3e-3, caution_normalize="count_plus_one"), SHAPES_E, 1.0, 7, {}, BOTH),

        ("ema_warmup", "ema", ema.hyper(decay=0.999, use_warmup=True), SHAPES_E, 1.0, 0,
         {"base": {"optimizer": "adamw", "hyper": adamw_torch_hyper()}}, BOTH),
        ("ema_plain", "ema", ema.hyper(decay=0.9), SHAPES_F, 1.0, 0,
         {"base": {"optimizer": "adamw", "hyper": adamw_torch_hyper(lr=3e-2)}}, BOTH),
        ("ema_after_min_decay", "ema", ema.hyper(decay=0.99, use_warmup=True, warmup_gamma=2.0, min_decay=0.5,
                                                 update_after_step=5), SHAPES_E, 1.0, 0,
         {"base": {"optimizer": "adamw", "hyper": adamw_torch_hyper()}}, BOTH),
        ("ema_bf16_shadow", "ema", ema.hyper(decay=0.95, shadow_dtype="bfloat16"), SHAPES_F, 1.0, 0,
         {"base": {"optimizer": "adamw", "hyper": adamw_torch_hyper(lr=3e-2)}}, F32),

        ("muon_polar_express", "muon", mu(**pe), SHAPES_MUON, 1.0, 0, {}, BOTH),
        ("muon_polar_express_10_steps", "muon", mu(ns_steps=10, weight_decay=0.01, **pe), SHAPES_MUON, 1.0, 0, {},
         BOTH),
        ("muon_normuon", "muon", mu(normuon=True), SHAPES_MUON, 1.0, 0, {}, BOTH),
        ("muon_normuon_rms", "muon", mu(normuon=True, normuon_scale="rms", nesterov=False, weight_decay=0.1,
                                        lr=1e-2), SHAPES_MUON, 0.25, 0, {}, BOTH),
        ("muon_normuon_polar_express", "muon", mu(normuon=True, beta2=0.9, **pe), SHAPES_MUON, 1.0, 0, {}, BOTH),
        ("muon_bf16", "muon", mu(**bf), SHAPES_MUON_BF16, 1.0, 0, {}, F32),
        ("muon_bf16_match_rms", "muon", mu(lr_adjust="match_rms_adamw", nesterov=False, **bf), SHAPES_MUON_BF16,
         0.25, 0, {}, F32),
        ("muon_bf16_polar_express", "muon", mu(ns_precision="bf16", **pe), SHAPES_MUON_BF16, 1.0, 0, {}, F32),

        # LAMB in two parameter groups: one gradient norm over both (apex's), a group without
        # weight decay. Last, so that the seeds of the cases above stay as they were.
        ("lamb_groups", "lamb", lamb.hyper(lr=1e-2), SHAPES_E, 1.0, 0,
         {"groups": [{"params": [1, 3, 5], "hyper": {"lr": 2e-2, "weight_decay": 0.0}},
                     {"params": [0, 2, 4], "hyper": {}}]}, BOTH),
    ]


SOURCES = {
    "adafactor": "ref2026/adafactor.py",
    "lamb": "ref2026/lamb.py",
    "adamw_schedulefree": "ref2026/schedulefree.py",
    "sgd_schedulefree": "ref2026/schedulefree.py",
    "ademamix": "ref2026/ademamix.py",
    "adamw": "ref2026/cautious.py",
    "lion": "ref2026/cautious.py",
    "ema": "ref2026/ema.py",
    "muon": "ref2026/muon.py",
}


def muon_form(h):
    # torch.optim.Muon's and NorMuon's lerp forms where the case follows those sources
    return "lerp" if (h["normuon"] or (h["ns_precision"] == "bf16" and h["ns_norm"] == "clamp_eps")) else "ema"


def source_of(name, optimizer, h):
    s = SOURCES[optimizer]
    if optimizer == "adafactor":
        return s + (" (torch.optim.Adafactor)" if h["variant"] == "torch" else " (transformers Adafactor)")
    if optimizer == "muon":
        parts = []
        if h["ns_coefficients"] == muon.POLAR_EXPRESS:
            parts.append("Polar Express table")
        if h["normuon"]:
            parts.append("NorMuon " + h["normuon_scale"])
        if h["ns_precision"] == "bf16":
            parts.append("bf16 products" + (" as torch.optim.Muon" if h["ns_norm"] == "clamp_eps" else ""))
        return s + " (" + ", ".join(parts) + "; momentum " + muon_form(h) + " form)"
    return s


def make(optimizer, h, params, dt, accumulate="f64", groups=None):
    if optimizer == "adafactor":
        return adafactor.Adafactor(h, params, dt)
    if optimizer == "lamb":
        return lamb.LambGroups(h, groups, params, dt) if groups else lamb.Lamb(h, params, dt)
    if optimizer == "adamw_schedulefree":
        return schedulefree.AdamWScheduleFree(h, params, dt)
    if optimizer == "sgd_schedulefree":
        return schedulefree.SGDScheduleFree(h, params, dt)
    if optimizer == "ademamix":
        return ademamix.AdEMAMix(h, params, dt)
    if optimizer == "adamw":
        return cautious.CautiousAdamW(h, params, dt)
    if optimizer == "lion":
        return cautious.CautiousLion(h, params, dt)
    if optimizer == "muon":
        return muon.Muon(h, params, dt, muon_form(h), accumulate)
    raise ValueError(optimizer)


class TorchAdamW:
    """torch.optim.AdamW (foreach=False) on numpy arrays: the EMA cases' parameters."""

    def __init__(self, h, params, dt):
        self.tp = [torch.tensor(p) for p in params]
        self.opt = torch.optim.AdamW(self.tp, lr=h["lr"], betas=tuple(h["betas"]), eps=h["eps"],
                                     weight_decay=h["weight_decay"], amsgrad=h["amsgrad"], maximize=h["maximize"],
                                     foreach=False)
        self.p = params

    def step(self, grads):
        for p, g in zip(self.tp, grads):
            p.grad = torch.tensor(g)
        self.opt.step()
        self.p[:] = [p.detach().numpy().copy() for p in self.tp]


def run_case(optimizer, h, extra, dtype, seed, shapes, gscale, zero_every, accumulate="f64"):
    """Returns {"checkpoints", ["eval_checkpoints" | "ema_checkpoints"], "final_states"}."""
    dt = DTYPES[dtype]
    zero_init = extra.get("zero_init", [])
    params = [np.zeros(sh, dt) if k in zero_init else init_array(seed * 1000 + k, sh, dt)
              for k, sh in enumerate(shapes)]
    if optimizer == "ema":
        base = TorchAdamW(extra["base"]["hyper"], params, dt)
        shadow = ema.Ema(h, params, dt)
        opt = base
    else:
        opt = make(optimizer, h, params, dt, accumulate, extra.get("groups"))
    out = {"checkpoints": {}}
    sf = optimizer.endswith("_schedulefree")
    if sf:
        out["eval_checkpoints"] = {}
    if optimizer == "ema":
        out["ema_checkpoints"] = {}
    for t in range(1, STEPS + 1):
        grads = [grad_array(seed * 1000 + k, t, sh, gscale, zero_every, dt) for k, sh in enumerate(shapes)]
        opt.step(grads)
        if optimizer == "ema":
            shadow.update(opt.p, t)
        if t in CHECKPOINTS:
            out["checkpoints"][str(t)] = [p.copy() for p in opt.p]
            if sf:
                opt.eval()
                out["eval_checkpoints"][str(t)] = [p.copy() for p in opt.p]
                opt.train()
            if optimizer == "ema":
                out["ema_checkpoints"][str(t)] = [p.copy() for p in shadow.shadow]
    if optimizer != "ema":
        out["final_states"] = opt.states()
    return out


SPREADS = ("f32_fma_spread", "f32_blas_spread", "f32_vs_f64", "bf16_accumulation_spread")


def float32_spreads(optimizer, h, extra, seed, shapes, gscale, zero_every, out):
    """What separates the float32 reference from other faithful computations of the same
    trajectory (scaled errors, max over the checkpoints), recorded with each float32 case:
      f32_fma_spread: the same float32 model with every c + a*b of the references fused
        (common.FUSED), as a compiler contracting a*b + c computes it: the gap to expect from
        an independent float32 implementation;
      f32_vs_f64: the float64 model from the same inputs (for Adafactor with eps1 None, eps1
        fixed to float32's machine epsilon there, so only rounding differs): the float32
        rounding's own size, an upper bound for the above;
      f32_blas_spread (Muon): Newton-Schulz's products summed in float32 by OpenBLAS sgemm
        instead of exactly, as a float32 BLAS does;
      bf16_accumulation_spread (bf16 Newton-Schulz): the bf16 model with float32 sums of the
        products (OpenBLAS sgemm, in two orders) instead of exact ones."""
    r = {}
    bf16 = optimizer == "muon" and h["ns_precision"] == "bf16"
    if bf16:
        r["bf16_accumulation_spread"] = max(
            trajectory_gap(out, run_case(optimizer, h, extra, "float32", seed, shapes, gscale, zero_every, acc))
            for acc in ("f32", "f32_reversed"))
        return r
    common.FUSED = True
    try:
        r["f32_fma_spread"] = trajectory_gap(out, run_case(optimizer, h, extra, "float32", seed, shapes, gscale,
                                                           zero_every))
    finally:
        common.FUSED = False
    if optimizer == "muon":
        common.MATMUL_F32 = True
        try:
            r["f32_blas_spread"] = trajectory_gap(out, run_case(optimizer, h, extra, "float32", seed, shapes, gscale,
                                                                zero_every))
        finally:
            common.MATMUL_F32 = False
    if optimizer == "ema" and h["shadow_dtype"] == "bfloat16":
        return r
    h64 = h
    if optimizer == "adafactor" and h["variant"] == "torch" and h["eps"][0] is None:
        h64 = dict(h, eps=[float(np.finfo(np.float32).eps), h["eps"][1]])
    r["f32_vs_f64"] = trajectory_gap(out, run_case(optimizer, h64, extra, "float64", seed, shapes, gscale,
                                                   zero_every))
    return r


def trajectory_gap(a, b):
    worst = 0.0
    for key in ("checkpoints", "eval_checkpoints", "ema_checkpoints"):
        if key in a:
            for step in a[key]:
                worst = max(worst, scaled_gap(a[key][step], b[key][step]))
    return worst


def encode(out):
    doc = {}
    for key in ("checkpoints", "eval_checkpoints", "ema_checkpoints"):
        if key in out:
            doc[key] = {step: [flat(p) for p in ps] for step, ps in out[key].items()}
    if "final_states" in out:
        doc["final_states"] = [{name: {"shape": list(np.shape(v)), "values": flat(v)} for name, v in st.items()}
                               for st in out["final_states"]]
    return doc


def generate_trajectories():
    cases = []
    seed = 2000
    for name, optimizer, h, shapes, gscale, zero_every, extra, dtypes in specs():
        for dtype in dtypes:
            seed += 1
            out = run_case(optimizer, h, extra, dtype, seed, shapes, gscale, zero_every)
            case = {"name": f"{name}_{'f32' if dtype == 'float32' else 'f64'}", "optimizer": optimizer,
                    "source": source_of(name, optimizer, h), "hyper": h, "dtype": dtype, "seed": seed,
                    "gscale": gscale, "zero_every": zero_every, "shapes": shapes, "steps": STEPS}
            case.update(extra)
            case.update(encode(out))
            if dtype == "float32":
                case.update(float32_spreads(optimizer, h, extra, seed, shapes, gscale, zero_every, out))
            cases.append(case)
            print(f"  {case['name']:40s}" + "".join(f"  {k} {case[k]:.3g}" for k in SPREADS if k in case))
    doc = {"generator": "tests/reference/generate_2026.py", "torch": torch.__version__, "numpy": np.__version__,
           "cases": cases}
    path = os.path.join(HERE, "trajectories_2026.json")
    write_json(path, doc, "cases")
    return path, len(cases)


# --------------------------------------------------------------------------- Newton-Schulz outputs
def generate_newton_schulz():
    shapes = [("square", [48, 48]), ("wide", [24, 80]), ("tall", [80, 24]), ("conv", [8, 4, 3, 3]),
              ("odd", [13, 7])]
    variants = [
        ("polar_express", muon.hyper(ns_coefficients=muon.POLAR_EXPRESS, ns_norm_scale=1.01), BOTH, (5, 10)),
        ("torch_muon_bf16", muon.hyper(ns_precision="bf16", ns_norm="clamp_eps"), F32, (1, 5)),
        ("polar_express_bf16", muon.hyper(ns_precision="bf16", ns_coefficients=muon.POLAR_EXPRESS,
                                          ns_norm_scale=1.01), F32, (5,)),
    ]
    cases = []
    for v, (vname, h0, dtypes, step_counts) in enumerate(variants):
        for k, (sname, shape) in enumerate(shapes):
            seed = 900 + 10 * v + k
            rows = shape[0]
            cols = common.numel(shape) // rows
            for dtype in dtypes:
                dt = DTYPES[dtype]
                G = init_array(seed, shape, dt).reshape(rows, cols)
                for steps in step_counts:
                    h = dict(h0, ns_steps=steps)
                    out = muon.newton_schulz(G, h, dt)
                    case = {"name": f"{vname}_{sname}_{dtype}_{steps}", "dtype": dtype, "seed": seed,
                            "shape": shape, "ns_steps": steps, "ns_coefficients": h["ns_coefficients"],
                            "ns_norm": h["ns_norm"], "ns_norm_scale": h["ns_norm_scale"], "eps": h["eps"],
                            "ns_precision": h["ns_precision"], "output": flat(out)}
                    if h["ns_precision"] == "bf16":
                        case["bf16_accumulation_spread_ulps"] = max(
                            bf16_ulps(out, muon.newton_schulz(G, h, dt, accumulate=acc))
                            for acc in ("f32", "f32_reversed"))
                    elif dtype == "float32":
                        ref = muon.newton_schulz(init_array(seed, shape, np.float64).reshape(rows, cols), h,
                                                 np.float64)
                        case["f32_vs_f64"] = float(np.max(np.abs(out - ref)))
                        common.MATMUL_F32 = True
                        try:
                            case["f32_blas_spread"] = float(np.max(np.abs(out - muon.newton_schulz(G, h, dt))))
                        finally:
                            common.MATMUL_F32 = False
                    cases.append(case)
    path = os.path.join(HERE, "newton_schulz_2026.json")
    write_json(path, {"generator": "tests/reference/generate_2026.py", "torch": torch.__version__,
                      "numpy": np.__version__, "cases": cases}, "cases")
    for c in cases:
        extra = {k: c[k] for k in c if k.startswith(("bf16_", "f32_"))}
        print(f"  {c['name']:40s} {extra}")
    return path, len(cases)


def write_json(path, doc, list_key):
    """One list element per line: small diffs, and `git diff` stays readable."""
    with open(path, "w") as f:
        f.write("{\n")
        for key, value in doc.items():
            if key != list_key:
                f.write(f"{json.dumps(key)}: {json.dumps(value)},\n")
        f.write(f"{json.dumps(list_key)}: [\n")
        f.write(",\n".join(json.dumps(c, separators=(",", ":")) for c in doc[list_key]))
        f.write("\n]\n}\n")
    with open(path) as f:
        assert json.load(f) == json.loads(json.dumps(doc))


def main():
    torch.set_num_threads(1)
    print("cross-checks (float64):")
    for name, value in checks.run_all():
        print(f"  {name:60s} {value:.3g}")
    print("newton_schulz_2026.json:")
    path, n = generate_newton_schulz()
    print(f"{path}: {n} cases")
    print("trajectories_2026.json:")
    path, n = generate_trajectories()
    print(f"{path}: {os.path.getsize(path)} bytes, {n} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
