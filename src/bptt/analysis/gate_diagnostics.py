"""Why BPTT is easier with gates, measured: the state Jacobians by lag, gate saturation, and each (t, k) term.

The diagnostics of `bptt.analysis.diagnostics` for the gated cells
(`bptt.layers.lstm`, `bptt.layers.gru`), from a forward pass's cache.

One-step state Jacobians (column convention, J[out, in]; the L, K, F and Z
factors are those of the cells' `local_factors`, see docs/derivation.md
section 9):

    LSTM, state (h, c):
        dc_t/dh_{t-1} = diag(L^i) W_i + diag(L^f) W_f + diag(L^g) W_g
        dc_t/dc_{t-1} = diag(f_t)                                  (the carousel)
        dh_t/dh_{t-1} = diag(L^o) W_o + diag(K) dc_t/dh_{t-1}
        dh_t/dc_{t-1} = diag(K f_t)
    GRU, state h:
        dh_t/dh_{t-1} = diag(z_t) + diag(L^r) W_r + diag(L^z) W_z + diag(L^n r) W_n

`jacobian_norms` multiplies them from each sequence's last real step back
(padded steps are identities and are skipped) and reports, per lag,
||dh_t/dh_k|| and for the LSTM also ||dc_t/dc_k|| (blocks of the product of
the (2H, 2H) state Jacobians). `saturation` reports how often each sigmoid
gate sits near 0 or 1 on real steps (a forget gate near 1 keeps the carousel
running; an input or output gate near 0 shuts it off). `contributions` splits
dL/dW, dL/dU, dL/db (and the GRU's dL/dbn) into its (t, k) terms with one
vectorised sweep per lag, as `bptt.analysis.diagnostics.contributions` does
for Elman; the terms add up to the BPTT gradient exactly.
"""

from __future__ import annotations

import numpy as np

from bptt.analysis.lag_fit import fit_rate
from bptt.layers import gru, lstm
from bptt.layers.embedding import scatter_add_columns

NEAR = 0.05  # a gate is "near 0" below NEAR and "near 1" above 1 - NEAR


def is_gated(cache) -> bool:
    return isinstance(cache, (lstm.Cache, gru.Cache))


def _factors(cache):
    """(kind, L, K, F) in float64: the cell's local factors (K None for the GRU, F = z for the GRU)."""
    if isinstance(cache, lstm.Cache):
        L, K, F = lstm.local_factors(cache)
        return "lstm", L, K, F
    L, Z = gru.local_factors(cache)
    return "gru", L, None, Z


def step_jacobian(kind: str, W: np.ndarray, L: np.ndarray, K, F: np.ndarray) -> np.ndarray:
    """The one-step state Jacobian of one sequence at one step, (S, S) with S = 2H (LSTM) or H (GRU).

    W: (G*H, H); L: (G'*H,) that step's row of `local_factors`' L; K, F: (H,).
    """
    H = W.shape[1]
    Wg = W.reshape(-1, H, H)  # gate blocks
    Lg = L.reshape(-1, H)
    if kind == "gru":
        J = Lg[0][:, None] * Wg[0] + Lg[1][:, None] * Wg[1] + Lg[2][:, None] * Wg[2]
        J[np.diag_indices(H)] += F
        return J
    Jch = Lg[0][:, None] * Wg[0] + Lg[1][:, None] * Wg[1] + Lg[2][:, None] * Wg[2]
    J = np.zeros((2 * H, 2 * H))
    J[:H, :H] = Lg[3][:, None] * Wg[3] + K[:, None] * Jch
    J[:H, H:] = np.diag(K * F)
    J[H:, :H] = Jch
    J[H:, H:] = np.diag(F)
    return J


