"""Schedule-Free AdamW and SGD (Defazio et al. 2024, "The Road Less Scheduled"),
facebookresearch/schedule_free, the memory-efficient classes (p holds y, state z), non-foreach
paths, line for line:

AdamWScheduleFree, schedulefree/adamw_schedulefree.py at b3be06f3df5670edfa9af00b8d52413b1f00b7ec
(release 1.3 semantics: README at 0daa68b5fd6e26f5b79f5943dedefc54bc8ee93e, "Version 1.3 changes
the behavior of weight decay during learning rate warmup"):

    sched = (k + 1) / warmup_steps if k < warmup_steps else 1.0
    bias_correction2 = 1 - beta2 ** (k + 1)
    lr = group_lr * sched
    lr_max = max(lr, lr_max)                                  (lr_max starts at -1)
    weight = (k + 1) ** r * lr_max ** weight_lr_power
    weight_sum += weight
    ckp1 = weight / weight_sum                                (0 if weight_sum == 0)
    per tensor (z = clone(p) on first use):
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = exp_avg_sq.div(bias_correction2).sqrt_().add_(eps)
        grad_normalized = grad.div_(denom)
        grad_normalized.add_(y, alpha=decay)                  (if decay != 0)
        y.lerp_(end=z, weight=ckp1)
        y.add_(grad_normalized, alpha=lr * (beta1 * (1 - ckp1) - 1))
        z.sub_(grad_normalized, alpha=lr)
    k += 1
    eval():  p.lerp_(end=z, weight=1 - 1 / beta1)            (p becomes x)
    train(): p.lerp_(end=z, weight=1 - beta1)                (p becomes y again)

  Defaults: lr 0.0025, betas (0.9, 0.999), eps 1e-8, weight_decay 0, warmup_steps 0, r 0.0,
  weight_lr_power 2.0.
  paper=True is AdamWScheduleFreePaper (schedulefree/adamw_schedulefree_paper.py at the same
  commit, the version of the paper's experiments): lr = group_lr * sched * sqrt(bias_correction2)
  (so lr_max and the weights see the correction) and denom = exp_avg_sq.sqrt().add_(eps).

SGDScheduleFree, schedulefree/sgd_schedulefree.py at 59ed9b662d5ec5799aded7390b2482758423653c:
    the same sched, lr = group_lr * sched, lr_max, weight, ckp1;
    grad.add_(y, alpha=weight_decay)                          (if weight_decay != 0)
    y.lerp_(end=z, weight=ckp1); y.add_(grad, alpha=lr * (momentum * (1 - ckp1) - 1))
    z.sub_(grad, alpha=lr)
    eval()/train() as above with momentum for beta1.
  Defaults: lr 1.0, momentum 0.9, weight_decay 0, warmup_steps 0, r 0.0, weight_lr_power 2.

The lerp form equals the paper's three sequences (checked in checks.py against
y = (1-beta) z + beta x, z -= lr * grad_normalized, x = (1-ckp1) x + ckp1 z).
"""

import math

import numpy as np

from .common import add_scaled, addcmul, lerp


def adamw_hyper(**kw):
    h = dict(lr=0.0025, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.0, warmup_steps=0, r=0.0,
             weight_lr_power=2.0, paper=False)
    h.update(kw)
    return h


def sgd_hyper(**kw):
    h = dict(lr=1.0, momentum=0.9, weight_decay=0.0, warmup_steps=0, r=0.0, weight_lr_power=2.0)
    h.update(kw)
    return h


class _ScheduleFree:
    def __init__(self, h, params, dt, beta):
        self.h, self.p, self.dt, self.beta = h, params, dt, beta
        self.k, self.lr_max, self.weight_sum, self.train_mode = 0, -1.0, 0.0, True
        self.st = [{"z": p.copy()} for p in params]

    def states(self):
        return self.st

    def _schedule(self, bias_correction2=1.0, in_lr=False):
        h, k = self.h, self.k
        sched = (k + 1) / h["warmup_steps"] if k < h["warmup_steps"] else 1.0
        lr = h["lr"] * sched * (math.sqrt(bias_correction2) if in_lr else 1.0)
        self.lr_max = max(lr, self.lr_max)
        weight = ((k + 1) ** h["r"]) * (self.lr_max ** h["weight_lr_power"])
        self.weight_sum = self.weight_sum + weight
        ckp1 = weight / self.weight_sum if self.weight_sum != 0 else 0.0
        return lr, ckp1

    def _y_z(self, k, gn, lr, ckp1):
        dt, st = self.dt, self.st[k]
        y = lerp(self.p[k], st["z"], ckp1, self.dt)
        self.p[k] = add_scaled(y, lr * (self.beta * (1 - ckp1) - 1), gn, dt)
        st["z"] = add_scaled(st["z"], -lr, gn, dt)  # z.sub_(gn, alpha=lr)

    def eval(self):
        if self.train_mode:
            for k in range(len(self.p)):
                self.p[k] = lerp(self.p[k], self.st[k]["z"], 1 - 1 / self.beta, self.dt)
        self.train_mode = False

    def train(self):
        if not self.train_mode:
            for k in range(len(self.p)):
                self.p[k] = lerp(self.p[k], self.st[k]["z"], 1 - self.beta, self.dt)
        self.train_mode = True


class AdamWScheduleFree(_ScheduleFree):
    def __init__(self, h, params, dt):
        super().__init__(h, params, dt, h["betas"][0])
        for st, p in zip(self.st, params):
            st["exp_avg_sq"] = np.zeros(p.shape, dt)

    def step(self, grads):
        assert self.train_mode
        h, dt = self.h, self.dt
        beta2 = h["betas"][1]
        bias_correction2 = 1 - beta2 ** (self.k + 1)
        lr, ckp1 = self._schedule(bias_correction2, in_lr=h["paper"])
        for k, g in enumerate(grads):
            st = self.st[k]
            v = addcmul((st["exp_avg_sq"] * dt(beta2)).astype(dt), 1 - beta2, g, g, dt)
            st["exp_avg_sq"] = v
            if h["paper"]:
                denom = (np.sqrt(v) + dt(h["eps"])).astype(dt)
            else:
                denom = (np.sqrt((v / dt(bias_correction2)).astype(dt)) + dt(h["eps"])).astype(dt)
            gn = (g / denom).astype(dt)
            if h["weight_decay"] != 0:
                gn = add_scaled(gn, h["weight_decay"], self.p[k], dt)
            self._y_z(k, gn, lr, ckp1)
        self.k += 1


class SGDScheduleFree(_ScheduleFree):
    def __init__(self, h, params, dt):
        super().__init__(h, params, dt, h["momentum"])

    def step(self, grads):
        assert self.train_mode
        h, dt = self.h, self.dt
        lr, ckp1 = self._schedule()
        for k, g in enumerate(grads):
            gn = g
            if h["weight_decay"] != 0:
                gn = add_scaled(g, h["weight_decay"], self.p[k], dt)
            self._y_z(k, gn, lr, ckp1)
        self.k += 1
