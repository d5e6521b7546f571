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
