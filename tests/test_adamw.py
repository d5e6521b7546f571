"""AdamW (decoupled weight decay) and --weight-decay for every optimizer.

The update rules match torch.optim to rounding in tests/test_optim.py (AdamW, and Adam, SGD,
momentum, Adagrad, RMSprop with weight_decay, 20 steps in float64 to rtol 1e-12, resumed bit
for bit); here: AdamW's rule written out by hand, its difference from Adam's L2, and the CLI
flags (what a run saves, resuming it exactly, refusals in one line).
"""

from __future__ import annotations

import numpy as np
import pytest

from bptt.cli import main
from bptt.training import checkpoint, optim

LR, WD = 0.05, 0.1


def _params_grads(seed=0):
    rng = np.random.default_rng(seed)
    params = {"rnn0.W": rng.standard_normal((3, 3)), "head.c": rng.standard_normal(2)}
    grads = [{k: rng.standard_normal(v.shape) for k, v in params.items()} for _ in range(3)]
    return params, grads


def test_adamw_is_decay_then_the_adam_step():
    """theta_t = theta_{t-1} (1 - lr wd) - lr m^_t / (sqrt(v^_t) + eps), m, v from the raw gradients."""
    params, grads = _params_grads()
    theta = {k: v.copy() for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    opt = optim.make_optimizer("adamw", LR, weight_decay=WD)
    for t, g in enumerate(grads, 1):
        opt.step(params, g)
        for k in theta:
            m[k] = 0.9 * m[k] + 0.1 * g[k]
            v[k] = 0.999 * v[k] + 0.001 * g[k] ** 2
            mhat, vhat = m[k] / (1 - 0.9**t), v[k] / (1 - 0.999**t)
            theta[k] = theta[k] * (1 - LR * WD) - LR * mhat / (np.sqrt(vhat) + 1e-8)
            np.testing.assert_allclose(params[k], theta[k], rtol=1e-12, err_msg=f"{k} step {t}")


def test_adamw_is_not_adam_with_l2():
    a, grads = _params_grads()
    b, _ = _params_grads()
    c, _ = _params_grads()
    for name, params, wd in (("adamw", a, WD), ("adam", b, WD), ("adamw", c, 0.0)):
        opt = optim.make_optimizer(name, LR, weight_decay=wd)
        for g in grads:
            opt.step(params, g)
    assert not np.allclose(a["rnn0.W"], b["rnn0.W"]) and not np.allclose(a["rnn0.W"], c["rnn0.W"])


def test_default_weight_decay_is_torchs():
    assert optim.default_weight_decay("adamw") == 0.01
    for name in ("sgd", "momentum", "adagrad", "rmsprop", "adam"):
        assert optim.default_weight_decay(name) == 0.0


# ---- the CLI ---------------------------------------------------------------------

TEXT = "the quick brown fox jumps over the lazy dog.\n" * 12
TINY = ["--hidden-size", "8", "--num-layers", "1", "--embedding-size", "4", "--seq-length", "10"]
TINY += ["--batch-size", "4", "--samples", "0", "--eval-every", "5"]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text(TEXT)
    return path


@pytest.mark.parametrize(
    "flags, saved",
    [
        (["--optimizer", "adamw"], ("AdamW", 0.01)),
        (["--optimizer", "adamw", "--weight-decay", "0.05"], ("AdamW", 0.05)),
        (["--optimizer", "sgd", "--lr", "0.1", "--weight-decay", "0.001"], ("SGD", 0.001)),
        (["--optimizer", "momentum", "--weight-decay", "0.01"], ("SGD", 0.01)),
        (["--optimizer", "adam"], ("Adam", 0.0)),
    ],
    ids=["adamw-default", "adamw", "sgd", "momentum", "adam"],
)
def test_cli_weight_decay_is_saved_and_resumed_exactly(flags, saved, corpus, tmp_path):
    common = ["train", "--data", str(corpus), *TINY, *flags]
    assert main([*common, "--out", str(tmp_path / "a"), "--max-epochs", "2"]) == 0
    assert main([*common, "--out", str(tmp_path / "b"), "--max-epochs", "1"]) == 0
    assert main(["train", "--resume", str(tmp_path / "b"), "--max-epochs", "2"]) == 0
    a, b = checkpoint.load(tmp_path / "a"), checkpoint.load(tmp_path / "b")
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k], err_msg=k)
    meta = a.train_state["optimizer"]
    assert (meta["optimizer"], meta["weight_decay"]) == saved
    assert a.train_state["options"]["weight_decay"] == saved[1]


def test_cli_weight_decay_changes_the_run(corpus, tmp_path):
    common = ["train", "--data", str(corpus), *TINY, "--max-epochs", "0.5", "--optimizer", "sgd", "--lr", "0.1"]
    assert main([*common, "--out", str(tmp_path / "a")]) == 0
    assert main([*common, "--out", str(tmp_path / "b"), "--weight-decay", "0.5"]) == 0
    wa, wb = checkpoint.load(tmp_path / "a").params, checkpoint.load(tmp_path / "b").params
    assert np.linalg.norm(wb["rnn0.W"]) < np.linalg.norm(wa["rnn0.W"])


def test_cli_resume_with_another_weight_decay_is_one_line(corpus, tmp_path, capsys):
    common = ["train", "--data", str(corpus), *TINY, "--max-epochs", "0.5", "--optimizer", "adamw"]
    assert main([*common, "--out", str(tmp_path / "a")]) == 0
    capsys.readouterr()
    assert main([*common, "--resume", str(tmp_path / "a"), "--weight-decay", "0.01", "--max-epochs", "1"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "a"), "--weight-decay", "0.2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--weight-decay 0.2: the run" in err[0] and "has --weight-decay 0.01" in err[0]
