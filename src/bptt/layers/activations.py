"""Hidden-state nonlinearities f in h_t = f(a_t), and their derivatives f'(a_t).

Every derivative here is written in terms of the *output* h = f(a), so the
backward pass needs only the stored hidden states, never the pre-activations:

    tanh:      f'(a) = 1 - h^2
    sigmoid:   f'(a) = h (1 - h)
    relu:      f'(a) = 1[h > 0]
    identity:  f'(a) = 1

Both functions work on whole (T, B, H) blocks so that the derivative for all
time steps is one vectorised call outside the backward time loop.
"""

from __future__ import annotations

import numpy as np

NONLINEARITIES = ("tanh", "relu", "sigmoid", "identity")


def _sigmoid(a: np.ndarray, out: np.ndarray) -> np.ndarray:
    # sigmoid(a) = (1 + tanh(a/2)) / 2: one ufunc that never overflows in exp.
    np.multiply(a, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


def apply(name: str, a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """h = f(a), written into `out` (which may be `a` itself)."""
    if out is None:
        out = np.empty_like(a)
    if name == "tanh":
        return np.tanh(a, out=out)
    if name == "relu":
        return np.maximum(a, 0, out=out)
    if name == "sigmoid":
        return _sigmoid(a, out)
    if name == "identity":
        if out is not a:
            np.copyto(out, a)
        return out
    raise ValueError(f"nonlinearity: got {name!r}, expected one of {', '.join(NONLINEARITIES)}")


def derivative(name: str, h: np.ndarray) -> np.ndarray:
    """f'(a) as a function of h = f(a); same shape as h."""
    if name == "tanh":
        d = np.multiply(h, h)
        np.subtract(1.0, d, out=d)
        return d
    if name == "relu":
        return (h > 0).astype(h.dtype)
    if name == "sigmoid":
        d = np.subtract(1.0, h)
        d *= h
        return d
    if name == "identity":
        return np.ones_like(h)
    raise ValueError(f"nonlinearity: got {name!r}, expected one of {', '.join(NONLINEARITIES)}")


def gamma(name: str) -> float:
    """Upper bound of |f'| (Pascanu et al. 2013): 1 for tanh/relu/identity, 1/4 for sigmoid."""
    return 0.25 if name == "sigmoid" else 1.0
