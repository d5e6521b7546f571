"""Token inputs: an embedding lookup x_t = E[id_t], and its gradient.

Forward is a gather, x_t = E[id_t] (a row of E is the embedding of a token,
the same thing as E^T applied to a one-hot vector). Backward is the matching
scatter-add, dL/dE[v] = sum over (t, b) with id_{t,b} = v of dL/dx_{t,b}.

np.add.at does that scatter one element at a time and is slow, so
`scatter_add_rows` sorts the ids once and sums each run of equal ids with one
np.add.reduceat over contiguous rows (docs/performance.md). For a small
vocabulary the same sum is one GEMM with the one-hot matrix, onehot(ids)^T rows,
which is faster than the sort and the row copy (measured: 4.3 ms against
0.95 ms for 3200 rows of 512 and 65 ids; the two meet near 256 ids).
"""

from __future__ import annotations

import numpy as np

ONE_HOT_MAX = 128  # vocabularies up to this size scatter with a one-hot GEMM


def scatter_add_rows(ids: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """out[v] = sum of rows[i] over i with ids[i] == v.

    ids: (N,) integer; rows: (N, H); returns (n, H) in rows.dtype.
    """
    if n <= ONE_HOT_MAX and ids.size:
        onehot = np.zeros((n, ids.size), dtype=rows.dtype)
        onehot[ids, np.arange(ids.size)] = 1
        return onehot @ rows
    out = np.zeros((n, rows.shape[1]), dtype=rows.dtype)
    if ids.size == 0:
        return out
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    out[sorted_ids[starts]] = np.add.reduceat(rows[order], starts, axis=0)
    return out


def forward(E: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """x = E[ids].  E: (V, D); ids: (T, B) integer; returns (T, B, D)."""
    return E[ids]


def backward(dX: np.ndarray, ids: np.ndarray, vocab_size: int) -> np.ndarray:
    """dL/dE from dL/dx.  dX: (T, B, D); ids: (T, B); returns (V, D)."""
    D = dX.shape[-1]
    return scatter_add_rows(ids.reshape(-1), dX.reshape(-1, D), vocab_size)
