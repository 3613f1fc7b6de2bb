"""LAMB (You et al. 2019), as NVIDIA apex's FusedLAMB computes it:
NVIDIA/apex apex/optimizers/fused_lamb.py at 16fadfe71c0d57312351c2d8b056251a0c8ce1ef (driver)
and csrc/multi_tensor_lamb.cu at 06a83ce742b09eae61f2d6acf44fb33aadc89038 (kernels), line for line:

    global_grad_norm = || all gradients of the step ||             (fused_lamb.py: l2norm of g_32)
    clipped = global_grad_norm > max_grad_norm ? global_grad_norm / max_grad_norm : 1
    beta3 = grad_averaging ? 1 - beta1 : 1
    bc1, bc2 = bias_correction ? (1 - beta1^step, 1 - beta2^step) : (1, 1)
    per tensor: param_norm = ||p||                                  (before stage 1)
    stage 1, per element (LAMBStage1Functor):
        sg = g / clipped
        adam_w_mode == 0 (L2):   sg = sg + decay * p
        m = m * beta1 + beta3 * sg
        v = v * beta2 + (1 - beta2) * sg * sg
        u = (m / bc1) / (sqrt(v / bc2) + eps)   (+ decay * p when adam_w_mode == 1)
    update_norm = ||u||
    stage 2 (LAMBStage2Functor):
        ratio = lr; if use_nvlamb or decay != 0:
            ratio = (update_norm != 0 && param_norm != 0) ? lr * (param_norm / update_norm) : lr
        p = p - ratio * u

Defaults (FusedLAMB.__init__): lr 1e-3, bias_correction True, betas (0.9, 0.999), eps 1e-6,
weight_decay 0.01, adam_w_mode True, grad_averaging True, max_grad_norm 1.0, use_nvlamb False.
`max_grad_norm: null` here turns the built-in clipping off (apex has no such value; with it off
and use_nvlamb on, this is optax.lamb: google-deepmind/optax optax/_src/alias.py `lamb` at
47fe6554e5567201ac246292ffd00aec480f4b65 = scale_by_adam, add_decayed_weights,
scale_by_trust_ratio (ratio 1 where either norm is 0), scale_by_learning_rate; checked in
checks.py).

Parameter groups (LambGroups; fused_lamb.py `step`): global_grad_norm is over every group's
gradients, max_grad_norm is the optimizer's (self.defaults["max_grad_norm"], not the group's),
and each group's kernel then runs with that group's other hyperparameters.

The step count is the optimizer's (FusedLAMB keeps one per group, all stepped together). apex computes in float
(MATH_T = float) and takes fp16/fp32 only; the float64 cases run the same kernel in double.
The kernel's scalars come from the host as float: beta1, beta2, eps, lr, decay, and
bias corrections 1 - pow(beta, step) computed in double and rounded to float; modelled so.
"""

import math

import numpy as np

from .common import add_scaled, fma, norm, scale_add, sum_squares


def hyper(**kw):
    h = dict(lr=1e-3, bias_correction=True, betas=[0.9, 0.999], eps=1e-6, weight_decay=0.01, adam_w_mode=True,
             grad_averaging=True, max_grad_norm=1.0, use_nvlamb=False)
    h.update(kw)
    return h


def clip_ratio(h, grads, dt):
    """fused_lamb.py: global_grad_norm over `grads` (every group's), clipped against h's max_grad_norm."""
    if h["max_grad_norm"] is None:
        return dt(1)
    gnorm = dt(math.sqrt(sum(sum_squares(g) for g in grads)))
    max_norm = dt(h["max_grad_norm"])
    return dt(gnorm / max_norm) if gnorm > max_norm else dt(1)


def lamb_kernel(h, t, params, states, grads, clipped, dt):
    """multi_tensor_lamb over one group's tensors at step t, the gradients divided by `clipped`."""
    beta1, beta2 = dt(h["betas"][0]), dt(h["betas"][1])
    beta3 = dt(dt(1) - beta1) if h["grad_averaging"] else dt(1)
    one_minus_beta2 = dt(dt(1) - beta2)
    if h["bias_correction"]:
        bc1 = dt(1 - math.pow(float(beta1), t))
        bc2 = dt(1 - math.pow(float(beta2), t))
    else:
        bc1 = bc2 = dt(1)
    eps, decay, lr = dt(h["eps"]), dt(h["weight_decay"]), dt(h["lr"])
    for k, g in enumerate(grads):
        p, st = params[k], states[k]
        param_norm = norm(p, dt)
        sg = (g / clipped).astype(dt)
        if not h["adam_w_mode"]:
            sg = add_scaled(sg, decay, p, dt)
        m = scale_add(st["exp_avg"], beta1, beta3, sg, dt)
        v = fma((one_minus_beta2 * sg).astype(dt), sg, (st["exp_avg_sq"] * beta2).astype(dt), dt)
        st["exp_avg"], st["exp_avg_sq"] = m, v
        denom = (np.sqrt((v / bc2).astype(dt)) + eps).astype(dt)
        u = ((m / bc1).astype(dt) / denom).astype(dt)
        if h["adam_w_mode"]:
            u = add_scaled(u, decay, p, dt)
        ratio = lr
        if h["use_nvlamb"] or h["weight_decay"] != 0:
            update_norm = norm(u, dt)
            if update_norm != 0 and param_norm != 0:
                ratio = dt(lr * dt(param_norm / update_norm))
        params[k] = add_scaled(p, -ratio, u, dt)


class Lamb:
    def __init__(self, h, params, dt):
        self.h, self.p, self.dt, self.t = h, params, dt, 0
        self.st = [{"exp_avg": np.zeros(p.shape, dt), "exp_avg_sq": np.zeros(p.shape, dt)} for p in params]

    def states(self):
        return self.st

    def step(self, grads):
        self.t += 1
        lamb_kernel(self.h, self.t, self.p, self.st, grads, clip_ratio(self.h, grads, self.dt), self.dt)


class LambGroups(Lamb):
    """FusedLAMB over parameter groups: `groups` is [{"params": [indices], "hyper": {overrides}}],
    h the optimizer's defaults (its max_grad_norm clips every group)."""

    def __init__(self, h, groups, params, dt):
        super().__init__(h, params, dt)
        self.groups = groups

    def step(self, grads):
        self.t += 1
        clipped = clip_ratio(self.h, grads, self.dt)
        for group in self.groups:
            ks = group["params"]
            ps = [self.p[k] for k in ks]
            lamb_kernel(dict(self.h, **group["hyper"]), self.t, ps, [self.st[k] for k in ks], [grads[k] for k in ks],
                        clipped, self.dt)
            for k, p in zip(ks, ps):
                self.p[k] = p
