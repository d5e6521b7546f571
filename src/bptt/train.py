"""The training loop for language models: streams -> TBPTT windows -> BPTT -> clip -> optimizer.

Truncated BPTT, all three kinds, as one mechanism. The corpus is cut into B
parallel streams (char-rnn); every update reads the next k1 = seq_length
steps of each stream and backpropagates over a window that ends there:

    stateful chunking     window = the k1 new steps, from the state carried
                          over from the previous chunk (k2 = k1)
    TBPTT(k1, k2)         window = the last k2 steps, loss on its last k1
                          (Williams & Peng 1990; overlapping windows, each
                          loss counted once)
    per-output horizon    window = the last k1 + tau - 1 steps and every L_t
                          backpropagates tau steps (`bptt.truncation`)

In each case the state that starts a window is a constant (it comes from an
earlier forward pass), the gradient is the gradient of that truncated
objective, and after the update the next window starts from the state after
its first dropped steps, taken from this window's forward pass.

Stability: a non-finite loss or gradient rolls back to the last checkpointed
state, multiplies the learning rate by `rollback_factor`, names the tensor
(and time step) that went non-finite, and stops after `max_rollbacks`.
Everything needed to continue exactly is in each checkpoint (`bptt.checkpoint`).
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from bptt import checkpoint, clipping
from bptt.errors import DataError, Interrupted, UsageError
from bptt.model import RNNModel
from bptt.optim import make_optimizer
from bptt.schedules import ReduceOnPlateau, StepDecay

LN2 = math.log(2.0)


@dataclass
class TrainOptions:
    """What a training run needs beyond the model: truncation, optimizer, schedule, budget."""

    seq_length: int = 50  # k1
    backprop_steps: int | None = None  # k2 (TBPTT); None: = seq_length
    horizon: int | None = None  # per-output horizon tau
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 2e-3
    momentum: float = 0.9
    lr_decay: float = 1.0  # factor per epoch (step decay), 1 = off
    lr_decay_after: int = 0  # epochs before decay starts
    lr_plateau: bool = False  # halve lr when validation loss stalls
    clip_norm: float | None = 5.0
    clip_value: float | None = None
    clip_per_tensor: bool = False
    max_epochs: float = 1.0
    max_time: float | None = None  # seconds
    eval_every: int = 200  # updates
    early_stopping: int | None = None  # evaluations without improvement
    max_rollbacks: int = 5
    rollback_factor: float = 0.5
    keep: int = 1  # checkpoints kept
    extra: dict = field(default_factory=dict)  # task data saved with the run (vocab, ...)

    def window(self) -> int:
        """k2, the number of steps one backward pass spans."""
        if self.horizon is not None:
            return self.seq_length + self.horizon - 1
        return self.backprop_steps or self.seq_length


class NonFinite(Exception):
    """A loss or gradient that is NaN or infinite, with where it was found."""


class Trainer:
    """Trains `model` on a token stream; checkpoints into `run_dir`; resumable exactly."""

    def __init__(self, model: RNNModel, train_ids: np.ndarray, valid_ids: np.ndarray | None, run_dir, opts: TrainOptions,
                 progress=None, log=print):  # fmt: skip
        from bptt.data.streams import Streams

        k2 = opts.window()
        if k2 < opts.seq_length:
            raise UsageError(f"--backprop-steps: got {k2}, expected at least --seq-length ({opts.seq_length})")
        if opts.horizon is not None and (model.num_layers != 1 or model.bidirectional):
            raise UsageError("--horizon: the per-output horizon is defined for --num-layers 1; use --backprop-steps for stacks")
        if model.bidirectional:
            raise UsageError("--bidirectional: a language model reads left to right; drop the flag")
        self.model, self.opts, self.run_dir, self.log = model, opts, run_dir, log
        self.progress = progress
        need = opts.batch_size * opts.seq_length + 1
        if len(train_ids) < need:
            raise DataError(f"corpus: {len(train_ids):,} training tokens, but --batch-size {opts.batch_size} x "
                            f"--seq-length {opts.seq_length} needs at least {need:,} (one chunk per stream); "
                            "use smaller values or a longer text")  # fmt: skip
        self.streams = Streams(train_ids, opts.batch_size, opts.seq_length)
        self.valid_ids = valid_ids
        self.optimizer = make_optimizer(opts.optimizer, opts.lr, **({"momentum": opts.momentum} if opts.optimizer == "momentum" else {}))
        if opts.lr_plateau:
            self.schedule = ReduceOnPlateau(self.optimizer, factor=0.5, patience=1)
        elif opts.lr_decay != 1.0:
            self.schedule = StepDecay(self.optimizer, opts.lr_decay, every=1, start=opts.lr_decay_after)
        else:
            self.schedule = None
        self.state = {"step": 0, "epoch": 0, "chunk": 0, "tokens": 0, "elapsed": 0.0, "best_valid": None,
                      "evals_since_best": 0, "rollbacks": 0, "loss_sum": 0.0, "loss_tokens": 0,
                      "clipped": 0, "grad_norm": 0.0}  # fmt: skip
        B = opts.batch_size
        self.h = model.zero_state(B)  # the state that starts the next window
        self.history = np.zeros((B, 0, 2), dtype=np.int64)  # (inputs, targets) of the window before the new chunk
        self.good = None  # in-memory copy of the last checkpoint, for rollbacks

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
        if not math.isfinite(loss):
            bad = np.flatnonzero(~np.isfinite(fwd.Z).all(axis=(1, 2)))
            t = f" at time step {int(bad[0]) - (T - k1)} of the chunk" if bad.size else ""
            raise NonFinite(f"the loss is {loss}{t}")
        grads, _ = m.backward(fwd, dZ, o.horizon)
        for name, g in grads.items():
            if not np.isfinite(g).all():
                raise NonFinite(f"the gradient of {name} is not finite")
        self._clip(grads)
        self.optimizer.step(m.params, grads)
        # the next window: the last k2 steps; it starts from the state after the steps it drops
        keep = o.window() - o.seq_length
        if T - keep > 0:
            self.h = m.state_after(fwd, T - keep)
        both = np.stack([inputs, targets], axis=2)
        self.history = both[:, T - min(keep, T) :] if keep else both[:, :0]
        n_tokens = int(loss_mask.sum()) if loss_mask is not None else X.size
        return total_nats(m, loss, n_tokens, X.shape[0]) / n_tokens

    def _clip(self, grads) -> None:
        o = self.opts
        if o.clip_value is not None:
            self.state["clipped"] += int(clipping.clip_value(grads, o.clip_value) > 0)
        if o.clip_norm is not None:
            if o.clip_per_tensor:
                norms = clipping.clip_per_tensor_norm(grads, o.clip_norm)
                self.state["grad_norm"] = float(math.sqrt(sum(n * n for n in norms.values())))
                self.state["clipped"] += int(any(n > o.clip_norm for n in norms.values()))
            else:
                norm, clipped = clipping.clip_global_norm(grads, o.clip_norm)
                self.state["grad_norm"] = float(norm)
                self.state["clipped"] += int(clipped)
        else:
            self.state["grad_norm"] = float(clipping.global_norm(grads))

    # ---- the loop ----------------------------------------------------------

    def fit(self) -> dict:
        """Train until max_epochs, max_time or early stopping; checkpoint at every evaluation."""
        o, s = self.opts, self.state
        n_chunks = self.streams.n_chunks
        total = int(math.ceil(o.max_epochs * n_chunks))
        start = time.perf_counter() - s["elapsed"]
        self._tick = (time.perf_counter(), s["tokens"])
        self.model.train()
        if self.good is None:
            self.good = self._snapshot()
        stop_reason = None
        with _stop_signals() as signalled:
            while s["step"] < total and not signalled and stop_reason is None:
                stop_reason = self._one(total, start)
            if signalled:
                self.save()
                raise Interrupted(f"{signalled[0]} at step {s['step']}; checkpoint saved in {self.run_dir}; "
                                  f"continue with: bptt train --resume {self.run_dir}")  # fmt: skip
        s["stop_reason"] = stop_reason or "max epochs"
        return s

    def _one(self, total: int, start: float) -> str | None:
        """One update with its bookkeeping; a stop reason, or None to go on."""
        o, s = self.opts, self.state
        X, Y = self.streams.chunk(s["chunk"])
        try:
            loss = self.update(X, Y)
        except NonFinite as e:
            self._rollback(str(e))
            return None
        s["step"] += 1
        s["tokens"] += X.size
        s["loss_sum"] += loss * X.size
        s["loss_tokens"] += X.size
        self._advance_cursor()
        s["elapsed"] = time.perf_counter() - start
        if self.progress is not None:
            self.progress(s, loss, total)
        if s["step"] % o.eval_every == 0 or s["step"] == total:
            if self._evaluate_and_save():
                return f"early stopping ({o.early_stopping} evaluations without improvement)"
        if o.max_time is not None and s["elapsed"] >= o.max_time:
            if s["loss_tokens"]:
                self._evaluate_and_save()
            return f"max time ({o.max_time:g} s)"
        return None

    def _advance_cursor(self) -> None:
        s = self.state
        s["chunk"] += 1
        if s["chunk"] >= self.streams.n_chunks:  # a new epoch: every stream starts over from h = 0
            s["chunk"] = 0
            s["epoch"] += 1
            self.h = self.model.zero_state(self.opts.batch_size)
            self.history = self.history[:, :0]
            if isinstance(self.schedule, StepDecay):
                self.schedule.step(s["epoch"])

    def _evaluate_and_save(self) -> bool:
        """Log a metrics line, checkpoint; True when early stopping says stop."""
        s, o = self.state, self.opts
        now = time.perf_counter()
        rate = (s["tokens"] - self._tick[1]) / max(now - self._tick[0], 1e-9)
        train_loss = s["loss_sum"] / max(s["loss_tokens"], 1)
        record = {"step": s["step"], "epoch": round(s["step"] / self.streams.n_chunks, 4), "tokens": s["tokens"],
                  "train_loss": train_loss, "tokens_per_s": rate, "grad_norm": s["grad_norm"],
                  "lr": self.optimizer.lr, "clipped": s["clipped"], "time": round(s["elapsed"], 3)}  # fmt: skip
        record.update(_per_token_metrics("train", train_loss, o.extra.get("level", "char")))
        stop = False
        if self.valid_ids is not None:
            valid = evaluate_stream(self.model, self.valid_ids)
            self.model.train()
            record["valid_loss"] = valid
            record.update(_per_token_metrics("valid", valid, o.extra.get("level", "char")))
            if s["best_valid"] is None or valid < s["best_valid"]:
                s["best_valid"], s["evals_since_best"] = valid, 0
            else:
                s["evals_since_best"] += 1
                stop = o.early_stopping is not None and s["evals_since_best"] >= o.early_stopping
            if isinstance(self.schedule, ReduceOnPlateau):
                self.schedule.step(valid)
        s["loss_sum"], s["loss_tokens"], s["clipped"] = 0.0, 0, 0
        checkpoint.append_jsonl(self.run_dir / "metrics.jsonl", record)
        self.log_metrics(record)
        self.save()
        self._tick = (time.perf_counter(), s["tokens"])
        return stop

    def log_metrics(self, r: dict) -> None:
        unit = "bpc" if self.opts.extra.get("level", "char") == "char" else "ppl"
        parts = [f"step {r['step']}", f"epoch {r['epoch']:.2f}", f"train {unit} {r['train_' + unit]:.3f}"]
        if "valid_loss" in r:
            parts.append(f"valid {unit} {r['valid_' + unit]:.3f}")
        parts += [f"{r['tokens_per_s']:,.0f} tok/s", f"grad norm {r['grad_norm']:.2f}", f"lr {r['lr']:.2g}"]
        self.log(" | ".join(parts))

    # ---- checkpoints and rollback -----------------------------------------

    def _snapshot(self) -> dict:
        """Everything that defines where training is, as arrays and JSON."""
        opt_arrays, opt_meta = self.optimizer.state_dict()
        arrays = {f"opt.{k}": v for k, v in opt_arrays.items()}
        arrays["state.h"] = self.h
        arrays["state.history"] = self.history
        train = {"options": asdict(self.opts), "progress": dict(self.state), "optimizer": opt_meta,
                 "schedule": None if self.schedule is None else self.schedule.state_dict(),
                 "rng": self.model.rng.bit_generator.state, "lr": self.optimizer.lr}  # fmt: skip
        params = {k: v.copy() for k, v in self.model.params.items()}
        return {"params": params, "arrays": {k: v.copy() for k, v in arrays.items()}, "train": train}

    def save(self) -> None:
        self.good = self._snapshot()
        checkpoint.save(self.run_dir, self.good["params"], self.model.config, self.good["train"], self.good["arrays"], keep=self.opts.keep)

    def restore(self, snap: dict) -> None:
        """Put the trainer back exactly where `snap` (a snapshot or a loaded checkpoint) was."""
        for k, v in snap["params"].items():
            self.model.params[k][...] = v
        train, arrays = snap["train"], snap["arrays"]
        self.state.clear()  # in place: the loop holds this dict
        self.state.update(train["progress"])
        self.optimizer.load_state_dict({k[4:]: v.copy() for k, v in arrays.items() if k.startswith("opt.")}, train["optimizer"])
        self.optimizer.lr = train["lr"]
        if self.schedule is not None and train["schedule"] is not None:
            self.schedule.load_state_dict(train["schedule"])
        self.model.rng.bit_generator.state = train["rng"]
        self.h = arrays["state.h"].copy()
        self.history = arrays["state.history"].astype(np.int64).copy()

    def _rollback(self, what: str) -> None:
        s, o = self.state, self.opts
        step = s["step"]
        rollbacks = s["rollbacks"] + 1
        if rollbacks > o.max_rollbacks:
            raise UsageError(f"training diverged: {what} at step {step + 1}, after {o.max_rollbacks} rollbacks; "
                             "try a lower --lr or --clip-norm")  # fmt: skip
        old_lr = self.optimizer.lr
        self.restore(self.good)
        self.state["rollbacks"] = rollbacks
        self.optimizer.lr = old_lr * o.rollback_factor
        self.good = self._snapshot()
        self.log(f"warning: {what} at step {step + 1}; rolled back to step {self.state['step']}, "
                 f"lr {old_lr:.3g} -> {self.optimizer.lr:.3g} (rollback {rollbacks} of {o.max_rollbacks})")  # fmt: skip


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
            total += total_nats(model, loss, X.size, X.shape[0])
            count += X.size
            h = fwd.hn
    finally:
        model.train(training)
    return total / count


def total_nats(model: RNNModel, loss: float, n_tokens: int, batch_size: int) -> float:
    """The summed loss over n_tokens, whatever the model's reduction (to report nats per token)."""
    if model.reduction == "mean":
        return loss * n_tokens
    if model.reduction == "sum":
        return loss
    return loss * batch_size  # sum over time, mean over sequences


def _per_token_metrics(prefix: str, nats: float, level: str) -> dict:
    if level == "char":
        return {f"{prefix}_bpc": nats / LN2}
    return {f"{prefix}_ppl": float(math.exp(min(nats, 700.0)))}


@contextlib.contextmanager
def _stop_signals():
    """SIGINT/SIGTERM set a flag (the list yielded gets the signal's name) instead of killing
    the loop mid-update; a second SIGINT stops at once."""
    got: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return

    def handler(signum, frame):
        if got and signum == signal.SIGINT:
            raise KeyboardInterrupt
        got.append(signal.Signals(signum).name)

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield got
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def default_progress(total_label: str = "train"):
    """A tqdm bar (loss, tokens/s, ETA) when tqdm is installed and stderr is a terminal, else None."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    bar = None

    def update(state: dict, loss: float, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, initial=state["step"] - 1, desc=total_label, unit="step", file=sys.stderr,
                       dynamic_ncols=True, disable=None)  # fmt: skip
        bar.update(1)
        rate = state["tokens"] / max(state["elapsed"], 1e-9)
        bar.set_postfix_str(f"loss {loss:.3f} | {rate:,.0f} tok/s", refresh=False)
        if state["step"] >= total:
            bar.close()

    return update
