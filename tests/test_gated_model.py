"""RNNModel(cell="lstm" | "gru") with every option the Elman model has, checked against finite
differences in float64 (every parameter, h0 and c0): layers, directions, dropout, masks, modes,
poolings, heads, inputs, the memory-saving mode, the per-output horizon; and the model-level
behaviour around them (state tuples, return_state, step, padding, float32)."""

from __future__ import annotations

import numpy as np
import pytest

from bptt import RNNModel
from bptt.analysis.gradcheck import gradcheck
from bptt.errors import UsageError
from helpers import make_batch, make_model

GATED = ("lstm", "gru")


def state0(model, rng, B):
    """h0 (L*dirs, B, H), or (h0, c0) for the LSTM."""
    shape = (model.num_layers * model.num_directions, B, model.hidden_size)
    parts = tuple(0.5 * rng.standard_normal(shape) for _ in range(model.cell.n_states))
    return parts[0] if len(parts) == 1 else parts


def check(model, rng, *, lengths=None, h0=False, horizon=None, B=3, T=4, kind_entries=60):
    x, y, cond = make_batch(model, rng, B=B, T=T)
    h = state0(model, rng, B) if h0 else None
    report = gradcheck(model, x, y, lengths, h, cond=cond, horizon=horizon, max_entries=kind_entries)
    expected = set(model.params) | ({"h0", "c0"} if h0 and model.cell.name == "lstm" else {"h0"} if h0 else set())
    assert set(report) == expected
    assert max(report.values()) < 1e-6, report


