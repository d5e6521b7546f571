"""The long-memory tasks: each generator matches its published definition, the baselines
measured on generated data match the published numbers, the pass criteria, and
`bptt train --task ...` end to end, with an exact resume."""

import json
import math

import numpy as np
import pytest

from bptt.cli import main
from bptt.data import synthetic
from bptt.tasks import longmem
from bptt.training import checkpoint


def test_adding_hochreiter_definition():
    T = 100
    b = synthetic.adding(np.random.default_rng(0), 4000, T, "hochreiter")
    x, y, lengths = b.inputs, b.targets[:, 0], b.mask
    assert lengths.min() == T and lengths.max() == T + T // 10  # lengths T .. T + T/10
    values, marks = x[:, :, 0], x[:, :, 1]
    real = np.arange(x.shape[1])[None, :] < lengths[:, None]
    assert (np.abs(values[real]) <= 1).all() and values[real].min() < -0.99 and values[~real].sum() == 0
    assert ((marks == 1).sum(axis=1) == 2).all()
    first = np.argmax(marks == 1, axis=1)
    second = x.shape[1] - 1 - np.argmax((marks == 1)[:, ::-1], axis=1)
    # X1 among the first 10 pairs, X2 among the first T/2 - 1 pairs that X1 left unmarked
    assert first.max() <= 9 and second.max() <= T // 2 - 1
    unmarked_before = second - (first < second)
    assert unmarked_before.max() == T // 2 - 2 and unmarked_before.min() == 0
    assert (second > 9).any() and (second < first + 5).any()
    for i in range(len(x)):
        if first[i] != 0:
            assert marks[i, 0] == -1
        assert marks[i, lengths[i] - 1] == -1
        X1 = values[i, first[i]] if first[i] != 0 else 0.0
        assert y[i] == pytest.approx(0.5 + (X1 + values[i, second[i]]) / 4)
    assert (first == 0).any() and (values[first == 0, 0] == 0).all()  # a marked first pair has X1 = 0


