"""AdEMAMix (Pagliardini, Ablin, Grangier 2024), apple/ml-ademamix pytorch/ademamix.py at
e7327151bbf2c812ae2c080de5491c685b6eb509, `AdEMAMix.step` line for line:

    step += 1 (per parameter, starting at 1)
    bias_correction1 = 1 - beta1 ** step;  bias_correction2 = 1 - beta2 ** step
    alpha = linear_warmup_scheduler(step, alpha_end=alpha, alpha_start=0, warmup=alpha_warmup)
            if alpha_warmup is not None else alpha
    beta3 = linear_hl_warmup_scheduler(step, beta_end=beta3_final, beta_start=beta1,
                                       warmup=beta3_warmup) if beta3_warmup is not None else beta3
    beta1 != 0: exp_avg_fast.mul_(beta1).add_(grad, alpha=1 - beta1)   else exp_avg_fast = grad
    exp_avg_slow.mul_(beta3).add_(grad, alpha=1 - beta3)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    denom = (exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(eps)
    update = (exp_avg_fast.div(bias_correction1) + alpha * exp_avg_slow) / denom
    update.add_(p, alpha=weight_decay)
    p.add_(-lr * update)

  linear_warmup_scheduler(step, end, start=0, warmup): a = step / warmup;
      (1 - a) * start + a * end while step < warmup, then end.
  linear_hl_warmup_scheduler(step, end, start, warmup): f(beta) = log(0.5) / log(beta + 1e-8) - 1,
      f_inv(t) = 0.5 ** (1 / (t + 1)); f_inv((1 - a) * f(start) + a * f(end)) while step < warmup,
      then end (a linear warmup of the half-life).

  Defaults: lr 1e-3, betas (0.9, 0.999, 0.9999), alpha 2.0, beta3_warmup None,
  alpha_warmup None, eps 1e-8, weight_decay 0. The warmups use the step count t = 1, 2, ...
  (an xoptim schedule evaluated at k = t - 1 must be shifted by one to agree).
"""

import math

import numpy as np

from .common import add_scaled, addcmul, ema_update


def hyper(**kw):
    h = dict(lr=1e-3, betas=[0.9, 0.999, 0.9999], alpha=2.0, beta3_warmup=None, alpha_warmup=None, eps=1e-8,
             weight_decay=0.0)
    h.update(kw)
    return h


def linear_warmup(step, end, start, warmup):
    if step < warmup:
        a = step / float(warmup)
        return (1.0 - a) * start + a * end
    return end


def linear_hl_warmup(step, end, start, warmup):
    def f(beta, eps=1e-8):
        return math.log(0.5) / math.log(beta + eps) - 1

    def f_inv(t):
        return math.pow(0.5, 1 / (t + 1))

    if step < warmup:
        a = step / float(warmup)
        return f_inv((1.0 - a) * f(start) + a * f(end))
    return end


class AdEMAMix:
    def __init__(self, h, params, dt):
        self.h, self.p, self.dt, self.t = h, params, dt, 0
        self.st = []
        for p in params:
            s = {"exp_avg_slow": np.zeros(p.shape, dt), "exp_avg_sq": np.zeros(p.shape, dt)}
            if h["betas"][0] != 0.0:
                s["exp_avg_fast"] = np.zeros(p.shape, dt)
            self.st.append(s)

    def states(self):
        return self.st

    def scalars(self, t):
        h = self.h
        beta1, beta2, beta3_final = h["betas"]
        alpha = h["alpha"] if h["alpha_warmup"] is None else linear_warmup(t, h["alpha"], 0, h["alpha_warmup"])
        beta3 = beta3_final if h["beta3_warmup"] is None else linear_hl_warmup(t, beta3_final, beta1,
                                                                               h["beta3_warmup"])
        return alpha, beta3

    def step(self, grads):
        h, dt = self.h, self.dt
        self.t += 1
        t = self.t
        beta1, beta2, _ = h["betas"]
        bias_correction1 = 1 - beta1 ** t
        bias_correction2 = 1 - beta2 ** t
        alpha, beta3 = self.scalars(t)
        for k, g in enumerate(grads):
            st, p = self.st[k], self.p[k]
            if beta1 != 0.0:
                st["exp_avg_fast"] = ema_update(st["exp_avg_fast"], g, beta1, dt)
                fast = st["exp_avg_fast"]
            else:
                fast = g
            st["exp_avg_slow"] = ema_update(st["exp_avg_slow"], g, beta3, dt)
            st["exp_avg_sq"] = addcmul((st["exp_avg_sq"] * dt(beta2)).astype(dt), 1 - beta2, g, g, dt)
            denom = ((np.sqrt(st["exp_avg_sq"]) / dt(math.sqrt(bias_correction2))) + dt(h["eps"])).astype(dt)
            update = (add_scaled((fast / dt(bias_correction1)).astype(dt), alpha, st["exp_avg_slow"], dt)
                      / denom).astype(dt)
            update = add_scaled(update, h["weight_decay"], p, dt)
            self.p[k] = add_scaled(p, -h["lr"], update, dt)  # p.add_(-lr * update)
