"""An exponential moving average of the weights (Polyak averaging), for evaluation and use.

After every update n = 1, 2, ... (theta_n: the weights the optimizer just wrote),

    theta_bar_n = d_n theta_bar_{n-1} + (1 - d_n) theta_n,    d_n = min(decay, (1 + n) / (10 + n))
    theta_bar_0 = theta_0 (the initial weights)

for every parameter. The warm-up d_n (TensorFlow's ExponentialMovingAverage with
num_updates) lets the average follow the weights closely at first, when they move
fast, and forget the initial weights (d_1 = 2/11); from n = (10 decay - 1) /
(1 - decay) on, d_n = decay, an average over about 1 / (1 - decay) updates
(decay 0.998: 500). Keras' `use_ema` / `ema_momentum` and torch's
`torch.optim.swa_utils.AveragedModel` with `get_ema_multi_avg_fn` keep the same
kind of average.

The average does not feed back into training: the optimizer keeps updating
theta. The loop evaluates with theta_bar swapped in (`swapped_in`), so "best"
and early stopping judge the averaged weights, and a checkpoint stores theta_bar
next to theta ("ema.<name>" arrays), which `bptt.training.runs.load_run` gives
to evaluate, predict, generate and export.
"""

from __future__ import annotations

import contextlib

import numpy as np

from bptt import checks
from bptt.errors import CheckpointError

PREFIX = "ema."  # checkpoint arrays "ema.<parameter name>"


def decay_at(decay: float, n: int) -> float:
    """d_n = min(decay, (1 + n) / (10 + n)) for update n >= 1."""
    return min(decay, (1.0 + n) / (10.0 + n))


class WeightAverage:
    """theta_bar for every parameter of a model, updated in place (see the module docstring)."""

    def __init__(self, decay: float, params: dict[str, np.ndarray]):
        checks.OPEN_FRACTION.check("decay", decay)
        self.decay = decay
        self.average = {k: v.copy() for k, v in params.items()}

    def update(self, params: dict[str, np.ndarray], n: int) -> None:
        """theta_bar <- d_n theta_bar + (1 - d_n) theta after update n (1-based)."""
        d = decay_at(self.decay, n)
        for k, avg in self.average.items():
            avg *= d
            avg += (1.0 - d) * params[k]

    def arrays(self) -> dict[str, np.ndarray]:
        """The averages as checkpoint arrays, "ema.<name>": the arrays themselves, which the loop's
        snapshot copies with the optimizer's."""
        return {PREFIX + k: v for k, v in self.average.items()}

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        """Put back what `arrays` saved; CheckpointError when a parameter's average is missing or misshapen."""
        for k, avg in self.average.items():
            saved = arrays.get(PREFIX + k)
            if saved is None:
                raise CheckpointError(f"no {PREFIX}{k}: the run kept no moving average of the weights")
            if saved.shape != avg.shape:
                raise CheckpointError(f"{PREFIX}{k} is {saved.shape}, expected {avg.shape}")
            avg[...] = saved

    @contextlib.contextmanager
    def swapped_in(self, params: dict[str, np.ndarray]):
        """params hold theta_bar inside the block and theta again after it (in place: arrays others hold stay valid)."""
        raw = {k: v.copy() for k, v in params.items()}
        try:
            for k, v in params.items():
                v[...] = self.average[k]
            yield
        finally:
            for k, v in params.items():
                v[...] = raw[k]


def averaged(arrays: dict[str, np.ndarray], names) -> dict[str, np.ndarray] | None:
    """The averaged weights a checkpoint's arrays hold for every parameter in names, or None when it has none."""
    if not any(k.startswith(PREFIX) for k in arrays):
        return None
    return {k: arrays[PREFIX + k] for k in names if PREFIX + k in arrays}
