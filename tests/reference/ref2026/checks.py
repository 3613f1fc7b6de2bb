"""Cross-checks of the transcriptions, run by generate_2026.py before it writes anything.

Each numpy transcription is compared in float64 with a second, independent form of the same
reference: the reference's own op sequence written in torch 1.13 ops (Adafactor, both
variants; AdEMAMix; NorMuon), the reference's other published form (Schedule-Free's x/y/z
sequences; optax.lamb for LAMB), or what the reference reduces to (cautious AdamW without
caution is torch.optim.AdamW; cautious Lion without caution is generate.py's Lion; Muon with
Keller Jordan's coefficients is generate.py's Muon). bf16 rounding is compared with torch's
conversion bit for bit. Every check raises if it fails and returns what it measured.
"""

import math
import os
import sys

import numpy as np
import torch

from . import adafactor, ademamix, cautious, common, lamb, muon, schedulefree
from .common import grad_array, init_array, numel

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)
import generate as gen1  # noqa: E402  (tests/reference/generate.py: Lion, Muon, Newton-Schulz)

F64 = np.float64


def _inputs(seed, shapes, steps, gscale=1.0, zero_every=0):
    params = [init_array(seed * 1000 + k, sh, F64) for k, sh in enumerate(shapes)]
    grads = [[grad_array(seed * 1000 + k, t, sh, gscale, zero_every, F64) for k, sh in enumerate(shapes)]
             for t in range(1, steps + 1)]
    return params, grads


def _run_numpy(cls, h, seed, shapes, steps=60, **kw):
    params, grads = _inputs(seed, shapes, steps, **kw)
    opt = cls(h, params, F64)
    out = []
    for g in grads:
        opt.step(g)
        out.append([p.copy() for p in opt.p])
    return out


def _run_torch(step_fn, seed, shapes, steps=60, **kw):
    params, grads = _inputs(seed, shapes, steps, **kw)
    tp = [torch.tensor(p) for p in params]
    out = []
    state = {}
    for t, g in enumerate(grads, 1):
        step_fn(tp, [torch.tensor(x) for x in g], state, t)
        out.append([p.numpy().copy() for p in tp])
    return out


def _gap(a, b):
    return max(common.scaled_gap(x, y) for x, y in zip(a, b))


def _require(name, value, bound):
    if not value <= bound:
        raise AssertionError(f"cross-check {name}: {value:.3g} > {bound:.3g}")
    return name, value


# --------------------------------------------------------------------------- Adafactor
def _torch_adafactor(h):
    """torch/optim/_adafactor.py's _single_tensor_adafactor, in torch 1.13 ops."""
    def step(params, grads, state, t):
        for i, (param, g) in enumerate(zip(params, grads)):
            grad = -g if h["maximize"] else g
            st = state.setdefault(i, {})
            if not st:
                if grad.dim() > 1:
                    rs = list(grad.shape); rs[-1] = 1
                    cs = list(grad.shape); cs[-2] = 1
                    st["row_var"], st["col_var"] = grad.new_zeros(rs), grad.new_zeros(cs)
                else:
                    st["variance"] = torch.zeros_like(grad)
            eps1 = torch.finfo(param.dtype).eps if h["eps"][0] is None else h["eps"][0]
            eps2 = h["eps"][1]
            step_float = float(t)
            one_minus_beta2_t = step_float ** h["beta2_decay"]
            rho_t = min(h["lr"], 1 / (step_float ** 0.5))
            alpha = max(eps2, param.norm(2).item() / (param.numel() ** 0.5)) * rho_t
            if h["weight_decay"] != 0:
                param.mul_(1 - h["lr"] * h["weight_decay"])
            if grad.dim() > 1:
                row_mean = torch.linalg.vector_norm(grad, dim=-1, keepdim=True).square_().div_(grad.size(-1))
                st["row_var"].lerp_(row_mean, one_minus_beta2_t)
                col_mean = torch.linalg.vector_norm(grad, dim=-2, keepdim=True).square_().div_(grad.size(-2))
                st["col_var"].lerp_(col_mean, one_minus_beta2_t)
                var_estimate = st["row_var"] @ st["col_var"]
                var_estimate.div_(st["row_var"].mean(dim=-2, keepdim=True).clamp_(min=eps1))
            else:
                st["variance"].lerp_(grad * grad, one_minus_beta2_t)
                var_estimate = st["variance"].clone()
            update = var_estimate.clamp_(min=eps1 * eps1).rsqrt_()
            update.mul_(grad)
            denom = max(1.0, update.norm(2).item() / ((update.numel() ** 0.5) * h["d"]))
            param.add_(update, alpha=-alpha / denom)
    return step


