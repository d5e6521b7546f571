"""The heads' losses and outputs (`bptt.layers.losses`) against their definitions, including
logits far outside the range where an unshifted exp would overflow or underflow.

The model-level tests (finite differences, torch, RTRL) use moderate logits, where
softmax(z) = softmax(z - m) for any shift m; the stability of the shift by each row's
own max is checked here."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bptt.layers import losses

EXTREME = np.array([[1000.0, 999.0, -5.0], [0.0, 1.0, 2.0], [-1000.0, -1001.0, -999.0]])


def softmax_row(z) -> list[float]:
    """softmax of one row in exact-ish arithmetic: Python floats with the shift done by math."""
    m = max(z)
    e = [math.exp(v - m) for v in z]
    return [v / sum(e) for v in e]


def test_softmax_of_extreme_logits_is_finite_and_exact():
    for dtype in (np.float64, np.float32):
        y = losses.softmax(EXTREME.astype(dtype))
        assert np.isfinite(y).all()
        np.testing.assert_allclose(y, [softmax_row(r) for r in EXTREME], rtol=1e-6 if dtype == np.float32 else 1e-14)
        assert y.dtype == dtype


def test_sigmoid_of_extreme_logits():
    z = np.array([-1000.0, -30.0, 0.0, 2.0, 1000.0])
    expected = [0.0, 1 / (1 + math.exp(30)), 0.5, 1 / (1 + math.exp(-2)), 1.0]
    np.testing.assert_allclose(
        losses.sigmoid(z), expected, rtol=1e-14, atol=1e-16
    )  # (1 + tanh(z/2)) / 2: absolute precision
    assert losses.output("sigmoid", z).tolist() == losses.sigmoid(z).tolist()
    assert losses.output("linear", z) is z


@pytest.mark.parametrize("scale", [1.0, 1000.0])
def test_each_loss_and_its_gradient_from_the_definition(scale):
    rng = np.random.default_rng(0)
    Z = scale * rng.standard_normal((5, 3))
    w = np.array([0.5, 0.0, 1.0, 2.0, 0.25])
    y = np.array([0, 2, 1, 1, 0])
    L, dZ = losses.softmax_cross_entropy(Z, y, w)
    P = np.array([softmax_row(r) for r in Z])
    logsum = np.array([max(r) + math.log(sum(math.exp(v - max(r)) for v in r)) for r in Z])
    assert L == pytest.approx(sum(w * (logsum - Z[np.arange(5), y])), rel=1e-12)
    np.testing.assert_allclose(dZ, w[:, None] * (P - np.eye(3)[y]), rtol=1e-12, atol=1e-300)
    Y = rng.random((5, 3))
    L, dZ = losses.sigmoid_binary_cross_entropy(Z, Y, w)
    s = np.array([[1 / (1 + math.exp(-v)) if v > -700 else 0.0 for v in r] for r in Z])
    softplus = np.array([[v + math.log1p(math.exp(-v)) if v > 0 else math.log1p(math.exp(v)) for v in r] for r in Z])
    assert L == pytest.approx(float(w @ (softplus - Y * Z).sum(axis=1)), rel=1e-12)
    np.testing.assert_allclose(dZ, w[:, None] * (s - Y), rtol=1e-12, atol=1e-300)
    Y = rng.standard_normal((5, 3))
    L, dZ = losses.squared_error(Z, Y, w)
    assert L == pytest.approx(float(w @ ((Z - Y) ** 2).sum(axis=1)), rel=1e-12)
    np.testing.assert_allclose(dZ, 2 * w[:, None] * (Z - Y), rtol=1e-12)


def test_row_weights_for_each_reduction():
    valid = np.array([True, False, True, True])
    np.testing.assert_array_equal(losses.row_weights(valid, 2, "sum-over-time", 1, np.float64), [0.5, 0, 0.5, 0.5])
    np.testing.assert_array_equal(losses.row_weights(valid, 2, "mean", 1, np.float64), [1 / 3, 0, 1 / 3, 1 / 3])
    np.testing.assert_array_equal(losses.row_weights(valid, 2, "mean", 4, np.float64), [1 / 12, 0, 1 / 12, 1 / 12])
    np.testing.assert_array_equal(losses.row_weights(valid, 2, "sum", 4, np.float64), [1, 0, 1, 1])
    none = losses.row_weights(np.zeros(3, bool), 2, "mean", 1, np.float32)
    assert none.dtype == np.float32 and not none.any()  # nothing valid: zero weights, not 0/0
    with pytest.raises(ValueError, match="reduction: got 'avg', expected one of sum-over-time, mean, sum"):
        losses.row_weights(valid, 2, "avg", 1, np.float64)
