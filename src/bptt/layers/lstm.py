"""One LSTM layer, one direction: forward over T steps and exact BPTT, written out by hand.

Forward (torch.nn.LSTM's definition, so weights interchange exactly):

    i_t = sigma(U_i x_t + W_i h_{t-1} + b_i)      input gate
    f_t = sigma(U_f x_t + W_f h_{t-1} + b_f)      forget gate
    g_t = tanh (U_g x_t + W_g h_{t-1} + b_g)      candidate
    o_t = sigma(U_o x_t + W_o h_{t-1} + b_o)      output gate
    c_t = f_t * c_{t-1} + i_t * g_t               cell state
    h_t = o_t * tanh(c_t)                         hidden state (the output)

The state is (h, c). With a mask m_t a padded step leaves both unchanged.

Parameter layout (what `bptt.interop` and the ONNX export read): U (4H, D),
W (4H, H), b (4H,), gate blocks of H rows in the order i, f, g, o -- torch's
weight_ih_l{k}, weight_hh_l{k} and bias_ih_l{k} + bias_hh_l{k}. bias=False
drops b. ONNX's LSTM operator orders its gates i, o, f, c (= g) and keeps the
two biases apart (Wb = b, Rb = 0 is exact).

Backward, with g_t^out = dL/dh_t from above (the head or the next layer) and
the two gradients carried back from step t+1, dL/dh_t and dL/dc_t (see
docs/derivation.md, "Gated cells"):

    dL/dh_t   = g_t^out + W^T dA_{t+1}                     (the path through h)
    dL/dc_t   = dL/dc_t|_{t+1} + dL/dh_t o_t (1 - tanh^2 c_t)   (two paths into c_t)
    dA_t      = [dL/dc_t g_t i_t(1-i_t),  dL/dc_t c_{t-1} f_t(1-f_t),
                 dL/dc_t i_t (1-g_t^2),   dL/dh_t tanh(c_t) o_t(1-o_t)]   (gate deltas, i f g o)
    dL/dc_{t-1}|_t = dL/dc_t f_t                           (the constant error carousel)
    dL/dW = sum_t dA_t^T h_{t-1},  dL/dU = sum_t dA_t^T x_t,  dL/db = sum_t dA_t,  dL/dx_t = U^T dA_t

Every factor that does not depend on the carried gradients (the bracket's
gate products, o_t (1 - tanh^2 c_t), f_t) is computed for a block of steps at
once before the backward loop reaches it (`local_factors`); the loop (`sweep`)
does two adds, four multiplies and one GEMM (B, 4H) x (4H, H) per step. The
input term for all four gates and every step is one call before the forward
loop, kept gate-first (4, T, B, H), and the weight gradients are GEMMs over
blocks of steps, overlapped with the backward loop on small steps
(`bptt.layers.gated`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bptt import blas
from bptt.errors import UsageError
from bptt.layers import gated
from bptt.layers.cell import Cell
from bptt.layers.elman import padding

SIGMOID_BLOCKS = (0, 1, 3)  # i, f, o


@dataclass
class Cache:
    """What backward needs; arrays in processing order (flipped if reverse)."""

    X: np.ndarray  # (T, B, D) floats or (T, B) ids
    Hs: np.ndarray  # (T+1, B, H): Hs[0] = h_0, Hs[t] = h_t
    Cs: np.ndarray  # (T+1, B, H): Cs[0] = c_0, Cs[t] = c_t
    TC: np.ndarray  # (T, B, H): tanh(c_t) as computed at step t (garbage-free but unused on padded steps)
    gates: np.ndarray  # (4, T, B, H): i, f, g, o after their nonlinearities, gate-first
    pad: np.ndarray | None  # (T, B, 1) bool, True on padded steps; None if none
    U: np.ndarray
    W: np.ndarray
    has_bias: bool
    reverse: bool

    def state(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(h_t, c_t) in processing order, each (B, H)."""
        return self.Hs[t], self.Cs[t]

    def gate(self, k: int) -> np.ndarray:
        """Gate k (0 i, 1 f, 2 g, 3 o) at every step, (T, B, H)."""
        return self.gates[k]


