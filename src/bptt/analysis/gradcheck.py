"""Check BPTT against central finite differences, in float64.

For each parameter entry theta_i:

    numeric_i = (L(theta - 2 eps e_i) - 8 L(theta - eps e_i) + 8 L(theta + eps e_i)
                 - L(theta + 2 eps e_i)) / (12 eps)
    rel_i     = |analytic_i - numeric_i| / max(|analytic_i| + |numeric_i|, floor * max_j |numeric_j|)

The five-point central difference (the two-point one, Richardson-extrapolated)
has truncation error O(eps^4) instead of O(eps^2), so at the default
eps = 1e-3 both its truncation and its float64 rounding error stay near
1e-12: the check can ask for a relative error of 1e-6 on every entry, not
just on the large ones. Where the two-point estimates at eps and 2 eps
disagree, a relu kink or a max-pooling switch lies within reach, and the
entry is redone with eps / 10 (up to three times).

and each tensor reports max_i rel_i. The floor keeps an entry whose gradient
is (nearly) zero in exact arithmetic, where both sides are rounding noise,
from reading as 100% wrong: an entry smaller than a thousandth of the
tensor's largest gradient is judged against that thousandth instead. The
floor scales with the tensor, so a tensor whose gradients are all tiny (a
vanishing gradient) is still checked to the same relative precision.

Dropout masks are replayed from one seed for every evaluation, so a model
with dropout is checked on the same function throughout. With a horizon the
objective checked is the truncated one (`truncated_objective` below), with
the dropout masks of the pass it truncates.
"""

from __future__ import annotations

import numpy as np

from bptt.layers import char_encoder, dropout
from bptt.layers.truncation import check_horizon, window_states
from bptt.model import Forward

DEFAULT_THRESHOLD = 1e-6


def relative_error(a: np.ndarray, n: np.ndarray, floor: float = 1e-3) -> float:
    """max_i |a_i - n_i| / max(|a_i| + |n_i|, floor * max_j |n_j|), 0 for empty or all-zero."""
    if a.size == 0:
        return 0.0
    scale = max(floor * float(np.abs(n).max()), np.finfo(np.float64).tiny)
    return float((np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), scale)).max())


def _five_point(objective, flat: np.ndarray, i: int, eps: float) -> tuple[float, float]:
    """(five-point estimate, two-point estimate at 2 eps) of dL/dtheta_i; theta_i is restored."""
    old = flat[i]
    f = []
    for step in (-2, -1, 1, 2):
        flat[i] = old + step * eps
        f.append(objective())
    flat[i] = old
    # differences first, so equal values give exactly 0
    d1 = (f[2] - f[1]) / (2 * eps)
    d2 = (f[3] - f[0]) / (4 * eps)
    return (4 * d1 - d2) / 3, d2


def _derivative(objective, flat: np.ndarray, i: int, eps: float, tries: int = 4) -> float:
    """Five-point central difference, retried with eps / 10 where the two-point
    estimates at eps and 2 eps disagree by more than smoothness allows: that is
    a kink (relu at 0, a max-pooling switch) inside [-2 eps, 2 eps]."""
    for _ in range(tries):
        d, d2 = _five_point(objective, flat, i, eps)
        if abs(d - d2) <= 1e-4 * (abs(d) + abs(d2)) + 1e-10:
            return d
        eps /= 10
    return d


