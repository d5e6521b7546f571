"""Memory-saving BPTT for any recurrent cell: keep every k-th state, recompute the rest.

Full BPTT keeps every state of a cell over all T steps, O(T B H) memory.
Here the forward pass keeps only the checkpoints state_0, state_k, state_2k, ...
(and the final state). The backward pass walks the segments from last to
first; for each segment [s, e) it reruns the cell's own forward pass

    state_t = F(theta; x_t, state_{t-1}),   t = s+1..e,   from the stored state_s

(the same operations as the full forward pass), then the cell's backward over
the segment with the gradient dL/dstate_e carried in from the segment after
it, and adds the segment's share of every parameter gradient
(dL/dW = sum_t delta_t^T h_{t-1}, ... for Elman: each is a sum over t).

It uses the cell only through `bptt.layers.cell.Cell`'s forward and backward,
so it works for every cell in `bptt.layers.cells.CELLS`.

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

from bptt.errors import UsageError
from bptt.layers.cell import Cell


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
    """Checkpoints state_0, state_k, state_2k, ... in processing order (flipped if reverse)."""

    cell: Cell
    params: dict  # the cell's local parameters
    X: np.ndarray  # (T, B, D) float or (T, B) ids, processing order
    mask: np.ndarray | None  # (T, B) bool, processing order, or None
    checkpoints: tuple  # one (ceil(T/k), B, H) array per state part: checkpoints[j][i] = part j of state_{i k}
    every: int
    reverse: bool

    @property
    def T(self) -> int:
        return self.X.shape[0]

    def bounds(self, i: int) -> tuple[int, int]:
        """Steps [s, e) of segment i."""
        return i * self.every, min((i + 1) * self.every, self.T)

    def segment(self, i: int, state: tuple | None = None):
        """Rerun segment i from its checkpoint: (s, e, out, state_e, cell cache of the segment)."""
        s, e = self.bounds(i)
        if state is None:
            state = tuple(c[i] for c in self.checkpoints)
        mask = None if self.mask is None else self.mask[s:e]
        out, state_e, cache = self.cell.forward(self.params, self.X[s:e], state, mask)
        return s, e, out, state_e, cache

    def full(self):
        """The cell's own cache over all T steps, recomputed from state_0: what code that
        wants every state at once (diagnostics, RTRL) reads. O(T) memory, by request."""
        X = self.X[::-1] if self.reverse else self.X
        mask = None if self.mask is None else (self.mask[::-1] if self.reverse else self.mask)
        state0 = tuple(c[0] for c in self.checkpoints)
        return self.cell.forward(self.params, X, state0, mask, reverse=self.reverse)[2]

    def state(self, t: int) -> tuple:
        """The state after t steps in processing order, a tuple of (B, H), recomputed
        from the checkpoint before it."""
        i = min(t // self.every, len(self.checkpoints[0]) - 1)
        s, _, _, _, cache = self.segment(i)
        return cache.state(t - s)


def full(cache):
    """A cell cache over all T steps: `cache` itself, or recomputed from a memory-saving one."""
    return cache.full() if isinstance(cache, Cache) else cache


def forward(
    cell: Cell,
    params: dict,
    X: np.ndarray,
    state0: tuple,
    mask: np.ndarray | None = None,
    reverse: bool = False,
    *,
    every: int | str = "auto",
    keep_out: bool = True,
) -> tuple[np.ndarray | None, tuple, Cache]:
    """`cell.forward` that keeps only every k-th state.

    Shapes as in `Cell.forward`. Returns (out, state_n, cache): out (T, B, H) in
    natural time order, or None when keep_out is False; state_n a tuple of (B, H).
    """
    if reverse:
        X = X[::-1]
        mask = None if mask is None else mask[::-1]
    T = X.shape[0]
    k = resolve_every(every, T)
    n = -(-T // k)
    state = tuple(np.asarray(s) for s in state0)
    checkpoints = tuple(np.empty((n,) + s.shape, dtype=s.dtype) for s in state)
    cache = Cache(cell=cell, params=params, X=X, mask=mask, checkpoints=checkpoints, every=k, reverse=reverse)
    out = None
    for i in range(n):
        for c, part in zip(checkpoints, state):
            c[i] = part
        s, e, seg_out, state, _ = cache.segment(i, state)
        if keep_out:
            if out is None:
                out = np.empty((T,) + seg_out.shape[1:], dtype=seg_out.dtype)
            out[s:e] = seg_out
    if out is not None and reverse:
        out = out[::-1]
    return out, tuple(part.copy() for part in state), cache


def backward(
    dout: np.ndarray | None,
    dstate_n: tuple | None,
    cache: Cache,
    need_dX: bool = True,
    horizon: int | None = None,
) -> tuple[np.ndarray | None, dict[str, np.ndarray], tuple]:
    """`cell.backward` over recomputed segments, last to first, carrying dL/dstate.
    Same arguments and returns as `Cell.backward`."""
    if horizon is not None:
        raise UsageError(
            "horizon: per-output truncation needs every state at once; use checkpoint_every=None (no --checkpoint-every) with it"
        )
    if dout is not None and cache.reverse:
        dout = dout[::-1]
    dstate, grads, dX = dstate_n, None, None
    for i in range(len(cache.checkpoints[0]) - 1, -1, -1):
        s, e, _, _, seg = cache.segment(i)
        dX_seg, g, dstate = cache.cell.backward(None if dout is None else dout[s:e], dstate, seg, need_dX)
        if grads is None:
            grads = g
        else:
            for name in grads:
                grads[name] += g[name]
        if dX_seg is not None:
            if dX is None:
                dX = np.empty((cache.T,) + dX_seg.shape[1:], dtype=dX_seg.dtype)
            dX[s:e] = dX_seg
    if dX is not None and cache.reverse:
        dX = dX[::-1]
    return dX, grads, dstate


class Recomputed:
    """A cell run in memory-saving mode: `forward` and `backward` with the cell's own
    signatures (see `bptt.layers.cell.Cell`), keeping every k-th state.

    keep_out=False skips building the (T, B, H) output (when only the final state is read).
    """

    def __init__(self, cell: Cell, every: int | str = "auto", keep_out: bool = True):
        self.cell, self.every, self.keep_out = cell, every, keep_out

    def forward(self, params, X, state0, mask=None, reverse=False):
        return forward(self.cell, params, X, state0, mask, reverse, every=self.every, keep_out=self.keep_out)

    def backward(self, dout, dstate_n, cache, need_dX=True, horizon=None):
        return backward(dout, dstate_n, cache, need_dX, horizon)
