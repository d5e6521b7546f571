"""One Elman recurrent layer, one direction: forward over T steps and exact BPTT.

Forward (row vectors, a batch is a stack of rows):

    a_t = U x_t + W h_{t-1} + b          (pre-activation)
    h_t = f(a_t)                         (hidden state)

With a mask m_t (1 for a real step, 0 for padding) a padded step leaves the
state alone, h_t = h_{t-1}: padding never changes the state, the last entry
of the state buffer is each sequence's true last state, and a reversed
sequence starts at its own last real step. Nothing depends on how much
padding a batch carries.

Backward, with delta_t = dL/da_t and the output gradients g_t = dL/dh_t
coming from above (the head or the next layer):

    dL/dh_t   = g_t + W^T delta_{t+1}    (the term that goes "through time")
    delta_t   = dL/dh_t * f'(a_t) * m_t
    dL/dW     = sum_t delta_t^T h_{t-1}  (one GEMM over all T*B rows)
    dL/dU     = sum_t delta_t^T x_t      (one GEMM, or a scatter-add for ids)
    dL/db     = sum_t delta_t
    dL/dx_t   = U^T delta_t
    dL/dh_0   = W^T delta_1 (+ the carried gradient through padded steps)

Layout (docs/performance.md, "What makes it fast"): everything is time-major. The input term
U x_t + b for all t is one GEMM (or, for one-hot token inputs, one gather of
columns of U) written straight into the state buffer before the time loop;
inside the loop there are only `Hs[t] @ W^T`, an add and f, with `out=`
buffers. f' for every step is one vectorised call before the backward loop.

Inputs X are either float features (T, B, D) or integer token ids (T, B),
which stand for one-hot vectors of size D = U.shape[1]: then U x_t is the
column U[:, id] and dL/dU is a scatter-add.

`Elman` is this layer as a `bptt.layers.cell.Cell` (state = (h,)), what
`RNNModel` runs; the module functions below are its fast loops, which
`bptt.layers.truncation`, `bptt.analysis.diagnostics` and `bptt.analysis.rtrl` reuse.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bptt import blas
from bptt.layers import activations
from bptt.layers import init as initializers
from bptt.layers.cell import Cell
from bptt.layers.embedding import scatter_add_columns
from bptt.layers.truncation import horizon_sweep


@dataclass
class Cache:
    """What backward needs. Arrays are in processing order (flipped if reverse)."""

    X: np.ndarray  # (T, B, D) float or (T, B) ids
    Hs: np.ndarray  # (T+1, B, H): Hs[0] = h_0, Hs[t] = h_t
    pad: np.ndarray | None  # (T, B, 1) bool, True on padded steps; None if no padding
    U: np.ndarray
    W: np.ndarray
    nonlinearity: str
    reverse: bool
    b: np.ndarray | None = None

    def state(self, t: int) -> tuple[np.ndarray]:
        """The state (h_t,) after t steps in processing order, h_t (B, H)."""
        return (self.Hs[t],)


def is_ids(X: np.ndarray) -> bool:
    return X.dtype.kind in "iu"


def input_term(U: np.ndarray, b: np.ndarray | None, X: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out[t] = U x_t + b for all t: one GEMM, or for ids one gather of columns of U.

    X: (T, B, D) float or (T, B) ids; out: (T, B, H), contiguous.
    """
    T, B, H = out.shape
    if is_ids(X) and U.shape[1] > T * B:
        # a large vocabulary: gather only the T*B columns used, not a copy of all of U^T
        np.copyto(out.reshape(T * B, H), np.take(U, X.reshape(-1), axis=1, mode="clip").T)
    elif is_ids(X):
        # mode="clip": the ids are validated where they enter (RNNModel); "raise" with
        # out= buffers the whole result and is several times slower. b is added to the
        # D columns of U before the gather, not to the T*B gathered rows after it.
        np.take(U.T + b if b is not None else np.ascontiguousarray(U.T), X, axis=0, out=out, mode="clip")
        return out
    else:
        np.matmul(X.reshape(T * B, -1), U.T, out=out.reshape(T * B, H))
    if b is not None:
        out += b
    return out


