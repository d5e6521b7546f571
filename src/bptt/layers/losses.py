"""Output nonlinearities g and their losses, each returning (loss, dL/dz) directly.

For every pair below the derivative of the loss through g collapses to the
prediction error, so the code never forms dL/dy^ or the softmax Jacobian:

    softmax + cross-entropy   L_t = -log y^_t[y_t]                 dL/dz_t = y^_t - onehot(y_t)
    sigmoid + binary CE       L_t = -y log y^ - (1-y) log(1-y^)    dL/dz_t = y^_t - y_t
    identity + squared error  L_t = sum_k (y^_tk - y_tk)^2         dL/dz_t = 2 (y^_t - y_t)

(The squared error has no 1/2, as in the lecture notes and torch.nn.MSELoss,
hence the 2.)

Each loss takes logits Z (N, K) for N rows (time steps of all sequences,
flattened) and a per-row weight w (N,). The total is L = sum_n w_n L_n, so
masking (w = 0), "sum over time, mean over sequences" (w = 1/B) and
PyTorch's "mean over valid tokens" (w = 1/n_valid) are all just weights;
see `row_weights`.
"""

from __future__ import annotations

import numpy as np

from bptt import blas

HEADS = ("softmax", "sigmoid", "linear")
REDUCTIONS = ("sum-over-time", "mean", "sum")


def row_weights(valid: np.ndarray, n_sequences: int, reduction: str, per_row: int, dtype) -> np.ndarray:
    """Weights w (N,) with L = sum_n w_n L_n.

    valid: (N,) bool, the rows that carry a loss. reduction:
      "sum-over-time" (default, the lecture notes): L = (1/B) sum_b sum_t L_bt;
      "mean" (PyTorch): the mean over valid rows, and over the K outputs of
        each row for the sigmoid and linear heads (per_row = K there, 1 for softmax);
      "sum": the plain sum.
    """
    w = valid.astype(dtype)
    if reduction == "sum-over-time":
        w /= n_sequences
    elif reduction == "mean":
        n = int(valid.sum()) * per_row
        if n:
            w /= n
    elif reduction != "sum":
        raise ValueError(f"reduction: got {reduction!r}, expected one of {', '.join(REDUCTIONS)}")
    return w


def softmax(Z: np.ndarray) -> np.ndarray:
    """y^ = softmax(z) along the last axis, shifted by max(z) for stability."""
    E = Z - Z.max(axis=-1, keepdims=True)
    np.exp(E, out=E)
    E /= E.sum(axis=-1, keepdims=True)
    return E


def sigmoid(Z: np.ndarray) -> np.ndarray:
    """y^ = 1 / (1 + exp(-z)), computed as (1 + tanh(z/2)) / 2 so it never overflows."""
    out = np.tanh(Z * 0.5)
    out += 1.0
    out *= 0.5
    return out


BLOCK = 2**16  # logits per block of rows: a block's exp and scaling stay in cache
PARALLEL = 2**21  # logits from which the blocks are shared by two threads (bptt.blas.halves)


def softmax_cross_entropy(Z: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, np.ndarray]:
    """Z: (N, K) logits; y: (N,) class ids (any id where w = 0); w: (N,). Returns (L, dZ).

    Row by row, so a large Z (a 10,000-word vocabulary) is done in blocks of rows that
    stay in cache, on two threads from PARALLEL logits on; every row gets the same
    operations either way, so the numbers are the same bit for bit."""
    N, K = Z.shape
    dZ = np.empty_like(Z)
    m, s = np.empty(N, Z.dtype), np.empty(N, Z.dtype)

    def rows(start: int, stop: int, _worker: int = 0) -> None:
        step = max(1, BLOCK // K)
        for i in range(start, stop, step):
            j = min(i + step, stop)
            Zi, D = Z[i:j], dZ[i:j]
            np.max(Zi, axis=1, out=m[i:j])
            np.subtract(Zi, m[i:j, None], out=D)
            np.exp(D, out=D)
            np.sum(D, axis=1, out=s[i:j])
            D *= (w[i:j] / s[i:j])[:, None]

    blas.halves(rows, N, max(1, BLOCK // K), Z.size >= PARALLEL)
    idx = np.arange(N)
    # -log softmax(z)[y] = log sum_k exp(z_k - m) - (z_y - m), with m = max_k z_k
    zy = Z[idx, y] - m
    loss = float(np.dot(w, np.log(s) - zy))
    dZ[idx, y] -= w
    return loss, dZ


def sigmoid_binary_cross_entropy(Z: np.ndarray, Y: np.ndarray, w: np.ndarray) -> tuple[float, np.ndarray]:
    """Z, Y: (N, K), Y in [0, 1]; w: (N,). Returns (L, dZ)."""
    # -y log s(z) - (1-y) log(1-s(z)) = max(z, 0) - y z + log(1 + exp(-|z|))
    per = np.maximum(Z, 0) - Y * Z + np.log1p(np.exp(-np.abs(Z)))
    loss = float(np.dot(w, per.sum(axis=1)))
    dZ = sigmoid(Z)
    dZ -= Y
    dZ *= w[:, None]
    return loss, dZ


def squared_error(Z: np.ndarray, Y: np.ndarray, w: np.ndarray) -> tuple[float, np.ndarray]:
    """Z, Y: (N, K) real; w: (N,). Returns (L, dZ), identity head."""
    diff = Z - Y
    loss = float(np.dot(w, (diff * diff).sum(axis=1)))
    diff *= (2 * w)[:, None]
    return loss, diff


LOSSES = {"softmax": softmax_cross_entropy, "sigmoid": sigmoid_binary_cross_entropy, "linear": squared_error}


def output(head: str, Z: np.ndarray) -> np.ndarray:
    """y^ = g(z) for a head: softmax probabilities, sigmoid probabilities or z itself."""
    if head == "softmax":
        return softmax(Z)
    if head == "sigmoid":
        return sigmoid(Z)
    return Z