def jacobian_norms(cache, max_sequences: int = 8) -> dict:
    """||dh_t/dh_k|| (and for the LSTM ||dc_t/dc_k||), spectral and Frobenius, for lag t - k = 1..,
    from each sequence's last real step, for the first `max_sequences` sequences.

    Returns {"lag", "sequences", "spectral", "frobenius", "rate_spectral", "rate_frobenius"}
    for h (as `bptt.analysis.diagnostics.jacobian_norms`) and, for the LSTM, the same
    under "c": {...}: geometric means over sequences per lag, and the fitted factor per step.
    """
    kind, L, K, F = _factors(cache)
    W = cache.W.astype(np.float64)
    T, B = L.shape[0], L.shape[1]
    H = W.shape[1]
    parts = ("h", "c") if kind == "lstm" else ("h",)
    logs = {(p, n): [[] for _ in range(T)] for p in parts for n in ("spectral", "frobenius")}
    for b in range(min(B, max_sequences)):
        steps = np.arange(T) if cache.pad is None else np.flatnonzero(~cache.pad[:, b, 0])
        P = None
        for j, i in enumerate(steps[::-1]):
            J = step_jacobian(kind, W, L[i, b], None if K is None else K[i, b], F[i, b])
            P = J if P is None else P @ J
            for p, block in zip(parts, (P[:H, :H], P[H:, H:])):
                s = np.linalg.svd(block, compute_uv=False)
                with np.errstate(divide="ignore"):
                    logs[(p, "spectral")][j].append(np.log(s[0]))
                    logs[(p, "frobenius")][j].append(0.5 * np.log((s**2).sum()))
    n = max((j + 1 for j in range(T) if logs[("h", "spectral")][j]), default=0)
    out = {}
    for p in parts:
        res = {"lag": list(range(1, n + 1)), "sequences": [len(logs[(p, "spectral")][j]) for j in range(n)]}
        for name in ("spectral", "frobenius"):
            mean_log = np.array([np.mean(v) if v else -np.inf for v in logs[(p, name)][:n]])
            res[name] = [float(np.exp(v)) for v in mean_log]
            res[f"rate_{name}"] = fit_rate(np.arange(1, n + 1), mean_log)
        out[p] = res
    h = out.pop("h")
    return h | out


def saturation(cache) -> dict:
    """Per sigmoid gate, on real steps: the mean, the fraction near 0 (< NEAR) and near 1 (> 1 - NEAR).

    LSTM gates i, f, o; GRU gates r, z. Returns {gate: {"mean", "near_0", "near_1"}, "near": NEAR}.
    """
    names = {"i": 0, "f": 1, "o": 3} if isinstance(cache, lstm.Cache) else {"r": 0, "z": 1}
    real = np.ones(cache.Hs[1:].shape[:2], bool) if cache.pad is None else ~cache.pad[:, :, 0]
    out = {}
    for name, k in names.items():
        v = cache.gate(k)[real]
        if v.size == 0:
            continue
        out[name] = {
            "mean": float(v.mean()),
            "near_0": float((v < NEAR).mean()),
            "near_1": float((v > 1 - NEAR).mean()),
        }
    return out | {"near": NEAR}


def spectrum(cache) -> dict:
    """sigma_max and spectral radius of each gate's recurrent block W_g, (H, H)."""
    W = cache.W.astype(np.float64)
    H = W.shape[1]
    names = "ifgo" if isinstance(cache, lstm.Cache) else "rzn"
    out = {}
    for k, name in enumerate(names):
        Wg = W[k * H : (k + 1) * H]
        out[f"sigma_max_W_{name}"] = float(np.linalg.norm(Wg, 2))
        out[f"spectral_radius_W_{name}"] = float(np.abs(np.linalg.eigvals(Wg)).max())
    return out


def _heat(delta: np.ndarray, gram: np.ndarray | None) -> np.ndarray:
    """Frobenius norm of sum_b delta_b v_b^T per row of (n, B, G) deltas, from the Gram (n, B, B) of the v_b;
    with gram None the norm of sum_b delta_b (a bias)."""
    if gram is None:
        return np.linalg.norm(delta.sum(axis=1), axis=1)
    Gd = np.einsum("kbh,kch->kbc", delta, delta)
    return np.sqrt(np.maximum((Gd * gram).sum(axis=(1, 2)), 0))


