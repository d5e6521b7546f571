"""bptt.analysis.gate_diagnostics: the gated cells' state Jacobians against finite differences,
Jacobian norms by lag, gate saturation, and (t, k) terms that add up to the BPTT gradient."""

from __future__ import annotations

import numpy as np
import pytest

from bptt.analysis import gate_diagnostics as gd
from bptt.layers.gru import GRU
from bptt.layers.lstm import LSTM

CELLS = {"lstm": LSTM, "gru": GRU}
T, B, D, H = 6, 3, 3, 2


def setup(name, seed=0, ids=False):
    rng = np.random.default_rng(seed)
    cell = CELLS[name]()
    params = {k: 2 * v for k, v in cell.init(D, H, True, rng, dtype="float64").items()}
    X = rng.integers(0, D, (T, B)) if ids else rng.standard_normal((T, B, D))
    state0 = tuple(0.5 * rng.standard_normal((B, H)) for _ in range(cell.n_states))
    mask = np.ones((T, B), bool)
    mask[[0, 3], 1] = False
    mask[4:, 2] = False
    return cell, params, X, state0, mask, rng


def state_vector(state):
    return np.concatenate([s[0] for s in state])


@pytest.mark.parametrize("name", CELLS)
def test_step_jacobian_is_the_derivative_of_one_step(name):
    cell, params, X, state0, mask, _ = setup(name)
    _, _, cache = cell.forward(params, X, state0, mask=mask)
    kind, L, K, F = gd._factors(cache)
    for t, b in [(0, 0), (2, 1), (5, 0)]:
        J = gd.step_jacobian(kind, cache.W, L[t, b], None if K is None else K[t, b], F[t, b])
        s = state_vector(tuple(p[b : b + 1] for p in cache.state(t)))
        n = len(s) // H
        num = np.empty((len(s), len(s)))
        eps = 1e-6
        for j in range(len(s)):
            outs = []
            for sign in (1, -1):
                v = s.copy()
                v[j] += sign * eps
                st = tuple(v[i * H : (i + 1) * H][None] for i in range(n))
                _, new, _ = cell.forward(params, X[t : t + 1, b : b + 1], st)
                outs.append(state_vector(new))
            num[:, j] = (outs[0] - outs[1]) / (2 * eps)
        np.testing.assert_allclose(J, num, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", CELLS)
def test_jacobian_norms_by_lag(name):
    cell, params, X, state0, mask, _ = setup(name)
    _, _, cache = cell.forward(params, X, state0, mask=mask)
    rep = gd.jacobian_norms(cache, max_sequences=1)  # sequence 0: no padding
    kind, L, K, F = gd._factors(cache)
    P = np.eye(H * cell.n_states)
    for lag in range(1, T + 1):
        t = T - lag
        P = P @ gd.step_jacobian(kind, cache.W, L[t, 0], None if K is None else K[t, 0], F[t, 0])
        assert rep["spectral"][lag - 1] == pytest.approx(np.linalg.norm(P[:H, :H], 2), rel=1e-10)
        assert rep["frobenius"][lag - 1] == pytest.approx(np.linalg.norm(P[:H, :H]), rel=1e-10)
        if name == "lstm":
            assert rep["c"]["spectral"][lag - 1] == pytest.approx(np.linalg.norm(P[H:, H:], 2), rel=1e-10)
    assert rep["lag"] == list(range(1, T + 1))
    full = gd.jacobian_norms(cache)
    assert full["sequences"] == [3, 3, 3, 3, 1, 1]  # real steps 6, 4, 4 (padding skipped)


def test_the_carousel_block_is_the_product_of_forget_gates():
    cell, params, X, state0, mask, _ = setup("lstm")
    _, _, cache = cell.forward(params, X, state0)
    kind, L, K, F = gd._factors(cache)
    for t in range(T):
        J = gd.step_jacobian(kind, cache.W, L[t, 0], K[t, 0], F[t, 0])
        np.testing.assert_array_equal(J[H:, H:], np.diag(cache.gate(1)[t, 0]))


@pytest.mark.parametrize("name", CELLS)
def test_saturation(name):
    cell, params, X, state0, mask, _ = setup(name)
    _, _, cache = cell.forward(params, X, state0, mask=mask)
    sat = gd.saturation(cache)
    gates = {"lstm": {"i": 0, "f": 1, "o": 3}, "gru": {"r": 0, "z": 1}}[name]
    assert set(sat) == set(gates) | {"near"}
    for g, k in gates.items():
        v = cache.gate(k)[mask]
        assert sat[g]["mean"] == pytest.approx(v.mean())
        assert sat[g]["near_1"] == pytest.approx((v > 1 - gd.NEAR).mean())
        assert sat[g]["near_0"] == pytest.approx((v < gd.NEAR).mean())
    big = dict(params)
    if name == "lstm":
        big["b"] = params["b"].copy()
        big["b"][H : 2 * H] = 50.0  # forget gates wide open
        _, _, c2 = cell.forward(big, X, state0, mask=mask)
        assert gd.saturation(c2)["f"]["near_1"] == 1.0
    assert set(gd.spectrum(cache)) == {f"{k}_W_{g}" for k in ("sigma_max", "spectral_radius") for g in cell_gates(name)}


def cell_gates(name):
    return "ifgo" if name == "lstm" else "rzn"


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("ids, reverse", [(False, False), (True, True)])
def test_terms_add_up_to_the_gradient(name, ids, reverse):
    cell, params, X, state0, mask, rng = setup(name, ids=ids)
    out, _, cache = cell.forward(params, X, state0, mask=mask, reverse=reverse)
    dout = rng.standard_normal((T, B, H)) * mask[..., None]
    dstate_n = tuple(rng.standard_normal((B, H)) for _ in range(cell.n_states))
    c = gd.contributions(cache, dout, dstate_n)
    _, grads, _ = cell.backward(dout, dstate_n, cache)
    assert set(c["lag_sums"]) == set(grads)
    for k in grads:
        np.testing.assert_allclose(c["lag_sums"][k].sum(axis=0), grads[k], rtol=1e-10, atol=1e-12)
        heat = c["heatmap"][k]
        assert heat.shape == (T, T) and np.all(np.triu(heat, 1) == 0) and heat.max() > 0
    # the (t, k) terms of row t are those of the loss at step t alone
    t = T - 2
    only = np.zeros_like(dout)
    only[t if not reverse else T - 1 - t] = dout[t if not reverse else T - 1 - t]
    c1 = gd.contributions(cache, only, None)
    _, g1, _ = cell.backward(only, None, cache)
    np.testing.assert_allclose(c1["lag_sums"]["W"].sum(axis=0), g1["W"], rtol=1e-10, atol=1e-12)
    assert np.all(c1["heatmap"]["W"][np.arange(T) != t] == 0)
