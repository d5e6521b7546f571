"""Padding, masks and length-bucketed, seeded batches over a dataset of sequences.

A batch of sequences of lengths n_1..n_B is padded to T = max n_b; the mask
m[b, t] = t < n_b says which steps are real, and RNNModel makes every output,
loss and gradient independent of what the padded steps hold (tests/test_padding.py).

Bucketing: each epoch, the examples are shuffled, cut into pools of
`pool` batches, each pool sorted by length and cut into batches, and the
batches shuffled. Batches then hold sequences of similar length (little
padding, so little wasted work) while their order stays random. The plan
of an epoch is a pure function of (seed, epoch), so `SequenceSource.batch`
is a pure function of (seed, epoch, k) as `bptt.training.batches` requires.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from bptt.errors import UsageError


@dataclass
class Batch:
    """One batch, batch-first as RNNModel takes it.

    inputs: ids (B, T) or features (B, T, D); targets: what `RNNModel.loss` takes
    for the model's mode and head; mask: (B, T) bool or lengths (B,), or None;
    cond: (B, cond_size) for one-to-many; loss_mask: (B, T) bool, the steps
    that carry a loss (None: every valid step); chars: (B, T, C) character ids of
    every token, for a model with a character encoder. How many loss terms it holds for a
    model: `bptt.training.batches.n_targets`.
    """

    inputs: np.ndarray
    targets: np.ndarray
    mask: np.ndarray | None = None
    cond: np.ndarray | None = None
    loss_mask: np.ndarray | None = None
    chars: np.ndarray | None = None

    @property
    def size(self) -> int:
        return len(self.inputs)


def pad(seqs: Sequence[np.ndarray], value=0) -> tuple[np.ndarray, np.ndarray]:
    """(padded (B, T, ...) array, lengths (B,)) of B sequences whose first axis is time."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    first = np.asarray(seqs[0])
    out = np.full((len(seqs), int(lengths.max()), *first.shape[1:]), value, dtype=first.dtype)
    for b, s in enumerate(seqs):
        out[b, : len(s)] = s
    return out, lengths


def epoch_plan(lengths: np.ndarray, batch_size: int, seed: int, epoch: int, pool: int = 50) -> list[np.ndarray]:
    """The batches (arrays of example indices) of one epoch: shuffled, bucketed by length, shuffled."""
    rng = np.random.default_rng([seed, epoch, 0])
    order = rng.permutation(len(lengths))
    batches = []
    span = batch_size * pool
    for start in range(0, len(order), span):
        chunk = order[start : start + span]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Evaluation batches: examples sorted by length, no randomness (results do not depend on it)."""
    order = np.argsort(lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


class SequenceSource:
    """Training batches for `bptt.training.batches.BatchTrainer`.

    make_batch(indices, rng) -> Batch builds the batch of those examples; rng
    (seeded by (seed, epoch, k)) is for anything random per batch, such as word
    dropout. One epoch's plan is cached, so a batch costs only its own making.
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, make_batch: Callable, seed: int = 0):
        if len(lengths) == 0:
            raise UsageError("no examples to train on")
        self.lengths = np.asarray(lengths)
        self.batch_size, self.make_batch, self.seed = batch_size, make_batch, seed
        self.n_batches = -(-len(self.lengths) // batch_size)
        self._plan: tuple[int, list] | None = None

    def batch(self, epoch: int, k: int):
        if self._plan is None or self._plan[0] != epoch:
            self._plan = (epoch, epoch_plan(self.lengths, self.batch_size, self.seed, epoch))
        return self.make_batch(self._plan[1][k], np.random.default_rng([self.seed, epoch, k, 1]))