class LSTM(Cell):
    """The LSTM cell on the recurrent-cell interface (see the module docstring for the equations)."""

    name = "lstm"
    gates = 4
    n_states = 2
    nonlinearities = ("tanh",)

    def __init__(self, nonlinearity: str = "tanh", forget_bias: float = 0.0, **options):
        super().__init__(nonlinearity, **options)
        ok = isinstance(forget_bias, (int, float, np.floating, np.integer)) and not isinstance(forget_bias, bool)
        if not ok or not np.isfinite(forget_bias):
            raise UsageError(
                f"forget_bias: got {forget_bias!r}, expected a finite number (1.0 as Jozefowicz et al. 2015)"
            )
        self.forget_bias = float(forget_bias)

    def shapes(self, D: int, H: int, bias: bool) -> dict[str, tuple[int, ...]]:
        """{"U": (4H, D), "W": (4H, H), "b": (4H,)}; gate blocks i, f, g, o."""
        shapes = {"U": (4 * H, D), "W": (4 * H, H)}
        if bias:
            shapes["b"] = (4 * H,)
        return shapes

    def init(self, D, H, bias, rng, scheme="pytorch", scale=1.0, dtype="float32") -> dict[str, np.ndarray]:
        """Initial weights (see `gated.init_stacked`); b = b_ih + b_hh, and forget_bias is added to
        the forget gate's block of b (with bias=False there is no b and forget_bias must be 0)."""
        U, W, b_ih, b_hh = gated.init_stacked(4, D, H, rng, scheme, scale, dtype)
        params = {"U": U, "W": W}
        if bias:
            b = b_ih + b_hh
            b[H : 2 * H] += self.forget_bias
            params["b"] = b.astype(dtype)
        elif self.forget_bias:
            raise UsageError("forget_bias: needs the biases; got bias=False (no --no-bias with --forget-bias)")
        return params

    def forward(self, params, X, state0, mask=None, reverse=False):
        """Run the LSTM over all T steps.

        params: {"U": (4H, D), "W": (4H, H), "b": (4H,) optional}; X: (T, B, D) floats
        or (T, B) ids; state0: (h_0, c_0), each (B, H); mask: (T, B) bool or None.
        Returns (out (T, B, H) natural order, (h_n, c_n), Cache).
        """
        U, W, b = params["U"], params["W"], params.get("b")
        X, mask = gated.reverse_inputs(X, mask, reverse)
        T, B = X.shape[0], X.shape[1]
        H = W.shape[1]
        h0, c0 = state0
        A = np.empty((4, T, B, H), dtype=W.dtype)
        gated.input_term_by_gate(U, b, X, out=A)  # U x_t + b for every step and gate: one call
        Hs = np.empty((T + 1, B, H), dtype=W.dtype)
        Cs = np.empty((T + 1, B, H), dtype=W.dtype)
        TC = np.empty((T, B, H), dtype=W.dtype)
        Hs[0], Cs[0] = h0, c0
        pad = padding(mask)
        recur(A, Hs, Cs, TC, W, pad)
        out = Hs[1:][::-1] if reverse else Hs[1:]
        cache = Cache(X=X, Hs=Hs, Cs=Cs, TC=TC, gates=A, pad=pad, U=U, W=W, has_bias=b is not None, reverse=reverse)
        return out, (Hs[T], Cs[T]), cache

    def backward(self, dout, dstate_n, cache, need_dX=True, horizon=None):
        """BPTT through the LSTM. dout: (T, B, H) natural order or None; dstate_n: (dh_n, dc_n)
        (entries may be None) or None; horizon: per-output truncation tau or None.

        Returns (dX (T, B, D) natural order or None, {"U", "W", "b"}, (dh_0, dc_0)).
        """
        dhn, dcn = gated.state_grads(dstate_n, 2)
        if dout is not None and cache.reverse:
            dout = dout[::-1]
        T, B, H = cache.TC.shape
        pad = cache.pad

        def grads_block(t0, t1, dA):  # dA: (t1-t0, B, 4H), the deltas of steps t0..t1-1
            grads, dX = gated.weight_grads(dA, dA, cache.Hs[t0:t1], cache.X[t0:t1], cache.U, need_dX)
            if not cache.has_bias:
                del grads["b"]
            return grads, dX

        if horizon is None:
            carry = (dhn, dcn)

            def sweep_block(t0, t1):
                nonlocal carry
                L, K, F = local_factors(cache, slice(t0, t1))
                part = (None if dout is None else dout[t0:t1], *carry, cache.W, None if pad is None else pad[t0:t1])
                carry = sweep(L, K, F, *part)
                return L

            grads, dX = gated.overlapped(T, B, 2 * H, sweep_block, grads_block)
            dh0, dc0 = carry
        else:
            L, K, F = local_factors(cache)
            dh0, dc0 = horizon_sweep(L, K, F, dout, dhn, dcn, cache.W, pad, check_horizon(horizon))
            grads, dX = grads_block(0, T, L)
        if dX is not None and cache.reverse:
            dX = dX[::-1]
        return dX, grads, (dh0, dc0)

    def step(self, params, x, state):
        """One step: x (B, D) floats or (B,) ids, state (h, c). Returns (h, (h, c)), as `forward` computes it."""
        out, state_n, _ = self.forward(params, np.asarray(x)[None], state)
        return out[0], state_n