CASES = {
    "stack-bi-dropout-masked-h0": dict(
        kind="features", options=dict(num_layers=2, bidirectional=True, dropout=0.3), lengths=[4, 2, 3], h0=True
    ),
    "tokens-onehot-masked": dict(kind="one-hot", options=dict(), lengths=[4, 1, 3], h0=True),
    "embedding-no-bias": dict(kind="embedding", options=dict(bias=False, num_layers=2), lengths=None, h0=False),
    "many-to-one-last-bi": dict(
        kind="features",
        options=dict(mode="many-to-one", pooling="last", bidirectional=True),
        lengths=[4, 2, 3],
        h0=True,
    ),
    "many-to-one-mean-sigmoid": dict(
        kind="features", options=dict(mode="many-to-one", pooling="mean", head="sigmoid"), lengths=[4, 2, 3], h0=False
    ),
    "many-to-one-max-linear": dict(
        kind="embedding", options=dict(mode="many-to-one", pooling="max", head="linear"), lengths=[4, 2, 3], h0=False
    ),
    "one-to-many-h0map": dict(kind="features", options=dict(mode="one-to-many", num_layers=2), lengths=None, h0=False),
    "one-to-one": dict(kind="features", options=dict(mode="one-to-one", head="linear"), lengths=None, h0=True),
    "recompute-stack-bi": dict(
        kind="features",
        options=dict(num_layers=2, bidirectional=True, checkpoint_every=2),
        lengths=[5, 2, 4],
        h0=True,
    ),
    "recompute-many-to-one": dict(
        kind="one-hot", options=dict(mode="many-to-one", checkpoint_every="auto"), lengths=[5, 3, 1], h0=False
    ),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("cell", GATED)
def test_finite_differences_through_the_model(cell, case):
    c = CASES[case]
    model = make_model(c["kind"], cell=cell, hidden_size=2, dtype="float64", seed=3, **c["options"])
    T = 5 if c["lengths"] is not None and max(c["lengths"]) == 5 else 4
    check(model, np.random.default_rng(7), lengths=c["lengths"], h0=c["h0"], T=T)


@pytest.mark.parametrize("cell", GATED)
@pytest.mark.parametrize("tau", [1, 2])
def test_finite_differences_with_a_horizon(cell, tau):
    """The per-output horizon is the gradient of the truncated objective over the whole state."""
    model = make_model("features", cell=cell, hidden_size=2, dtype="float64", seed=4)
    check(model, np.random.default_rng(8), lengths=[5, 3, 4], h0=True, horizon=tau, T=5)


@pytest.mark.parametrize("cell", GATED)
def test_recompute_equals_full_bptt(cell):
    rng = np.random.default_rng(9)
    kw = dict(num_layers=2, bidirectional=True, cell=cell, hidden_size=3, dtype="float64", seed=1)
    full, seg = make_model("embedding", **kw), make_model("embedding", checkpoint_every=3, **kw)
    seg.params = {k: v.copy() for k, v in full.params.items()}
    x, y, _ = make_batch(full, rng, B=3, T=8)
    h0 = state0(full, rng, 3)
    lengths = np.array([8, 5, 2])
    a = full.loss_and_grads(x, y, lengths, h0, return_state=True)
    b = seg.loss_and_grads(x, y, lengths, h0, return_state=True)
    assert a[0] == pytest.approx(b[0], rel=1e-13)
    for k in a[1]:
        np.testing.assert_allclose(b[1][k], a[1][k], rtol=1e-11, atol=1e-13)
    for k in a[2]:
        np.testing.assert_allclose(b[2][k], a[2][k], rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("cell", GATED)
def test_state_parts_and_return_state(cell):
    rng = np.random.default_rng(10)
    model = make_model("embedding", cell=cell, num_layers=2, bidirectional=True, hidden_size=3, dtype="float64")
    x, y, _ = make_batch(model, rng, B=2, T=5)
    h0 = state0(model, rng, 2)
    loss, grads, state = model.loss_and_grads(x, y, np.array([5, 3]), h0, return_state=True)
    names = {"hn", "dh0"} | ({"cn", "dc0"} if cell == "lstm" else set())
    assert names <= set(state)
    fwd = model.forward(x, np.array([5, 3]), h0)
    assert fwd.hn.shape == (4, 2, 3)
    assert len(fwd.state_n) == model.cell.n_states
    if cell == "lstm":
        assert state["cn"].shape == state["dc0"].shape == (4, 2, 3)
        bare = model.forward(x, None, h0[0])  # a bare array is the h part; c starts at zero
        np.testing.assert_array_equal(bare.Z, model.forward(x, None, (h0[0], np.zeros_like(h0[1]))).Z)
        with pytest.raises(ValueError, match="h0: got a tuple of 3 arrays, expected 2"):
            model.forward(x, None, (*h0, h0[0]))


@pytest.mark.parametrize("cell", GATED)
def test_padding_never_changes_outputs_or_gradients(cell):
    """A padded batch gives each sequence what it gives alone, and the same summed gradients."""
    rng = np.random.default_rng(11)
    model = make_model(
        "embedding", cell=cell, num_layers=2, bidirectional=True, hidden_size=3, dtype="float64", reduction="sum"
    )
    x, y, _ = make_batch(model, rng, B=3, T=6)
    lengths = np.array([6, 2, 4])
    loss, grads = model.loss_and_grads(x, y, lengths)
    total = {k: np.zeros_like(v) for k, v in grads.items()}
    total_loss = 0.0
    for b, n in enumerate(lengths):
        lb, gb = model.loss_and_grads(x[b : b + 1, :n], y[b : b + 1, :n])
        total_loss += lb
        for k in total:
            total[k] += gb[k]
    assert loss == pytest.approx(total_loss, rel=1e-12)
    for k in total:
        np.testing.assert_allclose(grads[k], total[k], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("cell", GATED)
def test_step_is_the_forward_pass(cell):
    rng = np.random.default_rng(12)
    model = make_model("embedding", cell=cell, num_layers=2, hidden_size=4, dtype="float64").eval()
    ids = rng.integers(0, 6, (2, 5))
    fwd = model.forward(ids)
    state = model.zero_state(2)
    for t in range(5):
        z, state = model.step(ids[:, t], state)
        np.testing.assert_allclose(z, fwd.Z[t], rtol=1e-12)


@pytest.mark.parametrize("cell", GATED)
def test_float32_end_to_end(cell):
    rng = np.random.default_rng(13)
    model = make_model("embedding", cell=cell, num_layers=2, bidirectional=True, hidden_size=4)
    x, y, _ = make_batch(model, rng, B=2, T=5)
    loss, grads = model.loss_and_grads(x, y, np.array([5, 2]))
    assert np.isfinite(loss) and all(g.dtype == np.float32 for g in grads.values())
    g64 = model.astype(np.float64).loss_and_grads(x, y, np.array([5, 2]))[1]
    for k in grads:
        np.testing.assert_allclose(grads[k], g64[k], rtol=1e-3, atol=1e-5)


def test_forget_bias_and_options():
    m0 = RNNModel(vocab_size=5, hidden_size=4, cell="lstm", seed=0, dtype="float64")
    m1 = RNNModel(vocab_size=5, hidden_size=4, cell="lstm", seed=0, dtype="float64", forget_bias=1.0)
    np.testing.assert_allclose(m1.params["rnn0.b"] - m0.params["rnn0.b"], np.r_[np.zeros(4), np.ones(4), np.zeros(8)])
    assert m1.config["forget_bias"] == 1.0 and RNNModel(**m1.config).cell.forget_bias == 1.0
    assert m0.params["rnn0.W"].shape == (16, 4)
    assert RNNModel(vocab_size=5, hidden_size=4, cell="gru").params["rnn0.bn"].shape == (4,)
    with pytest.raises(UsageError, match="forget_bias: not an option of the gru cell"):
        RNNModel(vocab_size=5, hidden_size=4, cell="gru", forget_bias=1.0)
    with pytest.raises(UsageError, match="nonlinearity: the lstm cell takes tanh"):
        RNNModel(vocab_size=5, hidden_size=4, cell="lstm", nonlinearity="relu")
    with pytest.raises(UsageError, match="forget_bias"):
        RNNModel(vocab_size=5, hidden_size=4, cell="lstm", forget_bias="x")
