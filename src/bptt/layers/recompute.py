"""Memory-saving BPTT for one Elman layer: keep every k-th state, recompute the rest.

Full BPTT (`bptt.layers.elman`) keeps every hidden state h_1..h_T, O(T B H)
memory. Here the forward pass keeps only the checkpoints h_0, h_k, h_2k, ...
(and the final state). The backward pass walks the segments from last to
first; for each segment [s, e) it recomputes

    h_t = f(U x_t + W h_{t-1} + b),   t = s+1..e,   from the stored h_s

(the same recurrence and the same operations as the full forward pass), then runs the usual sweep
over the segment with the gradient dL/dh_e carried in from the segment after
it, and adds the segment's share of

    dL/dW = sum_t delta_t^T h_{t-1},  dL/dU = sum_t delta_t^T x_t,  dL/db = sum_t delta_t.

Memory: (T/k + 1) checkpoints plus one segment of k states, O(sqrt T) states
for k ~ sqrt T (`every="auto"`), for about one extra forward pass of time.
The gradients are those of full BPTT (equal to rounding; tests check 1e-12
in float64).

What it does not cover: the per-output horizon of `bptt.layers.truncation` (its
lagged sweep needs every state at once): `backward` refuses a horizon. The
layer's input X (token ids, or the layer below's output) is still kept whole;
a layer's own output (T, B, H) is only built when something above needs it
(`keep_out`): a sequence head, mean/max pooling, or another layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bptt.layers import elman


def resolve_every(every: int | str, T: int) -> int:
    """The segment length k: an integer >= 1, or "auto" for ceil(sqrt(T))."""
    if every == "auto":
        return max(1, math.isqrt(T - 1) + 1) if T > 1 else 1
    if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
        raise ValueError(f"checkpoint_every: got {every!r}, expected an integer >= 1 or 'auto'")
    return int(every)


def check_every(every) -> None:
    """Validate the option where it enters (RNNModel)."""
    if every is not None:
        resolve_every(every, 1)


@dataclass
class Cache:
    """Checkpoints h_0, h_k, h_2k, ... in processing order (flipped if reverse)."""

    X: np.ndarray  # (T, B, D) float or (T, B) ids, processing order
    checkpoints: np.ndarray  # (ceil(T/k), B, H): checkpoints[i] = h_{i k}
    every: int
    pad: np.ndarray | None  # (T, B, 1) bool or None
    U: np.ndarray
    W: np.ndarray
    b: np.ndarray | None
    nonlinearity: str
    reverse: bool

    @property
    def T(self) -> int:
        return self.X.shape[0]

    def segment(self, i: int) -> tuple[int, int, np.ndarray]:
        """Recompute segment i: (s, e, Hs) with Hs (e-s+1, B, H), Hs[j] = h_{s+j}."""
        s, e = i * self.every, min((i + 1) * self.every, self.T)
        Hs = np.empty((e - s + 1,) + self.checkpoints.shape[1:], dtype=self.W.dtype)
        Hs[0] = self.checkpoints[i]
        elman.input_term(self.U, self.b, self.X[s:e], out=Hs[1:])
        elman.recur(Hs, self.W, self.nonlinearity, None if self.pad is None else self.pad[s:e])
        return s, e, Hs

    @property
    def Hs(self) -> np.ndarray:
        """Every state, (T+1, B, H), recomputed: what code that wants all of them at once
        (diagnostics, RTRL) reads from a full-BPTT cache. O(T) memory, by request."""
        n = len(self.checkpoints)
        Hs = np.empty((self.T + 1,) + self.checkpoints.shape[1:], dtype=self.W.dtype)
        for i in range(n):
            s, e, seg = self.segment(i)
            Hs[s : e + 1] = seg
        return Hs

    def state(self, t: int) -> np.ndarray:
        """h_t in processing order, (B, H), recomputed from the checkpoint before it."""
        i = min(t // self.every, len(self.checkpoints) - 1)
        s, _, Hs = self.segment(i)
        return Hs[t - s]


def forward(
    U: np.ndarray,
    W: np.ndarray,
    b: np.ndarray | None,
    X: np.ndarray,
    h0: np.ndarray,
    nonlinearity: str = "tanh",
    mask: np.ndarray | None = None,
    reverse: bool = False,
    *,
    every: int | str = "auto",
    keep_out: bool = True,
) -> tuple[np.ndarray | None, np.ndarray, Cache]:
    """`elman.forward` that keeps only every k-th state.

    Shapes as in `elman.forward`. Returns (out, hn, cache): out (T, B, H) in
    natural time order, or None when keep_out is False; hn (B, H).
    """
    if reverse:
        X = X[::-1]
        mask = None if mask is None else mask[::-1]
    T, B, H = X.shape[0], X.shape[1], W.shape[0]
    k = resolve_every(every, T)
    pad = elman.padding(mask)
    n = -(-T // k)
    checkpoints = np.empty((n, B, H), dtype=W.dtype)
    out = np.empty((T, B, H), dtype=W.dtype) if keep_out else None
    cache = Cache(
        X=X, checkpoints=checkpoints, every=k, pad=pad, U=U, W=W, b=b, nonlinearity=nonlinearity, reverse=reverse
    )
    h = np.asarray(h0, dtype=W.dtype)
    for i in range(n):
        checkpoints[i] = h
        s, e, Hs = cache.segment(i)
        if out is not None:
            out[s:e] = Hs[1:]
        h = Hs[-1]
    if out is not None and reverse:
        out = out[::-1]
    return out, h.copy(), cache


def backward(
    dout: np.ndarray | None,
    dhn: np.ndarray | None,
    cache: Cache,
    need_dX: bool = True,
    horizon: int | None = None,
) -> tuple[np.ndarray | None, dict[str, np.ndarray], np.ndarray]:
    """`elman.backward` over recomputed segments, last to first. Same arguments and returns."""
    if horizon is not None:
        raise ValueError(
            "horizon: per-output truncation needs every state at once; use checkpoint_every=None (no --checkpoint-every) with it"
        )
    X, W, U, pad = cache.X, cache.W, cache.U, cache.pad
    if dout is not None and cache.reverse:
        dout = dout[::-1]
    B, H = cache.checkpoints.shape[1:]
    dh = np.zeros((B, H), dtype=W.dtype) if dhn is None else np.array(dhn, dtype=W.dtype)
    grads = {"U": np.zeros_like(U), "W": np.zeros_like(W), "b": np.zeros(H, dtype=W.dtype)}
    dX = None
    if need_dX and not elman.is_ids(X):
        dX = np.empty(X.shape[:2] + (U.shape[1],), dtype=W.dtype)
    for i in range(len(cache.checkpoints) - 1, -1, -1):
        s, e, Hs = cache.segment(i)
        seg_pad = None if pad is None else pad[s:e]
        delta = elman.local_derivative(cache.nonlinearity, Hs[1:], seg_pad)
        dh = elman.sweep(delta, None if dout is None else dout[s:e], dh, W, seg_pad)
        g, dX_seg = elman.param_grads(delta, Hs[:-1], X[s:e], U, dX is not None)
        for name in grads:
            grads[name] += g[name]
        if dX is not None:
            dX[s:e] = dX_seg
    if dX is not None and cache.reverse:
        dX = dX[::-1]
    return dX, grads, dh
