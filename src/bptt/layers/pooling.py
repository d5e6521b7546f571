"""Pooling over time for many-to-one models: one vector per sequence from h_1..h_T.

    last: p = h_{T_b}, each sequence's state after its own last real step
          (for a bidirectional layer: the forward state at the end and the
          backward state at the start, as torch's h_n)
    mean: p = (1/T_b) sum_{t valid} h_t              dL/dh_t = m_t dL/dp / T_b
    max:  p_j = max_{t valid} h_tj                   dL/dh_tj = dL/dp_j at the argmax, else 0

"last" is taken from the final states directly (see `bptt.layers.elman`),
so this file implements mean and max.
"""

from __future__ import annotations

import numpy as np

POOLINGS = ("last", "mean", "max")


def mean_forward(Hout: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Hout: (T, B, F); mask: (T, B) or None. Returns (p (B, F), weights (T, B, 1))."""
    T, B = Hout.shape[:2]
    m = np.ones((T, B), dtype=Hout.dtype) if mask is None else mask.astype(Hout.dtype)
    weights = (m / m.sum(axis=0))[:, :, None]
    return (Hout * weights).sum(axis=0), weights


def mean_backward(dp: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """dp: (B, F) -> dL/dh (T, B, F)."""
    return weights * dp[None]


def max_forward(Hout: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Hout: (T, B, F). Returns (p (B, F), argmax over valid t (B, F))."""
    if mask is not None:
        Hout = np.where(mask[:, :, None], Hout, -np.inf)
    idx = Hout.argmax(axis=0)
    return np.take_along_axis(Hout, idx[None], axis=0)[0], idx


def max_backward(dp: np.ndarray, idx: np.ndarray, T: int) -> np.ndarray:
    """dp: (B, F), idx: (B, F) -> dL/dh (T, B, F), dp placed at each argmax."""
    dH = np.zeros((T,) + dp.shape, dtype=dp.dtype)
    np.put_along_axis(dH, idx[None], dp[None], axis=0)
    return dH
