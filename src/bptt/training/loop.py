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

Under an MPI launcher (`mpirun -n N bptt train ...`) the subclass computes the gradient of
its rows of the global batch and `apply_update` sums the ranks' gradients
(`bptt.training.distributed`); only rank 0 prints and writes the run directory.
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

from bptt import checks
from bptt.errors import CheckpointError, Interrupted, UsageError
from bptt.model import RNNModel
from bptt.training import averaging, checkpoint, clipping, distributed
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
    weight_decay: float | None = None  # L2 (adamw: decoupled); None: the optimizer's default (adamw 0.01, else 0)
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
    keep_best: bool | None = (
        None  # also keep the best evaluation's checkpoint in run_dir/best (None: when there is validation)
    )
    monitor: str = "valid_loss"  # the metric that decides "best" and early stopping
    monitor_mode: str = "min"  # min | max
    extra: dict = field(default_factory=dict)  # task data saved with the run (vocab, labels, ...)
    diagnostics: bool = False  # record every update's gradient norm per tensor to grad-norms.jsonl
    command: list[str] | None = None  # the `bptt train` command line that started the run, for the record
    tensorboard: bool = False  # TensorBoard event files in the run directory (bptt.training.tensorboard)
    ema: float = 0.0  # decay of the weights' moving average that evaluation uses (bptt.training.averaging); 0: off

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
        """progress: None, or called after every update as progress(state, summary, total), summary the
        running "train <metric> <value> | <rate> tok/s" of the log lines; if it has `write(line)`, log
        lines go through it (a progress bar prints them above itself), and `close()` is called when
        fit returns or raises."""
        if opts.monitor_mode not in ("min", "max"):
            raise UsageError(f"monitor_mode: got {opts.monitor_mode!r}, expected min or max")
        self.comm = distributed.communicator()
        self.model, self.opts, self.log = model, opts, log if self.comm.is_root else _silent
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.progress = progress if self.comm.is_root else None
        if opts.nesterov and opts.optimizer != "momentum":
            raise UsageError(f"--nesterov: needs --optimizer momentum, got --optimizer {opts.optimizer}")
        kw = {"momentum": opts.momentum, "nesterov": opts.nesterov} if opts.optimizer == "momentum" else {}
        if opts.weight_decay is not None:
            kw["weight_decay"] = opts.weight_decay
        self.optimizer = make_optimizer(opts.optimizer, opts.lr, **kw)
        if opts.lr_plateau:
            self.schedule = ReduceOnPlateau(self.optimizer, factor=0.5, patience=1)
        elif opts.lr_decay != 1.0:
            self.schedule = StepDecay(
                self.optimizer, opts.lr_decay, every=opts.lr_decay_every, start=opts.lr_decay_after
            )
        else:
            self.schedule = None
        checks.FRACTION.check("ema", opts.ema)
        self.average = averaging.WeightAverage(opts.ema, model.params) if opts.ema else None
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
            "clipped": 0,  # updates whose gradient clipping changed, since the last evaluation
            "updates": 0,  # updates since the last evaluation (the clipping rate's denominator)
            "grad_norm": 0.0,
        }
        self.good = None  # in-memory copy of the last checkpoint, for rollbacks
        self._grad_log: list[dict] = []  # diagnostics records not yet written (see `save`)
        self._events: list = []  # TensorBoard events not yet written (see `save`)
        self._tensorboard = None  # its EventWriter, while fit runs with opts.tensorboard
        self._update: dict = {}  # the last update's gradient norms per tensor (before clipping), clipped, grads
        self.text_sample = None  # model -> str: generated text or predictions, for TensorBoard (set by the task)
        # what the ranks agreed on in the last update's Allreduce (see `apply_update`)
        self._signalled: list[str] = []
        self._start = time.perf_counter()
        self._stop_agreed, self._elapsed_agreed = False, 0.0

    # ---- what a subclass provides -----------------------------------------

    @property
    def n_batches(self) -> int:
        """Updates per epoch."""
        raise NotImplementedError

    def train_step(self) -> tuple[float, int]:
        """One update on the batch at the cursor (state["epoch"], state["chunk"]):
        BPTT on this rank's rows, `self.apply_update(...)`; returns (mean loss per token in nats,
        tokens) of the whole global batch."""
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

    def apply_update(
        self, grads: dict[str, np.ndarray], loss_sum: float, n: int, share: float = 1.0
    ) -> tuple[float, int]:
        """Sum the ranks' gradients (share: this rank's factor, `distributed.share`), check them,
        clip (as configured) and let the optimizer take its step. loss_sum: this rank's loss summed
        over its n loss terms. Returns (mean loss per term, terms) of the global batch; NonFinite
        (on every rank alike) when the summed loss or a gradient is not finite."""
        if self.comm.size > 1:
            stop = 1.0 if self._signalled else 0.0
            red = self.comm.allreduce(grads, share, [loss_sum, n, stop, time.perf_counter() - self._start])
            loss_sum, n = float(red[0]), int(round(red[1]))
            self._stop_agreed = self._stop_agreed or red[2] > 0
            self._elapsed_agreed = float(red[3]) / self.comm.size
        check_finite(loss_sum, grads)
        self._clip(grads)
        self.optimizer.step(self.model.params, grads)
        if self.average is not None:
            self.average.update(self.model.params, self.state["step"] + 1)
        return loss_sum / max(n, 1), n

    def _clip(self, grads) -> None:
        """Clip as configured; counts the update in state["clipped"] when any clipping changed it."""
        o = self.opts
        per_tensor = o.diagnostics or o.tensorboard
        if per_tensor:
            norms = {k: clipping.tensor_norm(g) for k, g in grads.items()}
        fired = False
        if o.clip_value is not None:
            fired = clipping.clip_value(grads, o.clip_value) > 0
        if o.clip_norm is not None:
            if o.clip_per_tensor:
                norms = clipping.clip_per_tensor_norm(grads, o.clip_norm)
                self.state["grad_norm"] = float(math.sqrt(sum(n * n for n in norms.values())))
                fired = any(n > o.clip_norm for n in norms.values()) or fired
            else:
                norm, clipped = clipping.clip_global_norm(grads, o.clip_norm)
                self.state["grad_norm"] = float(norm)
                fired = clipped or fired
        else:
            self.state["grad_norm"] = float(clipping.global_norm(grads))
        self.state["clipped"] += int(fired)
        if o.tensorboard:
            self._update = {"norms": norms, "clipped": fired, "grads": grads}
        if o.diagnostics:
            self._grad_log.append(
                {"step": self.state["step"] + 1, "grad_norm": self.state["grad_norm"], "clipped": fired, "norms": norms}
            )

    # ---- the loop ----------------------------------------------------------

    def fit(self) -> dict:
        """Train until max_epochs, max_time or early stopping; checkpoint at every evaluation."""
        o, s = self.opts, self.state
        total = int(math.ceil(o.max_epochs * self.n_batches))
        start = self._start = time.perf_counter() - s["elapsed"]
        self._tick = (time.perf_counter(), s["tokens"])
        self.model.train()
        if o.tensorboard:
            from bptt.training import tensorboard

            tensorboard.check_installed()
        created = self.comm.is_root and not self.run_dir.exists()
        if self.comm.is_root:
            self.run_dir.mkdir(parents=True, exist_ok=True)  # only now: everything has been checked
            if o.tensorboard:
                self._tensorboard = tensorboard.EventWriter(self.run_dir)
        if self.good is None:
            self.good = self._snapshot()
        stop_reason = None
        try:
            # overflow to inf/nan is caught (rollback, then a one-line error), not printed as warnings
            with _stop_signals() as signalled, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                self._signalled = signalled
                while s["step"] < total and not self._stopping() and stop_reason is None:
                    stop_reason = self._one(total, start)
                if self._stopping():
                    self.save()
                    name = signalled[0] if signalled else "SIGTERM"  # another rank's signal
                    raise Interrupted(
                        f"{name} at step {s['step']}; checkpoint saved in {self.run_dir}; "
                        f"continue with: bptt train --resume {self.run_dir}",
                        signal.Signals[name],
                    )
        except BaseException:
            if created and not checkpoint.is_run_dir(self.run_dir):  # failed before its first checkpoint: leave nothing
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise
        finally:  # before anything else is printed: the bar is drawn for the last time here
            self.close_progress()
            if self._tensorboard is not None:
                self._tensorboard.close()
                self._tensorboard = None
        s["stop_reason"] = stop_reason or "max epochs"
        return s

    def _stopping(self) -> bool:
        """A signal asked to stop: this process's, or under MPI any rank's as of the last update
        (so that every rank stops after the same one)."""
        return self._stop_agreed if self.comm.size > 1 else bool(self._signalled)

    def _one(self, total: int, start: float) -> str | None:
        """One update with its bookkeeping; a stop reason, or None to go on."""
        o, s = self.opts, self.state
        try:
            loss, n_tokens = self.train_step()
        except NonFinite as e:
            self._rollback(str(e))
            return None
        s["step"] += 1
        s["updates"] += 1
        s["tokens"] += n_tokens
        s["loss_sum"] += loss * n_tokens
        s["loss_tokens"] += n_tokens
        self._advance_cursor()
        s["elapsed"] = self._elapsed_agreed if self.comm.size > 1 else time.perf_counter() - start
        if s["step"] % distributed.CHECK_EVERY == 0:
            self.comm.check_same(self.model.params)
        if o.tensorboard and self.comm.is_root:
            self._record_update(loss)
        if self.progress is not None:
            self.progress(s, self.running_summary(), total)
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
        rate = self.throughput()
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
            "clip_rate": s["clipped"] / max(s["updates"], 1),
            "time": round(s["elapsed"], 3),
        }
        record.update(self.train_metrics(train_loss))
        training = self.model.training
        self.model.eval()
        try:
            with self.averaged():
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
        s["loss_sum"], s["loss_tokens"], s["clipped"], s["updates"] = 0.0, 0, 0, 0
        if self.comm.is_root:
            checkpoint.append_jsonl(self.run_dir / "metrics.jsonl", record)
            if o.tensorboard:
                self._record_evaluation(record)
        self.log_metrics(record)
        self.save()
        if improved and o.keep_best:
            self.save_best()
        self._tick = (time.perf_counter(), s["tokens"])
        return self.stop_reason(record) or stop

    def averaged(self):
        """A context in which the model holds the weights evaluation uses: the moving average
        with --ema, else the weights themselves."""
        if self.average is None:
            return contextlib.nullcontext()
        return self.average.swapped_in(self.model.params)

    def throughput(self) -> float:
        """Tokens per second of training since the last evaluation (evaluating and saving excluded):
        the rate of the log lines and of the progress bar alike."""
        return (self.state["tokens"] - self._tick[1]) / max(time.perf_counter() - self._tick[0], 1e-9)

    def running_summary(self) -> str:
        """The training metric since the last evaluation, in the unit of the log lines, and the throughput."""
        s = self.state
        train_loss = s["loss_sum"] / max(s["loss_tokens"], 1)
        shown = self.display({"train_loss": train_loss, **self.train_metrics(train_loss)})[0]
        return f"{shown} | {self.throughput():,.0f} tok/s"

    def log_metrics(self, r: dict) -> None:
        parts = [f"step {r['step']}", f"epoch {r['epoch']:.2f}", *self.display(r)]
        parts += [f"{r['tokens_per_s']:,.0f} tok/s", f"grad norm {r['grad_norm']:.2f}"]
        if self.opts.clip_norm is not None or self.opts.clip_value is not None:
            parts.append(f"clipped {_percent(r['clip_rate'])}")
        parts.append(f"lr {r['lr']:.2g}")
        self.say(" | ".join(parts))

    def say(self, line: str) -> None:
        """A log line; through the progress bar when there is one, so that it is not drawn over."""
        write = getattr(self.progress, "write", None)
        (write or self.log)(line)

    def close_progress(self) -> None:
        close = getattr(self.progress, "close", None)
        if close is not None:
            close()

    # ---- checkpoints and rollback -----------------------------------------

    def _snapshot(self) -> dict:
        """Everything that defines where training is, as arrays and JSON."""
        opt_arrays, opt_meta = self.optimizer.state_dict()
        arrays = {f"opt.{k}": v for k, v in opt_arrays.items()}
        arrays.update({f"state.{k}": v for k, v in self.carried_arrays().items()})
        if self.average is not None:
            arrays.update(self.average.arrays())
        train = {
            "options": asdict(self.opts),
            "progress": dict(self.state),
            "optimizer": opt_meta,
            "schedule": None if self.schedule is None else self.schedule.state_dict(),
            "rng": self.model.rng.bit_generator.state,
            "lr": self.optimizer.lr,
            "ranks": self.comm.size,  # MPI processes (any number can resume: the data layout depends on B only)
        }
        params = {k: v.copy() for k, v in self.model.params.items()}
        return {"params": params, "arrays": {k: v.copy() for k, v in arrays.items()}, "train": train}

    def save(self) -> None:
        """Checkpoint (rank 0 writes, the others wait for it; every rank keeps the snapshot for rollbacks)."""
        self.good = self._snapshot()
        self.comm.check_same(self.model.params)
        if self.comm.is_root:
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
        if self._tensorboard is not None:  # likewise
            self._tensorboard.write(self._events)
        self._events.clear()
        self.comm.barrier()  # no rank goes on (or exits) while the checkpoint is half-written

    # ---- TensorBoard (opts.tensorboard) ------------------------------------

    def _record_update(self, loss: float) -> None:
        """The update just taken, as TensorBoard scalars (written at the next checkpoint)."""
        from bptt.training import tensorboard

        u = self._update
        values = {"update/loss": loss, "update/grad_norm": self.state["grad_norm"]}
        values["update/clipped"] = float(u.get("clipped", False))
        values.update({f"update/grad_norm/{k}": v for k, v in u.get("norms", {}).items()})
        self._events.append(tensorboard.scalars(self.state["step"], values))

    def _record_evaluation(self, record: dict) -> None:
        """An evaluation's metrics, histograms of the weights and of the last gradient, and the task's text."""
        from bptt.training import tensorboard

        step = record["step"]
        numbers = {
            tensorboard.tag_of(k): v
            for k, v in record.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        }
        self._events.append(tensorboard.scalars(step, numbers))
        self._events.append(tensorboard.histograms(step, self.model.params, "weights"))
        if self._update.get("grads"):
            self._events.append(tensorboard.histograms(step, self._update["grads"], "gradients"))
        if self.text_sample is not None:
            training = self.model.training
            self.model.eval()
            try:
                content = self.text_sample(self.model)
            finally:
                self.model.train(training)
            self._events.append(tensorboard.text(step, "samples", content))

    def save_best(self) -> None:
        """The checkpoint just saved, also as run_dir/best: a complete run directory of its own
        (`bptt predict RUN_DIR/best`), replaced whenever the monitored metric improves."""
        if self.comm.is_root:
            checkpoint.save(
                self.run_dir / "best",
                self.good["params"],
                self.model.config.to_dict(),
                self.good["train"],
                self.good["arrays"],
            )
        self.comm.barrier()

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
        if self.average is not None:
            self.average.load(arrays)

    def resume_from(self, ckpt) -> None:
        """Continue from a loaded checkpoint (`bptt.training.checkpoint.load`); CheckpointError naming its
        checkpoint.json when the training state in it does not fit this run."""
        where = ckpt.path / checkpoint.INDEX
        train = ckpt.train_state
        progress = train.get("progress")
        if isinstance(progress, dict) and "updates" not in progress and isinstance(progress.get("step"), int):
            # a checkpoint from before the clipping rate: the updates since its last evaluation
            progress["updates"] = progress["step"] % self.opts.eval_every
        check_progress(train.get("progress"), self.state, self.n_batches, where)
        lr = train.get("lr")
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
            raise CheckpointError(f"{where}: learning rate {lr!r}, expected a positive number")
        check_rng(train.get("rng"), self.model.rng, where)
        if (self.schedule is None) != (train.get("schedule") is None):
            raise CheckpointError(
                f"{where}: 'schedule' is {_kind(train.get('schedule'))}, but the run's options ask for "
                f"{'none' if self.schedule is None else type(self.schedule).__name__}"
            )
        try:
            self.restore({"params": ckpt.params, "arrays": ckpt.arrays, "train": train})
            self.optimizer.check_buffers(self.model.params)
        except CheckpointError as e:
            raise CheckpointError(f"{where}: {e}") from None
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            raise CheckpointError(
                f"{where}: the training state does not fit this run ({type(e).__name__}: {e})"
            ) from None
        self.good = self._snapshot()
        if (
            self.run_dir is not None and self.comm.is_root
        ):  # a kill between logging and committing: log those steps once
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
        self._events.clear()
        self.state["rollbacks"] = rollbacks
        self.optimizer.lr = old_lr * o.rollback_factor
        self.good = self._snapshot()
        self.say(
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
    if progress["step"] != progress["epoch"] * n_batches + progress["chunk"]:
        raise CheckpointError(
            f"{where}: progress 'step' is {progress['step']}, but epoch {progress['epoch']} and chunk "
            f"{progress['chunk']} of {n_batches} batches per epoch make {progress['epoch'] * n_batches + progress['chunk']}"
        )


def check_rng(state, rng: np.random.Generator, where) -> None:
    """A saved bit generator state of the model's kind; for PCG64 (numpy's default) every field an integer
    in its range, since numpy itself silently truncates a float. CheckpointError naming the field."""
    kind = type(rng.bit_generator).__name__
    if not isinstance(state, dict) or state.get("bit_generator") != kind:
        found = state.get("bit_generator") if isinstance(state, dict) else _kind(state)
        raise CheckpointError(f"{where}: 'rng' is for bit generator {found!r}, expected {kind!r}")
    if kind != "PCG64":
        return
    inner = state.get("state")
    fields = {
        "state.state": (inner.get("state") if isinstance(inner, dict) else None, 2**128),
        "state.inc": (inner.get("inc") if isinstance(inner, dict) else None, 2**128),
        "has_uint32": (state.get("has_uint32"), 2),
        "uinteger": (state.get("uinteger"), 2**32),
    }
    for key, (value, end) in fields.items():
        if type(value) is not int or not 0 <= value < end:
            raise CheckpointError(f"{where}: rng {key!r} is {value!r}, expected an integer in [0, {end})")
    if fields["state.inc"][0] % 2 == 0:
        raise CheckpointError(f"{where}: rng 'state.inc' is even, a PCG64 increment is odd")


def _kind(value) -> str:
    return "null" if value is None else type(value).__name__


def summed_loss(model: RNNModel, loss: float, n_tokens: int, batch_size: int) -> float:
    """The loss summed over n_tokens loss-carrying steps, whatever the model's reduction
    (so that every task can report nats per token)."""
    if model.reduction == "mean":  # the mean over rows, and over the K outputs of non-softmax heads
        return loss * n_tokens * (1 if model.head == "softmax" else model.output_size)
    if model.reduction == "sum":
        return loss
    return loss * batch_size  # sum over time, mean over sequences


def _percent(rate: float) -> str:
    """A clipping rate as the log shows it: 0%, <1%, 3%, 100% (never 0% or 100% unless exactly)."""
    if rate == 0 or rate == 1:
        return f"{rate:.0%}"
    if rate < 0.01:
        return "<1%"
    if rate > 0.99:
        return ">99%"
    return f"{rate:.0%}"


def _silent(*args, **kwargs) -> None:
    """The log of an MPI rank other than 0: it prints nothing."""


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
    """A tqdm bar (the running metric, tokens/s, ETA) on stderr when tqdm is installed and stderr is a
    terminal, else None. Log lines go through `tqdm.write`, above the bar (see `Loop.say`)."""
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return None
    if not sys.stderr.isatty():
        return None
    return Progress(total_label)


class Progress:
    """The progress bar of `default_progress`: created at the first update, closed by the loop."""

    def __init__(self, label: str):
        self.label, self.bar = label, None

    def __call__(self, state: dict, summary: str, total: int) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(
                total=total,
                initial=state["step"] - 1,
                desc=self.label,
                unit="step",
                file=sys.stderr,
                dynamic_ncols=True,
            )
        self.bar.set_postfix_str(summary, refresh=False)
        self.bar.update(1)

    def write(self, line: str) -> None:
        """Print a line to stdout with the bar cleared first and redrawn after it."""
        from tqdm import tqdm

        tqdm.write(line, file=sys.stdout)
        sys.stdout.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