def check_horizon(horizon) -> int:
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise UsageError(f"horizon: got {horizon!r}, expected an integer >= 1")
    return int(horizon)


def recur(A, Hs, Cs, TC, W, pad) -> None:
    """The forward time loop, in place.

    A: (4, T, B, H), gate-first, holds U x_t + b on entry and the gates i, f, g, o
    on exit (each gate's (B, H) block of a step contiguous: strided (B, H) slices of
    a (B, 4H) row cost 2 to 4x as much per call); Hs, Cs: (T+1, B, H) with h_0, c_0
    in row 0, filled with h_t, c_t; TC: (T, B, H) gets tanh(c_t); pad: (T, B, 1) bool or None.
    """
    _, T, B, H = A.shape
    for k in SIGMOID_BLOCKS:  # sigma(a) = (1 + tanh(a/2)) / 2: halve the sigmoid gates once
        A[k] *= 0.5
    WT = np.ascontiguousarray(W.reshape(4, H, H).transpose(0, 2, 1))  # (4, H, H): W_i^T, W_f^T, W_g^T, W_o^T
    for k in SIGMOID_BLOCKS:
        WT[k] *= 0.5
    buf = np.empty((4, B, H), dtype=A.dtype)
    # sigma(a) = 0.5 tanh(a/2) + 0.5 on the sigmoid gates, tanh(a) on g: one affine map over the four
    scale = np.array([0.5, 0.5, 1.0, 0.5], dtype=A.dtype)[:, None, None]
    shift = np.array([0.5, 0.5, 0.0, 0.5], dtype=A.dtype)[:, None, None]
    ig = np.empty((B, H), dtype=A.dtype)
    with blas.loop_threads(B, 2 * H):
        for t in range(T):
            i, f, g, o = a = A[:, t]
            np.matmul(Hs[t], WT, out=buf)  # W h_{t-1} for all four gates: one call (four GEMMs (B, H) x (H, H))
            a += buf
            np.tanh(a, out=a)
            a *= scale
            a += shift
            c = Cs[t + 1]
            np.multiply(f, Cs[t], out=c)
            np.multiply(i, g, out=ig)
            c += ig  # c_t = f_t c_{t-1} + i_t g_t
            np.tanh(c, out=TC[t])
            np.multiply(o, TC[t], out=Hs[t + 1])  # h_t = o_t tanh(c_t)
            if pad is not None:
                np.copyto(c, Cs[t], where=pad[t])
                np.copyto(Hs[t + 1], Hs[t], where=pad[t])


