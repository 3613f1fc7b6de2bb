"""Muon's newer iterations: per-step coefficient tables (Polar Express), NorMuon's neuron-wise
second moment, and Newton-Schulz with bf16 products as torch.optim.Muon computes it.

Newton-Schulz, one iteration per row of a coefficient table (the last row repeats):
    X = G viewed as (shape[0], rest), transposed when it has more rows than columns
    X = X / (||X||_F * ns_norm_scale + eps)         ns_norm "add_eps" (Keller Jordan, Polar Express)
    X = X / max(||X||_F, eps)                       ns_norm "clamp_eps" (torch.optim.Muon)
    for (a, b, c) in table: A = X X^T; B = b A + (c A) A; X = a X + B X
  `c * A @ A` is (c * A) @ A in Python, so written; the transpose is undone at the end.

- Polar Express (Amsel, Persson, Musco, Gower 2025, arXiv 2505.16932): the published table of
  NoahAmsel/PolarExpress polar_express/basic.py at 7f0fb5730e3d5946f96b07404bbe476515f2caec
  (optimal_composition(l=1e-3, num_iters=8, safety_factor_eps=1e-2, cushion=0.02)), every row
  but the last divided by (1.01, 1.01^3, 1.01^5) as that file does, and
  X / (||X|| * 1.01 + 1e-7). POLAR_EXPRESS below is the table after that division.
  modded-nanogpt's five-row table (2% safety factor, KellerJordan/modded-nanogpt train_gpt.py)
  is POLAR_EXPRESS_NANOGPT, for reference; no case uses it.
- torch.optim.Muon (PyTorch >= 2.9), pytorch/pytorch torch/optim/_muon.py at
  098e03f91de9384cc3afdf5c8b9a6bbc442bd66a, `_zeropower_via_newtonschulz` (use_addmm False) and
  `_single_tensor_muon`:
      buf.lerp_(grad, 1 - momentum); update = grad.lerp(buf, momentum) if nesterov else buf
      ortho = update.bfloat16(); transpose if tall; ortho.div_(ortho.norm().clamp(min=eps))
      gram = ortho @ ortho.T; gram_update = b * gram + c * gram @ gram
      ortho = a * ortho + gram_update @ ortho
      param.mul_(1 - lr * weight_decay); param.add_(update, alpha=-lr * adjust)
  adjust = sqrt(max(1, A / B)) ("original") or 0.2 sqrt(max(A, B)) ("match_rms_adamw").
  bf16 model (ns_precision "bf16"): every tensor op rounds its float32 result to bf16 (nearest
  even), as torch's bf16 CPU and CUDA kernels do (float opmath, Python scalars read as float);
  a matrix product is the exact float64 sum of the bf16 products, rounded to float32, then to
  bf16 (a float32 accumulator rounds differently in the rare ties: measured in the generator
  as the "bf16 accumulation spread").
- NorMuon (Li, Liu, Liang, Chen, Zhao 2025, arXiv 2510.05491): zichongli5/NorMuon normuon.py at
  e5aaaf42fac9f466b973d6cad3dea033cdf4e370, `normuon_update`, line for line:
      momentum.lerp_(grad, 1 - beta); update = grad.lerp_(momentum, beta) if nesterov else momentum
      update = NS(update)
      vnorm = update.norm(); v_mean = mean(update * update, dim=-1, keepdim)      (per row)
      second_momentum.lerp_(v_mean, 1 - beta2)                                   shape (rows, 1)
      update.mul_(1 / (second_momentum.sqrt() + 1e-10))
      update.mul_(vnorm / (update.norm() + 1e-10))                 normuon_scale "preserve_norm"
      update *= sqrt(max(1, rows / cols))                          (lr_adjust "original")
      p.mul_(1 - lr * wd) (if wd); p.add_(update, alpha=-lr)
  normuon_scale "rms" is the paper's Algorithm 1 instead: lr_hat = 0.2 lr sqrt(m n) / ||O_hat||_F,
  p = p (1 - lr wd) - lr_hat O_hat (lr_adjust unused). The repository reshapes a 4-D update back
  to 4-D before its statistics (so they run over the last dimension only); here every statistic
  is of the 2-D view (shape[0], rest), the matrix the paper's m x n means, and rows/cols are
  the view's.

Momentum: the SPEC's m = mu m + (1 - mu) g, u = (1 - mu) g + mu m for the plain and Polar Express
cases (xoptim's Muon), torch's lerp forms for the torch.optim.Muon and NorMuon cases; the case's
"source" says which.
"""

import math

import numpy as np

