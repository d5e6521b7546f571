"""Long-memory benchmark tasks, generated on the fly with their published definitions.

Every generator takes a numpy Generator, a batch size B and the task's length
T, and returns a `bptt.data.batching.Batch` (batch-first, as RNNModel takes it). The
sources below seed one Generator per (seed, epoch, k), so a batch is a pure
function of those three numbers and a resumed run sees exactly the batches an
uninterrupted one would.

Adding problem, three variants (inputs (B, T', 2): channel 0 the value,
channel 1 the marker; many-to-one, one linear output, squared error):

    hochreiter  Hochreiter & Schmidhuber (1997), Experiment 4. Values uniform in
                [-1, 1]; lengths uniform in T..T + T//10 (a mask); one of the
                first 10 pairs is marked 1 (X1), then one of the first T/2 - 1
                still unmarked pairs (X2, at most at position T/2 - 1 counting
                from 0); the first and last pairs carry
                marker -1 unless marked (a marked first pair has X1 = 0).
                Target 0.5 + (X1 + X2) / 4. A sequence is right when
                |error| < 0.04.
    sum         Le, Jaitly & Hinton (2015); Arjovsky, Shah & Bengio (2016).
                Length T; values uniform in [0, 1]; one marker in the first
                half, one in the second. Target X1 + X2. Always predicting 1
                gives MSE Var(X1 + X2) = 1/6 ~ 0.167, the baseline.
    mean        Pascanu, Mikolov & Bengio (2013), after Martens & Sutskever
                (2011). One length per batch, T + uniform{0..T//10 - 1};
                values uniform in [0, 1]; first marker in [0, 0.1 T'),
                second in [0.1 T', 0.5 T'). Target (X1 + X2) / 2. A sequence
                is wrong when its squared error exceeds 0.04.

Copy (memory) task, Arjovsky et al. (2016), after Hochreiter & Schmidhuber:
alphabet of 10 symbols, 0 the blank, 1..8 data, 9 the delimiter. Input: 10
data symbols uniform in 1..8, T - 1 blanks, the delimiter, 10 blanks
(length T + 20). Target: T + 10 blanks, then the 10 data symbols. A model
that outputs blanks and then guesses uniformly among 8 has cross-entropy
10 log 8 / (T + 20) per step, the baseline.

Temporal order, Hochreiter & Schmidhuber (1997) Experiment 6a, in the form of
Martens & Sutskever (2011) and Pascanu et al. (2013): 6 symbols (0 = A,
1 = B, 2..5 distractors c, d, e, f), length T; A or B at a position in
[0.1 T, 0.2 T) and again in [0.5 T, 0.6 T), distractors elsewhere. Class
(4-way, many-to-one): first + 2 * second (AA, BA, AB, BB). Solved: fewer than
1% errors on 10,000 fresh sequences.
"""

from __future__ import annotations

import math

import numpy as np

from bptt.data.batching import Batch
from bptt.errors import UsageError

ADDING_VARIANTS = ("hochreiter", "sum", "mean")
COPY_SYMBOLS = 10  # blank 0, data 1..8, delimiter 9
COPY_BLANK, COPY_DELIMITER, COPY_DATA = 0, 9, 10  # COPY_DATA: how many symbols to remember
ORDER_SYMBOLS, ORDER_CLASSES = 6, 4


def _check_length(name: str, T: int, minimum: int) -> None:
    if not isinstance(T, (int, np.integer)) or T < minimum:
        raise UsageError(f"length: got {T!r}, the {name} task needs T >= {minimum}")


# ---- adding ------------------------------------------------------------------


def adding(rng: np.random.Generator, B: int, T: int, variant: str = "sum") -> Batch:
    """B sequences of the adding problem; inputs (B, T', 2) [value, marker], targets (B, 1)."""
    if variant == "hochreiter":
        return _adding_hochreiter(rng, B, T)
    if variant == "sum":
        return _adding_sum(rng, B, T)
    if variant == "mean":
        return _adding_mean(rng, B, T)
    raise UsageError(f"variant: got {variant!r}, expected one of {', '.join(ADDING_VARIANTS)}")


