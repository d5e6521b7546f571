"""The scatter-adds of token inputs (`bptt.layers.embedding`): dL/dE by rows and dL/dU by columns
hold the sums np.add.at gives, for small vocabularies (the one-hot GEMM) and large ones (sort and
reduceat), and dL/dU comes out C-contiguous, in U's own layout, so that an optimizer's update
walks both arrays in the same order."""

from __future__ import annotations

import numpy as np
import pytest

from bptt import RNNModel
from bptt.layers import embedding


def reference(ids: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((n, rows.shape[1]))
    np.add.at(out, ids, rows)
    return out


@pytest.mark.parametrize("n", [3, embedding.ONE_HOT_MAX, embedding.ONE_HOT_MAX + 1, 5000])
@pytest.mark.parametrize("N", [0, 1, 40, 700])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_and_columns_hold_the_sums_per_id(n, N, dtype):
    rng = np.random.default_rng(n + N)
    ids, rows = rng.integers(0, n, N), rng.standard_normal((N, 6)).astype(dtype)
    expected = reference(ids, rows, n)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    by_rows, by_columns = embedding.scatter_add_rows(ids, rows, n), embedding.scatter_add_columns(ids, rows, n)
    assert by_rows.shape == (n, 6) and by_columns.shape == (6, n)
    assert by_rows.dtype == by_columns.dtype == dtype
    assert by_columns.flags.c_contiguous
    np.testing.assert_allclose(by_rows, expected, **tol)
    np.testing.assert_allclose(by_columns, expected.T, **tol)


@pytest.mark.parametrize("K", [20, 300])
def test_the_input_weight_gradient_of_token_inputs_is_in_the_weights_layout(K):
    model = RNNModel(vocab_size=K, hidden_size=5, output_size=K, cell="lstm")
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, K, (3, 4)), rng.integers(0, K, (3, 4))
    _, grads = model.loss_and_grads(x, y)
    U = next(name for name in grads if name.endswith(".U"))
    assert grads[U].shape == model.params[U].shape and grads[U].flags.c_contiguous
