"""The training loop every task shares: update, clip, step, evaluate, checkpoint, resume.

    repeat until max_epochs, max_time or early stopping:
        loss, grads = one update's BPTT (the subclass: `train_step`)
        clip grads (global norm, per tensor, element-wise); theta <- optimizer(theta, grads)
        every eval_every updates: evaluate, append a metrics line, checkpoint

What differs between tasks is only where the next batch comes from and what
state is carried from one update to the next; a subclass says that in
`train_step`, `n_batches`, `on_epoch`, `evaluate` and `carried_arrays` /
`restore_carried`:

    bptt.training.tbptt.Trainer     language models: B streams, TBPTT windows, carried h
    bptt.training.batches.BatchTrainer  datasets of whole sequences (tagging, classification,
                           regression, synthetic tasks): one batch per update

Stability: a non-finite loss or gradient rolls back to the last checkpointed
state, multiplies the learning rate by `rollback_factor`, names the tensor
(and time step) that went non-finite, and stops after `max_rollbacks`.
SIGINT and SIGTERM finish the current update, save, and exit with a message
that says how to resume. Everything needed to continue exactly (weights,
optimizer buffers, schedule, RNG, data cursor, carried state) is in each
checkpoint (`bptt.training.checkpoint`). A subclass may also stop the run after an
evaluation (`stop_reason`: a synthetic task that is solved).

With `diagnostics` on, every update's gradient norm per tensor (before
clipping), the global norm and whether clipping fired are kept and appended
to RUN_DIR/grad-norms.jsonl at each checkpoint, so the file always matches
the last checkpoint and a resumed run neither loses nor repeats a line.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bptt.errors import CheckpointError, Interrupted, UsageError
from bptt.model import RNNModel
from bptt.training import checkpoint, clipping
from bptt.training.optim import make_optimizer
from bptt.training.schedules import ReduceOnPlateau, StepDecay


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
    nesterov: bool = False  # Nesterov momentum (optimizer "momentum")
    lr_decay: float = 1.0  # factor per lr_decay_every epochs (step decay; exponential at 1), 1 = off
    lr_decay_after: int = 0  # epochs before decay starts
    lr_decay_every: int = 1
    lr_plateau: bool = False  # halve lr when the monitored metric stalls
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
    keep_best: bool = False  # also keep the best evaluation's checkpoint in run_dir/best
    monitor: str = "valid_loss"  # the metric that decides "best" and early stopping
    monitor_mode: str = "min"  # min | max
    extra: dict = field(default_factory=dict)  # task data saved with the run (vocab, labels, ...)
    diagnostics: bool = False  # record every update's gradient norm per tensor to grad-norms.jsonl

    def window(self) -> int:
        """k2, the number of steps one backward pass spans."""
        if self.horizon is not None:
            return self.seq_length + self.horizon - 1
        return self.backprop_steps or self.seq_length


class NonFinite(Exception):
    """A loss or gradient that is NaN or infinite, with where it was found."""


def check_finite(loss: float, grads: dict[str, np.ndarray], where_loss: str = "") -> None:
    """NonFinite naming the loss or the first tensor whose gradient is not finite."""
    if not math.isfinite(loss):
        raise NonFinite(f"the loss is {loss}{where_loss}")
    for name, g in grads.items():
        if not np.isfinite(g).all():
            raise NonFinite(f"the gradient of {name} is not finite")


class Loop:
    """The shared loop. Subclasses implement train_step, n_batches and evaluate (see the module doc)."""

    def __init__(self, model: RNNModel, run_dir, opts: TrainOptions, progress=None, log=print):
        if opts.monitor_mode not in ("min", "max"):
            raise UsageError(f"monitor_mode: got {opts.monitor_mode!r}, expected min or max")
        self.model, self.opts, self.log = model, opts, log
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.progress = progress
        if opts.nesterov and opts.optimizer != "momentum":
            raise UsageError(f"--nesterov: needs --optimizer momentum, got --optimizer {opts.optimizer}")
        kw = {"momentum": opts.momentum, "nesterov": opts.nesterov} if opts.optimizer == "momentum" else {}
        self.optimizer = make_optimizer(opts.optimizer, opts.lr, **kw)
        if opts.lr_plateau:
            self.schedule = ReduceOnPlateau(self.optimizer, factor=0.5, patience=1)
        elif opts.lr_decay != 1.0:
            self.schedule = StepDecay(
                self.optimizer, opts.lr_decay, every=opts.lr_decay_every, start=opts.lr_decay_after
            )
        else:
            self.schedule = None
        self.state = {
            "step": 0,
            "epoch": 0,
            "chunk": 0,
            "tokens": 0,
            "elapsed": 0.0,
            "best_valid": None,
            "evals_since_best": 0,
            "rollbacks": 0,
            "loss_sum": 0.0,
            "loss_tokens": 0,
            "clipped": 0,
            "grad_norm": 0.0,
        }
        self.good = None  # in-memory copy of the last checkpoint, for rollbacks
        self._grad_log: list[dict] = []  # diagnostics records not yet written (see `save`)

    # ---- what a subclass provides -----------------------------------------

    @property
    def n_batches(self) -> int:
        """Updates per epoch."""
        raise NotImplementedError

    def train_step(self) -> tuple[float, int]:
        """One update on the batch at the cursor (state["epoch"], state["chunk"]):
        BPTT, `self.apply_update(grads)`; returns (mean loss per token in nats, tokens)."""
        raise NotImplementedError

    def evaluate(self) -> dict:
        """Validation metrics ({"valid_loss": ..., ...}); {} when there is no validation data."""
        return {}

    def train_metrics(self, train_loss: float) -> dict:
        """Extra metrics derived from the mean training loss (bits per character, ...)."""
        return {}

    def on_epoch(self) -> None:
        """Called when the cursor wraps to a new epoch (reset carried state)."""

    def carried_arrays(self) -> dict[str, np.ndarray]:
        """State carried between updates that a checkpoint must hold ("state.*" arrays)."""
        return {}

    def restore_carried(self, arrays: dict[str, np.ndarray]) -> None:
        """Put back what `carried_arrays` saved."""

    def stop_reason(self, record: dict) -> str | None:
        """After an evaluation: a reason to stop now (the metrics `record` says the task is done), or None."""
        return None

    def display(self, record: dict) -> list[str]:
        """The metrics of a record worth a place in the printed line, as "name value" parts."""
        parts = [f"train loss {record['train_loss']:.4f}"]
        parts += [
            f"{k.replace('_', ' ')} {v:.4g}"
            for k, v in record.items()
            if k.startswith("valid_") and isinstance(v, float)
        ]
        return parts

    # ---- one update --------------------------------------------------------

    def apply_update(self, grads: dict[str, np.ndarray]) -> None:
        """Clip the gradients (as configured) and let the optimizer take its step."""
        self._clip(grads)
        self.optimizer.step(self.model.params, grads)

    def _clip(self, grads) -> None:
        o = self.opts
        if o.diagnostics:
            clipped_before = self.state["clipped"]
            norms = {k: clipping.tensor_norm(g) for k, g in grads.items()}
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
        if o.diagnostics:
            self._grad_log.append(
                {
                    "step": self.state["step"] + 1,
                    "grad_norm": self.state["grad_norm"],
                    "clipped": self.state["clipped"] > clipped_before,
                    "norms": norms,
                }
            )

    # ---- the loop ----------------------------------------------------------

    def fit(self) -> dict:
        """Train until max_epochs, max_time or early stopping; checkpoint at every evaluation."""
        o, s = self.opts, self.state
        total = int(math.ceil(o.max_epochs * self.n_batches))
        start = time.perf_counter() - s["elapsed"]
        self._tick = (time.perf_counter(), s["tokens"])
        self.model.train()
        created = not self.run_dir.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)  # only now: everything has been checked
        if self.good is None:
            self.good = self._snapshot()
        stop_reason = None
        try:
            # overflow to inf/nan is caught (rollback, then a one-line error), not printed as warnings
            with _stop_signals() as signalled, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                while s["step"] < total and not signalled and stop_reason is None:
                    stop_reason = self._one(total, start)
                if signalled:
                    self.save()
                    raise Interrupted(
                        f"{signalled[0]} at step {s['step']}; checkpoint saved in {self.run_dir}; "
                        f"continue with: bptt train --resume {self.run_dir}",
                        signal.Signals[signalled[0]],
                    )
        except BaseException:
            if created and not checkpoint.is_run_dir(self.run_dir):  # failed before its first checkpoint: leave nothing
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise
        s["stop_reason"] = stop_reason or "max epochs"
        return s

    def _one(self, total: int, start: float) -> str | None:
        """One update with its bookkeeping; a stop reason, or None to go on."""
        o, s = self.opts, self.state
        try:
            loss, n_tokens = self.train_step()
        except NonFinite as e:
            self._rollback(str(e))
            return None
        s["step"] += 1
        s["tokens"] += n_tokens
        s["loss_sum"] += loss * n_tokens
        s["loss_tokens"] += n_tokens
        self._advance_cursor()
        s["elapsed"] = time.perf_counter() - start
        if self.progress is not None:
            self.progress(s, loss, total)
        if s["step"] % o.eval_every == 0 or s["step"] == total:
            reason = self._evaluate_and_save()
            if reason:
                return reason
        if o.max_time is not None and s["elapsed"] >= o.max_time:
            if s["loss_tokens"]:
                self._evaluate_and_save()
            return f"max time ({o.max_time:g} s)"
        return None

    def _advance_cursor(self) -> None:
        s = self.state
        s["chunk"] += 1
        if s["chunk"] >= self.n_batches:
            s["chunk"] = 0
            s["epoch"] += 1
            self.on_epoch()
            if isinstance(self.schedule, StepDecay):
                self.schedule.step(s["epoch"])

    def is_better(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        return value < best if self.opts.monitor_mode == "min" else value > best

    def _evaluate_and_save(self) -> str | None:
        """Log a metrics line, checkpoint; a reason when early stopping (or `stop_reason`) says stop."""
        s, o = self.state, self.opts
        now = time.perf_counter()
        rate = (s["tokens"] - self._tick[1]) / max(now - self._tick[0], 1e-9)
        train_loss = s["loss_sum"] / max(s["loss_tokens"], 1)
        record = {
            "step": s["step"],
            "epoch": round(s["step"] / self.n_batches, 4),
            "tokens": s["tokens"],
            "train_loss": train_loss,
            "tokens_per_s": rate,
            "grad_norm": s["grad_norm"],
            "lr": self.optimizer.lr,
            "clipped": s["clipped"],
            "time": round(s["elapsed"], 3),
        }
        record.update(self.train_metrics(train_loss))
        training = self.model.training
        self.model.eval()
        try:
            valid = self.evaluate()
        finally:
            self.model.train(training)
        record.update(valid)
        stop, improved = None, False
        if o.monitor in record and o.monitor in valid:
            value = float(record[o.monitor])
            if self.is_better(value, s["best_valid"]):
                s["best_valid"], s["evals_since_best"] = value, 0
                improved = True
            else:
                s["evals_since_best"] += 1
                if o.early_stopping is not None and s["evals_since_best"] >= o.early_stopping:
                    stop = f"early stopping ({o.early_stopping} evaluations without improvement)"
            if isinstance(self.schedule, ReduceOnPlateau):
                self.schedule.step(value if o.monitor_mode == "min" else -value)
        s["loss_sum"], s["loss_tokens"], s["clipped"] = 0.0, 0, 0
        checkpoint.append_jsonl(self.run_dir / "metrics.jsonl", record)
        self.log_metrics(record)
        self.save()
        if improved and o.keep_best:
            self.save_best()
        self._tick = (time.perf_counter(), s["tokens"])
        return self.stop_reason(record) or stop

    def log_metrics(self, r: dict) -> None:
        parts = [f"step {r['step']}", f"epoch {r['epoch']:.2f}", *self.display(r)]
        parts += [f"{r['tokens_per_s']:,.0f} tok/s", f"grad norm {r['grad_norm']:.2f}", f"lr {r['lr']:.2g}"]
        self.log(" | ".join(parts))

    # ---- checkpoints and rollback -----------------------------------------

    def _snapshot(self) -> dict:
        """Everything that defines where training is, as arrays and JSON."""
        opt_arrays, opt_meta = self.optimizer.state_dict()
        arrays = {f"opt.{k}": v for k, v in opt_arrays.items()}
        arrays.update({f"state.{k}": v for k, v in self.carried_arrays().items()})
        train = {
            "options": asdict(self.opts),
            "progress": dict(self.state),
            "optimizer": opt_meta,
            "schedule": None if self.schedule is None else self.schedule.state_dict(),
            "rng": self.model.rng.bit_generator.state,
            "lr": self.optimizer.lr,
        }
        params = {k: v.copy() for k, v in self.model.params.items()}
        return {"params": params, "arrays": {k: v.copy() for k, v in arrays.items()}, "train": train}

    def save(self) -> None:
        self.good = self._snapshot()
        checkpoint.save(
            self.run_dir,
            self.good["params"],
            self.model.config.to_dict(),
            self.good["train"],
            self.good["arrays"],
            keep=self.opts.keep,
        )
        for record in self._grad_log:  # after the checkpoint: a crash in between loses lines, never repeats them
            checkpoint.append_jsonl(self.run_dir / "grad-norms.jsonl", record)
        self._grad_log.clear()

    def save_best(self) -> None:
        """The checkpoint just saved, also as run_dir/best: a complete run directory of its own
        (`bptt predict RUN_DIR/best`), replaced whenever the monitored metric improves."""
        checkpoint.save(
            self.run_dir / "best",
            self.good["params"],
            self.model.config.to_dict(),
            self.good["train"],
            self.good["arrays"],
        )

    def restore(self, snap: dict) -> None:
        """Put the trainer back exactly where `snap` (a snapshot or a loaded checkpoint) was."""
        for k, v in snap["params"].items():
            self.model.params[k][...] = v
        train, arrays = snap["train"], snap["arrays"]
        self.state.clear()  # in place: the loop holds this dict
        self.state.update(train["progress"])
        self.optimizer.load_state_dict(
            {k[4:]: v.copy() for k, v in arrays.items() if k.startswith("opt.")}, train["optimizer"]
        )
        self.optimizer.lr = train["lr"]
        if self.schedule is not None and train["schedule"] is not None:
            self.schedule.load_state_dict(train["schedule"])
        self.model.rng.bit_generator.state = train["rng"]
        self.restore_carried({k[6:]: v.copy() for k, v in arrays.items() if k.startswith("state.")})

    def resume_from(self, ckpt) -> None:
        """Continue from a loaded checkpoint (`bptt.training.checkpoint.load`); CheckpointError naming its
        checkpoint.json when the training state in it does not fit this run."""
        where = ckpt.path / checkpoint.INDEX
        train = ckpt.train_state
        check_progress(train.get("progress"), self.state, self.n_batches, where)
        lr = train.get("lr")
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
            raise CheckpointError(f"{where}: learning rate {lr!r}, expected a positive number")
        try:
            self.restore({"params": ckpt.params, "arrays": ckpt.arrays, "train": train})
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            raise CheckpointError(
                f"{where}: the training state does not fit this run ({type(e).__name__}: {e})"
            ) from None
        self.good = self._snapshot()
        if self.run_dir is not None:  # a kill between logging and committing: log those steps once
            checkpoint.trim_metrics(self.run_dir / "metrics.jsonl", self.state["step"])

    def _rollback(self, what: str) -> None:
        s, o = self.state, self.opts
        step = s["step"]
        rollbacks = s["rollbacks"] + 1
        if rollbacks > o.max_rollbacks:
            raise UsageError(
                f"training diverged: {what} at step {step + 1}, after {o.max_rollbacks} rollbacks; "
                "try a lower --lr or --clip-norm"
            )
        old_lr = self.optimizer.lr
        self.restore(self.good)
        self._grad_log.clear()  # updates after the checkpoint are undone
        self.state["rollbacks"] = rollbacks
        self.optimizer.lr = old_lr * o.rollback_factor
        self.good = self._snapshot()
        self.log(
            f"warning: {what} at step {step + 1}; rolled back to step {self.state['step']}, "
            f"lr {old_lr:.3g} -> {self.optimizer.lr:.3g} (rollback {rollbacks} of {o.max_rollbacks})"
        )


def check_progress(progress, template: dict, n_batches: int, where) -> None:
    """A checkpoint's progress dict has every counter of a fresh `template`, of its kind
    (counts: integers >= 0; sums and times: finite numbers; best_valid: a number or null),
    and a cursor inside the epoch; CheckpointError naming the first that does not."""
    if not isinstance(progress, dict):
        raise CheckpointError(f"{where}: 'progress' missing or not a JSON object")
    for key, fresh in template.items():
        value = progress.get(key)
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if isinstance(fresh, int):
            ok = type(value) is int and value >= 0
        else:
            ok = number or (fresh is None and value is None)
        if not ok:
            raise CheckpointError(
                f"{where}: progress {key!r} is {value!r}, expected "
                f"{'an integer >= 0' if isinstance(fresh, int) else 'a finite number'}"
            )
    if progress["chunk"] >= n_batches:
        raise CheckpointError(
            f"{where}: progress 'chunk' is {progress['chunk']}, but an epoch of this run has {n_batches} batches"
        )


def summed_loss(model: RNNModel, loss: float, n_tokens: int, batch_size: int) -> float:
    """The loss summed over n_tokens loss-carrying steps, whatever the model's reduction
    (so that every task can report nats per token)."""
    if model.reduction == "mean":  # the mean over rows, and over the K outputs of non-softmax heads
        return loss * n_tokens * (1 if model.head == "softmax" else model.output_size)
    if model.reduction == "sum":
        return loss
    return loss * batch_size  # sum over time, mean over sequences


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
            bar = tqdm(
                total=total,
                initial=state["step"] - 1,
                desc=total_label,
                unit="step",
                file=sys.stderr,
                dynamic_ncols=True,
                disable=None,
            )
        bar.update(1)
        rate = state["tokens"] / max(state["elapsed"], 1e-9)
        bar.set_postfix_str(f"loss {loss:.3f} | {rate:,.0f} tok/s", refresh=False)
        if state["step"] >= total:
            bar.close()

    return update
