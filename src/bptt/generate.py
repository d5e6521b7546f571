"""Generating text from a language model by feeding its own output back in.

At each step the model gives y^_t = softmax(z_t / temperature) over the
vocabulary; the next input x_{t+1} is a token drawn from it (optionally only
among the top k), or with `greedy` the most probable token, as in the lecture
notes. Greedy decoding of a small model tends to fall into a loop ("the the
the"); sampling with a temperature below 1 is the usual compromise.

A prime (a start text) is fed through first, its state carried into sampling.
"""

from __future__ import annotations

import numpy as np

from bptt.errors import UsageError
from bptt.layers.losses import softmax


def sample(
    model,
    prime: np.ndarray,
    length: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    greedy: bool = False,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Continue the id sequence `prime` (at least one id) by `length` ids; returns the new ids.

    temperature > 0 divides the logits; top_k keeps the k most probable tokens.
    """
    if len(prime) == 0:
        raise UsageError("prime: expected at least one token to start from")
    if not temperature > 0:
        raise UsageError(f"temperature: got {temperature}, expected a positive number")
    if top_k is not None and top_k < 1:
        raise UsageError(f"top_k: got {top_k}, expected an integer >= 1")
    rng = np.random.default_rng() if rng is None else rng
    h = model.zero_state(1)
    for token in prime[:-1]:
        _, h = model.step(np.array([token]), h)
    token = int(prime[-1])
    out = np.empty(length, dtype=np.int64)
    for i in range(length):
        z, h = model.step(np.array([token]), h)
        z = z[0].astype(np.float64)
        if greedy:
            token = int(z.argmax())
        else:
            z /= temperature
            if top_k is not None and top_k < z.size:
                cut = np.partition(z, -top_k)[-top_k]
                z[z < cut] = -np.inf
            token = int(rng.choice(z.size, p=softmax(z)))
        out[i] = token
    return out