def _adding_hochreiter(rng, B, T):
    _check_length("hochreiter adding", T, 6)  # X2 needs a free pair among the first T/2 - 1
    lengths = rng.integers(T, T + T // 10 + 1, B)
    Tmax = int(lengths.max())
    x = np.zeros((B, Tmax, 2))
    x[:, :, 0] = rng.uniform(-1.0, 1.0, (B, Tmax))
    rows = np.arange(B)
    x[:, 0, 1] = -1.0
    x[rows, lengths - 1, 1] = -1.0
    p1 = rng.integers(0, 10, B)
    # X2: "one of the first T/2 - 1 still unmarked pairs", uniformly: the r-th unmarked pair
    n2 = T // 2 - 1
    r = rng.integers(0, n2, B)
    p2 = r + (r >= p1)  # counting unmarked pairs only: skip p1
    x[rows, p1, 1] = 1.0
    x[rows, p2, 1] = 1.0
    first = (p1 == 0) | (p2 == 0)
    x[first, 0, 0] = 0.0  # "in the rare case where the first pair gets marked, X1 is set to zero"
    if Tmax > lengths.min():
        x[np.arange(Tmax)[None, :] >= lengths[:, None]] = 0.0  # padding
    X1, X2 = x[rows, p1, 0], x[rows, p2, 0]
    y = 0.5 + (X1 + X2) / 4.0
    return Batch(x, y[:, None], mask=lengths)


def _adding_sum(rng, B, T):
    _check_length("sum adding", T, 2)
    x = np.zeros((B, T, 2))
    x[:, :, 0] = rng.uniform(0.0, 1.0, (B, T))
    half = T // 2
    rows = np.arange(B)
    p1 = rng.integers(0, half, B)
    p2 = rng.integers(half, T, B)
    x[rows, p1, 1] = 1.0
    x[rows, p2, 1] = 1.0
    y = x[rows, p1, 0] + x[rows, p2, 0]
    return Batch(x, y[:, None])


def _adding_mean(rng, B, T):
    _check_length("mean adding", T, 10)
    L = T + int(rng.integers(T // 10))
    x = np.zeros((B, L, 2))
    x[:, :, 0] = rng.uniform(0.0, 1.0, (B, L))
    rows = np.arange(B)
    p1 = rng.integers(0, int(0.1 * L), B)
    p2 = rng.integers(0, int(0.4 * L), B) + int(0.1 * L)
    x[rows, p1, 1] = 1.0
    x[rows, p2, 1] = 1.0
    y = (x[rows, p1, 0] + x[rows, p2, 0]) / 2.0
    return Batch(x, y[:, None])


def adding_correct(variant: str, prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(B,) bool: the sequences the published criterion counts as right."""
    err = np.asarray(prediction, float).reshape(-1) - np.asarray(target, float).reshape(-1)
    if variant == "hochreiter":
        return np.abs(err) < 0.04
    if variant == "mean":
        return err**2 <= 0.04
    return np.abs(err) < 0.04  # sum: the per-sequence tolerance of Hochreiter & Schmidhuber


ADDING_BASELINE_MSE = 1.0 / 6.0  # sum variant: always predict 1


# ---- copy --------------------------------------------------------------------


def copy(rng: np.random.Generator, B: int, T: int) -> Batch:
    """B copy-task sequences: inputs and targets (B, T + 20) symbol ids in 0..9."""
    _check_length("copy", T, 1)
    n = COPY_DATA
    data = rng.integers(1, 9, (B, n))
    x = np.zeros((B, T + 2 * n), dtype=np.int64)
    x[:, :n] = data
    x[:, n + T - 1] = COPY_DELIMITER
    y = np.zeros_like(x)
    y[:, -n:] = data
    return Batch(x, y)


def copy_baseline(T: int) -> float:
    """Cross-entropy per step (nats) of blanks then a uniform guess among 8: 10 log 8 / (T + 20)."""
    return COPY_DATA * math.log(8) / (T + 2 * COPY_DATA)


def copy_correct(prediction_ids: np.ndarray, target_ids: np.ndarray) -> np.ndarray:
    """(B,) bool: all 10 recalled symbols right (the last 10 steps)."""
    n = COPY_DATA
    return (np.asarray(prediction_ids)[:, -n:] == np.asarray(target_ids)[:, -n:]).all(axis=1)


# ---- temporal order ----------------------------------------------------------


def temporal_order(rng: np.random.Generator, B: int, T: int) -> Batch:
    """B temporal-order sequences: inputs (B, T) symbol ids in 0..5, targets (B,) classes in 0..3."""
    _check_length("temporal-order", T, 10)
    rows = np.arange(B)
    t1 = rng.integers(0, int(0.1 * T), B) + int(0.1 * T)
    v1 = rng.integers(0, 2, B)
    t2 = rng.integers(0, int(0.1 * T), B) + int(0.5 * T)
    v2 = rng.integers(0, 2, B)
    x = rng.integers(2, ORDER_SYMBOLS, (B, T))
    x[rows, t1] = v1
    x[rows, t2] = v2
    return Batch(x, v1 + 2 * v2)


# ---- sources -----------------------------------------------------------------


class Source:
    """Batches of a task generated on the fly: batch(epoch, k) is a pure function of (seed, epoch, k)."""

    def __init__(self, make, batch_size: int, n_batches: int, seed: int):
        self.make, self.batch_size, self.n_batches, self.seed = make, batch_size, n_batches, seed

    def batch(self, epoch: int, k: int) -> Batch:
        return self.make(np.random.default_rng([self.seed, epoch, k]), self.batch_size)

    def fixed(self, n: int, tag: int) -> list[Batch]:
        """n fresh sequences in batches of at most batch_size, from a stream no training batch uses."""
        rng = np.random.default_rng([self.seed, 2**31 - 1, tag])
        out, left = [], n
        while left > 0:
            b = min(self.batch_size, left)
            out.append(self.make(rng, b))
            left -= b
        return out
