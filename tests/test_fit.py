"""bptt.training.batches.BatchTrainer: learns a toy many-to-one task, resumes bit for bit, rolls back on NaN."""

import numpy as np
import pytest

from bptt.data.batching import Batch
from bptt.errors import Interrupted
from bptt.model import RNNModel
from bptt.training import checkpoint
from bptt.training.batches import BatchTrainer, mean_loss, n_targets
from bptt.training.loop import TrainOptions
from helpers import poison_gradient


class SignOfSum:
    """Sequences of uneven length; the target is 1 when the sum of the inputs is positive.

    A pure function of (seed, epoch, k), as every source must be."""

    n_batches = 6

    def __init__(self, seed=0, B=8, T=7):
        self.seed, self.B, self.T = seed, B, T

    def batch(self, epoch, k):
        rng = np.random.default_rng([self.seed, epoch, k])
        x = rng.standard_normal((self.B, self.T, 1))
        lengths = rng.integers(1, self.T + 1, self.B)
        valid = np.arange(self.T)[None, :] < lengths[:, None]
        y = ((x[:, :, 0] * valid).sum(axis=1) > 0).astype(float)
        return Batch(x, y, mask=lengths)


def make(tmp_path, name, **kw):
    model = RNNModel(
        input_size=1, hidden_size=6, output_size=1, head="sigmoid", mode="many-to-one", dropout=0.0, seed=3
    )
    opts = TrainOptions(batch_size=8, lr=0.02, max_epochs=4, eval_every=5, **kw)
    valid = [SignOfSum(seed=99).batch(0, k) for k in range(3)]
    return BatchTrainer(
        model, SignOfSum(), lambda m: {"valid_loss": mean_loss(m, valid)}, tmp_path / name, opts, log=lambda s: None
    )


def test_learns_and_logs(tmp_path):
    t = make(tmp_path, "a")
    before = t.evaluate()["valid_loss"]
    state = t.fit()
    assert state["step"] == 24 and state["stop_reason"] == "max epochs"
    assert state["best_valid"] < before
    lines = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 5  # steps 5, 10, 15, 20 and the last


def test_resume_is_bit_identical(tmp_path):
    straight = make(tmp_path, "straight")
    straight.fit()
    cut = make(tmp_path, "cut")
    cut.opts.max_epochs = 10 / 6  # stops at step 10, checkpointed
    cut.fit()
    again = make(tmp_path, "cut")
    again.resume_from(checkpoint.load(tmp_path / "cut"))
    assert again.state["step"] == 10 and again.state["epoch"] == 1 and again.state["chunk"] == 4
    again.fit()
    for k, v in straight.model.params.items():
        np.testing.assert_array_equal(v, again.model.params[k], err_msg=k)


def test_nan_gradient_rolls_back(tmp_path, monkeypatch):
    t = make(tmp_path, "nan")
    poison_gradient(monkeypatch, 7, "head.V", np.inf)
    messages = []
    t.log = messages.append
    t.fit()
    assert any("the gradient of head.V is not finite at step 7; rolled back to step 5" in m for m in messages)
    assert t.optimizer.lr == pytest.approx(0.01)


def test_signal_saves_and_says_how_to_resume(tmp_path):
    import os
    import signal

    t = make(tmp_path, "sig")

    def progress(state, loss, total):
        if state["step"] == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    t.progress = progress
    with pytest.raises(Interrupted, match="SIGTERM at step 3.*bptt train --resume"):
        t.fit()
    assert checkpoint.load(tmp_path / "sig").train_state["progress"]["step"] == 3


def test_n_targets_counts_valid_steps():
    model = RNNModel(vocab_size=5, hidden_size=3, ignore_index=-1)
    ids = np.zeros((2, 4), int)
    targets = np.array([[1, 2, -1, 3], [0, 0, 0, 0]])
    assert n_targets(Batch(ids, targets, mask=np.array([4, 2])), model) == 3 + 2
    assert n_targets(Batch(ids, targets), model) == 7


def test_keep_best_holds_the_best_evaluation(tmp_path):
    """RUN_DIR/best is a loadable checkpoint of the evaluation with the best monitored value,
    not the last one; without keep_best there is none."""
    losses = iter([0.5, 0.3, 0.4, 0.6, 0.7])  # evaluations at steps 5, 10, 15, 20, 24: the best is step 10
    t = make(tmp_path, "best", keep_best=True)
    t._evaluate = lambda m: {"valid_loss": next(losses)}
    seen = {}
    t.progress = lambda state, loss, total: seen.update(
        {state["step"]: {k: v.copy() for k, v in t.model.params.items()}}
    )
    t.fit()
    best = checkpoint.load(tmp_path / "best" / "best")
    assert best.train_state["progress"]["step"] == 10 and best.train_state["progress"]["best_valid"] == 0.3
    for k, v in best.params.items():
        np.testing.assert_array_equal(v, seen[10][k], err_msg=k)
    assert not np.array_equal(best.params["head.V"], t.model.params["head.V"])
    plain = make(tmp_path, "plain")
    plain.fit()
    assert not (tmp_path / "plain" / "best").exists()
