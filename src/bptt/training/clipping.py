"""Gradient clipping on a dict of gradients, in place, returning what a log line needs.

    global norm (Pascanu, Mikolov & Bengio 2013, Algorithm 1), ||g|| over all tensors together:
        if ||g|| > threshold:  g <- (threshold / ||g||) g
    per tensor:  the same rule on each tensor's own norm
    by value (char-rnn's grad_clip):  g <- min(max(g, -clip), clip), element-wise

torch.nn.utils.clip_grad_norm_ computes the same norm but scales by
threshold / (||g|| + 1e-6), and also when ||g|| is within 1e-6 below the
threshold; here the clipped norm is the threshold itself (relative difference
1e-6 / ||g||, see tests/test_optim.py).

Norms are accumulated in float64 whatever the gradients' dtype; the scaling
is done in place in the gradients' dtype. A non-finite norm (a NaN or an
overflow) is returned as it is and nothing is scaled: multiplying by
threshold / inf or NaN would only hide the divergence that the caller rolls back.
"""

from __future__ import annotations

import math

import numpy as np

from bptt import checks

BLOCK = 2**16  # elements converted to float64 at a time: no float64 copy of a whole large tensor


def tensor_norm(g: np.ndarray) -> float:
    """||g||_2 of one tensor, accumulated in float64 (a float32 tensor block by block)."""
    x = np.asarray(g).ravel()
    with np.errstate(over="ignore", invalid="ignore"):  # inf and NaN are answers here, not errors
        norm = math.sqrt(_sum_of_squares(x))
    if math.isinf(norm) and np.isfinite(x).all():  # float64 squares above 1e308 overflowed: rescale
        x = x.astype(np.float64, copy=False)
        scale = float(np.max(np.abs(x)))
        y = x / scale
        norm = scale * math.sqrt(float(np.dot(y, y)))
    return norm


def _sum_of_squares(x: np.ndarray) -> float:
    """sum x_i^2 in float64; x: 1-D. A large float32 x is converted one cache-sized block at a
    time (2.5M float32: 3x less CPU time than a float64 copy and one dot, under load)."""
    if x.dtype == np.float64 or x.size <= BLOCK:
        x = x.astype(np.float64, copy=False)
        return float(np.dot(x, x))
    buf = np.empty(BLOCK, np.float64)
    total = 0.0
    for s in range(0, x.size, BLOCK):
        b = buf[: min(BLOCK, x.size - s)]
        b[...] = x[s : s + BLOCK]
        total += float(np.einsum("i,i->", b, b))  # not BLAS ddot: its thread hand-offs cost more than the sum
    return total


def global_norm(grads: dict[str, np.ndarray]) -> float:
    """||g||_2 over all tensors together, as if they were one vector."""
    return math.hypot(*(tensor_norm(g) for g in grads.values()))  # hypot: no overflow of the squares


def _scale(g: np.ndarray, factor: float) -> None:
    g *= g.dtype.type(factor)


def clip_global_norm(grads: dict[str, np.ndarray], max_norm: float) -> tuple[float, bool]:
    """If ||g|| > max_norm, scale every gradient by max_norm / ||g||. Returns (||g|| before, clipped?)."""
    max_norm = float(checks.POSITIVE_NUMBER.check("--clip-norm", max_norm))
    norm = global_norm(grads)
    if not (math.isfinite(norm) and norm > max_norm):
        return norm, False
    for g in grads.values():
        _scale(g, max_norm / norm)
    return norm, True


def clip_per_tensor_norm(grads: dict[str, np.ndarray], max_norm: float) -> dict[str, float]:
    """Clip each tensor to its own norm max_norm. Returns {name: its norm before}."""
    max_norm = float(checks.POSITIVE_NUMBER.check("--clip-norm", max_norm))
    norms = {}
    for name, g in grads.items():
        n = norms[name] = tensor_norm(g)
        if math.isfinite(n) and n > max_norm:
            _scale(g, max_norm / n)
    return norms


def clip_value(grads: dict[str, np.ndarray], clip: float) -> int:
    """Clip every element to [-clip, clip]. Returns how many elements were changed (NaNs stay NaN)."""
    clip = float(checks.POSITIVE_NUMBER.check("--clip-value", clip))
    n = 0
    for g in grads.values():
        c = g.dtype.type(clip)
        n += int(np.count_nonzero(g > c)) + int(np.count_nonzero(g < -c))
        np.clip(g, -c, c, out=g)
    return n
