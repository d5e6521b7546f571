"""What the gated cells (LSTM, GRU) share: stacked gate rows, their initial draws and weight gradients.

A gated cell with G gates keeps its weights stacked by gate, as torch does:
U (G*H, D), W (G*H, H), b (G*H,), gate k in rows k*H .. (k+1)*H. Its
pre-activations and gates are kept gate-first, A (G, T, B, H), so that every
gate's (B, H) block of a step is contiguous for the elementwise calls of the
loops (a strided (B, H) slice of a (B, G*H) row costs 2 to 4x as much per call):

    A[k, t] = U_k x_t + b_k     for all t and k: one call before the time loop (`input_term_by_gate`)
    A[:, t] += W h_{t-1}        in the loop: one matmul call per step for every gate (G GEMMs (B, H) x (H, H))

and in the backward pass, with dA_t = dL/da_t stacked as the rows of U, (B, G*H)
(the input side), and dR_t the deltas that reach W h_{t-1} (the same array for
LSTM; for GRU the n rows differ, see `bptt.layers.gru`):

    dL/dW = sum_t dR_t^T h_{t-1}     dL/dU = sum_t dA_t^T x_t
    dL/db = sum_t dA_t               dL/dx_t = U^T dA_t

each one GEMM (or sum) over all T*B rows, after the loop (`weight_grads`) --
or, when the loop's GEMMs run on one BLAS thread (small steps, `bptt.blas`),
over blocks of steps (`overlapped`): the backward loop runs block by block from
the last step down, and each block's weight gradients are computed on the
second core while the loop goes on through the blocks before it. The sum over
t is the same sum, grouped by block (equal up to round-off, and the grouping
depends only on T and B, not on the number of cores).

A sigmoid gate is computed as sigma(a) = (1 + tanh(a/2)) / 2 (never overflows,
one tanh call for every gate of a step): the sigmoid gates' blocks of A and of
W are halved before the loop (halving is exact in floating point), so one tanh
over all G gates gives tanh(a/2) for the sigmoid gates and tanh(a) for the tanh
ones, and one affine map (or `sigmoid_from_tanh`) finishes the sigmoid gates.
"""

from __future__ import annotations

import numpy as np

from bptt import blas
from bptt.layers import elman
from bptt.layers import init as initializers


def sigmoid_from_tanh(s: np.ndarray) -> np.ndarray:
    """s = tanh(a/2) -> sigma(a) = (1 + s) / 2, in place."""
    s += 1.0
    s *= 0.5
    return s