def forward(
    U: np.ndarray,
    W: np.ndarray,
    b: np.ndarray | None,
    X: np.ndarray,
    h0: np.ndarray,
    nonlinearity: str = "tanh",
    mask: np.ndarray | None = None,
    reverse: bool = False,
) -> tuple[np.ndarray, np.ndarray, Cache]:
    """Run the recurrence h_t = f(U x_t + W h_{t-1} + b) over all T steps.

    U: (H, D); W: (H, H); b: (H,) or None; X: (T, B, D) float or (T, B) ids;
    h0: (B, H); mask: (T, B) bool or None. reverse=True runs t = T..1.

    Returns (out, hn, cache): out (T, B, H) is h_t in natural time order
    (a view), hn (B, H) the final state (the state after each sequence's
    last real step), cache for `backward`.
    """
    if reverse:
        X = X[::-1]
        mask = None if mask is None else mask[::-1]
    T, B = X.shape[0], X.shape[1]
    H = W.shape[0]
    Hs = np.empty((T + 1, B, H), dtype=W.dtype)
    Hs[0] = h0
    input_term(U, b, X, out=Hs[1:])  # every step at once, before the time loop
    pad = padding(mask)
    recur(Hs, W, nonlinearity, pad)
    out = Hs[1:][::-1] if reverse else Hs[1:]
    cache = Cache(X=X, Hs=Hs, pad=pad, U=U, W=W, nonlinearity=nonlinearity, reverse=reverse, b=b)
    return out, Hs[T], cache


def padding(mask: np.ndarray | None) -> np.ndarray | None:
    """(T, B) mask -> (T, B, 1) bool, True on padded steps; None when nothing is padded."""
    return None if mask is None or mask.all() else ~mask[:, :, None]


def recur(Hs: np.ndarray, W: np.ndarray, nonlinearity: str, pad: np.ndarray | None) -> None:
    """The forward time loop, in place: Hs[0] = h_0 and Hs[t] holds U x_t + b on entry;
    on exit Hs[t] = h_t = f(Hs[t] + W h_{t-1}) (h_{t-1} on padded steps).

    Hs: (T+1, B, H); pad: (T, B, 1) bool or None.
    """
    WT = W.T
    buf = np.empty(Hs.shape[1:], dtype=Hs.dtype)
    with blas.loop_threads(*buf.shape):
        for t in range(Hs.shape[0] - 1):
            a = Hs[t + 1]
            np.matmul(Hs[t], WT, out=buf)
            a += buf
            activations.apply(nonlinearity, a, out=a)
            if pad is not None:
                np.copyto(a, Hs[t], where=pad[t])  # padded step: h_t = h_{t-1}


def backward(
    dout: np.ndarray | None,
    dhn: np.ndarray | None,
    cache: Cache,
    need_dX: bool = True,
    horizon: int | None = None,
) -> tuple[np.ndarray | None, dict[str, np.ndarray], np.ndarray]:
    """BPTT through one layer in a single backward sweep.

    dout: (T, B, H) dL/dh_t from above, natural time order, or None;
    dhn: (B, H) gradient on the final state, or None.
    horizon: None for full BPTT; an integer tau makes every output gradient
    travel back at most tau steps (see `bptt.layers.truncation`).

    Returns (dX, grads, dh0): dX (T, B, D) in natural order (None for ids
    or when need_dX is False), grads {"U", "W", "b"}, dh0 (B, H).
    """
    X, Hs, pad, W = cache.X, cache.Hs, cache.pad, cache.W
    if dout is not None and cache.reverse:
        dout = dout[::-1]
    delta = local_derivative(cache.nonlinearity, Hs[1:], pad)
    if horizon is None:
        dh0 = sweep(delta, dout, dhn, W, pad)
    else:
        dh0 = horizon_sweep(delta, dout, dhn, W, pad, horizon)
    grads, dX = param_grads(delta, Hs[:-1], X, cache.U, need_dX)
    if dX is not None and cache.reverse:
        dX = dX[::-1]
    return dX, grads, dh0


