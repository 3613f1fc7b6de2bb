"""Adafactor (Shazeer & Stern 2018), two references.

variant "torch": torch.optim.Adafactor, pytorch/pytorch torch/optim/_adafactor.py at
051d6a09bb159a48ac11006c454c0c979511d0f3, `_single_tensor_adafactor` (PyTorch >= 2.5), line for
line:

    grad = -grad if maximize
    one_minus_beta2_t = step ** beta2_decay
    rho_t = min(lr, 1 / step ** 0.5)
    alpha = max(eps2, param.norm(2).item() / numel ** 0.5) * rho_t     (before the decay)
    param.mul_(1 - lr * weight_decay)                                   (if weight_decay != 0)
    dim > 1:  row_mean = vector_norm(grad, dim=-1, keepdim).square_().div_(grad.size(-1))
              row_var.lerp_(row_mean, one_minus_beta2_t)                shape (..., R, 1)
              col_mean = vector_norm(grad, dim=-2, keepdim).square_().div_(grad.size(-2))
              col_var.lerp_(col_mean, one_minus_beta2_t)                shape (..., 1, C)
              var_estimate = row_var @ col_var
              var_estimate.div_(row_var.mean(dim=-2, keepdim).clamp_(min=eps1))
    else:     variance.lerp_(grad * grad, one_minus_beta2_t); var_estimate = variance.clone()
    update = var_estimate.clamp_(min=eps1 * eps1).rsqrt_(); update.mul_(grad)
    denom = max(1.0, update.norm(2).item() / (numel ** 0.5 * d))
    param.add_(update, alpha=-alpha / denom)

  eps1 None means torch.finfo(param.dtype).eps. Tensors of rank > 2 are factored over their
  last two dimensions, the leading ones batch (row_var (..., R, 1), col_var (..., 1, C)).
  Defaults: lr 1e-2, beta2_decay -0.8, eps (None, 1e-3), d 1.0, weight_decay 0.0,
  maximize False.

variant "transformers": HF transformers' Adafactor, huggingface/transformers
src/transformers/optimization.py at 005edacb6b5dabbf0843e92c6623de9e07ca6241, `Adafactor.step`:

    step += 1; RMS = param.norm(2) / numel ** 0.5                       (before the decay)
    lr = (relative_step ? min(warmup_init ? 1e-6 * step : 1e-2, 1 / sqrt(step)) : lr)
         * (scale_parameter ? max(eps[1], RMS) : 1)
    beta2t = 1 - step ** decay_rate
    update = grad ** 2 + eps[0]
    factored (dim >= 2): row.mul_(beta2t).add_(update.mean(dim=-1), alpha=1 - beta2t)   shape (..., R)
                         col.mul_(beta2t).add_(update.mean(dim=-2), alpha=1 - beta2t)   shape (..., C)
                         update = rsqrt(row / row.mean(dim=-1, keepdim))[..., None]
                                  * rsqrt(col)[..., None, :] * grad
    else:                v.mul_(beta2t).add_(update, alpha=1 - beta2t); update = v.rsqrt() * grad
    update.div_((RMS(update) / clip_threshold).clamp_(min=1.0)); update.mul_(lr)
    beta1: exp_avg.mul_(beta1).add_(update, alpha=1 - beta1); update = exp_avg
    weight_decay != 0: param.add_(param, alpha=-weight_decay * lr)
    param.add_(-update)

  RMS and lr are 0-d tensors of the parameter's dtype there (a norm divided by a Python float),
  so lr is rounded to the dtype; modelled so. Defaults: lr None, eps (1e-30, 1e-3),
  clip_threshold 1.0, decay_rate -0.8, beta1 None, weight_decay 0.0, scale_parameter True,
  relative_step True, warmup_init False.

The two differ in where eps1 goes (a floor under the estimate and the row mean, torch; added
to g^2 before averaging, transformers), in the weight decay's factor (lr, torch; the whole
step size lr * max(eps2, RMS), transformers), in the optional first moment (transformers
only) and in rho's cap (lr, torch; 1e-2 or a warmup, transformers).
"""

import math

import numpy as np

from .common import add_scaled, lerp, mean_along, norm, norm_along, norm_item, rsqrt, scale_add


def torch_hyper(**kw):
    h = dict(variant="torch", lr=1e-2, beta2_decay=-0.8, eps=[None, 1e-3], d=1.0, weight_decay=0.0,
             maximize=False)
    h.update(kw)
    return h


def transformers_hyper(**kw):
    h = dict(variant="transformers", lr=None, eps=[1e-30, 1e-3], clip_threshold=1.0, decay_rate=-0.8,
             beta1=None, weight_decay=0.0, scale_parameter=True, relative_step=True, warmup_init=False)
    h.update(kw)
    return h


