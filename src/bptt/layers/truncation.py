"""Truncated BPTT: the per-output horizon.

With a horizon tau every loss term L_t backpropagates through at most tau
steps of the recurrence, the state before them held constant:

    dL/dW ~= sum_t sum_{k = t-tau+1}^{t} (dL_t/dh_t) (prod_{i=k+1}^{t} dh_i/dh_{i-1}) dh_k/dW

(the lecture notes' "fixed horizon"; tau >= T is exact BPTT). This is the
gradient of the truncated objective sum_t L_t(h_t(theta; h_{t-tau} fixed)),
which `window_objective` evaluates directly so that finite differences can
check it.

The backward sweep keeps the gradient that is still travelling back split by
its lag j = t - k, in a (tau, B, H) block G: each step multiplies all lags by
f'(a_k) (their sum is delta_k), moves lag j to lag j+1 through W^T, and drops
lag tau. That is tau times the work of full BPTT, in one GEMM per step.
"""

from __future__ import annotations

import numpy as np

from bptt.layers import activations


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


def truncated_objective(model, inputs, targets, mask=None, h0=None, cond=None, *, tau: int, base) -> float:
    """The truncated objective: the model's loss on states h~_t, each recomputed
    over its last tau real steps from the state h_{t-tau} of the forward pass
    `base` held fixed (h~_t = h_t when t <= tau, which starts from h_0 itself).

    Its gradient is what the horizon sweep computes; this evaluates it
    directly so finite differences can check that (T windows, O(T tau)).
    """
    from bptt.layers import elman, embedding
    from bptt.model import Forward

    check_horizon(model, tau)
    X, m, h0, cond = model._prepare(inputs, mask, h0, cond)
    p = model.params
    T, B = X.shape[0], X.shape[1]
    m = np.ones((T, B), bool) if m is None else m
    h_start = base.caches[0][0].Hs  # (T+1, B, H), fixed
    if cond is not None:
        h0 = np.tanh(cond @ p["h0map.Q"].T + p["h0map.q"])[None]
    elif h0 is None:
        h0 = model.zero_state(B)
    X0 = embedding.forward(p["embed.E"], X) if model.embedding_size is not None else X
    A = np.empty((T, B, model.hidden_size), dtype=p["rnn0.W"].dtype)
    elman.input_term(p["rnn0.U"], p.get("rnn0.b"), X0, out=A)
    rows = np.arange(B)
    counts = np.cumsum(m, axis=0)  # real steps up to and including t
    Htil = np.empty_like(A)
    for t in range(T):
        # window of row b: real steps k <= t with counts[t] - counts[k] < tau
        first = counts[t] - tau  # rows with first > 0 start from a fixed state
        s = np.array([np.searchsorted(counts[:, b], first[b], side="right") if first[b] > 0 else 0 for b in rows])
        h = np.where((s == 0)[:, None], h0[0], h_start[s, rows])
        for k in range(int(s.min()), t + 1):
            a = A[k] + h @ p["rnn0.W"].T
            upd = ((k >= s) & m[k])[:, None]
            h = np.where(upd, activations.apply(model.nonlinearity, a), h)
        Htil[t] = h
    fwd = Forward(Z=None, hn=Htil[-1][None], h0=h0, X=X, ids=None, mask=None if mask is None else m)
    model._head_forward(fwd, Htil)
    loss, _ = model.loss(fwd, targets)
    return loss