from .common import add_scaled, bf16, bf16_round, lerp, matmul, mean_along, norm, norm_item, scale_add

KELLER = [[3.4445, -4.7750, 2.0315]]

_PE_RAW = [
    (8.28721201814563, -23.595886519098837, 17.300387312530933),
    (4.107059111542203, -2.9478499167379106, 0.5448431082926601),
    (3.9486908534822946, -2.908902115962949, 0.5518191394370137),
    (3.3184196573706015, -2.488488024314874, 0.51004894012372),
    (2.300652019954817, -1.6689039845747493, 0.4188073119525673),
    (1.891301407787398, -1.2679958271945868, 0.37680408948524835),
    (1.8750014808534479, -1.2500016453999487, 0.3750001645474248),
    (1.875, -1.25, 0.375),
]
POLAR_EXPRESS = [[a / 1.01, b / 1.01 ** 3, c / 1.01 ** 5] for (a, b, c) in _PE_RAW[:-1]] + [list(_PE_RAW[-1])]

POLAR_EXPRESS_NANOGPT = [
    [8.156554524902461, -22.48329292557795, 15.878769915207462],
    [4.042929935166739, -2.808917465908714, 0.5000178451051316],
    [3.8916678022926607, -2.772484153217685, 0.5060648178503393],
    [3.285753657755655, -2.3681294933425376, 0.46449024233003106],
    [2.3465413258596377, -1.7097828382687081, 0.42323551169305323],
]


def hyper(**kw):
    """xoptim's muon keys (tests/reference/generate.py) and the new ones, defaults = today's Muon."""
    h = dict(lr=0.02, momentum=0.95, nesterov=True, weight_decay=0.0, ns_steps=5, ns_coefficients=KELLER, eps=1e-7,
             lr_adjust="original", ns_norm="add_eps", ns_norm_scale=1.0, ns_precision="working", normuon=False,
             beta2=0.95, normuon_eps=1e-10, normuon_scale="preserve_norm")
    h.update(kw)
    return h


def matrix_view(shape):
    return shape[0], numel_rest(shape)


def numel_rest(shape):
    n = 1
    for d in shape[1:]:
        n *= d
    return n


def _bf16_matmul(a, b, accumulate):
    if accumulate == "f64":
        return bf16(a.astype(np.float64) @ b.astype(np.float64))
    if accumulate == "f32":
        return bf16_round(a.astype(np.float32) @ b.astype(np.float32))
    if accumulate == "f32_reversed":
        return bf16_round(np.ascontiguousarray(a[:, ::-1]).astype(np.float32)
                          @ np.ascontiguousarray(b[::-1, :]).astype(np.float32))
    raise ValueError(accumulate)


def newton_schulz(G, h, dt, accumulate="f64", narrow_scalars=False):
    """Orthogonalizes the 2-D array G; returns an array of dt (bf16 values widened to float32
    when ns_precision is "bf16"). bf16: `accumulate` "f64" (the reference), "f32" or "f32_reversed"
    (float32 sums by OpenBLAS, in two orders: the spread measurements); `narrow_scalars` rounds
    the Python scalars of the multiplies to bf16 first, as torch 1.13 did (the cross-check
    against torch 1.13's bf16 kernels; torch >= 2 reads them as float, see the module doc)."""
    table, steps, eps = h["ns_coefficients"], h["ns_steps"], h["eps"]
    rows = [table[min(i, len(table) - 1)] for i in range(steps)]
    tall = G.shape[0] > G.shape[1]
    if h["ns_precision"] == "bf16":
        def f(x):
            return np.float32(bf16(x)) if narrow_scalars else np.float32(x)
        X = bf16(G.astype(np.float32))
        if tall:
            X = X.T
        n = bf16(math.sqrt(float(np.sum(np.square(X.astype(np.float64))))))
        if h["ns_norm"] == "clamp_eps":
            assert h["ns_norm_scale"] == 1.0
            X = bf16(X / np.maximum(n, np.float32(bf16(eps))))
        else:
            # `norm * 1.01` (mul: the scalar read as float), `+ 1e-7` (add: ATen narrows an added
            # Python scalar to the tensor's dtype, bf16), then the division by that 0-d tensor.
            d = n if h["ns_norm_scale"] == 1.0 else bf16(n * f(h["ns_norm_scale"]))
            X = bf16(X / bf16(d + np.float32(bf16(eps))))
        for a, b, c in rows:
            A = _bf16_matmul(X, X.T, accumulate)
            B = bf16(bf16(f(b) * A) + _bf16_matmul(bf16(f(c) * A), A, accumulate))
            X = bf16(bf16(f(a) * X) + _bf16_matmul(B, X, accumulate))
        X = X.astype(np.float32)
    else:
        X = G.astype(dt)
        if tall:
            X = X.T
        n = norm(X, dt)
        if h["ns_norm"] == "clamp_eps":
            assert h["ns_norm_scale"] == 1.0
            X = (X / max(n, dt(eps))).astype(dt)
        else:
            d = n if h["ns_norm_scale"] == 1.0 else dt(n * dt(h["ns_norm_scale"]))
            X = (X / dt(d + dt(eps))).astype(dt)
        for a, b, c in rows:
            A = matmul(X, X.T, dt)
            B = add_scaled(matmul((dt(c) * A).astype(dt), A, dt), b, A, dt)
            X = add_scaled(matmul(B, X, dt), a, X, dt)
    return (X.T if tall else X).astype(dt)