class Adafactor:
    def __init__(self, h, params, dt):
        self.h, self.p, self.dt, self.t = h, params, dt, 0
        self.st = []
        for p in params:
            if h["variant"] == "torch":
                if p.ndim > 1:
                    self.st.append({"row_var": np.zeros(p.shape[:-1] + (1,), dt),
                                    "col_var": np.zeros(p.shape[:-2] + (1,) + p.shape[-1:], dt)})
                else:
                    self.st.append({"variance": np.zeros(p.shape, dt)})
            else:
                s = {}
                if h["beta1"] is not None:
                    s["exp_avg"] = np.zeros(p.shape, dt)
                if p.ndim >= 2:
                    s["exp_avg_sq_row"] = np.zeros(p.shape[:-1], dt)
                    s["exp_avg_sq_col"] = np.zeros(p.shape[:-2] + p.shape[-1:], dt)
                else:
                    s["exp_avg_sq"] = np.zeros(p.shape, dt)
                self.st.append(s)

    def step(self, grads):
        self.t += 1
        for k, g in enumerate(grads):
            if self.h["variant"] == "torch":
                self.p[k] = self._torch(self.p[k], g, self.st[k])
            else:
                self.p[k] = self._transformers(self.p[k], g, self.st[k])

    def states(self):
        return self.st

    def _torch(self, p, g, st):
        h, dt, t = self.h, self.dt, float(self.t)
        lr, d, wd = h["lr"], h["d"], h["weight_decay"]
        eps1 = float(np.finfo(dt).eps) if h["eps"][0] is None else h["eps"][0]
        eps2 = h["eps"][1]
        grad = -g if h["maximize"] else g
        one_minus_beta2_t = t ** h["beta2_decay"]
        rho_t = min(lr, 1 / (t ** 0.5))
        alpha = max(eps2, norm_item(p, dt) / (p.size ** 0.5)) * rho_t
        if wd != 0:
            p = (p * dt(1 - lr * wd)).astype(dt)
        if grad.ndim > 1:
            row_mean = (np.square(norm_along(grad, -1, dt)) / dt(grad.shape[-1])).astype(dt)
            st["row_var"] = lerp(st["row_var"], row_mean, one_minus_beta2_t, dt)
            col_mean = (np.square(norm_along(grad, -2, dt)) / dt(grad.shape[-2])).astype(dt)
            st["col_var"] = lerp(st["col_var"], col_mean, one_minus_beta2_t, dt)
            var_estimate = (st["row_var"] * st["col_var"]).astype(dt)  # (..., R, 1) @ (..., 1, C)
            row_var_mean = np.maximum(mean_along(st["row_var"], -2, dt), dt(eps1))
            var_estimate = (var_estimate / row_var_mean).astype(dt)
        else:
            st["variance"] = lerp(st["variance"], (grad * grad).astype(dt), one_minus_beta2_t, dt)
            var_estimate = st["variance"].copy()
        update = rsqrt(np.maximum(var_estimate, dt(eps1 * eps1)), dt)
        update = (update * grad).astype(dt)
        denom = max(1.0, norm_item(update, dt) / ((update.size ** 0.5) * d))
        return add_scaled(p, -alpha / denom, update, dt)

    def _rms(self, x):
        dt = self.dt
        return dt(norm(x, dt) / dt(x.size ** 0.5))

    def _transformers(self, p, g, st):
        h, dt, t = self.h, self.dt, self.t
        eps1, eps2 = h["eps"]
        rms = self._rms(p)
        if h["relative_step"]:
            min_step = 1e-6 * t if h["warmup_init"] else 1e-2
            rel_step_sz = min(min_step, 1.0 / math.sqrt(t))
        else:
            rel_step_sz = h["lr"]
        # max(eps2, RMS) is the 0-d tensor RMS when it wins (then lr = RMS * rel_step_sz is a
        # tensor of the dtype), else the Python float eps2 (then lr is a Python float).
        lr_is_tensor = h["scale_parameter"] and float(rms) > eps2
        if lr_is_tensor:
            lr = float(dt(rms * dt(rel_step_sz)))
        else:
            lr = (eps2 if h["scale_parameter"] else 1.0) * rel_step_sz
        beta2t = 1.0 - math.pow(t, h["decay_rate"])
        update = (np.square(g) + dt(eps1)).astype(dt)
        if g.ndim >= 2:
            row, col = st["exp_avg_sq_row"], st["exp_avg_sq_col"]
            row = scale_add(row, beta2t, 1.0 - beta2t, mean_along(update, -1, dt, keepdims=False), dt)
            col = scale_add(col, beta2t, 1.0 - beta2t, mean_along(update, -2, dt, keepdims=False), dt)
            st["exp_avg_sq_row"], st["exp_avg_sq_col"] = row, col
            r_factor = rsqrt((row / mean_along(row, -1, dt)).astype(dt), dt)[..., :, None]
            c_factor = rsqrt(col, dt)[..., None, :]
            update = (r_factor * c_factor).astype(dt)
            update = (update * g).astype(dt)
        else:
            v = scale_add(st["exp_avg_sq"], beta2t, 1.0 - beta2t, update, dt)
            st["exp_avg_sq"] = v
            update = (rsqrt(v, dt) * g).astype(dt)
        clip = max(dt(self._rms(update) / dt(h["clip_threshold"])), dt(1.0))
        update = (update / clip).astype(dt)
        update = (update * dt(lr)).astype(dt)
        if h["beta1"] is not None:
            b1 = h["beta1"]
            st["exp_avg"] = scale_add(st["exp_avg"], b1, 1 - b1, update, dt)
            update = st["exp_avg"]
        if h["weight_decay"] != 0:
            alpha = dt(dt(-h["weight_decay"]) * dt(lr)) if lr_is_tensor else dt(-h["weight_decay"] * lr)
            p = add_scaled(p, alpha, p, dt)
        return (p + (-update)).astype(dt)
