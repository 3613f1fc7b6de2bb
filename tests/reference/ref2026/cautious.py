"""Cautious AdamW and Lion (Liang, Chen, Liu, Liu 2024, "Cautious Optimizers", arXiv 2411.16085):
the update's components whose sign disagrees with the gradient's are masked, the rest rescaled.

AdamW: timm's AdamW with caution=True, huggingface/pytorch-image-models timm/optim/adamw.py at
29993ffcca12b19a02ba44cd2849e82c0a9f841f, `_single_tensor_adamw` (torch.optim.AdamW's math plus
the mask), line for line:

    grad = -grad if maximize
    param.mul_(1 - lr * weight_decay)
    exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    amsgrad: max_exp_avg_sq = max(max_exp_avg_sq, exp_avg_sq), used below
    step_size = lr / (1 - beta1 ** step);  denom = (sqrt(v) / sqrt(1 - beta2 ** step)).add_(eps)
    mask = (exp_avg * grad > 0).to(grad.dtype)
    mask.div_(mask.mean().clamp_(min=1e-3))
    param.addcdiv_(exp_avg * mask, denom, value=-step_size)

Lion: the paper authors' kyleliang919/C-Optim c_lion.py (read in the fork mahdi-shafiei/C-Optim
at 4828df503074580e0530b79a63c2f0b11b9c11af), `update_fn`:

    p.mul_(1 - lr * wd)
    update = exp_avg.clone().mul_(beta1).add(grad, alpha=1 - beta1).sign_()
    mask = (update * grad > 0).to(grad.dtype)
    mask = mask * (mask.numel() / (mask.sum() + 1))
    p.add_(update * mask, alpha=-lr)
    exp_avg.mul_(beta2).add_(grad, alpha=1 - beta2)

The mask's normalization has two forms in the references: caution_normalize "count_plus_one"
(numel / (sum + 1): the paper's Algorithm 1 and C-Optim's c_lion.py) and "mean" (divide by
max(mean(mask), 1e-3): timm adamw.py / lion.py at 3086dd03fdd95bd767d943261130b00333aa1405, and
C-Optim's c_adamw.py since, "more favourable in many cases"). Default "mean". The Lion
momentum update is C-Optim's mul-add (timm writes it as exp_avg.lerp_(grad, 1 - beta2)),
the same as xoptim's Lion.
"""

import numpy as np

from .common import add_scaled, addcdiv, addcmul, ema_update, mean_all


def adamw_hyper(**kw):
    h = dict(lr=1e-3, betas=[0.9, 0.999], eps=1e-8, weight_decay=1e-2, amsgrad=False, maximize=False,
             bias_correction=True, caution=True, caution_normalize="mean")
    h.update(kw)
    return h


def lion_hyper(**kw):
    h = dict(lr=1e-4, betas=[0.9, 0.99], weight_decay=0.0, caution=True, caution_normalize="mean")
    h.update(kw)
    return h


def cautious_mask(update, grad, how, dt):
    mask = ((update * grad).astype(dt) > 0).astype(dt)
    if how == "mean":
        return (mask / max(mean_all(mask, dt), dt(1e-3))).astype(dt)
    assert how == "count_plus_one"
    # mask.numel() / (mask.sum() + 1): a 0-d tensor of the dtype (sum is exact, + 1 and the
    # division round in the dtype).
    scale = dt(dt(mask.size) / dt(dt(np.sum(mask.astype(np.float64))) + dt(1)))
    return (mask * scale).astype(dt)


class CautiousAdamW:
    def __init__(self, h, params, dt):
        assert h["bias_correction"]
        self.h, self.p, self.dt, self.t = h, params, dt, 0
        self.st = []
        for p in params:
            s = {"exp_avg": np.zeros(p.shape, dt), "exp_avg_sq": np.zeros(p.shape, dt)}
            if h["amsgrad"]:
                s["max_exp_avg_sq"] = np.zeros(p.shape, dt)
            self.st.append(s)

    def states(self):
        return self.st

    def step(self, grads):
        h, dt = self.h, self.dt
        self.t += 1
        lr, (beta1, beta2), wd = h["lr"], h["betas"], h["weight_decay"]
        step_size = lr / (1 - beta1 ** self.t)
        bias_correction2_sqrt = (1 - beta2 ** self.t) ** 0.5
        for k, g in enumerate(grads):
            st = self.st[k]
            grad = -g if h["maximize"] else g
            p = (self.p[k] * dt(1.0 - lr * wd)).astype(dt)
            st["exp_avg"] = ema_update(st["exp_avg"], grad, beta1, dt)
            st["exp_avg_sq"] = addcmul((st["exp_avg_sq"] * dt(beta2)).astype(dt), 1 - beta2, grad, grad, dt)
            base = st["exp_avg_sq"]
            if h["amsgrad"]:
                st["max_exp_avg_sq"] = np.maximum(st["max_exp_avg_sq"], st["exp_avg_sq"])
                base = st["max_exp_avg_sq"]
            denom = ((np.sqrt(base) / dt(bias_correction2_sqrt)) + dt(h["eps"])).astype(dt)
            m = st["exp_avg"]
            if h["caution"]:
                m = (m * cautious_mask(m, grad, h["caution_normalize"], dt)).astype(dt)
            self.p[k] = addcdiv(p, -step_size, m, denom, dt)


class CautiousLion:
    def __init__(self, h, params, dt):
        self.h, self.p, self.dt = h, params, dt
        self.st = [{"exp_avg": np.zeros(p.shape, dt)} for p in params]

    def states(self):
        return self.st

    def step(self, grads):
        h, dt = self.h, self.dt
        lr, (beta1, beta2), wd = h["lr"], h["betas"], h["weight_decay"]
        for k, g in enumerate(grads):
            st = self.st[k]
            p = (self.p[k] * dt(1 - lr * wd)).astype(dt)
            update = np.sign(ema_update(st["exp_avg"], g, beta1, dt)).astype(dt)
            if h["caution"]:
                update = (update * cautious_mask(update, g, h["caution_normalize"], dt)).astype(dt)
            self.p[k] = add_scaled(p, -lr, update, dt)
            st["exp_avg"] = ema_update(st["exp_avg"], g, beta2, dt)
