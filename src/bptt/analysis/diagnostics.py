"""Why BPTT is hard, measured: Jacobian products by lag and each (t, k) term of the gradient.

For one recurrent layer (one direction), the gradient BPTT sums in O(T) is

    dL/dW = sum_t sum_{k<=t} (dL_t/dh_t) (prod_{i=k+1}^{t} diag(f'(a_i)) W) diag(f'(a_k)) h_{k-1}^T

and likewise dL/dU (x_k in place of h_{k-1}) and dL/db (1). Here dL_t/dh_t
is the gradient that enters the layer at step t from above (the head, or the
layer above for a stacked model; with a final-state head, "last" pooling,
the gradient on the final state enters at the last step). This module
computes every (t, k) term, in float64, with one vectorised sweep per lag
t - k (O(T) GEMMs over all t at once, O(T^2 B H^2) work in all):

    G_0[t]     = dL_t/dh_t
    delta_l[t] = G_l[t] * f'(a_{t-l})                 (0 on padded steps)
    C_l[t]     = delta_l[t]^T h_{t-l-1}              the (t, k = t - l) term of dL/dW
    G_{l+1}[t] = delta_l[t] W    (= G_l[t] through a padded step, where h_k = h_{k-1})

and `contributions` returns, per lag l, the sum over t of the terms (a
tensor shaped like W, U, b: they add up to the BPTT gradient exactly, which
tests/test_diagnostics.py checks) and, per (t, k), the Frobenius norm of the
term summed over the batch (the heatmap).

`jacobian_norms` measures ||dh_t/dh_k|| = ||prod_{i=k+1}^{t} diag(f'(a_i)) W||
(spectral and Frobenius) from each sequence's last real step back to its
first, and fits the exponential rate per step; `spectrum` reports
sigma_max(W), the spectral radius and the mean |f'(a)| seen, against Pascanu,
Mikolov & Bengio's (2013) bound: sigma_max(W) < 1/gamma (gamma = max |f'|: 1
for tanh, 1/4 for sigmoid) is sufficient for the gradient to vanish, and
sigma_max(W) > 1/gamma is necessary for it to explode.

Stacked layers and bidirectional models are diagnosed per layer and
direction; a reverse direction is measured in its own processing order (its
lag t - k runs backwards in natural time). Everything is in processing steps:
padded steps are skipped by the Jacobians (they are identities) and carry no
term of their own.
"""

from __future__ import annotations

import math

import numpy as np

from bptt import blas
from bptt.analysis.lag_fit import fit_rate
from bptt.errors import UsageError
from bptt.layers import activations, elman, gru, lstm, recompute
from bptt.layers.embedding import scatter_add_columns

LAG_BUCKETS = (("0", 0, 1), ("1-9", 1, 10), ("10-99", 10, 100), ("100+", 100, None))


def contributions(cache: elman.Cache, dout: np.ndarray | None, dhn: np.ndarray | None, heatmap: bool = True) -> dict:
    """Every (t, k) term of dL/dW, dL/dU, dL/db for one layer direction.

    cache: the layer's `elman.Cache` from a forward pass; dout (T, B, H) natural
    order, dhn (B, H): the gradients from above, as `elman.backward` takes them.
    Returns {"lag_sums": {"W": (T, H, H), "U": (T, H, D), "b": (T, H)} (entry l:
    the sum of the terms with t - k = l), "heatmap": {"W", "U", "b": (T, T)
    Frobenius norms of the (t, k) terms, t rows, k columns, 0 above the
    diagonal} (None if heatmap is False)}. All float64.
    """
    Hs = cache.Hs.astype(np.float64)
    W = cache.W.astype(np.float64)
    X, pad = cache.X, cache.pad
    T, B, H = Hs.shape[0] - 1, Hs.shape[1], Hs.shape[2]
    ids = X.dtype.kind in "iu"
    D = cache.U.shape[1]
    Xf = None if ids else X.astype(np.float64)
    fp = elman.local_derivative(cache.nonlinearity, Hs[1:], pad)  # f'(a_t), 0 on padded steps
    G = np.zeros((T, B, H))
    if dout is not None:
        G += dout[::-1] if cache.reverse else dout
    if dhn is not None:
        G[T - 1] += dhn
    sums = {"W": np.zeros((T, H, H)), "U": np.zeros((T, H, D)), "b": np.zeros((T, H))}
    heat = {k: np.zeros((T, T)) for k in sums} if heatmap else None
    Gh = np.einsum("kbh,kch->kbc", Hs[:-1], Hs[:-1]) if heatmap else None  # (T, B, B) Gram of h_{k-1}
    if heatmap:
        Gx = (X[:, :, None] == X[:, None, :]).astype(np.float64) if ids else np.einsum("kbd,kcd->kbc", Xf, Xf)
    for lag in range(T):
        n = T - lag  # terms t = lag..T-1, k = t - lag = 0..n-1
        delta = G[lag:] * fp[:n]  # (n, B, H)
        d2 = delta.reshape(n * B, H)
        sums["W"][lag] = d2.T @ Hs[:n].reshape(n * B, H)
        if ids:
            sums["U"][lag] = scatter_add_columns(X[:n].reshape(-1), d2, D)
        else:
            sums["U"][lag] = d2.T @ Xf[:n].reshape(n * B, D)
        sums["b"][lag] = d2.sum(axis=0)
        if heatmap:
            t, k = np.arange(lag, T), np.arange(n)
            Gd = np.einsum("kbh,kch->kbc", delta, delta)  # ||sum_b d_b v_b^T||^2 = sum_bc (d_b.d_c)(v_b.v_c)
            heat["W"][t, k] = np.sqrt(np.maximum((Gd * Gh[:n]).sum(axis=(1, 2)), 0))
            heat["U"][t, k] = np.sqrt(np.maximum((Gd * Gx[:n]).sum(axis=(1, 2)), 0))
            heat["b"][t, k] = np.linalg.norm(delta.sum(axis=1), axis=1)
        if lag + 1 < T:
            nxt = delta[1:] @ W  # G_{lag+1}[t] for t = lag+1..T-1, at k = t - lag - 1
            if pad is not None:
                nxt = np.where(pad[1:n], G[lag + 1 :], nxt)  # through a padded step dL/dh passes unchanged
            G[lag + 1 :] = nxt
    return {"lag_sums": sums, "heatmap": heat}


