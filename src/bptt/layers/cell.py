"""The recurrent-cell interface: one direction of one layer, run over all T steps.

A cell is the recurrence

    state_t = F(theta; x_t, state_{t-1}),   h_t = the first part of state_t

written once, with its exact backward. `RNNModel` stacks cells (each layer,
each direction one cell object; a reverse direction is the same class run
with reverse=True), so the model never names a cell's parameters or its
equations: it asks the cell for its parameter `shapes`, draws them with
`init`, and calls `forward`, `backward` and `step`. A new cell is one file
with a subclass of `Cell` and one line in `bptt.layers.cells.CELLS`.

Conventions every cell follows:

* Parameter names are LOCAL ("U", "W", "b", ...); the model prefixes them with
  the layer's name, so the flat keys stay "rnn0.U", "rnn0_reverse.W", ...
  and checkpoints, optimizers and clipping never know which cell they hold.
* Everything is time-major: X is (T, B, D) floats or (T, B) int ids (ids
  stand for one-hot vectors of size D = U.shape[1]); mask is (T, B) bool or
  None, True on real steps. A padded step leaves every state part unchanged
  and passes its state gradient straight through.
* A state is a tuple of n_states arrays (B, H): (h,) for Elman and GRU,
  (h, c) for LSTM. h is always first: it is the cell's output.
* Every array has the parameters' dtype.
"""

from __future__ import annotations

import numpy as np

from bptt.errors import UsageError


class Cell:
    """Base class of a recurrent cell (see the module docstring for the conventions).

    Subclasses set the class attributes and implement every method below.
    """

    name: str = ""  # registry key in bptt.layers.cells.CELLS
    gates: int = 1  # row blocks stacked in U, W, b: elman 1, lstm 4 (i, f, g, o), gru 3 (r, z, n)
    n_states: int = 1  # 1: state = (h,); 2: state = (h, c)
    nonlinearities: tuple[str, ...] = ("tanh",)  # the values of `nonlinearity` the cell supports

    def __init__(self, nonlinearity: str = "tanh", **options):
        if nonlinearity not in self.nonlinearities:
            raise UsageError(
                f"nonlinearity: the {self.name} cell takes {' | '.join(self.nonlinearities)}, got {nonlinearity!r}"
            )
        if options:
            raise UsageError(f"{', '.join(sorted(options))}: not an option of the {self.name} cell")
        self.nonlinearity = nonlinearity

    @property
    def state_names(self) -> tuple[str, ...]:
        """Names of the state parts, in order: ("h",) or ("h", "c")."""
        return (
            ("h", "c", "n", "m")[: self.n_states]
            if self.n_states <= 4
            else tuple(f"s{i}" for i in range(self.n_states))
        )

    def shapes(self, D: int, H: int, bias: bool) -> dict[str, tuple[int, ...]]:
        """Local parameter name -> shape, in a fixed order, for input size D and hidden size H.

        bias=False drops every bias entry. Elman: {"U": (H, D), "W": (H, H), "b": (H,)}.
        """
        raise NotImplementedError

    def init(
        self,
        D: int,
        H: int,
        bias: bool,
        rng: np.random.Generator,
        scheme: str = "pytorch",
        scale: float = 1.0,
        dtype="float32",
    ) -> dict[str, np.ndarray]:
        """Initial parameters, keyed and shaped as `shapes(D, H, bias)`, every draw from rng.

        scheme, scale: see `bptt.layers.init`.
        """
        raise NotImplementedError

    def forward(
        self, params: dict, X: np.ndarray, state0: tuple, mask: np.ndarray | None = None, reverse: bool = False
    ):
        """Run the cell over all T steps.

        params: local name -> array; X: (T, B, D) floats or (T, B) ids;
        state0: tuple of (B, H); mask: (T, B) bool or None; reverse=True runs t = T..1.

        Returns (out, state_n, cache): out (T, B, H) = h_t in natural time order;
        state_n tuple of (B, H), the state after each sequence's last real step;
        cache for `backward`, with cache.state(t) -> tuple of (B, H), the state
        after t steps in processing order (t = 0: state0).
        """
        raise NotImplementedError

    def backward(self, dout, dstate_n, cache, need_dX: bool = True, horizon: int | None = None):
        """Exact BPTT through the cell over all T steps.

        dout: (T, B, H) dL/dh_t from above in natural time order, or None;
        dstate_n: tuple of (B, H) (entries may be None) or None: dL/dstate_n.
        horizon: per-output truncation tau (see `bptt.layers.truncation`) or
        None; a cell that cannot do it raises UsageError in one line.

        Returns (dX, grads, dstate0): dX (T, B, D) in natural time order (None for
        ids or need_dX=False), grads keyed like params, dstate0 tuple of (B, H).
        """
        raise NotImplementedError

    def step(self, params: dict, x: np.ndarray, state: tuple):
        """One step for generation: x (B, D) floats or (B,) ids, state tuple of (B, H).

        Returns (h (B, H), new state tuple). The same arithmetic as `forward`.
        """
        raise NotImplementedError

    def zero_state(self, B: int, H: int, dtype) -> tuple:
        """The all-zero state: a tuple of n_states arrays (B, H)."""
        return tuple(np.zeros((B, H), dtype) for _ in range(self.n_states))

    def refuse_horizon(self, horizon) -> None:
        """For cells without a horizon sweep: raise on a horizon, in one line."""
        if horizon is not None:
            raise UsageError(
                f"horizon: the {self.name} cell has no per-output truncation; use --backprop-steps instead"
            )
