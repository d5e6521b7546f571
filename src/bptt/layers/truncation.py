"""Truncated BPTT: the per-output horizon.

With a horizon tau every loss term L_t backpropagates through at most tau
steps of the recurrence, the state before them held constant:

    dL/dW ~= sum_t sum_{k = t-tau+1}^{t} (dL_t/dh_t) (prod_{i=k+1}^{t} dh_i/dh_{i-1}) dh_k/dW

(the lecture notes' "fixed horizon"; tau >= T is exact BPTT). This is the
gradient of the truncated objective sum_t L_t(h_t(theta; h_{t-tau} fixed)),
whose states `window_states` computes for any cell, so that finite
differences can check it (`bptt.analysis.gradcheck.truncated_objective`).

The backward sweep keeps the gradient that is still travelling back split by
its lag j = t - k, in a (tau, B, H) block G: each step multiplies all lags by
f'(a_k) (their sum is delta_k), moves lag j to lag j+1 through W^T, and drops
lag tau. That is tau times the work of full BPTT, in one GEMM per step.
"""

from __future__ import annotations

import numpy as np


def check_horizon(model, horizon) -> None:
    """The per-output horizon is defined here for one unidirectional layer."""
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ValueError(f"horizon: got {horizon!r}, expected an integer >= 1")
    if model.checkpoint_every is not None:
        raise ValueError(
            "horizon: per-output truncation needs every state at once, expected checkpoint_every=None (no --checkpoint-every)"
        )
    if model.num_layers != 1 or model.bidirectional:
        raise ValueError(
            "horizon: per-output truncation is defined for num_layers=1, bidirectional=False; "
            f"got num_layers={model.num_layers}, bidirectional={model.bidirectional}"
        )


def horizon_sweep(delta, dout, dhn, W, pad, tau: int) -> np.ndarray:
    """Backward loop with a horizon; turns delta (f'(a) * m, (T, B, H)) into dL/da in place.

    dout: (T, B, H) or None; dhn: (B, H) or None (a loss on the last state);
    pad: (T, B, 1) bool or None: padded steps pass the gradient on and do not
    count towards the lag. Returns dL/dh_0.
    """
    T, B, H = delta.shape
    G = np.zeros((tau, B, H), dtype=delta.dtype)
    if dhn is not None:
        G[0] += dhn
    nxt = np.empty_like(G)
    dh0 = None
    for t in range(T - 1, -1, -1):
        if dout is not None:
            G[0] += dout[t]
        D = G * delta[t]  # (tau, B, H): dL_{t+j}/da_t for each lag j
        delta[t] = D.sum(axis=0)
        if t == 0:
            dh0 = delta[0] @ W  # every lag still within reach of h_0
            if pad is not None:
                np.copyto(dh0, G.sum(axis=0), where=pad[0])
            break
        nxt[0] = 0.0
        np.matmul(D[:-1], W, out=nxt[1:])  # lag j at step t -> lag j+1 at step t-1
        if pad is not None:
            np.copyto(nxt, G, where=pad[t][None])
        G, nxt = nxt, G
    return dh0


def window_states(cell, params: dict, X: np.ndarray, state0: tuple, mask: np.ndarray | None, base, tau: int):
    """h~_t for every t: the cell rerun over its last tau real steps from a fixed state.

    The truncated objective's states (see `bptt.analysis.gradcheck.truncated_objective`):
    h~_t starts from the state after step t - tau of the forward pass whose cell cache
    is `base` (held fixed), or from state0 itself when t <= tau, and runs
    `cell.forward` over the window. Any cell; one direction, natural time order.

    X: (T, B, D) or (T, B) ids; state0: tuple of (B, H); mask: (T, B) bool or None.
    Returns h~ (T, B, H). O(T tau) cell steps.
    """
    T, B = X.shape[0], X.shape[1]
    m = np.ones((T, B), bool) if mask is None else mask
    counts = np.cumsum(m, axis=0)  # real steps up to and including t
    Htil = None
    for t in range(T):
        # window of row b: real steps k <= t with counts[t] - counts[k] < tau
        first = counts[t] - tau  # rows with first > 0 start from a fixed state
        s = np.array([np.searchsorted(counts[:, b], first[b], side="right") if first[b] > 0 else 0 for b in range(B)])
        for start in np.unique(s):
            rows = np.flatnonzero(s == start)
            begin = state0 if start == 0 else base.state(int(start))
            state = tuple(part[rows] for part in begin)
            _, state_t, _ = cell.forward(params, X[start : t + 1, rows], state, m[start : t + 1, rows])
            if Htil is None:
                Htil = np.empty((T, B) + state_t[0].shape[1:], dtype=state_t[0].dtype)
            Htil[t, rows] = state_t[0]
    return Htil