def by_lag(lag_sums: dict) -> dict:
    """Per tensor: ||sum of the terms at lag l||_F for every l, and each bucket's share.

    share of a bucket (lags 0, 1-9, 10-99, 100+) = ||sum of its terms|| / sum over
    buckets of the same norms: how much of the gradient comes from 1, 10, 100 steps back.
    """
    out = {}
    for name, S in lag_sums.items():
        T = S.shape[0]
        norms = np.sqrt((S.reshape(T, -1) ** 2).sum(axis=1))
        buckets = {}
        for label, lo, hi in LAG_BUCKETS:
            if lo < T:
                buckets[label] = float(np.linalg.norm(S[lo:hi].sum(axis=0)))
        total = sum(buckets.values()) or 1.0
        out[name] = {
            "norm_by_lag": norms.tolist(),
            "total_norm": float(np.linalg.norm(S.sum(axis=0))),
            "share_by_lag_bucket": {k: v / total for k, v in buckets.items()},
        }
    return out


def jacobian_norms(cache: elman.Cache, max_sequences: int = 8, progress=None) -> dict:
    """||dh_t/dh_k|| (spectral, Frobenius) for lag t - k = 1.., from each sequence's last real step.

    dh_t/dh_{t-1} = diag(f'(a_t)) W; the product over the lag is built backwards
    from t = the last real step, one (H, H) GEMM per step, for the first
    `max_sequences` sequences (each costs T H^3 for the norms). Returns
    {"lag": [1..], "spectral": geometric mean over sequences per lag,
    "frobenius": same, "sequences": [per-sequence count per lag], "rate_spectral",
    "rate_frobenius": exp(fitted slope of log norm against lag): the factor per step}.
    The norms come from the Gram matrix P P^T: its largest eigenvalue is ||P||_2^2 (to rounding,
    relative to ||P||_2^2) and its trace ||P||_F^2, at half the cost of an SVD per product.
    progress(): called after each sequence.
    """
    Hs = cache.Hs.astype(np.float64)
    W = cache.W.astype(np.float64)
    T, B, H = Hs.shape[0] - 1, Hs.shape[1], Hs.shape[2]
    fp = activations.derivative(cache.nonlinearity, Hs[1:])
    logs = {"spectral": [[] for _ in range(T)], "frobenius": [[] for _ in range(T)]}
    for b in range(min(B, max_sequences)):
        steps = np.arange(T) if cache.pad is None else np.flatnonzero(~cache.pad[:, b, 0])
        P = np.eye(H)
        prods = np.empty((len(steps), H, H))
        for j, i in enumerate(steps[::-1]):
            P = P @ (fp[i, b][:, None] * W)  # dh_t/dh_{i-1} = (dh_t/dh_i) diag(f'(a_i)) W
            prods[j] = P
        if len(steps) == 0:
            if progress is not None:
                progress()
            continue
        scale = np.abs(prods).max(axis=(1, 2))  # P / scale: no overflow or underflow in the squares
        unit = prods / np.where(scale > 0, scale, 1.0)[:, None, None]
        gram = unit @ unit.transpose(0, 2, 1)
        top = np.maximum(np.linalg.eigvalsh(gram)[:, -1], 0.0)
        fro = np.einsum("jii->j", gram)
        with np.errstate(divide="ignore"):
            ls, lf = np.log(scale) + 0.5 * np.log(top), np.log(scale) + 0.5 * np.log(fro)
        if progress is not None:
            progress()
        for j in range(len(steps)):
            logs["spectral"][j].append(ls[j])
            logs["frobenius"][j].append(lf[j])
    n = max((j + 1 for j in range(T) if logs["spectral"][j]), default=0)
    out = {"lag": list(range(1, n + 1)), "sequences": [len(logs["spectral"][j]) for j in range(n)]}
    for kind in ("spectral", "frobenius"):
        mean_log = np.array([np.mean(v) if v else -np.inf for v in logs[kind][:n]])
        out[kind] = [float(np.exp(v)) for v in mean_log]
        out[f"rate_{kind}"] = fit_rate(np.arange(1, n + 1), mean_log)
    return out