def lr_adjust(h, rows, cols):
    if h["lr_adjust"] == "original":
        return math.sqrt(max(1.0, rows / cols))
    return 0.2 * math.sqrt(max(rows, cols))


class Muon:
    """momentum_form "ema" (SPEC, xoptim's Muon) or "lerp" (torch.optim.Muon, NorMuon)."""

    def __init__(self, h, params, dt, momentum_form, accumulate="f64"):
        self.h, self.p, self.dt, self.form, self.accumulate = h, params, dt, momentum_form, accumulate
        self.st = []
        for p in params:
            assert p.ndim >= 2
            s = {"momentum_buffer": np.zeros(p.shape, dt)}
            if h["normuon"]:
                s["second_momentum_buffer"] = np.zeros((p.shape[0], 1), dt)
            self.st.append(s)
        self.last_updates = []

    def states(self):
        return self.st

    def step(self, grads):
        h, dt = self.h, self.dt
        mu, lr, wd = h["momentum"], h["lr"], h["weight_decay"]
        self.last_updates = []
        for k, g in enumerate(grads):
            st, p = self.st[k], self.p[k]
            rows, cols = matrix_view(p.shape)
            if self.form == "lerp":
                st["momentum_buffer"] = lerp(st["momentum_buffer"], g, 1 - mu, dt)
                u = lerp(g, st["momentum_buffer"], mu, dt) if h["nesterov"] else st["momentum_buffer"]
            else:
                st["momentum_buffer"] = scale_add(st["momentum_buffer"], mu, 1 - mu, g, dt)
                u = scale_add(g, 1 - mu, mu, st["momentum_buffer"], dt) if h["nesterov"] else st["momentum_buffer"]
            O = newton_schulz(u.reshape(rows, cols), h, dt, self.accumulate)
            self.last_updates.append(O.reshape(p.shape))
            if h["normuon"]:
                self.p[k] = self._normuon(p, O, st, rows, cols).reshape(p.shape)
                continue
            scale = lr_adjust(h, rows, cols)
            p = (p * dt(1 - lr * wd)).astype(dt)
            if self.form == "lerp":
                self.p[k] = add_scaled(p, -lr * scale, O.reshape(p.shape), dt)  # add_(update, alpha=-adjusted_lr)
            else:
                self.p[k] = add_scaled(p, -(lr * scale), O.reshape(p.shape), dt)  # sub_(lr * scale * O)

    def _normuon(self, p, O, st, rows, cols):
        h, dt = self.h, self.dt
        eps, lr, wd = h["normuon_eps"], h["lr"], h["weight_decay"]
        P = p.reshape(rows, cols)
        vnorm = norm(O, dt)
        v_mean = mean_along((O * O).astype(dt), -1, dt)
        st["second_momentum_buffer"] = lerp(st["second_momentum_buffer"], v_mean, 1 - h["beta2"], dt)
        step_size = (dt(1) / (np.sqrt(st["second_momentum_buffer"]) + dt(eps))).astype(dt)
        O_hat = (O * step_size).astype(dt)
        if h["normuon_scale"] == "preserve_norm":
            O_hat = (O_hat * dt(vnorm / dt(norm(O_hat, dt) + dt(eps)))).astype(dt)
            O_hat = (O_hat * dt(lr_adjust(h, rows, cols))).astype(dt)
            if wd:
                P = (P * dt(1 - lr * wd)).astype(dt)
            return add_scaled(P, -lr, O_hat, dt)
        assert h["normuon_scale"] == "rms"
        lr_hat = 0.2 * lr * math.sqrt(rows * cols) / norm_item(O_hat, dt)
        P = (P * dt(1 - lr * wd)).astype(dt)
        return add_scaled(P, -lr_hat, O_hat, dt)
