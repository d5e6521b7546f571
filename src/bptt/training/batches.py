"""Training on datasets of whole sequences: one batch of (inputs, targets, mask) per update.

Tagging, classification, regression, one-to-many generation and the synthetic
long-memory tasks all train this way: every update takes the next batch from a
`Source`, runs the forward pass over the whole (padded) sequences, the loss of
the model's mode and head, and exact BPTT:

    loss, grads = model.loss_and_grads(batch.inputs, batch.targets, batch.mask, cond=batch.cond, chars=batch.chars)

The loop around it (clipping, optimizer, evaluation, checkpoints, rollback,
signals) is `bptt.training.loop.Loop`. A source is anything with

    n_batches                  updates per epoch
    batch(epoch, k) -> Batch   the k-th batch of an epoch, a pure function of
                               (epoch, k) and the source's seed

so the data cursor of a checkpoint is just (epoch, k) and a resumed run sees
exactly the batches an uninterrupted one would (shuffling, bucketing, word
dropout and on-the-fly generation are all seeded by (seed, epoch, k)).

Under MPI (`bptt.training.distributed`) every rank makes the same global batch
and computes the gradient of its block of rows (`rows_of`); evaluation hooks
take their shard of the validation batches (`comm.shard`), add up `loss_sum`
and their counts, and reduce them with one `comm.sum`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from bptt.data.batching import Batch
from bptt.errors import UsageError
from bptt.model import SEQUENCE_MODES, RNNModel
from bptt.training import distributed
from bptt.training.loop import Loop, TrainOptions, check_finite, summed_loss


def n_targets(batch: Batch, model: RNNModel) -> int:
    """How many loss terms the batch has: valid target steps for sequence
    outputs (padding, loss_mask and ignore_index excluded), else sequences."""
    if model.mode not in SEQUENCE_MODES:
        return batch.size
    B, T = batch.inputs.shape[:2]
    valid = np.ones((B, T), bool)
    if batch.mask is not None:
        m = np.asarray(batch.mask)
        valid &= m.astype(bool) if m.ndim == 2 else np.arange(T)[None, :] < m[:, None]
    if batch.loss_mask is not None:
        valid &= np.asarray(batch.loss_mask, bool)
    if model.head == "softmax":
        valid &= np.asarray(batch.targets) != model.ignore_index
    return int(valid.sum())


def rows_of(batch: Batch, rows: slice) -> Batch:
    """The batch of rows `rows` of `batch` (every field is batch-first)."""
    return Batch(
        *(
            None if a is None else a[rows]
            for a in (batch.inputs, batch.targets, batch.mask, batch.cond, batch.loss_mask, batch.chars)
        )
    )


class BatchTrainer(Loop):
    """Trains `model` on batches from `source`; `evaluate(model) -> {"valid_loss": ..., ...}`;
    `stop(record) -> reason or None` may end the run after an evaluation."""

    def __init__(
        self,
        model: RNNModel,
        source,
        evaluate: Callable[[RNNModel], dict] | None,
        run_dir,
        opts: TrainOptions,
        progress=None,
        log=print,
        stop: Callable[[dict], str | None] | None = None,
    ):
        super().__init__(model, run_dir, opts, progress, log)
        if source.n_batches < 1:
            raise UsageError("source: no batches, expected at least one per epoch")
        distributed.check_batch(opts.batch_size, self.comm)
        self.source = source
        self._evaluate = evaluate
        self._stop = stop

    @property
    def n_batches(self) -> int:
        return self.source.n_batches

    def train_step(self) -> tuple[float, int]:
        s = self.state
        batch = self.source.batch(s["epoch"], s["chunk"])
        return self.update(batch)

    def update(self, batch: Batch) -> tuple[float, int]:
        """One update on `batch` (this rank's rows of it under MPI); returns (mean loss per loss term
        in nats, number of loss terms) of the whole batch."""
        m, comm = self.model, self.comm
        rows = comm.rows(batch.size)
        empty = rows.start == rows.stop  # a last batch with fewer rows than ranks: compute on row 0, weigh it 0
        rows = slice(0, 1) if empty else rows
        local = batch if comm.size == 1 else rows_of(batch, rows)
        rng = comm.dropout_rng(m.rng, batch.size, rows)
        fwd = m.forward(local.inputs, local.mask, cond=local.cond, rng=rng, chars=local.chars)
        loss, dZ = m.loss(fwd, local.targets, local.loss_mask)
        if comm.size == 1:  # under MPI: found in the summed loss
            check_finite(loss, {})
        grads, _ = m.backward(fwd, dZ)
        if comm.size == 1:
            n = max(n_targets(batch, m), 1)
            return self.apply_update(grads, summed_loss(m, loss, n, batch.size), n)
        n = 0 if empty else n_targets(local, m)
        share = 0.0 if empty else distributed.share(m.reduction, (n, local.size), (n_targets(batch, m), batch.size))
        loss, n = self.apply_update(grads, summed_loss(m, loss, n, local.size) if n else 0.0, n, share)
        return loss, max(n, 1)

    def evaluate(self) -> dict:
        return {} if self._evaluate is None else self._evaluate(self.model)

    def stop_reason(self, record: dict) -> str | None:
        return None if self._stop is None else self._stop(record)


def mean_loss(model: RNNModel, batches: Iterable[Batch]) -> float:
    """Mean loss per loss term (nats for cross-entropies) over batches, in evaluation mode."""
    total, count = loss_sum(model, batches)
    return total / max(count, 1)


def loss_sum(model: RNNModel, batches: Iterable[Batch]) -> tuple[float, int]:
    """(summed loss, number of loss terms) over batches, in evaluation mode: what ranks that each
    evaluated a shard of the batches add up (`bptt.training.distributed`)."""
    training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for batch in batches:
            fwd = model.forward(batch.inputs, batch.mask, cond=batch.cond, chars=batch.chars)
            loss, _ = model.loss(fwd, batch.targets, batch.loss_mask)
            n = n_targets(batch, model)
            total += summed_loss(model, loss, n, batch.size)
            count += n
    finally:
        model.train(training)
    return total, count