def local_factors(cache: Cache, steps: slice = slice(None)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The factors of the backward step that do not depend on the carried gradients, for the
    steps `steps` (all by default) at once.

    Returns L (T, B, 4H): [g i(1-i), c_{t-1} f(1-f), i (1-g^2), tanh(c) o(1-o)] (blocks i, f, g, o;
    dA_t is L_t times [dL/dc_t, dL/dc_t, dL/dc_t, dL/dh_t]); K (T, B, H): o (1 - tanh^2 c), the
    path dh_t -> dc_t; F (T, B, H): f_t, the path dc_t -> dc_{t-1}. On padded steps L = K = 0
    and F = 1, so the carried dL/dc passes straight through.
    """
    G, Cprev, TC = cache.gates[:, steps], cache.Cs[:-1][steps], cache.TC[steps]
    pad = None if cache.pad is None else cache.pad[steps]
    _, T, B, H = G.shape
    i, f, g, o = G
    L = np.empty((T, B, 4 * H), dtype=G.dtype)
    Lv = L.reshape(T, B, 4, H).transpose(2, 0, 1, 3)  # (4, T, B, H): L's gate blocks, in G's layout
    np.subtract(1.0, G, out=Lv)
    Lv *= G  # x (1 - x) for all four gates in one call: sigma' of i, f, o; the g block is replaced
    Li, Lf, Lg, Lo = Lv
    np.multiply(g, g, out=Lg)
    np.subtract(1.0, Lg, out=Lg)
    Lg *= i
    Li *= g
    Lf *= Cprev
    Lo *= TC
    K = np.multiply(TC, TC)
    np.subtract(1.0, K, out=K)
    K *= o
    if pad is None:
        return L, K, f
    np.copyto(L, 0.0, where=pad)
    np.copyto(K, 0.0, where=pad)
    return L, K, np.where(pad, 1.0, f).astype(G.dtype)


def sweep(L, K, F, dout, dhn, dcn, W, pad) -> tuple[np.ndarray, np.ndarray]:
    """The backward time loop of full BPTT; turns L into dA = dL/da (T, B, 4H) in place.

    dout: (T, B, H) processing order or None; dhn, dcn: (B, H) or None. Returns (dL/dh_0, dL/dc_0).
    """
    T, B, H4 = L.shape
    H = H4 // 4
    dh = np.zeros((B, H), dtype=L.dtype) if dhn is None else np.array(dhn, dtype=L.dtype)
    dc = np.zeros((B, H), dtype=L.dtype) if dcn is None else np.array(dcn, dtype=L.dtype)
    nxt = np.empty_like(dh)
    tmp = np.empty_like(dh)
    L4 = L.reshape(T, B, 4, H)
    Lifg, Lo, dc3 = L4[:, :, :3], L4[:, :, 3], dc[:, None, :]  # views made once, not per step
    with blas.loop_threads(B, H4 // 2):
        for t in range(T - 1, -1, -1):
            if dout is not None:
                dh += dout[t]  # dL/dh_t = g_t + W^T dA_{t+1}
            np.multiply(dh, K[t], out=tmp)
            dc += tmp  # dL/dc_t: from c_{t+1} (the carousel) and through h_t
            d = Lifg[t]
            np.multiply(d, dc3, out=d)  # deltas of i, f, g
            d = Lo[t]
            np.multiply(d, dh, out=d)  # delta of o
            dc *= F[t]  # dL/dc_{t-1} through c_t = f_t c_{t-1} + ...
            np.matmul(L[t], W, out=nxt)  # W^T dA_t, all four gates in one GEMM
            if pad is not None:
                np.copyto(nxt, dh, where=pad[t])  # a padded step passes dL/dh straight through
            dh, nxt = nxt, dh
    return dh, dc


def horizon_sweep(L, K, F, dout, dhn, dcn, W, pad, tau: int) -> tuple[np.ndarray, np.ndarray]:
    """The backward loop with a per-output horizon tau (see `bptt.layers.truncation`), over the state (h, c).

    The gradients still travelling back are kept split by their lag j (real
    steps between the loss term and the step) in (tau + 1, B, H) blocks Gh, Gc;
    each step turns lags 0..tau-1 into gate deltas, sums them into dA_t and moves
    lag j to lag j+1. Lag tau reaches no delta: it is the gradient on the state
    a window starts from, dropped at the next real step, and kept only when
    nothing but padding lies before it (the window then starts from the initial
    state, a variable). Padded steps pass every lag on unchanged. Turns L into dA
    in place; returns (dL/dh_0, dL/dc_0).
    """
    T, B, H4 = L.shape
    H = H4 // 4
    Gh = np.zeros((tau + 1, B, H), dtype=L.dtype)
    Gc = np.zeros((tau + 1, B, H), dtype=L.dtype)
    if dhn is not None:
        Gh[0] += dhn
    if dcn is not None:
        Gc[0] += dcn
    D = np.empty((tau, B, 4, H), dtype=L.dtype)
    for t in range(T - 1, -1, -1):
        if dout is not None:
            Gh[0] += dout[t]
        Gc[:tau] += Gh[:tau] * K[t]  # dL_{t+j}/dc_t for each lag j
        Lt = L[t].reshape(B, 4, H)
        np.multiply(Lt[None, :, :3], Gc[:tau, :, None, :], out=D[:, :, :3])
        np.multiply(Lt[None, :, 3], Gh[:tau], out=D[:, :, 3])
        L[t] = D.sum(axis=0).reshape(B, H4)
        nh = np.zeros_like(Gh)
        np.matmul(D.reshape(tau, B, H4), W, out=nh[1:])  # lag j at step t -> lag j+1 at step t-1
        nc = np.zeros_like(Gc)
        np.multiply(Gc[:tau], F[t], out=nc[1:])
        if pad is not None:
            np.copyto(nh, Gh, where=pad[t][None])
            np.copyto(nc, Gc, where=pad[t][None])
        Gh, Gc = nh, nc
    return Gh.sum(axis=0), Gc.sum(axis=0)
