"""Learning-rate schedules: each multiplies an optimizer's `lr` in place when its rule fires.

    StepDecay(f, every, start)   after epoch e (epochs completed, e >= 1):
                                 lr <- f lr  if e >= start and (e - start) % every == 0
                                 (char-rnn's learning_rate_decay, learning_rate_decay_after:
                                 lr <- 0.97 lr at the end of every epoch from the 10th on)
    ExponentialDecay(gamma, start)   the same with every = 1: after epoch e >= max(start, 1),
                                 lr = lr_0 gamma^(e - max(start, 1) + 1) (torch's ExponentialLR at start 0)
    ReduceOnPlateau(f, patience)     torch's ReduceLROnPlateau, mode "min", relative threshold:
                                 a metric is an improvement if m < best (1 - threshold); after
                                 more than `patience` evaluations without one,
                                 lr <- max(f lr, min_lr) (skipped if that changes lr by <= eps)

The rules multiply the current lr rather than recompute it from lr_0, so they
compose with anything else that changes lr (a rollback halving it).
state_dict() is a JSON-able dict of the counters and options; load_state_dict
restores them, so a resumed run decays at the same epochs.
"""

from __future__ import annotations

import math

from bptt import checks
from bptt.errors import CheckpointError


class StepDecay:
    """lr <- factor lr after every `every`-th epoch, the first at epoch `start` (at least 1)."""

    def __init__(self, optimizer, factor: float, every: int = 1, start: int = 0):
        checks.POSITIVE_NUMBER.check("--lr-decay", factor)
        checks.positive_int("--lr-decay-every", every)
        checks.NON_NEGATIVE_INT.check("--lr-decay-after", start)
        self.optimizer = optimizer
        self.factor, self.every, self.start = float(factor), int(every), int(start)
        self.last_epoch = 0  # the last epoch whose decay has been applied or skipped

    def fires(self, epoch: int) -> bool:
        return epoch >= max(self.start, 1) and (epoch - self.start) % self.every == 0

    def step(self, epoch: int) -> None:
        """Call when `epoch` epochs are complete. Each epoch counts once: repeats do nothing,
        skipped epochs are caught up, so the lr depends only on the epochs completed."""
        for e in range(self.last_epoch + 1, epoch + 1):
            if self.fires(e):
                self.optimizer.lr *= self.factor
        self.last_epoch = max(self.last_epoch, epoch)

    def state_dict(self) -> dict:
        return {"factor": self.factor, "every": self.every, "start": self.start, "last_epoch": self.last_epoch}

    def load_state_dict(self, state: dict) -> None:
        check_state(
            state,
            {
                "factor": checks.POSITIVE_NUMBER,
                "every": checks.POSITIVE_INT,
                "start": checks.NON_NEGATIVE_INT,
                "last_epoch": checks.NON_NEGATIVE_INT,
            },
        )
        self.factor, self.every, self.start = float(state["factor"]), state["every"], state["start"]
        self.last_epoch = state["last_epoch"]


class ExponentialDecay(StepDecay):
    """lr <- gamma lr after every epoch from epoch `start` (torch's ExponentialLR, with a delay)."""

    def __init__(self, optimizer, gamma: float, start: int = 0):
        checks.POSITIVE_NUMBER.check("gamma", gamma)
        super().__init__(optimizer, gamma, every=1, start=start)

    @property
    def gamma(self) -> float:
        return self.factor


class ReduceOnPlateau:
    """torch.optim.lr_scheduler.ReduceLROnPlateau(mode="min", threshold_mode="rel"), defaults halving."""

    def __init__(
        self,
        optimizer,
        factor: float = 0.5,
        patience: int = 2,
        threshold: float = 1e-4,
        min_lr: float = 0.0,
        cooldown: int = 0,
        eps: float = 1e-8,
    ):
        checks.OPEN_FRACTION.check("factor", factor)
        checks.NON_NEGATIVE_INT.check("patience", patience)
        checks.FRACTION.check("threshold", threshold)
        checks.NON_NEGATIVE_NUMBER.check("min_lr", min_lr)
        checks.NON_NEGATIVE_INT.check("cooldown", cooldown)
        checks.NON_NEGATIVE_NUMBER.check("eps", eps)
        self.optimizer = optimizer
        self.factor, self.patience, self.threshold = float(factor), int(patience), float(threshold)
        self.min_lr, self.cooldown, self.eps = float(min_lr), int(cooldown), float(eps)
        self.best = math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def step(self, metric: float) -> None:
        """Call after each evaluation with the loss; a NaN never counts as an improvement."""
        metric = float(metric)
        if metric < self.best * (1 - self.threshold):
            self.best, self.num_bad_epochs = metric, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad evaluations during the cooldown do not count
        if self.num_bad_epochs > self.patience:
            old = self.optimizer.lr
            new = max(old * self.factor, self.min_lr)
            if old - new > self.eps:
                self.optimizer.lr = new
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0

    def state_dict(self) -> dict:
        """JSON-able: a non-finite `best` (inf: nothing seen yet) is stored as the string "inf"."""
        return {
            "factor": self.factor,
            "patience": self.patience,
            "threshold": self.threshold,
            "min_lr": self.min_lr,
            "cooldown": self.cooldown,
            "eps": self.eps,
            "best": self.best if math.isfinite(self.best) else str(self.best),
            "num_bad_epochs": self.num_bad_epochs,
            "cooldown_counter": self.cooldown_counter,
        }

    def load_state_dict(self, state: dict) -> None:
        check_state(
            state,
            {
                "factor": checks.OPEN_FRACTION,
                "patience": checks.NON_NEGATIVE_INT,
                "threshold": checks.FRACTION,
                "min_lr": checks.NON_NEGATIVE_NUMBER,
                "cooldown": checks.NON_NEGATIVE_INT,
                "eps": checks.NON_NEGATIVE_NUMBER,
                "best": checks.Expect('a finite number or "inf"', lambda v: v == "inf" or checks.FINITE_NUMBER.ok(v)),
                "num_bad_epochs": checks.NON_NEGATIVE_INT,
                "cooldown_counter": checks.NON_NEGATIVE_INT,
            },
        )
        self.factor, self.patience, self.threshold = (
            float(state["factor"]),
            int(state["patience"]),
            float(state["threshold"]),
        )
        self.min_lr, self.cooldown, self.eps = float(state["min_lr"]), int(state["cooldown"]), float(state["eps"])
        self.best = float(state["best"])
        self.num_bad_epochs, self.cooldown_counter = int(state["num_bad_epochs"]), int(state["cooldown_counter"])


def check_state(state, spec: dict[str, checks.Expect]) -> None:
    """A schedule's saved state: a JSON object with every key of `spec` passing its rule;
    CheckpointError naming the first key that does not."""
    if not isinstance(state, dict):
        raise CheckpointError(f"schedule state is {type(state).__name__}, expected a JSON object")
    for key, rule in spec.items():
        if key not in state:
            raise CheckpointError(f"schedule {key!r} missing")
        if not rule.ok(state[key]):
            raise CheckpointError(f"schedule {key!r} is {state[key]!r}, expected {rule.words}")
