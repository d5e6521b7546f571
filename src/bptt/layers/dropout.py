"""Inverted dropout between stacked layers: x' = x * m / (1 - p), m ~ Bernoulli(1 - p).

Applied to the outputs of every recurrent layer but the last, in training
only (as torch.nn.RNN's `dropout`). The backward is the same multiplication,
dL/dx = dL/dx' * m / (1 - p). Masks come from the Generator passed in, so a
seed fixes them and a gradient check can replay them exactly.
"""

from __future__ import annotations

import numpy as np


def make_mask(rng: np.random.Generator, shape, p: float, dtype) -> np.ndarray:
    """m / (1 - p) with m ~ Bernoulli(1 - p), of the given shape."""
    keep = rng.random(shape) >= p
    return keep.astype(dtype) / dtype.type(1.0 - p)


def forward(x: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """x' = x * mask (mask from `make_mask`, already scaled by 1 / (1 - p)); None: no dropout."""
    return x if mask is None else x * mask


def backward(dout: np.ndarray | None, mask: np.ndarray | None) -> np.ndarray | None:
    """dL/dx = dL/dx' * mask: the same multiplication as the forward pass."""
    return dout if mask is None or dout is None else dout * mask
