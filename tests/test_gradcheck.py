"""BPTT against five-point central differences in float64, for every combination
of layers, directions, nonlinearity, head, mode and masking the core supports."""

import itertools
import zlib

import numpy as np
import pytest

from bptt import gradcheck
from bptt.analysis.gradcheck import relative_error
from helpers import INPUT_KINDS, make_batch, make_model, random_h0

TOL = 1e-6
MODES = ("many-to-many", "many-to-one", "one-to-one", "one-to-many")


def _cases():
    for i, (layers, bi, f, head, mode, masked) in enumerate(
        itertools.product(
            (1, 2), (False, True), ("tanh", "relu", "sigmoid"), ("softmax", "sigmoid", "linear"), MODES, (False, True)
        )
    ):
        if mode == "one-to-many" and bi:
            continue  # a generator runs left to right only
        if mode == "one-to-one" and masked:
            continue  # one step per example: nothing to mask
        yield pytest.param(
            layers,
            bi,
            f,
            head,
            mode,
            masked,
            INPUT_KINDS[i % 3],
            id=f"L{layers}-{'bi' if bi else 'uni'}-{f}-{head}-{mode}-{'mask' if masked else 'full'}-{INPUT_KINDS[i % 3]}",
        )


@pytest.mark.parametrize("layers,bi,f,head,mode,masked,kind", list(_cases()))
def test_bptt_matches_finite_differences(layers, bi, f, head, mode, masked, kind):
    rng = np.random.default_rng(zlib.crc32(repr((layers, bi, f, head, mode, masked, kind)).encode()))
    model = make_model(kind, num_layers=layers, bidirectional=bi, nonlinearity=f, head=head, mode=mode)
    x, y, cond = make_batch(model, rng)
    mask = np.array([4, 2, 1]) if masked else None
    # h0 is given in the masked half (and checked: "h0" in the report); one-to-many makes its own.
    h0 = random_h0(model, rng, 3) if masked and mode != "one-to-many" else None
    report = gradcheck(model, x, y, mask, h0, cond=cond)
    expected = set(model.params) | ({"h0"} if h0 is not None else set())
    assert set(report) == expected
    assert max(report.values()) < TOL, report


@pytest.mark.parametrize("pooling", ["mean", "max"])
@pytest.mark.parametrize("bi", [False, True])
def test_pooling(pooling, bi):
    rng = np.random.default_rng(3)
    model = make_model("embedding", mode="many-to-one", pooling=pooling, bidirectional=bi, num_layers=2)
    x, y, _ = make_batch(model, rng)
    report = gradcheck(model, x, y, np.array([4, 3, 1]))
    assert max(report.values()) < TOL, report


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("head", ["softmax", "sigmoid", "linear"])
def test_reductions(reduction, head):
    rng = np.random.default_rng(4)
    model = make_model("features", head=head, reduction=reduction)
    x, y, _ = make_batch(model, rng)
    report = gradcheck(model, x, y, np.array([4, 2, 3]))
    assert max(report.values()) < TOL, report


def test_ignore_index_and_loss_mask():
    rng = np.random.default_rng(5)
    model = make_model("one-hot", num_layers=2)
    x, y, _ = make_batch(model, rng)
    y[0, 1] = y[2, 3] = -100
    loss_mask = np.ones(y.shape, bool)
    loss_mask[:, :2] = False
    report = gradcheck(model, x, y, np.array([4, 3, 4]), loss_mask=loss_mask)
    assert max(report.values()) < TOL, report


def test_dropout_replayed():
    rng = np.random.default_rng(6)
    model = make_model("embedding", num_layers=3, bidirectional=True, dropout=0.4)
    x, y, _ = make_batch(model, rng)
    report = gradcheck(model, x, y, np.array([4, 2, 3]))
    assert max(report.values()) < TOL, report


def test_init_schemes_and_no_bias():
    rng = np.random.default_rng(7)
    for init in ("xavier", "orthogonal", "identity", "spectral"):
        model = make_model(
            "features", init=init, init_scale=0.9, bias=False, nonlinearity="relu" if init == "identity" else "tanh"
        )
        assert not any(k.endswith(".b") for k in model.params)
        x, y, _ = make_batch(model, rng)
        report = gradcheck(model, x, y)
        assert max(report.values()) < TOL, (init, report)


def test_sampled_entries_for_large_tensors():
    rng = np.random.default_rng(8)
    model = make_model("one-hot", hidden_size=12)
    x, y, _ = make_batch(model, rng)
    report = gradcheck(model, x, y, max_entries=20)
    assert max(report.values()) < TOL


def test_a_wrong_gradient_is_caught(monkeypatch):
    """The check can fail: perturb one gradient entry by 1e-4 relative and it must notice."""
    rng = np.random.default_rng(9)
    model = make_model("features")
    x, y, _ = make_batch(model, rng)
    original = type(model).backward

    def off_by_a_little(self, fwd, dZ, horizon=None):
        grads, dh0 = original(self, fwd, dZ, horizon)
        grads["rnn0.W"][0, 0] *= 1 + 1e-4
        return grads, dh0

    monkeypatch.setattr(type(model), "backward", off_by_a_little)
    assert gradcheck(model, x, y)["rnn0.W"] > TOL


def test_relative_error_floor():
    n = np.array([1.0, 1e-10])
    assert relative_error(np.array([1.0, 0.0]), n) < 1e-6  # a noise-level entry is judged against 1e-3 * max
    assert relative_error(np.array([1.0 + 1e-5, 1e-10]), n) > 1e-6
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0


@pytest.mark.parametrize("mode", MODES)
def test_identity_nonlinearity(mode):
    """f = identity (a linear RNN) in every mode, with masks, h0 and two layers."""
    rng = np.random.default_rng(11)
    bi = mode != "one-to-many"
    model = make_model("features", nonlinearity="identity", mode=mode, num_layers=2, bidirectional=bi)
    x, y, cond = make_batch(model, rng)
    mask = None if mode == "one-to-one" else np.array([4, 2, 1])
    h0 = None if mode == "one-to-many" else random_h0(model, rng, 3)
    report = gradcheck(model, x, y, mask, h0, cond=cond)
    assert max(report.values()) < TOL, report