def _torch_adafactor_hf(h):
    """transformers' Adafactor.step, in torch 1.13 ops."""
    def rms(x):
        return x.norm(2) / (x.numel() ** 0.5)

    def step(params, grads, state, t):
        for i, (p, grad) in enumerate(zip(params, grads)):
            st = state.setdefault(i, {})
            factored = len(grad.shape) >= 2
            if not st:
                if h["beta1"] is not None:
                    st["exp_avg"] = torch.zeros_like(grad)
                if factored:
                    st["row"] = torch.zeros(grad.shape[:-1], dtype=grad.dtype)
                    st["col"] = torch.zeros(grad.shape[:-2] + grad.shape[-1:], dtype=grad.dtype)
                else:
                    st["v"] = torch.zeros_like(grad)
            r = rms(p)
            rel = h["lr"]
            if h["relative_step"]:
                rel = min(1e-6 * t if h["warmup_init"] else 1e-2, 1.0 / math.sqrt(t))
            lr = (max(h["eps"][1], r) if h["scale_parameter"] else 1.0) * rel
            beta2t = 1.0 - math.pow(t, h["decay_rate"])
            update = (grad ** 2) + h["eps"][0]
            if factored:
                st["row"].mul_(beta2t).add_(update.mean(dim=-1), alpha=1.0 - beta2t)
                st["col"].mul_(beta2t).add_(update.mean(dim=-2), alpha=1.0 - beta2t)
                rf = (st["row"] / st["row"].mean(dim=-1, keepdim=True)).rsqrt_().unsqueeze(-1)
                cf = st["col"].unsqueeze(-2).rsqrt()
                update = torch.mul(rf, cf)
                update.mul_(grad)
            else:
                st["v"].mul_(beta2t).add_(update, alpha=1.0 - beta2t)
                update = st["v"].rsqrt().mul_(grad)
            update.div_((rms(update) / h["clip_threshold"]).clamp_(min=1.0))
            update.mul_(lr)
            if h["beta1"] is not None:
                st["exp_avg"].mul_(h["beta1"]).add_(update, alpha=1 - h["beta1"])
                update = st["exp_avg"]
            if h["weight_decay"] != 0:
                p.add_(p, alpha=float(-h["weight_decay"] * lr))
            p.add_(-update)
    return step


# --------------------------------------------------------------------------- AdEMAMix
def _torch_ademamix(h):
    def step(params, grads, state, t):
        b1, b2, b3f = h["betas"]
        for i, (p, grad) in enumerate(zip(params, grads)):
            st = state.setdefault(i, {})
            if not st:
                st["fast"] = torch.zeros_like(p) if b1 != 0.0 else None
                st["slow"], st["sq"] = torch.zeros_like(p), torch.zeros_like(p)
            bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
            alpha = h["alpha"] if h["alpha_warmup"] is None else ademamix.linear_warmup(t, h["alpha"], 0,
                                                                                         h["alpha_warmup"])
            b3 = b3f if h["beta3_warmup"] is None else ademamix.linear_hl_warmup(t, b3f, b1, h["beta3_warmup"])
            if b1 != 0.0:
                st["fast"].mul_(b1).add_(grad, alpha=1 - b1)
                fast = st["fast"]
            else:
                fast = grad
            st["slow"].mul_(b3).add_(grad, alpha=1 - b3)
            st["sq"].mul_(b2).addcmul_(grad, grad, value=1 - b2)
            denom = (st["sq"].sqrt() / math.sqrt(bc2)).add_(h["eps"])
            update = (fast.div(bc1) + alpha * st["slow"]) / denom
            update.add_(p, alpha=h["weight_decay"])
            p.add_(-h["lr"] * update)
    return step