def test_adding_sum_definition_and_baseline():
    T = 60
    b = synthetic.adding(np.random.default_rng(1), 20000, T, "sum")
    x, y = b.inputs, b.targets[:, 0]
    assert x.shape == (20000, T, 2) and b.mask is None
    marks = x[:, :, 1]
    assert (marks[:, : T // 2].sum(axis=1) == 1).all() and (marks[:, T // 2 :].sum(axis=1) == 1).all()
    np.testing.assert_allclose(y, (x[:, :, 0] * marks).sum(axis=1))
    mse = float(((y - 1.0) ** 2).mean())  # always predicting 1
    assert mse == pytest.approx(0.167, abs=4 * math.sqrt(2 / 20000 / 45 + 1e-6))  # 4 standard errors
    assert abs(mse - synthetic.ADDING_BASELINE_MSE) < 0.01


def test_adding_mean_definition():
    for seed in range(20):
        b = synthetic.adding(np.random.default_rng(seed), 50, 100, "mean")
        L = b.inputs.shape[1]
        assert 100 <= L < 110
        marks = b.inputs[:, :, 1]
        pos = [np.flatnonzero(m) for m in marks]
        assert all(len(p) == 2 and p[0] < int(0.1 * L) and int(0.1 * L) <= p[1] < int(0.5 * L) for p in pos)
        np.testing.assert_allclose(b.targets[:, 0], (b.inputs[:, :, 0] * marks).sum(axis=1) / 2)


def test_copy_definition_and_baseline():
    T = 30
    b = synthetic.copy(np.random.default_rng(2), 500, T)
    x, y = b.inputs, b.targets
    assert x.shape == y.shape == (500, T + 20)
    assert (x[:, :10] >= 1).all() and (x[:, :10] <= 8).all()
    assert (x[:, 10 : T + 9] == 0).all() and (x[:, T + 9] == 9).all() and (x[:, T + 10 :] == 0).all()
    assert (y[:, : T + 10] == 0).all() and (y[:, T + 10 :] == x[:, :10]).all()
    # the baseline predictor: blank for T + 10 steps, then uniform over the 8 data symbols
    p = np.zeros((T + 20, 10))
    p[: T + 10, 0] = 1.0
    p[T + 10 :, 1:9] = 1 / 8
    ce = -np.log(p[np.arange(T + 20)[None, :], y]).mean()
    assert ce == pytest.approx(10 * math.log(8) / (T + 20)) == pytest.approx(synthetic.copy_baseline(T))


def test_temporal_order_definition():
    T = 100
    b = synthetic.temporal_order(np.random.default_rng(3), 3000, T)
    x, y = b.inputs, b.targets
    assert x.shape == (3000, T) and x.min() >= 0 and x.max() <= 5
    for i in range(len(x)):
        pos = np.flatnonzero(x[i] < 2)
        assert len(pos) == 2 and 10 <= pos[0] < 20 and 50 <= pos[1] < 60
        assert y[i] == x[i, pos[0]] + 2 * x[i, pos[1]]
    assert np.bincount(y, minlength=4).min() > 600  # the four classes AA, BA, AB, BB


def test_pass_criteria():
    pred, target = np.array([0.5, 0.5, 0.5]), np.array([0.53, 0.47, 0.6])
    assert synthetic.adding_correct("hochreiter", pred, target).tolist() == [True, True, False]
    assert synthetic.adding_correct("mean", pred, target).tolist() == [True, True, True]  # squared error 0.01 <= 0.04
    assert synthetic.adding_correct("mean", np.array([0.0]), np.array([0.21])).tolist() == [False]
    y = np.zeros((2, 30), int)
    y[:, -10:] = 3
    p = y.copy()
    p[1, -1] = 4
    assert synthetic.copy_correct(p, y).tolist() == [True, False]
    s = longmem.spec("adding", 50, "sum")
    assert s.solved({"loss": 0.009, "error": 0.9}) and not s.solved({"loss": 0.011, "error": 0.0})
    s = longmem.spec("adding", 50, "hochreiter")
    assert (
        s.test_size == 2000
        and not s.solved({"loss": 0.001, "error": 1 / 2000})
        and s.solved({"loss": 0.009, "error": 0})
    )
    for name in ("temporal-order", "copy"):
        s = longmem.spec(name, 50)
        assert s.solved({"loss": 9.0, "error": 0.0099}) and not s.solved({"loss": 0.0, "error": 0.01})


def test_sources_are_pure_functions_of_seed_epoch_and_batch():
    s = synthetic.Source(lambda rng, B: synthetic.temporal_order(rng, B, 20), 4, 10, seed=7)
    a, b, c = s.batch(2, 3), s.batch(2, 3), s.batch(2, 4)
    assert (a.inputs == b.inputs).all() and (a.targets == b.targets).all() and not (a.inputs == c.inputs).all()
    assert [len(v.inputs) for v in s.fixed(10, tag=0)] == [4, 4, 2]


def test_generators_refuse_what_has_no_definition():
    with pytest.raises(ValueError, match="variant"):
        synthetic.adding(np.random.default_rng(0), 2, 50, "product")
    with pytest.raises(ValueError, match="T >= 10"):
        synthetic.temporal_order(np.random.default_rng(0), 2, 5)


TINY = [
    "--hidden-size",
    "8",
    "--batch-size",
    "8",
    "--batches-per-epoch",
    "5",
    "--eval-every",
    "5",
    "--valid-size",
    "50",
    "--test-size",
    "100",
]


@pytest.mark.parametrize(
    "task,extra",
    [
        ("adding", ["--variant", "hochreiter", "--length", "10"]),
        ("copy", ["--length", "5"]),
        ("temporal-order", ["--length", "10"]),
    ],
)
def test_train_task_end_to_end(tmp_path, capsys, task, extra):
    out = tmp_path / task
    assert main(["train", "--task", task, *extra, *TINY, "--max-epochs", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert ("PASS" in printed) != ("FAIL" in printed)
    r = json.loads((out / "result.json").read_text())
    assert r["task"] == task and r["updates"] == 10 and r["test_size"] == 100 and isinstance(r["solved"], bool)
    if task == "copy":
        assert r["baseline_loss"] == pytest.approx(10 * math.log(8) / 25)
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_adding_task_learns_at_t10_and_stops_when_solved(tmp_path, capsys):
    out = tmp_path / "irnn"
    assert (
        main(
            [
                "train",
                "--task",
                "adding",
                "--length",
                "10",
                "--nonlinearity",
                "relu",
                "--init",
                "identity",
                "--hidden-size",
                "32",
                "--lr",
                "0.003",
                "--max-epochs",
                "40",
                "--eval-every",
                "50",
                "--valid-size",
                "500",
                "--test-size",
                "2000",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    r = json.loads((out / "result.json").read_text())
    assert r["solved"] and r["stop_reason"] == "solved" and r["test_loss"] < 0.01 and r["updates"] < 4000
    assert "PASS" in capsys.readouterr().out


def test_task_resume_is_exact(tmp_path, capsys):
    args = ["train", "--task", "adding", "--length", "12", *TINY, "--diagnostics"]
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert main([*args, "--max-epochs", "4", "--out", str(straight)]) == 0
    assert main([*args, "--max-epochs", "2", "--out", str(cut)]) == 0
    assert main(["train", "--resume", str(cut), "--max-epochs", "4"]) == 0
    assert "resuming" in capsys.readouterr().out
    a, b = checkpoint.load(straight).params, checkpoint.load(cut).params
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert (
        json.loads((straight / "result.json").read_text())["test_loss"]
        == json.loads((cut / "result.json").read_text())["test_loss"]
    )
    # the gradient-norm log of the resumed run is the uninterrupted one's, no line lost or repeated
    assert (straight / "grad-norms.jsonl").read_text() == (cut / "grad-norms.jsonl").read_text()
    assert len((cut / "grad-norms.jsonl").read_text().splitlines()) == 20


def test_overwrite_removes_the_old_runs_logs(tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "train",
        "--task",
        "adding",
        "--length",
        "10",
        *TINY,
        "--max-epochs",
        "1",
        "--diagnostics",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    assert main(["diagnose", str(out), "--no-plot"]) == 0
    assert main([*args[:-2], "--max-epochs", "2", "--out", str(out), "--overwrite", "--no-clip-norm"]) == 0
    assert len((out / "grad-norms.jsonl").read_text().splitlines()) == 10  # the new run's only
    assert json.loads((out / "result.json").read_text())["updates"] == 10
    assert not (out / "diagnose.json").exists()


@pytest.mark.parametrize(
    "name,variant", [("adding", "hochreiter"), ("adding", "mean"), ("copy", None), ("temporal-order", None)]
)
def test_measure_agrees_with_predict_and_mean_loss(name, variant):
    from bptt import RNNModel
    from bptt.training.batches import mean_loss

    s = longmem.spec(name, 20, variant)
    model = RNNModel(**s.model, hidden_size=8, reduction="mean", seed=1)
    model.params["head.c"][:] = 0.5 if name == "adding" else model.params["head.c"]  # some right, some wrong
    batches = synthetic.Source(s.make, 7, 1, seed=0).fixed(40, tag=0)
    wrong = 0
    for b in batches:
        y = model.predict(b.inputs, b.mask)
        if name == "adding":
            ok = synthetic.adding_correct(variant, y[:, 0], b.targets)
        elif name == "copy":
            ok = synthetic.copy_correct(y.argmax(axis=2), b.targets)
        else:
            ok = y.argmax(axis=1) == b.targets
        wrong += int((~ok).sum())
    m = s.measure(model, batches)
    assert m["error"] == wrong / 40
    assert m["loss"] == pytest.approx(mean_loss(model, batches), rel=1e-12)


def test_a_run_that_cannot_fit_is_refused_before_anything_is_written(tmp_path, capsys):
    assert main(["train", "--task", "copy", "--length", "100000000", "--out", str(tmp_path / "big")]) == 2
    assert "a smaller --length" in capsys.readouterr().err and not (tmp_path / "big").exists()
