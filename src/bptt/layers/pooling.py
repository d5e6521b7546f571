"""Pooling over time for many-to-one models: one vector per sequence from h_1..h_T.

    last: p = h_{T_b}, each sequence's state after its own last real step
          (for a bidirectional layer: the forward state at the end and the
          backward state at the start, as torch's h_n)
    mean: p = (1/T_b) sum_{t valid} h_t              dL/dh_t = m_t dL/dp / T_b
    max:  p_j = max_{t valid} h_tj                   dL/dh_tj = dL/dp_j at the argmax, else 0

"last" alone is taken from the final states directly (see `bptt.layers.elman`);
this file implements mean and max, "last" read from the outputs, and their
concatenation: a comma list
such as "mean,max" gives the head

    p = [p_1; p_2; ...]  (B, n * F),   dL/dp_k = the k-th F-wide slice of dL/dp

so V is (K, n * F) and each pooling's gradient flows back on its own.
"""

from __future__ import annotations

import numpy as np

from bptt.errors import UsageError

POOLINGS = ("last", "mean", "max")


def parse(spec) -> tuple[str, ...]:
    """ "mean,max" -> ("mean", "max"): one or more of POOLINGS, comma-separated, none repeated."""
    kinds = tuple(k.strip() for k in spec.split(",")) if isinstance(spec, str) else ()
    expected = f"one or more of {', '.join(POOLINGS)}, comma-separated, without repeats"
    if not kinds or any(k not in POOLINGS for k in kinds) or len(set(kinds)) != len(kinds):
        raise UsageError(f"pooling: got {spec!r}, expected {expected}")
    return kinds


def forward(
    kinds: tuple[str, ...], Hout: np.ndarray, mask: np.ndarray | None, directions: int = 1
) -> tuple[np.ndarray, list]:
    """The concatenated pooled vector of Hout (T, B, F), F = directions * H, the top layer's outputs.
    Returns (p (B, n * F), one bookkeeping entry per kind). Here "last" is read from Hout: the
    forward half at each sequence's last valid step, the backward half at step 0 (what the final
    states are), so that whatever was applied to Hout (output dropout) applies to it too."""
    parts, infos = [], []
    for kind in kinds:
        if kind == "last":
            p, info = last_forward(Hout, mask, directions)
        elif kind == "mean":
            p, info = mean_forward(Hout, mask)
        else:
            p, info = max_forward(Hout, mask)
        parts.append(p)
        infos.append(info)
    return (parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)), infos


def backward(kinds: tuple[str, ...], dp: np.ndarray, infos: list, T: int) -> np.ndarray:
    """dp: (B, n * F) -> dL/dHout (T, B, F), the sum of each kind's gradient."""
    F = dp.shape[1] // len(kinds)
    dH = None
    for k, (kind, info) in enumerate(zip(kinds, infos)):
        d = dp[:, k * F : (k + 1) * F]
        if kind == "last":
            g = last_backward(d, info, T)
        elif kind == "mean":
            g = mean_backward(d, info)
        else:
            g = max_backward(d, info, T)
        dH = g if dH is None else dH + g
    return dH


def last_forward(Hout: np.ndarray, mask: np.ndarray | None, directions: int) -> tuple[np.ndarray, np.ndarray]:
    """Hout: (T, B, F). Returns (p (B, F), the step each unit was read at (B, F)): T_b - 1 for the
    forward direction's units, 0 for the backward direction's."""
    T, B, F = Hout.shape
    ends = np.full(B, T - 1) if mask is None else mask.sum(axis=0) - 1
    idx = np.repeat(ends[:, None], F, axis=1)
    if directions == 2:
        idx[:, F // 2 :] = 0
    return np.take_along_axis(Hout, idx[None], axis=0)[0], idx


def last_backward(dp: np.ndarray, idx: np.ndarray, T: int) -> np.ndarray:
    """dp: (B, F), idx: (B, F) -> dL/dh (T, B, F), dp placed at the steps read."""
    return max_backward(dp, idx, T)


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
