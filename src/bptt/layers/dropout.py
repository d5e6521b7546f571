"""Inverted dropout: x' = x * m / (1 - p), m ~ Bernoulli(1 - p), training only.

The model applies it at four places (`bptt.model`): on the first layer's
inputs x_t (input_dropout, the embeddings), on the outputs of every
recurrent layer but the last (dropout, as torch.nn.RNN's), on the top
layer's outputs h^L_t before pooling and the head (output_dropout), and on
the recurrent matrix W of every layer direction (weight_dropout: DropConnect,
Wan et al. 2013, as the weight-dropped LSTM of Merity et al. 2018). An
activation mask has the time-major shape (T, B, D) of what it multiplies,
one draw per step; a locked (variational) mask is (1, B, D), drawn once per
sequence and shared by every step (Gal & Ghahramani 2016). A weight mask has
W's shape, drawn once per forward pass: every sequence and step of the batch
sees the same W * M, so h_{t-1} meets a thinned recurrence (the gates' rows
too, for a gated cell). The backward is the same multiplication,
dL/dx = dL/dx' * m / (1 - p) (dL/dW = dL/dW' * M / (1 - p)). Masks come from
the Generator passed in, so a seed fixes them and a gradient check can
replay them exactly.
"""

from __future__ import annotations

import numpy as np


def make_mask(rng: np.random.Generator, shape, p: float, dtype, locked: bool = False) -> np.ndarray:
    """m / (1 - p) with m ~ Bernoulli(1 - p), of `shape` (time-major (T, B, D), or a weight's);
    locked: of shape (1, B, D), one mask per sequence for every step."""
    if locked:
        shape = (1, *shape[1:])
    keep = rng.random(shape) >= p
    dtype = np.dtype(dtype)
    return keep.astype(dtype) / dtype.type(1.0 - p)


def forward(x: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """x' = x * mask (mask from `make_mask`, already scaled by 1 / (1 - p)); None: no dropout."""
    return x if mask is None else x * mask


def backward(dout: np.ndarray | None, mask: np.ndarray | None) -> np.ndarray | None:
    """dL/dx = dL/dx' * mask: the same multiplication as the forward pass."""
    return dout if mask is None or dout is None else dout * mask
