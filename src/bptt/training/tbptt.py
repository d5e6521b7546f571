"""Language-model training: streams -> TBPTT windows -> BPTT -> clip -> optimizer.

Truncated BPTT, all three kinds, as one mechanism. The corpus is cut into B
parallel streams (char-rnn); every update reads the next k1 = seq_length
steps of each stream and backpropagates over a window that ends there:

    stateful chunking     window = the k1 new steps, from the state carried
                          over from the previous chunk (k2 = k1)
    TBPTT(k1, k2)         window = the last k2 steps, loss on its last k1
                          (Williams & Peng 1990; overlapping windows, each
                          loss counted once)
    per-output horizon    window = the last k1 + tau - 1 steps and every L_t
                          backpropagates tau steps (`bptt.layers.truncation`)

In each case the state that starts a window is a constant (it comes from an
earlier forward pass), the gradient is the gradient of that truncated
objective, and after the update the next window starts from the state after
its first dropped steps, taken from this window's forward pass.

The loop itself (clipping, optimizer, evaluation, checkpoints, rollback on a
non-finite loss, signals) is `bptt.training.loop.Loop`, shared with every task; this
file adds the streams and the state carried between windows.
"""

from __future__ import annotations

import math

import numpy as np

from bptt.errors import DataError, UsageError
from bptt.model import RNNModel
from bptt.training.loop import Loop, NonFinite, TrainOptions, check_finite, default_progress, summed_loss

__all__ = ["Trainer", "TrainOptions", "NonFinite", "evaluate_stream", "default_progress"]

LN2 = math.log(2.0)