def truncated_objective(model, inputs, targets, mask=None, h0=None, cond=None, *, tau: int, base, chars=None) -> float:
    """The truncated objective: the model's loss on states h~_t, each recomputed
    over its last tau real steps from the state after step t - tau of the forward
    pass `base` held fixed (h~_t = h_t when t <= tau, which starts from h_0 itself).

    Its gradient is what the horizon sweep computes (`bptt.layers.truncation`);
    this evaluates it directly so finite differences can check that (T windows,
    O(T tau)), for any cell, through `bptt.layers.truncation.window_states`.
    """
    check_horizon(model, tau)
    X, m, state0, cond = model._prepare(inputs, mask, h0, cond)
    B = X.shape[1]
    if cond is not None:
        state0, _ = model._state_from_cond(cond)
    elif state0 is None:
        state0 = model._parts(model.zero_state(B))
    X0 = model._embed(X) if model.embedding_size is not None else X
    if model.char_hidden_size is not None:
        enc, _ = char_encoder.forward(
            model.char_rnn, model._char_params(), model._prepare_chars(chars, B, X.shape[0]), m
        )
        X0 = np.concatenate([X0, enc], axis=2)
    X0 = dropout.forward(X0, base.in_drop)  # base's dropout masks, held fixed like its states
    state0 = tuple(part[0] for part in state0)
    params = model._cell_params("rnn0")
    if "rnn0" in base.weight_drops:  # and base's weight dropout mask: the windows run W * M
        params["W"] = dropout.forward(params["W"], base.weight_drops["rnn0"])
    Htil = window_states(model.cell, params, X0, state0, m, base.caches[0][0], tau)
    fwd = Forward(Z=None, hn=Htil[-1][None], h0=state0[0], X=X, ids=None, mask=m, out_drop=base.out_drop)
    model._head_forward(fwd, Htil)
    loss, _ = model.loss(fwd, targets)
    return loss


def gradcheck(
    model,
    inputs,
    targets,
    mask=None,
    h0=None,
    *,
    cond=None,
    loss_mask=None,
    horizon=None,
    eps: float = 1e-3,
    max_entries: int | None = 200,
    seed: int = 0,
    floor: float = 1e-3,
    chars=None,
) -> dict[str, float]:
    """Max relative error between BPTT and finite differences, per parameter tensor.

    The model is copied to float64 first. max_entries: check every entry of a
    tensor up to this many, else a seeded random sample of that many (None: all).
    If h0 is given its gradient is checked too, under the key "h0" (and "c0" for
    the LSTM, whose h0 is the tuple (h0, c0)). chars: the (B, T, C) character ids of a
    model with a character encoder.
    Returns {name: max relative error}.
    """
    m = model.astype(np.float64)
    draws = np.random.default_rng(seed)
    dropout_seed = int(draws.integers(2**31))

    # h0: an array, or for a cell with a state of several parts (LSTM) a tuple (h0, c0)
    parts = () if h0 is None else tuple(np.array(p, dtype=np.float64) for p in (h0 if isinstance(h0, tuple) else (h0,)))
    h0_64 = None if h0 is None else (parts[0] if len(parts) == 1 else parts)
    _, grads, state = m.loss_and_grads(
        inputs,
        targets,
        mask,
        h0_64,
        cond=cond,
        loss_mask=loss_mask,
        horizon=horizon,
        rng=np.random.default_rng(dropout_seed),
        return_state=True,
        chars=chars,
    )
    if horizon is None:

        def objective() -> float:
            fwd = m.forward(inputs, mask, h0_64, cond=cond, rng=np.random.default_rng(dropout_seed), chars=chars)
            return m.loss(fwd, targets, loss_mask)[0]

    else:
        base = m.forward(inputs, mask, h0_64, cond=cond, rng=np.random.default_rng(dropout_seed), chars=chars)

        def objective() -> float:
            return truncated_objective(m, inputs, targets, mask, h0_64, cond, tau=horizon, base=base, chars=chars)

    tensors = dict(m.params)
    analytic = dict(grads)
    for part, name in zip(parts, m.cell.state_names):
        tensors[f"{name}0"], analytic[f"{name}0"] = part, state[f"d{name}0"].reshape(part.shape)
    report = {}
    for name, theta in tensors.items():
        flat = theta.reshape(-1)
        idx = np.arange(flat.size)
        if max_entries is not None and flat.size > max_entries:
            idx = np.sort(draws.choice(flat.size, size=max_entries, replace=False))
        numeric = np.empty(len(idx))
        for j, i in enumerate(idx):
            numeric[j] = _derivative(objective, flat, i, eps)
        a = analytic[name].reshape(-1)[idx]
        report[name] = relative_error(a, numeric, floor)
    return report
