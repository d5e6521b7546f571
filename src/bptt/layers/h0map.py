"""The one-to-many initial state: h_0 = tanh(Q cond + q), one (B, H) block per layer.

A conditioning vector cond (B, C) is mapped to the initial hidden state of
every layer at once (Q (L*H, C), q (L*H,)); row block l of the result is h^l_0.
Only the h part of a cell's state comes from cond; other parts (an LSTM's c)
start at zero.

Backward, from dL/dh_0 (L, B, H):

    da     = dL/dh_0 * (1 - h_0^2)        (B, L*H), tanh' from the output
    dL/dQ  = da^T cond,   dL/dq = sum_b da_b
"""

from __future__ import annotations

import numpy as np

from bptt.layers import dense


def forward(Q: np.ndarray, q: np.ndarray, cond: np.ndarray, num_layers: int) -> tuple[np.ndarray, np.ndarray]:
    """cond: (B, C) -> (h0 (L, B, H), cache = tanh(Q cond + q) (B, L*H))."""
    act = np.tanh(dense.forward(Q, q, cond))
    B = cond.shape[0]
    h0 = np.ascontiguousarray(act.reshape(B, num_layers, -1).transpose(1, 0, 2))
    return h0, act


def backward(dh0: np.ndarray, act: np.ndarray, cond: np.ndarray, Q: np.ndarray) -> dict[str, np.ndarray]:
    """dh0: (L, B, H) dL/dh_0; act: the forward cache; cond: (B, C). Returns {"Q", "q"}."""
    B = cond.shape[0]
    da = dh0.transpose(1, 0, 2).reshape(B, -1) * (1.0 - act**2)
    g, _ = dense.backward(da, cond, Q)
    return {"Q": g["V"], "q": g["c"]}