def one_minus_times(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = x (1 - x): sigma'(a) from sigma(a)."""
    np.subtract(1.0, x, out=out)
    out *= x
    return out


def init_stacked(
    gates: int, D: int, H: int, rng: np.random.Generator, scheme: str, scale: float, dtype
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Initial U (G*H, D), W (G*H, H) and torch's two bias draws b_ih, b_hh (G*H,) for a G-gate cell.

    "pytorch": every entry uniform(-1/sqrt(H), 1/sqrt(H)), as torch.nn.LSTM / GRU
    (the cell sums b_ih and b_hh as it needs them). Any other scheme of
    `bptt.layers.init` is applied to each gate's (H, D) and (H, H) block on its
    own, with zero biases.
    """
    if scheme == "pytorch":
        k = 1.0 / np.sqrt(H)
        U = initializers.uniform(rng, (gates * H, D), k, dtype)
        W = initializers.uniform(rng, (gates * H, H), k, dtype)
        b_ih = initializers.uniform(rng, (gates * H,), k, dtype)
        b_hh = initializers.uniform(rng, (gates * H,), k, dtype)
        return U, W, b_ih, b_hh
    blocks = [initializers.recurrent_layer(rng, H, D, scheme, scale, dtype) for _ in range(gates)]
    U = np.concatenate([p["U"] for p in blocks])
    W = np.concatenate([p["W"] for p in blocks])
    zero = np.zeros(gates * H, dtype=dtype)
    return U, W, zero, zero.copy()


def input_term_by_gate(U: np.ndarray, b: np.ndarray | None, X: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out[k, t] = U_k x_t + b_k for every gate k and step t, gate-first: out (G, T, B, H), so
    that each gate's (B, H) block of a step is contiguous.

    U: (G*H, D); b: (G*H,) or None; X: (T, B, D) floats or (T, B) ids. One matmul call
    (G GEMMs (T*B, D) x (D, H)), or for ids one gather from U^T + b split by gate.
    """
    G, T, B, H = out.shape
    if elman.is_ids(X) and U.shape[1] > T * B:  # a large vocabulary: gather only the T*B columns used
        cols = np.take(U, X.reshape(-1), axis=1, mode="clip")  # (G*H, T*B)
        np.copyto(out.reshape(G, T * B, H), cols.reshape(G, H, T * B).transpose(0, 2, 1))
    elif elman.is_ids(X):  # b added to the D rows of U^T before the gather
        table = (U.T if b is None else U.T + b).reshape(-1, G, H).transpose(1, 0, 2)
        np.take(np.ascontiguousarray(table), X, axis=1, out=out, mode="clip")
        return out
    else:
        np.matmul(X.reshape(T * B, -1), U.reshape(G, H, -1).transpose(0, 2, 1), out=out.reshape(G, T * B, H))
    if b is not None:
        out += b.reshape(G, 1, 1, H)
    return out


def weight_grads(
    dA: np.ndarray, dR: np.ndarray, Hprev: np.ndarray, X: np.ndarray, U: np.ndarray, need_dX: bool
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """dL/dU, dL/db, dL/dW (and dL/dx_t) over a block of steps, hoisted out of the time loop.

    dA: (T, B, G*H) dL/da_t on the input side (U x_t + b); dR: (T, B, G*H)
    the deltas on W h_{t-1} (may be dA itself); Hprev: (T, B, H), Hprev[t] = h_{t-1};
    X: (T, B, D) floats or (T, B) ids. Returns ({"U", "W", "b"}, dX (T, B, D) or None).
    """
    return elman.param_grads(dA, Hprev, X, U, need_dX, dR=None if dR is dA else dR)


def state_grads(dstate_n, n_states: int) -> tuple:
    """A cell's dstate_n argument (None, or a tuple whose entries may be None) as a tuple of n_states entries."""
    if dstate_n is None:
        return (None,) * n_states
    dstate_n = tuple(dstate_n)
    if len(dstate_n) != n_states:
        raise ValueError(f"dstate_n: got {len(dstate_n)} parts, expected {n_states}")
    return dstate_n


def reverse_inputs(X: np.ndarray, mask: np.ndarray | None, reverse: bool):
    """(X, mask) in processing order: flipped in time when reverse."""
    if not reverse:
        return X, mask
    return X[::-1], None if mask is None else mask[::-1]


BLOCKS = 4  # blocks of steps the overlapped backward aims for ...
BLOCK_ROWS = 256  # ... each at least this many rows (steps x B), so each weight-gradient GEMM stays efficient


def blocks(T: int, B: int, n: int) -> list[tuple[int, int]]:
    """The blocks of steps (t0, t1) of the backward loop, last block first.

    n: the loop's size as the cell passes it to `bptt.blas.loop_threads(B, n)`. One
    block (0, T) unless the loop's GEMMs run on one BLAS thread (`bptt.blas.loop_is_single`):
    then about BLOCKS blocks of at least BLOCK_ROWS rows (steps x B) each.
    """
    steps = max(-(-T // BLOCKS), -(-BLOCK_ROWS // B), 1)
    if steps >= T or not blas.loop_is_single(B, n):
        return [(0, T)]
    return [(max(t1 - steps, 0), t1) for t1 in range(T, 0, -steps)]


def overlapped(T: int, B: int, n: int, sweep_block, grads_block) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The backward loop block by block (`blocks`), each finished block's weight gradients on a second core.

    sweep_block(t0, t1) runs the loop over steps t1-1 .. t0 (carrying the state
    gradients from block to block itself) and returns the block's deltas;
    grads_block(t0, t1, deltas) -> ({name: gradient}, dX (t1-t0, B, D) or None). Block k's gradients
    are computed on `bptt.blas.worker` (when there is one) while sweep_block runs on
    block k+1, every GEMM on one BLAS thread; the last block's on this thread.
    Returns the gradients summed over the blocks, last block first, and dX (T, B, D) or None.
    """
    bounds = blocks(T, B, n)
    if len(bounds) == 1:
        return grads_block(0, T, sweep_block(0, T))
    pool = blas.worker()
    parts = []
    with blas.one_thread():  # each of the two threads on one core, even where loop_threads would not limit
        for t0, t1 in bounds[:-1]:
            deltas = sweep_block(t0, t1)
            parts.append(grads_block(t0, t1, deltas) if pool is None else pool.submit(grads_block, t0, t1, deltas))
        t0, t1 = bounds[-1]
        last = grads_block(t0, t1, sweep_block(t0, t1))
        parts = [p if pool is None else p.result() for p in parts] + [last]
    grads = parts[0][0]
    for g, _ in parts[1:]:
        for name, value in g.items():
            grads[name] += value
    dX = None if parts[0][1] is None else np.concatenate([dX for _, dX in parts[::-1]])
    return grads, dX
