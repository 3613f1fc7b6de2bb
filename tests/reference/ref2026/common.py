"""What every transcription shares: the input hash, the arithmetic model of the case's dtype,
the torch kernels the references call (lerp, addcmul, addcdiv, rsqrt) written out, and
bfloat16 rounding.

Arithmetic model (tests/reference/README.md, "trajectories_2026.json"):
- element-wise: numpy arrays of the case's dtype (float32 or float64); every operation of
  the reference is one numpy operation, rounded once to the dtype, in the reference's order
  (numpy never fuses a multiply and an add);
- reductions (sums, means, norms): accumulated in float64 and rounded once to the dtype;
- host scalars (step counts, bias corrections, lr products): Python floats (double), as in
  the references, rounded to the dtype where they meet a tensor (torch passes a Python
  scalar to a float32 kernel as float32);
- matrix products: float64 products and sums, rounded once to the dtype.
For float64 every rounding above is to float64: the float64 case is the references' math
in double, differing from any other double implementation only in summation order.
"""

import math

import numpy as np

MASK = (1 << 64) - 1
STEPS = 60
CHECKPOINTS = [1, 2, 3, 10, 30, 60]
DTYPES = {"float32": np.float32, "float64": np.float64}


# --------------------------------------------------------------------------- inputs
def u(seed, t, i):
    """tests/reference/generate.py's hash (tests/support/reference.hpp: xoptim_test::u)."""
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


def init_array(seed, shape, dt):
    return np.array([u(seed, 0, i) for i in range(numel(shape))], dtype=np.float64).astype(dt).reshape(shape)


def grad_array(seed, t, shape, gscale, zero_every, dt):
    n = numel(shape)
    g = [0.0 if (zero_every > 0 and i % zero_every == 0) else u(seed, t, i) * gscale for i in range(n)]
    return np.array(g, dtype=np.float64).astype(dt).reshape(shape)


# --------------------------------------------------------------------------- scalars
def s(dt, x):
    """A host scalar as a kernel of dtype dt sees it."""
    return dt(x)


# --------------------------------------------------------------------------- reductions
def sum_squares(x):
    """Sum of squares in float64 (a Python float)."""
    return float(np.sum(np.square(x.astype(np.float64))))


def norm(x, dt):
    """Frobenius norm, accumulated in float64, rounded once to dt (a 0-d dt value)."""
    return dt(math.sqrt(sum_squares(x)))


def norm_item(x, dt):
    """tensor.norm().item(): the dt norm as a Python float."""
    return float(norm(x, dt))


def norm_along(x, axis, dt):
    """torch.linalg.vector_norm(x, dim=axis, keepdim=True)."""
    return np.sqrt(np.sum(np.square(x.astype(np.float64)), axis=axis, keepdims=True)).astype(dt)


def mean_along(x, axis, dt, keepdims=True):
    return np.mean(x.astype(np.float64), axis=axis, keepdims=keepdims).astype(dt)


def mean_all(x, dt):
    return dt(np.mean(x.astype(np.float64)))


# MATMUL_F32 = True sums float32 products in float32 (OpenBLAS sgemm) instead of exactly: the
# generator's measure of what a float32 BLAS changes in Newton-Schulz.
MATMUL_F32 = False


def matmul(a, b, dt):
    if MATMUL_F32 and dt == np.float32:
        return (a.astype(np.float32) @ b.astype(np.float32)).astype(dt)
    return (a.astype(np.float64) @ b.astype(np.float64)).astype(dt)


# --------------------------------------------------------------------------- fused variant
# FUSED = True makes every `c + a * b` of the helpers below one rounding (a fused multiply-add,
# as a compiler contracting a*b + c or torch's vectorized add_(x, alpha) computes it). The
# references are written without it; the generator runs the float32 cases once more with it
# on and records the gap: the spread between two faithful float32 implementations.
FUSED = False


