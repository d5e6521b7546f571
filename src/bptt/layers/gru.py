"""One GRU layer, one direction: forward over T steps and exact BPTT, written out by hand.

Forward (torch.nn.GRU's definition, so weights interchange exactly):

    r_t = sigma(U_r x_t + W_r h_{t-1} + b_r)                  reset gate
    z_t = sigma(U_z x_t + W_z h_{t-1} + b_z)                  update gate
    q_t = W_n h_{t-1} + bn                                    (kept: the reset gate multiplies it)
    n_t = tanh (U_n x_t + b_n + r_t * q_t)                    candidate
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}                     hidden state (the output)

The state is (h,). With a mask m_t a padded step leaves h unchanged.

Parameter layout (what `bptt.interop` and the ONNX export read): U (3H, D),
W (3H, H), b (3H,), bn (H,), gate blocks of H rows in the order r, z, n --
torch's weight_ih_l{k}, weight_hh_l{k}; b = bias_ih + (bias_hr, bias_hz, 0)
and bn = bias_hn = bias_hh[2H:], the recurrent bias of n that sits inside
r * (...) and so cannot be folded into b. bias=False drops b and bn. ONNX's
GRU operator orders its gates z, r, h (= n) and with linear_before_reset=1
computes exactly this (Wb = b with its n block, Rb = (0, 0, bn)).

Backward, with g_t = dL/dh_t from above plus W^T-carried terms (see
docs/derivation.md, "Gated cells"):

    dL/dh_t    = g_t + W^T dR_{t+1} + z_{t+1} dL/dh_{t+1}        (the gated path and the direct path)
    dn_t       = dL/dh_t (1 - z_t) (1 - n_t^2)                  (delta of n's pre-activation)
    dA_t       = [dn_t q_t r_t(1-r_t),  dL/dh_t (h_{t-1} - n_t) z_t(1-z_t),  dn_t]   (r, z, n; input side)
    dR_t       = [same r and z blocks,  dn_t r_t]               (what reaches W h_{t-1} + bn)
    dL/dW = sum_t dR_t^T h_{t-1},  dL/dbn = sum_t dn_t r_t,
    dL/dU = sum_t dA_t^T x_t,  dL/db = sum_t dA_t,  dL/dx_t = U^T dA_t

The factors that do not depend on dL/dh_t are computed for all steps at once
before the loop (`local_factors`): a (T, B, 4H) block [r, z, n-recurrent,
n-input] that the loop multiplies by dL/dh_t in one broadcast, so dR_t is its
first 3H columns and one GEMM (B, 3H) x (3H, H) per step carries every gate back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bptt import blas
from bptt.layers import gated
from bptt.layers.cell import Cell
from bptt.layers.elman import padding
from bptt.layers.lstm import check_horizon


@dataclass
class Cache:
    """What backward needs; arrays in processing order (flipped if reverse)."""

    X: np.ndarray  # (T, B, D) floats or (T, B) ids
    Hs: np.ndarray  # (T+1, B, H): Hs[0] = h_0, Hs[t] = h_t
    gates: np.ndarray  # (3, T, B, H): r, z, n, gate-first (each gate's (B, H) block of a step contiguous)
    Q: np.ndarray  # (T, B, H): q_t = W_n h_{t-1} + bn
    pad: np.ndarray | None  # (T, B, 1) bool, True on padded steps; None if none
    U: np.ndarray
    W: np.ndarray
    has_bias: bool
    reverse: bool

    def state(self, t: int) -> tuple[np.ndarray]:
        """(h_t,) in processing order, (B, H)."""
        return (self.Hs[t],)

    def gate(self, k: int) -> np.ndarray:
        """Gate k (0 r, 1 z, 2 n) at every step, (T, B, H)."""
        return self.gates[k]


class GRU(Cell):
    """The GRU cell on the recurrent-cell interface (see the module docstring for the equations)."""

    name = "gru"
    gates = 3
    n_states = 1
    nonlinearities = ("tanh",)

    def shapes(self, D: int, H: int, bias: bool) -> dict[str, tuple[int, ...]]:
        """{"U": (3H, D), "W": (3H, H), "b": (3H,), "bn": (H,)}; gate blocks r, z, n."""
        shapes = {"U": (3 * H, D), "W": (3 * H, H)}
        if bias:
            shapes["b"] = (3 * H,)
            shapes["bn"] = (H,)
        return shapes

    def init(self, D, H, bias, rng, scheme="pytorch", scale=1.0, dtype="float32") -> dict[str, np.ndarray]:
        """Initial weights (see `gated.init_stacked`): b = b_ih + (b_hr, b_hz, 0), bn = b_hn."""
        U, W, b_ih, b_hh = gated.init_stacked(3, D, H, rng, scheme, scale, dtype)
        params = {"U": U, "W": W}
        if bias:
            b = b_ih.copy()
            b[: 2 * H] += b_hh[: 2 * H]
            params["b"] = b
            params["bn"] = b_hh[2 * H :].copy()
        return params

    def forward(self, params, X, state0, mask=None, reverse=False):
        """Run the GRU over all T steps.

        params: {"U": (3H, D), "W": (3H, H), "b": (3H,), "bn": (H,)} (biases optional);
        X: (T, B, D) floats or (T, B) ids; state0: (h_0,), (B, H); mask: (T, B) bool or None.
        Returns (out (T, B, H) natural order, (h_n,), Cache).
        """
        U, W, b, bn = params["U"], params["W"], params.get("b"), params.get("bn")
        X, mask = gated.reverse_inputs(X, mask, reverse)
        T, B = X.shape[0], X.shape[1]
        H = W.shape[1]
        A = np.empty((3, T, B, H), dtype=W.dtype)
        gated.input_term_by_gate(U, b, X, out=A)  # U x_t + b for every step and gate: one call
        Hs = np.empty((T + 1, B, H), dtype=W.dtype)
        Q = np.empty((T, B, H), dtype=W.dtype)
        (Hs[0],) = state0
        pad = padding(mask)
        recur(A, Hs, Q, W, bn, pad)
        out = Hs[1:][::-1] if reverse else Hs[1:]
        cache = Cache(X=X, Hs=Hs, gates=A, Q=Q, pad=pad, U=U, W=W, has_bias=b is not None, reverse=reverse)
        return out, (Hs[T],), cache

    def backward(self, dout, dstate_n, cache, need_dX=True, horizon=None):
        """BPTT through the GRU. dout: (T, B, H) natural order or None; dstate_n: (dh_n,) or None;
        horizon: per-output truncation tau or None.

        Returns (dX (T, B, D) natural order or None, {"U", "W", "b", "bn"}, (dh_0,)).
        """
        (dhn,) = gated.state_grads(dstate_n, 1)
        if dout is not None and cache.reverse:
            dout = dout[::-1]
        T, B, H = cache.Q.shape
        pad = cache.pad

        def grads_block(t0, t1, L):  # L: (t1-t0, B, 4H), the deltas of steps t0..t1-1 as `sweep` leaves them
            dA = np.concatenate((L[..., : 2 * H], L[..., 3 * H :]), axis=-1)  # input side: r, z, n
            grads, dX = gated.weight_grads(dA, L[..., : 3 * H], cache.Hs[t0:t1], cache.X[t0:t1], cache.U, need_dX)
            if cache.has_bias:
                grads["bn"] = L[..., 2 * H : 3 * H].sum(axis=(0, 1))
            else:
                del grads["b"]
            return grads, dX

        if horizon is None:
            dh0 = dhn

            def sweep_block(t0, t1):
                nonlocal dh0
                L, Z = local_factors(cache, slice(t0, t1))
                part = (None if dout is None else dout[t0:t1], dh0, cache.W, None if pad is None else pad[t0:t1])
                dh0 = sweep(L, Z, *part)
                return L

            grads, dX = gated.overlapped(T, B, 2 * H, sweep_block, grads_block)
        else:
            L, Z = local_factors(cache)
            dh0 = horizon_sweep(L, Z, dout, dhn, cache.W, pad, check_horizon(horizon))
            grads, dX = grads_block(0, T, L)
        if dX is not None and cache.reverse:
            dX = dX[::-1]
        return dX, grads, (dh0,)

    def step(self, params, x, state):
        """One step: x (B, D) floats or (B,) ids, state (h,). Returns (h, (h,)), as `forward` computes it."""
        out, state_n, _ = self.forward(params, np.asarray(x)[None], state)
        return out[0], state_n


def recur(A, Hs, Q, W, bn, pad) -> None:
    """The forward time loop, in place.

    A: (3, T, B, H), gate-first, holds U x_t + b on entry and the gates r, z, n on
    exit (each gate's (B, H) block of a step contiguous, so every elementwise call of
    a step runs over contiguous memory: strided (B, H) slices of a (B, 3H) row cost 2 to 4x);
    Hs: (T+1, B, H) with h_0 in row 0, filled with h_t; Q: (T, B, H) gets
    q_t = W_n h_{t-1} + bn; bn: (H,) or None; pad: (T, B, 1) bool or None.
    """
    _, T, B, H = A.shape
    A[:2] *= 0.5  # sigma(a) = (1 + tanh(a/2)) / 2: the r and z blocks halved once
    WT = np.ascontiguousarray(W.reshape(3, H, H).transpose(0, 2, 1))  # (3, H, H): W_r^T, W_z^T, W_n^T
    WT[:2] *= 0.5
    buf = np.empty((3, B, H), dtype=A.dtype)
    rq = np.empty((B, H), dtype=A.dtype)
    with blas.loop_threads(B, 2 * H):
        for t in range(T):
            r, z, n = a = A[:, t]
            np.matmul(Hs[t], WT, out=buf)  # W h_{t-1} for all three gates: one call (three GEMMs (B, H) x (H, H))
            rz = a[:2]
            rz += buf[:2]
            np.tanh(rz, out=rz)
            gated.sigmoid_from_tanh(rz)
            q = Q[t]
            if bn is None:
                np.copyto(q, buf[2])
            else:
                np.add(buf[2], bn, out=q)
            np.multiply(r, q, out=rq)
            n += rq
            np.tanh(n, out=n)  # n_t = tanh(U_n x_t + b_n + r_t q_t)
            h = Hs[t + 1]
            np.subtract(Hs[t], n, out=h)
            h *= z
            h += n  # h_t = n_t + z_t (h_{t-1} - n_t)
            if pad is not None:
                np.copyto(h, Hs[t], where=pad[t])


def local_factors(cache: Cache, steps: slice = slice(None)) -> tuple[np.ndarray, np.ndarray]:
    """The factors of the backward step that do not depend on dL/dh_t, for the steps `steps`
    (all by default) at once.

    Returns L (T, B, 4H): [(1-z)(1-n^2) q r(1-r), (h_{t-1} - n) z(1-z), (1-z)(1-n^2) r, (1-z)(1-n^2)]
    (blocks r, z, n on W h_{t-1}, n on U x_t; the deltas are L_t times dL/dh_t) and
    Z (T, B, H): z_t, the direct path dh_t -> dh_{t-1}. On padded steps L = 0 and Z = 1,
    so the carried dL/dh passes straight through.
    """
    G, Q, Hprev = cache.gates[:, steps], cache.Q[steps], cache.Hs[:-1][steps]
    pad = None if cache.pad is None else cache.pad[steps]
    _, T, B, H = G.shape
    r, z, n = G
    L = np.empty((T, B, 4 * H), dtype=G.dtype)
    Lr, Lz, LnR, Pn = L[..., :H], L[..., H : 2 * H], L[..., 2 * H : 3 * H], L[..., 3 * H :]
    np.subtract(Hprev, n, out=Lz)
    Lz *= z
    np.subtract(1.0, z, out=Pn)
    Lz *= Pn  # (h_{t-1} - n) z (1 - z)
    np.multiply(n, n, out=LnR)
    np.subtract(1.0, LnR, out=LnR)
    Pn *= LnR  # (1 - z)(1 - n^2): dn_t = dL/dh_t Pn
    np.multiply(Pn, r, out=LnR)
    gated.one_minus_times(r, out=Lr)
    Lr *= Q
    Lr *= Pn
    if pad is None:
        return L, z
    np.copyto(L, 0.0, where=pad)
    return L, np.where(pad, 1.0, z).astype(G.dtype)


def sweep(L, Z, dout, dhn, W, pad) -> np.ndarray:
    """The backward time loop of full BPTT; turns L into [dR_t | dA_t's n block] in place.

    dout: (T, B, H) processing order or None; dhn: (B, H) or None. Returns dL/dh_0.
    """
    T, B, H = Z.shape
    dh = np.zeros((B, H), dtype=L.dtype) if dhn is None else np.array(dhn, dtype=L.dtype)
    nxt = np.empty_like(dh)
    tmp = np.empty_like(dh)
    with blas.loop_threads(B, 2 * H):
        for t in range(T - 1, -1, -1):
            if dout is not None:
                dh += dout[t]  # dL/dh_t = g_t + W^T dR_{t+1} + z_{t+1} dL/dh_{t+1}
            Lt = L[t].reshape(B, 4, H)
            np.multiply(Lt, dh[:, None, :], out=Lt)  # every gate delta at once
            np.matmul(L[t][:, : 3 * H], W, out=nxt)  # W^T dR_t, all three gates in one GEMM
            np.multiply(dh, Z[t], out=tmp)
            nxt += tmp  # + z_t dL/dh_t (on padded steps L = 0, Z = 1: straight through)
            dh, nxt = nxt, dh
    return dh


def horizon_sweep(L, Z, dout, dhn, W, pad, tau: int) -> np.ndarray:
    """The backward loop with a per-output horizon tau (see `bptt.layers.truncation`).

    The gradient still travelling back is kept split by its lag in a
    (tau + 1, B, H) block G, as in `bptt.layers.lstm.horizon_sweep` (lag tau
    reaches no delta and survives only through padding before the first real
    step, to h_0). Turns L into its deltas in place (summed over lags); returns dL/dh_0.
    """
    T, B, H = Z.shape
    G = np.zeros((tau + 1, B, H), dtype=L.dtype)
    if dhn is not None:
        G[0] += dhn
    for t in range(T - 1, -1, -1):
        if dout is not None:
            G[0] += dout[t]
        D = L[t].reshape(B, 4, H)[None] * G[:tau, :, None, :]  # (tau, B, 4, H)
        L[t] = D.sum(axis=0).reshape(B, 4 * H)
        nxt = np.zeros_like(G)
        np.matmul(D.reshape(tau, B, 4 * H)[..., : 3 * H], W, out=nxt[1:])
        nxt[1:] += G[:tau] * Z[t]  # lag j at step t -> lag j+1 at step t-1
        if pad is not None:
            np.copyto(nxt, G, where=pad[t][None])
        G = nxt
    return G.sum(axis=0)