def contributions(cache, dout: np.ndarray | None, dstate_n, heatmap: bool = True) -> dict:
    """Every (t, k) term of the gated cell's weight gradients.

    cache: the cell's cache from a forward pass (in float64); dout (T, B, H)
    natural order and dstate_n (a tuple of (B, H) or None entries, or None):
    the gradients from above, as the cell's backward takes them. Returns
    {"lag_sums": {"W", "U", "b"(, "bn")}: (T, *shape) per lag t - k,
    "heatmap": {same keys: (T, T) norms, t rows, k columns} or None}.
    """
    kind, L, K, F = _factors(cache)
    Hs, W, U, X, pad = cache.Hs, cache.W, cache.U, cache.X, cache.pad
    T, B, H = Hs.shape[0] - 1, Hs.shape[1], Hs.shape[2]
    GH = W.shape[0]
    ids = X.dtype.kind in "iu"
    D = U.shape[1]
    n_states = 2 if kind == "lstm" else 1
    dstate_n = (tuple(dstate_n) if dstate_n is not None else ()) + (None,) * n_states  # missing parts: none
    Gh = np.zeros((T, B, H))
    if dout is not None:
        Gh += dout[::-1] if cache.reverse else dout
    if dstate_n[0] is not None:
        Gh[T - 1] += dstate_n[0]
    Gc = np.zeros((T, B, H))
    if kind == "lstm" and dstate_n[1] is not None:
        Gc[T - 1] += dstate_n[1]
    sums = {"W": np.zeros((T, GH, H)), "U": np.zeros((T, GH, D)), "b": np.zeros((T, GH))}
    if kind == "gru":
        sums["bn"] = np.zeros((T, H))
    heat = {k: np.zeros((T, T)) for k in sums} if heatmap else None
    if heatmap:
        gram_h = np.einsum("kbh,kch->kbc", Hs[:-1], Hs[:-1])
        gram_x = (X[:, :, None] == X[:, None, :]).astype(np.float64) if ids else np.einsum("kbd,kcd->kbc", X, X)
    for lag in range(T):
        n = T - lag  # terms t = lag..T-1 at k = t - lag = 0..n-1
        if kind == "lstm":
            Gct = Gc[lag:] + Gh[lag:] * K[:n]  # dL_t/dc_k
            D4 = L[:n].reshape(n, B, 4, H).copy()
            D4[:, :, :3] *= Gct[:, :, None, :]
            D4[:, :, 3] *= Gh[lag:]
            dA = dR = D4.reshape(n, B, GH)
        else:
            D4 = L[:n].reshape(n, B, 4, H) * Gh[lag:, :, None, :]
            dR = D4[:, :, :3].reshape(n, B, GH)
            dA = np.concatenate((D4[:, :, :2], D4[:, :, 3:]), axis=2).reshape(n, B, GH)
        A2 = dA.reshape(n * B, GH)
        sums["W"][lag] = dR.reshape(n * B, GH).T @ Hs[:n].reshape(n * B, H)
        sums["U"][lag] = scatter_add_columns(X[:n].reshape(-1), A2, D) if ids else A2.T @ X[:n].reshape(n * B, D)
        sums["b"][lag] = A2.sum(axis=0)
        if kind == "gru":
            sums["bn"][lag] = D4[:, :, 2].sum(axis=(0, 1))
        if heatmap:
            t, k = np.arange(lag, T), np.arange(n)
            heat["W"][t, k] = _heat(dR, gram_h[:n])
            heat["U"][t, k] = _heat(dA, gram_x[:n])
            heat["b"][t, k] = _heat(dA, None)
            if kind == "gru":
                heat["bn"][t, k] = _heat(D4[:, :, 2], None)
        if lag + 1 < T:  # the lag-(l+1) gradients on the state before step k, for t = lag+1..T-1
            nh = dR[1:] @ W
            if kind == "lstm":
                Gc[lag + 1 :] = Gct[1:] * F[1:n]  # F = 1, K = 0 on padded steps: unchanged
                if pad is not None:
                    nh = np.where(pad[1:n], Gh[lag + 1 :], nh)
            else:
                nh += Gh[lag + 1 :] * F[1:n]  # the direct path z_k; L = 0, z = 1 on padded steps
            Gh[lag + 1 :] = nh
    return {"lag_sums": sums, "heatmap": heat}