def fma(a, b, c, dt):
    """a * b + c: fused when FUSED (float32 only: the float32 product is exact in float64),
    else two roundings."""
    if FUSED and dt == np.float32:
        return (np.asarray(a, np.float64) * np.asarray(b, np.float64) + np.asarray(c, np.float64)).astype(dt)
    return (np.asarray(c) + np.asarray(a) * np.asarray(b)).astype(dt)


# --------------------------------------------------------------------------- torch kernels
def lerp(start, end, weight, dt):
    """torch.lerp with a scalar weight (ATen's lerp: two forms for numerical accuracy):
    weight < 0.5: start + weight * (end - start); else end - (end - start) * (1 - weight)."""
    w = dt(weight)
    diff = (end - start).astype(dt)
    if abs(float(w)) < 0.5:
        return fma(w, diff, start, dt)
    return fma(-diff, dt(dt(1) - w), end, dt)


def add_scaled(x, alpha, y, dt):
    """x.add_(y, alpha=alpha): x + alpha * y."""
    return fma(dt(alpha), y, x, dt)


def scale_add(x, a, b, y, dt):
    """x.mul_(a).add_(y, alpha=b): x * a + b * y (x * a rounded first)."""
    return fma(dt(b), y, (x * dt(a)).astype(dt), dt)


def addcmul(x, value, a, b, dt):
    """x.addcmul_(a, b, value=value): ATen computes self + value * a * b, left to right."""
    return fma((dt(value) * a).astype(dt), b, x, dt)


def addcdiv(x, value, a, b, dt):
    """x.addcdiv_(a, b, value=value): ATen computes self + value * a / b, left to right."""
    return (x + (dt(value) * a) / b).astype(dt)


def rsqrt(x, dt):
    """torch.rsqrt on CPU: 1 / sqrt(x), two roundings."""
    return (dt(1) / np.sqrt(x)).astype(dt)


def ema_update(m, g, beta, dt):
    """m.mul_(beta).add_(g, alpha=1 - beta)."""
    return scale_add(m, beta, 1 - beta, g, dt)


# --------------------------------------------------------------------------- bfloat16
def bf16_round(x):
    """float32 -> bfloat16 -> float32, round to nearest even (torch's conversion); NaN kept."""
    f = np.atleast_1d(np.asarray(x, dtype=np.float32))
    bits = f.view(np.uint32).astype(np.uint64)
    s16, half, one = np.uint64(16), np.uint64(0x7FFF), np.uint64(1)
    rounded = ((bits + half + ((bits >> s16) & one)) >> s16) << s16
    out = rounded.astype(np.uint32).view(np.float32)
    return np.where(np.isnan(f), f, out).astype(np.float32).reshape(np.shape(x))


def bf16(x):
    """A value computed in float32 (or float64, first rounded to float32 as a float32 kernel
    would produce it), stored as bfloat16, returned as float32."""
    return bf16_round(np.asarray(x, dtype=np.float64).astype(np.float32))


def bf16_ulps(a, b):
    """Largest difference of two arrays of bf16 values in bf16 spacings (2^(e-7) at the larger
    magnitude's exponent e), over the elements above 2^-20 of the largest magnitude."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    m = np.maximum(np.abs(a), np.abs(b))
    keep = m > 2.0 ** -20 * (np.max(m) if m.size else 0.0)
    if not keep.any():
        return 0.0
    spacing = 2.0 ** (np.floor(np.log2(m[keep])) - 7)
    return float(np.max(np.abs(a - b)[keep] / spacing))


# --------------------------------------------------------------------------- output
def flat(a):
    return [float(x) for x in np.asarray(a).reshape(-1)]


def scaled_gap(a, b):
    """max |a - b| / max(|b|, 1) over two lists of arrays: the tests' error measure."""
    worst = 0.0
    for x, y in zip(a, b):
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        if x.size:
            worst = max(worst, float(np.max(np.abs(x - y) / np.maximum(np.abs(y), 1.0))))
    return worst
