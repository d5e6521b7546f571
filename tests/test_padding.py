"""Padding never changes a result: outputs, loss and every gradient are the same
however much padding a batch carries and whichever sequences share the batch."""

import numpy as np
import pytest

from bptt import RNNModel
from helpers import make_model

LENGTHS = np.array([5, 2, 4])


def _pad(x, extra, rng, vocab=None):
    """Append `extra` steps of garbage to every sequence."""
    B = x.shape[0]
    junk = rng.integers(0, vocab, (B, extra)) if vocab else rng.standard_normal((B, extra) + x.shape[2:]) * 10
    return np.concatenate([x, junk], axis=1)


@pytest.mark.parametrize(
    "mode,pooling", [("many-to-many", "last"), ("many-to-one", "last"), ("many-to-one", "mean"), ("many-to-one", "max")]
)
@pytest.mark.parametrize("bi", [False, True])
@pytest.mark.parametrize("kind", ["features", "embedding"])
def test_padding_amount_changes_nothing(mode, pooling, bi, kind):
    rng = np.random.default_rng(0)
    model = make_model(kind, mode=mode, pooling=pooling, bidirectional=bi, num_layers=2, dtype="float64", hidden_size=4)
    B, T = 3, 5
    x = rng.integers(0, 6, (B, T)) if kind != "features" else rng.standard_normal((B, T, 3))
    y = rng.integers(0, 3, (B, T) if mode == "many-to-many" else (B,))
    h0 = rng.standard_normal((4 if bi else 2, B, 4))
    loss1, g1, s1 = model.loss_and_grads(x, y, LENGTHS, h0, return_state=True)
    p1 = model.predict(x, LENGTHS, h0)
    x2 = _pad(x, 3, rng, 6 if kind != "features" else None)
    y2 = np.concatenate([y, rng.integers(0, 3, (B, 3))], axis=1) if mode == "many-to-many" else y
    loss2, g2, s2 = model.loss_and_grads(x2, y2, LENGTHS, h0, return_state=True)
    p2 = model.predict(x2, LENGTHS, h0)
    assert loss1 == pytest.approx(loss2, rel=1e-13)
    for k in g1:
        np.testing.assert_allclose(g1[k], g2[k], rtol=1e-12, atol=1e-14, err_msg=k)
    np.testing.assert_allclose(s1["dh0"], s2["dh0"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(s1["hn"], s2["hn"], rtol=1e-13, atol=1e-15)
    if mode == "many-to-many":
        np.testing.assert_allclose(p1, p2[:, :T], rtol=1e-13, atol=1e-15)
        assert not p2[:, T:].any()  # padded steps predict nothing
    else:
        np.testing.assert_allclose(p1, p2, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("mode", ["many-to-many", "many-to-one"])
@pytest.mark.parametrize("bi", [False, True])
def test_batch_composition_changes_nothing(mode, bi):
    """With reduction='sum', a batch's gradient is the sum of its sequences' gradients,
    each computed alone and unpadded; and each prediction is the same alone."""
    rng = np.random.default_rng(1)
    model = RNNModel(
        vocab_size=6,
        embedding_size=3,
        hidden_size=4,
        output_size=3,
        mode=mode,
        bidirectional=bi,
        num_layers=2,
        reduction="sum",
        dtype="float64",
    )
    B, T = 3, 5
    x = rng.integers(0, 6, (B, T))
    y = rng.integers(0, 3, (B, T) if mode == "many-to-many" else (B,))
    loss, grads = model.loss_and_grads(x, y, LENGTHS)
    pred = model.predict(x, LENGTHS)
    total = {k: np.zeros_like(v) for k, v in grads.items()}
    loss_sum = 0.0
    for b, n in enumerate(LENGTHS):
        xb = x[b : b + 1, :n]
        yb = y[b : b + 1, :n] if mode == "many-to-many" else y[b : b + 1]
        lb, gb = model.loss_and_grads(xb, yb)
        loss_sum += lb
        for k in total:
            total[k] += gb[k]
        pb = model.predict(xb)
        np.testing.assert_allclose(
            pred[b : b + 1, :n] if mode == "many-to-many" else pred[b : b + 1], pb, rtol=1e-12, atol=1e-14
        )
    assert loss == pytest.approx(loss_sum, rel=1e-12)
    for k in grads:
        np.testing.assert_allclose(grads[k], total[k], rtol=1e-10, atol=1e-13, err_msg=k)


def test_mask_and_lengths_agree():
    rng = np.random.default_rng(2)
    model = make_model("features", dtype="float64")
    x = rng.standard_normal((3, 5, 3))
    y = rng.integers(0, 3, (3, 5))
    mask = np.arange(5)[None, :] < LENGTHS[:, None]
    a = model.loss_and_grads(x, y, LENGTHS)
    b = model.loss_and_grads(x, y, mask)
    assert a[0] == b[0]
    for k in a[1]:
        np.testing.assert_array_equal(a[1][k], b[1][k])


def test_reverse_direction_starts_at_each_sequence_own_last_step():
    """The backward direction's output at t=0 of a padded sequence equals that of the sequence alone."""
    rng = np.random.default_rng(3)
    model = make_model("features", bidirectional=True, dtype="float64")
    x = rng.standard_normal((1, 3, 3))
    padded = np.concatenate([x, 100 * rng.standard_normal((1, 4, 3))], axis=1)
    alone = model.forward(x)
    mixed = model.forward(padded, np.array([3]))
    H = model.hidden_size
    np.testing.assert_allclose(alone.hn, mixed.hn, rtol=1e-14)
    np.testing.assert_allclose(
        alone.feat.reshape(3, 1, -1)[:, :, H:], mixed.feat.reshape(7, 1, -1)[:3, :, H:], rtol=1e-14
    )