class Trainer(Loop):
    """Trains a language model on a token stream; checkpoints into `run_dir`; resumable exactly."""

    def __init__(
        self,
        model: RNNModel,
        train_ids: np.ndarray,
        valid_ids: np.ndarray | None,
        run_dir,
        opts: TrainOptions,
        progress=None,
        log=print,
    ):
        from bptt.data.streams import Streams

        k2 = opts.window()
        if k2 < opts.seq_length:
            raise UsageError(f"--backprop-steps: got {k2}, expected at least --seq-length ({opts.seq_length})")
        if opts.horizon is not None and (model.num_layers != 1 or model.bidirectional):
            raise UsageError(
                "--horizon: the per-output horizon is defined for --num-layers 1; use --backprop-steps for stacks"
            )
        if model.bidirectional:
            raise UsageError("--bidirectional: a language model reads left to right; drop the flag")
        need = opts.batch_size * opts.seq_length + 1
        if len(train_ids) < need:
            raise DataError(
                f"corpus: {len(train_ids):,} training tokens, but --batch-size {opts.batch_size} x "
                f"--seq-length {opts.seq_length} needs at least {need:,} (one chunk per stream); "
                "use smaller values or a longer text"
            )
        super().__init__(model, run_dir, opts, progress, log)
        self.streams = Streams(train_ids, opts.batch_size, opts.seq_length)
        self.valid_ids = valid_ids
        B = opts.batch_size
        self.h = model.zero_state(B)  # the state that starts the next window
        self.history = np.zeros((B, 0, 2), dtype=np.int64)  # (inputs, targets) of the window before the new chunk

    @property
    def n_batches(self) -> int:
        return self.streams.n_chunks

    def train_step(self) -> tuple[float, int]:
        X, Y = self.streams.chunk(self.state["chunk"])
        return self.update(X, Y), X.size

    # ---- one update --------------------------------------------------------

    def update(self, X: np.ndarray, Y: np.ndarray) -> float:
        """One TBPTT update on a new chunk X, Y (B, k1); returns the chunk's loss per token (nats)."""
        m, o = self.model, self.opts
        k1 = X.shape[1]
        inputs = np.concatenate([self.history[:, :, 0], X], axis=1) if self.history.size else X
        targets = np.concatenate([self.history[:, :, 1], Y], axis=1) if self.history.size else Y
        T = inputs.shape[1]
        loss_mask = None
        if T > k1:
            loss_mask = np.zeros(inputs.shape, bool)
            loss_mask[:, T - k1 :] = True
        fwd = m.forward(inputs, h0=self.h)
        loss, dZ = m.loss(fwd, targets, loss_mask)
        where = ""
        if not math.isfinite(loss):
            bad = np.flatnonzero(~np.isfinite(fwd.Z).all(axis=(1, 2)))
            where = f" at time step {int(bad[0]) - (T - k1)} of the chunk" if bad.size else ""
        check_finite(loss, {}, where)
        grads, _ = m.backward(fwd, dZ, o.horizon)
        check_finite(loss, grads)
        self.apply_update(grads)
        # the next window: the last k2 steps; it starts from the state after the steps it drops
        keep = o.window() - o.seq_length
        if T - keep > 0:
            self.h = m.state_after(fwd, T - keep)
        both = np.stack([inputs, targets], axis=2)
        self.history = both[:, T - min(keep, T) :] if keep else both[:, :0]
        n_tokens = int(loss_mask.sum()) if loss_mask is not None else X.size
        return summed_loss(m, loss, n_tokens, X.shape[0]) / n_tokens

    # ---- what the loop asks of a task ---------------------------------------

    def on_epoch(self) -> None:
        """A new epoch: every stream starts over from h = 0."""
        self.h = self.model.zero_state(self.opts.batch_size)
        self.history = self.history[:, :0]

    def carried_arrays(self) -> dict[str, np.ndarray]:
        """The carried state, one array per state part ("h", and "c" for a two-part state)."""
        parts = self.h if isinstance(self.h, tuple) else (self.h,)
        return {**dict(zip(self.model.cell.state_names, parts)), "history": self.history}

    def restore_carried(self, arrays: dict[str, np.ndarray]) -> None:
        history = arrays["history"]
        B, k = self.opts.batch_size, self.opts.window() - self.opts.seq_length
        zero = self.model.zero_state(B)
        expected = (zero if isinstance(zero, tuple) else (zero,))[0].shape
        parts = []
        for name in self.model.cell.state_names:
            h = arrays.get(name)
            if h is None:
                raise ValueError(f"state.{name}: missing, expected the carried state part {name} {expected}")
            if h.shape != expected or h.dtype.kind != "f":
                raise ValueError(f"state.{name} has shape {h.shape}, expected {expected}")
            parts.append(h.astype(self.model.dtype))
        if (
            history.ndim != 3
            or history.shape[0] != B
            or history.shape[1] > k
            or history.shape[2] != 2
            or history.dtype.kind not in "iu"
        ):
            raise ValueError(f"state.history has shape {history.shape}, expected ({B}, at most {k}, 2) integers")
        if history.size and (history.min() < 0 or history.max() >= self.model.vocab_size):
            raise ValueError(f"state.history holds ids outside 0..{self.model.vocab_size - 1}")
        self.h = parts[0] if len(parts) == 1 else tuple(parts)
        self.history = history.astype(np.int64)

    def evaluate(self) -> dict:
        if self.valid_ids is None:
            return {}
        valid = evaluate_stream(self.model, self.valid_ids)
        return {"valid_loss": valid, **_per_token_metrics("valid", valid, self.level)}

    def train_metrics(self, train_loss: float) -> dict:
        return _per_token_metrics("train", train_loss, self.level)

    @property
    def level(self) -> str:
        return self.opts.extra.get("level", "char")

    def display(self, r: dict) -> list[str]:
        unit = "bpc" if self.level == "char" else "ppl"
        parts = [f"train {unit} {r['train_' + unit]:.3f}"]
        if "valid_loss" in r:
            parts.append(f"valid {unit} {r['valid_' + unit]:.3f}")
        return parts


def evaluate_stream(model: RNNModel, ids: np.ndarray, batch_size: int = 16, seq_length: int = 100) -> float:
    """Mean cross-entropy per token (nats) of predicting ids[t+1] from ids[..t], in B streams."""
    from bptt.data.streams import Streams

    n = len(ids) - 1
    B = max(1, min(batch_size, n // max(seq_length, 1)))
    T = min(seq_length, n // B)
    streams = Streams(ids, B, T)
    training = model.training
    model.eval()
    h = model.zero_state(B)
    total, count = 0.0, 0
    try:
        for k in range(streams.n_chunks):
            X, Y = streams.chunk(k)
            fwd = model.forward(X, h0=h)
            loss, _ = model.loss(fwd, Y)
            total += summed_loss(model, loss, X.size, X.shape[0])
            count += X.size
            h = fwd.final_state
    finally:
        model.train(training)
    return total / count


def _per_token_metrics(prefix: str, nats: float, level: str) -> dict:
    if level == "char":
        return {f"{prefix}_bpc": nats / LN2}
    return {f"{prefix}_ppl": float(math.exp(min(nats, 700.0)))}