def local_derivative(nonlinearity: str, Hs: np.ndarray, pad: np.ndarray | None) -> np.ndarray:
    """f'(a_t) * m_t for a block of steps, (T, B, H) from h_t (T, B, H): what delta starts
    as before the backward loop multiplies in dL/dh_t."""
    delta = activations.derivative(nonlinearity, Hs)
    if pad is not None:
        np.copyto(delta, 0, where=pad)
    return delta


def param_grads(delta, Hprev, X, U, need_dX: bool, dR=None) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """dL/dW, dL/db, dL/dU (and dL/dx_t) from delta = dL/da over a block of steps.

    delta: (T, B, G*H) (G = 1 here; a gated cell stacks its G gates); Hprev: (T, B, H),
    Hprev[t] = h_{t-1}; X: (T, B, D) or ids (T, B). dR: the deltas that reach W h_{t-1}
    where they differ from delta (the GRU's n rows, `bptt.layers.gru`), else None.
    One GEMM each over all T*B rows. Returns ({"U", "W", "b"}, dX (T, B, D) or None).
    """
    T, B, GH = delta.shape
    D2 = delta.reshape(T * B, GH)
    R2 = D2 if dR is None else dR.reshape(T * B, GH)
    grads = {"W": R2.T @ Hprev.reshape(T * B, -1), "b": D2.sum(axis=0)}
    dX = None
    if is_ids(X):
        grads["U"] = scatter_add_columns(X.reshape(-1), D2, U.shape[1])
    else:
        grads["U"] = D2.T @ X.reshape(T * B, -1)
        if need_dX:
            dX = (D2 @ U).reshape(T, B, -1)
    return grads, dX


def sweep(delta, dout, dhn, W, pad) -> np.ndarray:
    """The backward time loop of full BPTT; turns delta (f' * m) into dL/da in place.

    Returns dL/dh_0.
    """
    T, B, H = delta.shape
    dh = np.zeros((B, H), dtype=delta.dtype) if dhn is None else np.array(dhn, dtype=delta.dtype)
    nxt = np.empty_like(dh)
    with blas.loop_threads(B, H):
        for t in range(T - 1, -1, -1):
            if dout is not None:
                dh += dout[t]  # dL/dh_t = g_t + W^T delta_{t+1}
            d = delta[t]
            np.multiply(d, dh, out=d)  # delta_t = dL/dh_t * f'(a_t) * m_t
            np.matmul(d, W, out=nxt)  # W^T delta_t, as rows
            if pad is not None:
                np.copyto(nxt, dh, where=pad[t])  # padded step passes dL/dh straight through
            dh, nxt = nxt, dh
    return dh


class Elman(Cell):
    """h_t = f(U x_t + W h_{t-1} + b) as a `Cell`: state (h,), parameters U (H, D), W (H, H), b (H,)."""

    name = "elman"
    gates = 1
    n_states = 1
    nonlinearities = activations.NONLINEARITIES

    def shapes(self, D: int, H: int, bias: bool) -> dict[str, tuple[int, ...]]:
        shapes = {"U": (H, D), "W": (H, H), "b": (H,)}
        if not bias:
            del shapes["b"]
        return shapes

    def init(self, D, H, bias, rng, scheme="pytorch", scale=1.0, dtype="float32") -> dict[str, np.ndarray]:
        p = initializers.recurrent_layer(rng, H, D, scheme, scale, np.dtype(dtype))
        return {k: p[k] for k in self.shapes(D, H, bias)}

    def forward(self, params, X, state0, mask=None, reverse=False):
        out, hn, cache = forward(
            params["U"], params["W"], params.get("b"), X, state0[0], self.nonlinearity, mask, reverse
        )
        return out, (hn,), cache

    def backward(self, dout, dstate_n, cache, need_dX=True, horizon=None):
        dhn = None if dstate_n is None else dstate_n[0]
        dX, grads, dh0 = backward(dout, dhn, cache, need_dX, horizon)
        if cache.b is None:
            del grads["b"]
        return dX, grads, (dh0,)

    def step(self, params, x, state):
        U, W, b = params["U"], params["W"], params.get("b")
        a = U.T[x] if is_ids(x) else x @ U.T
        a = a + state[0] @ W.T
        if b is not None:
            a += b
        h = activations.apply(self.nonlinearity, a, out=a)
        return h, (h,)
