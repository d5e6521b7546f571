"""Truncated BPTT, all three kinds, checked by finite differences of the truncated
objective (the state that starts a window, or that lies beyond the horizon, held fixed)."""

import json

import numpy as np
import pytest

from bptt import gradcheck
from bptt.cli import main
from helpers import make_model


@pytest.mark.parametrize(
    "flags",
    [
        ["--h0"],  # stateful chunking: one chunk from a carried state (k2 = k1)
        ["--seq-length", "3", "--backprop-steps", "7"],  # TBPTT(3, 7)
        ["--seq-length", "3", "--backprop-steps", "7", "--num-layers", "2", "--nonlinearity", "relu"],
        ["--horizon", "2", "--uneven", "--h0"],  # per-output horizon
        ["--horizon", "3", "--mode", "many-to-one", "--pooling", "mean", "--uneven"],
        ["--horizon", "1", "--mode", "one-to-many", "--input", "features"],
    ],
)
def test_truncated_gradients_pass_gradcheck_from_the_cli(flags, capsys):
    assert main(["gradcheck", "--json", *flags]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and max(report["max_relative_error"].values()) < 1e-6


@pytest.mark.parametrize("mode,pooling", [("many-to-many", "last"), ("many-to-one", "last"), ("many-to-one", "max")])
@pytest.mark.parametrize("tau", [1, 2, 4])
def test_horizon_gradient_is_the_truncated_objectives(mode, pooling, tau):
    rng = np.random.default_rng(tau)
    model = make_model("embedding", mode=mode, pooling=pooling, hidden_size=4)
    x = rng.integers(0, 6, (3, 6))
    y = rng.integers(0, 3, (3, 6) if mode == "many-to-many" else (3,))
    report = gradcheck(model, x, y, np.array([6, 4, 2]), 0.5 * rng.standard_normal((1, 3, 4)), horizon=tau)
    assert max(report.values()) < 1e-6, report


def test_horizon_at_least_T_is_exact_bptt_and_shorter_is_not():
    rng = np.random.default_rng(0)
    model = make_model("features", dtype="float64", hidden_size=4)
    x = rng.standard_normal((2, 6, 3))
    y = rng.integers(0, 3, (2, 6))
    _, full = model.loss_and_grads(x, y)
    _, same = model.loss_and_grads(x, y, horizon=6)
    _, cut = model.loss_and_grads(x, y, horizon=2)
    for k in full:
        np.testing.assert_allclose(same[k], full[k], rtol=1e-13, atol=1e-15)
    assert not np.allclose(cut["rnn0.W"], full["rnn0.W"])
    np.testing.assert_allclose(cut["head.V"], full["head.V"])  # V is outside the recurrence: untouched


def test_horizon_one_is_the_immediate_term_only():
    """tau = 1: dL/dW = sum_t delta_t h_{t-1}^T with delta_t = V^T dZ_t * f'(a_t), no W^T delta_{t+1}."""
    rng = np.random.default_rng(1)
    model = make_model("features", dtype="float64", hidden_size=4)
    x = rng.standard_normal((2, 5, 3))
    y = rng.integers(0, 3, (2, 5))
    fwd = model.forward(x)
    _, dZ = model.loss(fwd, y)
    grads, _ = model.backward(fwd, dZ, horizon=1)
    Hs = fwd.caches[0][0].Hs
    delta = (dZ @ model.params["head.V"]) * (1 - Hs[1:] ** 2)
    np.testing.assert_allclose(grads["rnn0.W"], np.einsum("tbi,tbj->ij", delta, Hs[:-1]), rtol=1e-12)


def test_horizon_refuses_stacks():
    model = make_model("features", num_layers=2)
    with pytest.raises(ValueError, match="num_layers=1"):
        model.loss_and_grads(np.zeros((1, 3, 3)), np.zeros((1, 3), int), horizon=2)


@pytest.mark.parametrize("holes", [False, True])
def test_horizon_sweep_at_tau_T_is_the_full_sweep_with_both_gradients_entering(holes):
    """The lagged sweep with tau >= T is exact BPTT (`elman.sweep`), also when a loss on the
    final state (dhn) and per-step gradients (dout) enter together and padded steps sit in
    the middle of a sequence (no model call passes both, so only this test reaches it)."""
    from bptt.layers import elman
    from bptt.layers.truncation import horizon_sweep

    rng = np.random.default_rng(3)
    T, B, H = 6, 3, 4
    W = rng.standard_normal((H, H))
    f_prime = rng.random((T, B, H))
    dout, dhn = rng.standard_normal((T, B, H)), rng.standard_normal((B, H))
    pad = None
    if holes:
        pad = np.zeros((T, B, 1), bool)
        pad[2, 0] = pad[3, 0] = pad[5, 1] = pad[0, 2] = True  # row 2 starts with a padded step
        f_prime = np.where(pad, 0.0, f_prime)
    full, lagged = f_prime.copy(), f_prime.copy()
    dh0_full = elman.sweep(full, dout, dhn, W, pad)
    dh0_lagged = horizon_sweep(lagged, dout, dhn, W, pad, T)
    np.testing.assert_allclose(lagged, full, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dh0_lagged, dh0_full, rtol=1e-12, atol=1e-14)


def test_both_sweeps_take_no_final_state_gradient_as_zero():
    """dhn=None (no loss on the last state) is the same as dhn = 0, in full BPTT and with a horizon."""
    from bptt.layers import elman
    from bptt.layers.truncation import horizon_sweep

    rng = np.random.default_rng(5)
    W, f_prime, dout = rng.standard_normal((3, 3)), rng.random((4, 2, 3)), rng.standard_normal((4, 2, 3))
    for sweep in (elman.sweep, lambda *a: horizon_sweep(*a, 2)):
        a, b = f_prime.copy(), f_prime.copy()
        np.testing.assert_array_equal(sweep(a, dout, None, W, None), sweep(b, dout, np.zeros((2, 3)), W, None))
        np.testing.assert_array_equal(a, b)