# --------------------------------------------------------------------------- NorMuon
def _torch_normuon(h):
    def zeropower(G, steps):
        a, b, c = muon.KELLER[0]
        X = G.clone()
        if G.size(-2) > G.size(-1):
            X = X.mT
        X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
        for _ in range(steps):
            A = X @ X.mT
            B = b * A + c * A @ A
            X = a * X + B @ X
        if G.size(-2) > G.size(-1):
            X = X.mT
        return X

    def step(params, grads, state, t):
        for i, (p, grad) in enumerate(zip(params, grads)):
            st = state.setdefault(i, {})
            if not st:
                st["m"], st["v"] = torch.zeros_like(p), torch.zeros_like(p[..., 0:1])
            g = grad.clone()
            st["m"].lerp_(g, 1 - h["momentum"])
            update = g.lerp_(st["m"], h["momentum"]) if h["nesterov"] else st["m"]
            update = zeropower(update, h["ns_steps"])
            vnorm = update.norm(dim=(-2, -1), keepdim=True)
            v_mean = torch.mean(update * update, dim=-1, keepdim=True)
            st["v"].lerp_(v_mean, 1 - h["beta2"])
            update = update.mul(1 / st["v"].sqrt().add_(1e-10))
            update.mul_(vnorm / (update.norm(dim=(-2, -1), keepdim=True).add_(1e-10)))
            update *= max(1, grad.size(-2) / grad.size(-1)) ** 0.5
            if h["weight_decay"]:
                p.mul_(1 - h["lr"] * h["weight_decay"])
            p.add_(update, alpha=-h["lr"])
    return step


# --------------------------------------------------------------------------- Schedule-Free (x, y, z)
def _sf_xyz(h, params, grads, adam):
    """The paper's sequences with x, y and z kept (adamw_schedulefree_reference.py's structure
    with release 1.3's lr and bias correction): y_t = (1 - beta) z_t + beta x_t,
    z_{t+1} = z_t - lr grad_normalized(y_t), x_{t+1} = (1 - c) x_t + c z_{t+1}."""
    beta = h["betas"][0] if adam else h["momentum"]
    x = [p.copy() for p in params]
    z = [p.copy() for p in params]
    v = [np.zeros_like(p) for p in params]
    lr_max, weight_sum, ys, xs = -1.0, 0.0, [], []
    for k, g in enumerate(grads):
        sched = (k + 1) / h["warmup_steps"] if k < h["warmup_steps"] else 1.0
        bc2 = 1 - h["betas"][1] ** (k + 1) if adam else 1.0
        lr = h["lr"] * sched * (math.sqrt(bc2) if adam and h["paper"] else 1.0)
        lr_max = max(lr, lr_max)
        weight = (k + 1) ** h["r"] * lr_max ** h["weight_lr_power"]
        weight_sum += weight
        c = weight / weight_sum
        for i in range(len(params)):
            y = (1 - beta) * z[i] + beta * x[i]
            if adam:
                v[i] = h["betas"][1] * v[i] + (1 - h["betas"][1]) * g[i] * g[i]
                denom = np.sqrt(v[i]) + h["eps"] if h["paper"] else np.sqrt(v[i] / bc2) + h["eps"]
                gn = g[i] / denom
            else:
                gn = g[i]
            gn = gn + h["weight_decay"] * y
            z[i] = z[i] - lr * gn
            x[i] = (1 - c) * x[i] + c * z[i]
        ys.append([(1 - beta) * zi + beta * xi for zi, xi in zip(z, x)])
        xs.append([xi.copy() for xi in x])
    return ys, xs


# --------------------------------------------------------------------------- bf16 NS in torch 1.13
def _torch113_bf16_ns(G, h):
    """The bf16 op sequence of torch.optim.Muon / PolarExpress in torch 1.13 CPU bf16 kernels."""
    table, steps, eps = h["ns_coefficients"], h["ns_steps"], h["eps"]
    X = torch.tensor(G, dtype=torch.float32).bfloat16()
    tall = X.shape[0] > X.shape[1]
    if tall:
        # contiguous: torch 1.13's CPU bf16 gemm rounds differently (neither exactly nor as a
        # float32 accumulator) when its first operand is a transposed view
        X = X.T.contiguous()
    if h["ns_norm"] == "clamp_eps":
        X = X / X.norm().clamp(min=eps)
    elif h["ns_norm_scale"] != 1.0:
        X = X / (X.norm() * h["ns_norm_scale"] + eps)
    else:
        X = X / (X.norm() + eps)
    def mm(P, Q):
        # P @ Q as P @ (Q^T)^T: torch 1.13's small bf16 gemm without a transposed second
        # operand (cpublas gemm_notrans_) rounds every product and partial sum to bf16; the
        # transposed form accumulates in float, as torch >= 2 does for every layout.
        return P.contiguous() @ Q.T.contiguous().T

    for i in range(steps):
        a, b, c = table[min(i, len(table) - 1)]
        A = mm(X, X.T)
        B = b * A + mm(c * A, A)
        X = a * X + mm(B, X)
    if tall:
        X = X.T
    return X.float().numpy()


