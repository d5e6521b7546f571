"""A dense (affine) layer, the model's head: z = V x + c, on a stack of rows.

Forward, for N rows x (N, F):    Z = x V^T + c          (N, K)
Backward, from dL/dZ (N, K):     dL/dV = dZ^T x         (K, F)
                                 dL/dc = sum_n dZ_n      (K,)
                                 dL/dx = dZ V            (N, F)
"""

from __future__ import annotations

import numpy as np


def forward(V: np.ndarray, c: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Z = x V^T + c.  V: (K, F); c: (K,); x: (N, F); returns (N, K)."""
    Z = x @ V.T
    Z += c  # in place: no second (N, K) array
    return Z


def backward(dZ: np.ndarray, x: np.ndarray, V: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """dZ: (N, K); x: (N, F) the forward input; V: (K, F).

    Returns ({"V": (K, F), "c": (K,)}, dL/dx (N, F)).
    """
    return {"V": dZ.T @ x, "c": dZ.sum(axis=0)}, dZ @ V