def spectrum(cache: elman.Cache) -> dict:
    """sigma_max(W), spectral radius, Pascanu et al.'s bound 1/gamma, and the mean |f'(a)| on real steps."""
    W = cache.W.astype(np.float64)
    Hs = cache.Hs.astype(np.float64)
    fp = np.abs(activations.derivative(cache.nonlinearity, Hs[1:]))
    mean_fp = float(fp.mean()) if cache.pad is None else float(fp[~np.broadcast_to(cache.pad, fp.shape)].mean())
    sigma = float(np.linalg.norm(W, 2))
    g = activations.gamma(cache.nonlinearity)
    return {
        "sigma_max_W": sigma,
        "spectral_radius_W": float(np.abs(np.linalg.eigvals(W)).max()),
        "gamma": g,
        "bound": 1.0 / g,
        "vanishing_guaranteed": sigma < 1.0 / g,
        "mean_abs_fprime": mean_fp,
        "sigma_max_times_mean_fprime": sigma * mean_fp,
    }


def diagnose(
    model,
    inputs,
    targets,
    mask=None,
    h0=None,
    *,
    cond=None,
    loss_mask=None,
    max_sequences: int = 8,
    heatmap: bool = True,
    progress=None,
    chars=None,
) -> dict:
    """All diagnostics of `model` on one batch, in float64, per layer and direction.

    Returns {"loss", "layers": [{"name", "spectrum", "jacobian", "contributions"
    (by_lag), "heatmap": {"W", "U", "b": (T, T) arrays} or None,
    "lag_sums": {...}}]} (arrays as numpy; `to_json` makes it serialisable).
    chars: the (B, T, C) character ids of a model with a character encoder.
    progress(done, total): called as the work advances (units: per layer direction, its gradient
    terms and each sequence's Jacobian products).
    """
    from bptt.analysis import gate_diagnostics

    if not isinstance(model.cell, (elman.Elman, lstm.LSTM, gru.GRU)):
        raise UsageError(
            f"diagnose: the diagnostics are written out for the elman, lstm and gru cells, got cell={model.cell.name!r}"
        )
    m = model.astype(np.float64).eval()
    fwd = m.forward(inputs, mask, h0, cond=cond, chars=chars)
    loss, dZ = m.loss(fwd, targets, loss_mask)
    taps: dict = {}
    grads, _ = m.backward(fwd, dZ, taps=taps)
    layers = []
    names = [(layer, d, name) for layer in range(m.num_layers) for d, name in enumerate(m.layer_names(layer))]
    total, done = len(names) * (1 + min(int(fwd.h0.shape[1]), max_sequences)), [0]

    def tick():
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    H = m.hidden_size
    # the work is (H, H) GEMMs and eigenvalue problems: one BLAS thread while they are small (bptt.blas)
    with blas.threads_for(H * H * H, blas.STEP_SMALL):
        for layer, d, name in names:
            cache = recompute.full(fwd.caches[layer][d])
            dout, dhn = taps[(layer, d)]
            if gate_diagnostics.is_gated(cache):  # the head reads h only: no gradient enters c from above
                c = gate_diagnostics.contributions(cache, dout, (dhn, None), heatmap=heatmap)
                layers.append(
                    {
                        "name": name,
                        "cell": m.cell.name,
                        "spectrum": gate_diagnostics.spectrum(cache),
                        "saturation": gate_diagnostics.saturation(cache),
                        "jacobian": gate_diagnostics.jacobian_norms(cache, max_sequences),
                        "contributions": by_lag(c["lag_sums"]),
                        "heatmap": c["heatmap"],
                        "lag_sums": c["lag_sums"],
                    }
                )
                continue
            c = contributions(cache, dout, dhn, heatmap=heatmap)
            tick()
            layers.append(
                {
                    "name": name,
                    "spectrum": spectrum(cache),
                    "jacobian": jacobian_norms(cache, max_sequences, tick),
                    "contributions": by_lag(c["lag_sums"]),
                    "heatmap": c["heatmap"],
                    "lag_sums": c["lag_sums"],
                }
            )
    return {"loss": float(loss), "steps": fwd.T, "batch": int(fwd.h0.shape[1]), "layers": layers, "grads": grads}


def to_json(report: dict, digits: int = 4) -> dict:
    """The report without the big arrays (lag sums, gradients), numbers rounded to `digits` significant digits."""

    def r(x):
        if isinstance(x, dict):
            return {k: r(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [r(v) for v in x]
        if isinstance(x, np.ndarray):
            return r(x.tolist())
        if isinstance(x, (float, np.floating)):
            x = float(x)
            return x if not math.isfinite(x) or x == 0 else float(f"{x:.{digits}g}")
        return x

    layers = [{k: v for k, v in layer.items() if k != "lag_sums"} for layer in report["layers"]]
    return r({k: v for k, v in report.items() if k not in ("layers", "grads")} | {"layers": layers})