# --------------------------------------------------------------------------- the checks
SHAPES = [[7, 5], [33], [4, 3, 2], [1], [2, 3, 2, 3]]
MATRICES = [[12, 20], [20, 12], [8, 8], [7, 13]]


def run_all():
    done = []
    for h in (adafactor.torch_hyper(), adafactor.torch_hyper(weight_decay=0.1, maximize=True, d=1.5,
                                                              eps=[1e-30, 1e-2], beta2_decay=-0.6)):
        a = _run_numpy(adafactor.Adafactor, h, 1, SHAPES + [[2, 3, 5, 3]])
        b = _run_torch(_torch_adafactor(h), 1, SHAPES + [[2, 3, 5, 3]])
        done.append(_require("adafactor torch " + str(h["maximize"]), _gap(a, b), 1e-13))
    for h in (adafactor.transformers_hyper(),
              adafactor.transformers_hyper(beta1=0.9, weight_decay=0.01, warmup_init=True),
              adafactor.transformers_hyper(relative_step=False, lr=1e-2, scale_parameter=False)):
        a = _run_numpy(adafactor.Adafactor, h, 2, SHAPES)
        b = _run_torch(_torch_adafactor_hf(h), 2, SHAPES)
        done.append(_require("adafactor transformers", _gap(a, b), 1e-13))

    # LAMB = optax.lamb with use_nvlamb, no clipping, decoupled decay
    h = lamb.hyper(max_grad_norm=None, use_nvlamb=True, weight_decay=0.01, lr=1e-2)
    a = _run_numpy(lamb.Lamb, h, 3, SHAPES)
    params, grads = _inputs(3, SHAPES, 60)
    mu = [np.zeros_like(p) for p in params]
    nu = [np.zeros_like(p) for p in params]
    b = []
    for t, g in enumerate(grads, 1):
        for i in range(len(params)):
            mu[i] = 0.9 * mu[i] + 0.1 * g[i]
            nu[i] = 0.999 * nu[i] + 0.001 * g[i] ** 2
            upd = (mu[i] / (1 - 0.9 ** t)) / (np.sqrt(nu[i] / (1 - 0.999 ** t)) + 1e-6) + 0.01 * params[i]
            pn, un = np.linalg.norm(params[i]), np.linalg.norm(upd)
            ratio = 1.0 if pn == 0 or un == 0 else pn / un
            params[i] = params[i] - 1e-2 * ratio * upd
        b.append([p.copy() for p in params])
    done.append(_require("lamb = optax.lamb", _gap(a, b), 1e-12))

    # Schedule-Free: lerp form = x/y/z form
    for adam, h in ((True, schedulefree.adamw_hyper(lr=0.02, warmup_steps=10, weight_decay=0.05, r=0.5)),
                    (True, schedulefree.adamw_hyper(lr=0.02, warmup_steps=10, paper=True, weight_lr_power=1.0)),
                    (False, schedulefree.sgd_hyper(lr=0.3, warmup_steps=5, weight_decay=0.01, r=1.0))):
        params, grads = _inputs(4, SHAPES, 60)
        opt = (schedulefree.AdamWScheduleFree if adam else schedulefree.SGDScheduleFree)(h, [p.copy() for p in params],
                                                                                         F64)
        ys, xs = _sf_xyz(h, params, grads, adam)
        worst = 0.0
        for g, y, x in zip(grads, ys, xs):
            opt.step(g)
            worst = max(worst, common.scaled_gap(opt.p, y))
            opt.eval()
            worst = max(worst, common.scaled_gap(opt.p, x))
            opt.train()
        done.append(_require("schedule-free lerp form = x/y/z form", worst, 1e-12))

    for h in (ademamix.hyper(lr=1e-2), ademamix.hyper(lr=1e-2, alpha_warmup=20, beta3_warmup=40, weight_decay=0.1),
              ademamix.hyper(betas=[0.0, 0.999, 0.9999])):
        a = _run_numpy(ademamix.AdEMAMix, h, 5, SHAPES)
        b = _run_torch(_torch_ademamix(h), 5, SHAPES)
        done.append(_require("ademamix", _gap(a, b), 1e-13))

    # cautious without caution
    for kw in (dict(), dict(amsgrad=True, maximize=True, weight_decay=0.1)):
        h = cautious.adamw_hyper(caution=False, lr=1e-2, **kw)
        a = _run_numpy(cautious.CautiousAdamW, h, 6, SHAPES)

        def torch_adamw(params, grads, state, t, h=h):
            if "opt" not in state:
                state["opt"] = torch.optim.AdamW(params, lr=h["lr"], betas=tuple(h["betas"]), eps=h["eps"],
                                                 weight_decay=h["weight_decay"], amsgrad=h["amsgrad"],
                                                 maximize=h["maximize"], foreach=False)
            for p, g in zip(params, grads):
                p.grad = g
            state["opt"].step()
        b = _run_torch(torch_adamw, 6, SHAPES)
        done.append(_require("cautious adamw without caution = torch.optim.AdamW", _gap(a, b), 1e-13))
    h = cautious.lion_hyper(caution=False, lr=3e-3, weight_decay=0.1)
    a = _run_numpy(cautious.CautiousLion, h, 7, SHAPES, zero_every=7)

    def torch_lion(params, grads, state, t):
        if "step" not in state:
            state["step"] = gen1.lion_stepper(gen1.lion_hyper(lr=3e-3, weight_decay=0.1), params)
        state["step"](grads)
    b = _run_torch(torch_lion, 7, SHAPES, zero_every=7)
    done.append(_require("cautious lion without caution = generate.py lion", _gap(a, b), 1e-13))

    # Muon: Keller coefficients in the SPEC form = generate.py's Muon
    h = muon.hyper()
    a = _run_numpy(lambda hh, p, dt: muon.Muon(hh, p, dt, "ema"), h, 8, MATRICES + [[4, 3, 2, 2]])

    def torch_muon(params, grads, state, t):
        if "step" not in state:
            state["step"] = gen1.muon_stepper(gen1.muon_hyper(), params)
        state["step"](grads)
    b = _run_torch(torch_muon, 8, MATRICES + [[4, 3, 2, 2]])
    done.append(_require("muon (Keller table) = generate.py muon", _gap(a, b), 1e-11))

    h = muon.hyper(normuon=True, weight_decay=0.1)
    a = _run_numpy(lambda hh, p, dt: muon.Muon(hh, p, dt, "lerp"), h, 9, MATRICES)
    b = _run_torch(_torch_normuon(h), 9, MATRICES)
    done.append(_require("normuon = normuon.py (float64 NS)", _gap(a, b), 1e-11))

    # bf16 Newton-Schulz = torch 1.13's bf16 CPU kernels, bit for bit, once the scalars are
    # narrowed to bf16 as torch 1.13 narrows them
    for h in (muon.hyper(ns_precision="bf16", ns_norm="clamp_eps"),
              muon.hyper(ns_precision="bf16", ns_coefficients=muon.POLAR_EXPRESS, ns_norm_scale=1.01, ns_steps=8)):
        worst, differ, total = 0.0, 0, 0
        for k, shape in enumerate(([48, 48], [24, 80], [80, 24], [13, 7], [1, 9])):
            G = init_array(950 + k, shape, np.float32)
            ours = muon.newton_schulz(G, h, np.float32, narrow_scalars=True)
            theirs = _torch113_bf16_ns(G, h)
            worst = max(worst, common.bf16_ulps(ours, theirs))
            differ, total = differ + int(np.sum(ours != theirs)), total + ours.size
        # torch sums the products in float32, the reference exactly: a rare rounding differs
        done.append(_require(f"bf16 NS (scalars narrowed) = torch 1.13 bf16 kernels, bf16 ulps "
                             f"({differ} of {total} elements differ)", worst, 4.0))

    # bf16 rounding = torch's conversion
    x = np.concatenate([np.random.default_rng(0).standard_normal(200000).astype(np.float32) * 3,
                        np.array([0.0, -0.0, 1.0, np.inf, -np.inf, 3.3895314e38, 1e-40, -1e-45], np.float32),
                        (np.arange(1 << 16, dtype=np.uint32) << 16 | 0x8000).view(np.float32)])
    x = x[~np.isnan(x)]
    want = torch.tensor(x).bfloat16().float().numpy()
    got = common.bf16_round(x)
    if not np.array_equal(want.view(np.uint32), got.view(np.uint32)):
        raise AssertionError("cross-check bf16 rounding differs from torch")
    done.append(("bf16 rounding = torch .bfloat16() (bits)", 0.0))
    return done
