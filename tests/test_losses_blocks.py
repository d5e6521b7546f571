"""softmax cross-entropy in blocks of rows (and on two threads) against whole-array passes, bit for bit."""

import numpy as np
import pytest

from bptt.layers import losses


def whole_array(Z, y, w):
    """The softmax cross-entropy in whole-array passes, as before blocking."""
    m = Z.max(axis=1)
    dZ = np.exp(Z - m[:, None])
    s = dZ.sum(axis=1)
    rows = np.arange(Z.shape[0])
    loss = float(np.dot(w, np.log(s) - (Z[rows, y] - m)))
    dZ *= (w / s)[:, None]
    dZ[rows, y] -= w
    return loss, dZ


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("block, parallel", [(10**9, 10**9), (20, 10**9), (20, 50), (3, 1)])
@pytest.mark.parametrize("layout", ["C", "F"])
def test_blocked_softmax_cross_entropy_is_the_whole_array_one(dtype, block, parallel, layout, monkeypatch):
    rng = np.random.default_rng(0)
    N, K = 37, 7
    Z = np.asarray(rng.standard_normal((N, K)) * 5, dtype=dtype, order=layout)
    y = rng.integers(0, K, N)
    w = (rng.random(N) < 0.8).astype(dtype) / N
    want = whole_array(Z, y, w)
    monkeypatch.setattr(losses, "BLOCK", block)  # 20 // 7 = 2 rows per block; 3 < K: one row per block
    monkeypatch.setattr(losses, "PARALLEL", parallel)
    loss, dZ = losses.softmax_cross_entropy(Z, y, w)
    assert loss == want[0]
    np.testing.assert_array_equal(dZ, want[1])
    assert dZ.dtype == dtype
