"""--ema DECAY: the loop keeps theta_bar_n = d_n theta_bar_{n-1} + (1 - d_n) theta_n,
d_n = min(DECAY, (1 + n) / (10 + n)), from theta_bar_0 = theta_0, after every update;
evaluation judges it, checkpoints hold it beside the weights, a resumed run continues it
exactly, and evaluate and export use it (bptt.training.averaging)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bptt import RNNModel, export
from bptt.cli import main
from bptt.errors import CheckpointError, UsageError
from bptt.training import averaging, checkpoint
from bptt.training.runs import load_run

TEXT = ("the quick brown fox jumps over the lazy dog.\n" * 8 + "a stitch in time saves nine.\n" * 8) * 3
SMALL = ["--hidden-size", "8", "--num-layers", "1", "--embedding-size", "4", "--batch-size", "4"]
SMALL += ["--seq-length", "10", "--samples", "0", "--dtype", "float64"]


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def lm_run(tmp_path: Path, capsys, name: str, *extra) -> Path:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    run = tmp_path / name
    code, _, err = cli(capsys, "train", "--data", corpus, "--out", run, *SMALL, *extra)
    assert code == 0, err
    return run


# ---- the average itself --------------------------------------------------------------


def test_the_warm_up_and_the_recursion():
    assert averaging.decay_at(0.998, 1) == pytest.approx(2 / 11)
    assert averaging.decay_at(0.9, 80) == pytest.approx(81 / 90)
    assert averaging.decay_at(0.9, 81) == 0.9  # (1 + n) / (10 + n) reaches 0.9 at n = 80
    rng = np.random.default_rng(0)
    params = {"U": rng.standard_normal((3, 2)), "b": rng.standard_normal(3)}
    avg = averaging.WeightAverage(0.5, params)
    want = {k: v.copy() for k, v in params.items()}
    for n in range(1, 6):
        for v in params.values():
            v += rng.standard_normal(v.shape)
        avg.update(params, n)
        d = min(0.5, (1 + n) / (10 + n))
        want = {k: d * want[k] + (1 - d) * params[k] for k in want}
    for k in want:
        np.testing.assert_allclose(avg.average[k], want[k], rtol=1e-14)


def test_swapped_in_puts_the_weights_back_even_after_an_error():
    params = {"W": np.ones((2, 2))}
    held = params["W"]  # another holder of the same array (the optimizer's view, say)
    avg = averaging.WeightAverage(0.9, {"W": np.zeros((2, 2))})
    with pytest.raises(RuntimeError):
        with avg.swapped_in(params):
            assert (held == 0).all()
            raise RuntimeError
    assert params["W"] is held and (held == 1).all()


def test_saved_and_loaded_and_checked():
    avg = averaging.WeightAverage(0.9, {"W": np.arange(4.0)})
    arrays = avg.arrays()
    assert list(arrays) == ["ema.W"]
    other = averaging.WeightAverage(0.9, {"W": np.zeros(4)})
    other.load(arrays)
    np.testing.assert_array_equal(other.average["W"], np.arange(4.0))
    with pytest.raises(CheckpointError, match=r"ema.W is \(3,\), expected \(4,\)"):
        other.load({"ema.W": np.zeros(3)})
    with pytest.raises(CheckpointError, match="no ema.W: the run kept no moving average"):
        other.load({})
    for decay in (0.0, 1.0, 1.5):
        with pytest.raises(UsageError, match=r"decay: got .*, expected a number in \(0, 1\)"):
            averaging.WeightAverage(decay, {})
    assert averaging.averaged({"opt.m": np.zeros(1)}, ["W"]) is None


# ---- in training -------------------------------------------------------------------------


def test_the_loop_averages_after_every_update(tmp_path, capsys):
    """Replayed from every checkpoint of the run (one per update) and the initial weights."""
    run = lm_run(tmp_path, capsys, "lm", "--ema", "0.9", "--eval-every", "1", "--keep", "1000", "--max-epochs", "1")
    last = checkpoint.load(run)
    steps = last.train_state["progress"]["step"]
    assert steps > 20 and last.train_state["options"]["ema"] == 0.9
    want = {k: v.copy() for k, v in RNNModel(**last.model_config).params.items()}  # theta_0: the seeded init
    for n in range(1, steps + 1):
        theta = checkpoint.load(run, step=n).params
        d = min(0.9, (1 + n) / (10 + n))
        want = {k: d * want[k] + (1 - d) * theta[k] for k in want}
    assert sorted(k for k in last.arrays if k.startswith("ema.")) == sorted(f"ema.{k}" for k in want)
    for k, v in want.items():
        np.testing.assert_allclose(last.arrays[f"ema.{k}"], v, rtol=1e-12, atol=1e-12, err_msg=k)
        assert not np.allclose(last.params[k], v), k  # the weights themselves go on unaveraged


def test_evaluation_judges_the_average_and_the_commands_use_it(tmp_path, capsys):
    run = lm_run(tmp_path, capsys, "lm", "--ema", "0.95", "--eval-every", "10", "--max-epochs", "2")
    best = checkpoint.load(run / "best")
    model, _ = load_run(run / "best")
    for k, v in model.params.items():
        np.testing.assert_array_equal(v, best.arrays[f"ema.{k}"], err_msg=k)
    raw, _ = load_run(run / "best", averaged=False)
    assert any(not np.array_equal(raw.params[k], v) for k, v in model.params.items())
    code, out, _ = cli(capsys, "evaluate", run, "--json")
    assert code == 0
    assert math.isclose(json.loads(out)["loss_nats"], best.train_state["progress"]["best_valid"], rel_tol=1e-9)
    code, _, _ = cli(capsys, "export", run, "--out", tmp_path / "m.onnx", "--recurrence", "scan")
    assert code == 0
    back = export.from_onnx(tmp_path / "m.onnx")
    for k, v in back.params.items():
        np.testing.assert_array_equal(v, best.arrays[f"ema.{k}"], err_msg=k)


def test_a_resumed_run_continues_the_average_exactly(tmp_path, capsys):
    a = lm_run(tmp_path, capsys, "a", "--ema", "0.99", "--eval-every", "7", "--max-epochs", "2")
    b = lm_run(tmp_path, capsys, "b", "--ema", "0.99", "--eval-every", "7", "--max-epochs", "1")
    code, out, _ = cli(capsys, "train", "--resume", b, "--max-epochs", "2")
    assert code == 0 and "resuming" in out
    ca, cb = checkpoint.load(a), checkpoint.load(b)
    assert sorted(ca.arrays) == sorted(cb.arrays) and any(k.startswith("ema.") for k in ca.arrays)
    for k in ca.arrays:
        np.testing.assert_array_equal(ca.arrays[k], cb.arrays[k], err_msg=k)
    for k in ca.params:
        np.testing.assert_array_equal(ca.params[k], cb.params[k], err_msg=k)


def test_bad_decays_and_changes_on_resume_are_refused_in_one_line(tmp_path, capsys):
    for value in ("1", "-0.1", "nan", "x"):
        with pytest.raises(SystemExit) as e:
            main(["train", "--ema", value, "--out", str(tmp_path / "never")])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "--ema" in err and "expected a number in [0, 1)" in err
    assert not (tmp_path / "never").exists()
    run = lm_run(tmp_path, capsys, "lm", "--ema", "0.9", "--max-epochs", "1")
    code, _, err = cli(capsys, "train", "--resume", run, "--ema", "0.5", "--max-epochs", "2")
    assert code == 2 and "--ema 0.5: the run" in err and "has --ema 0.9" in err and len(err.strip().splitlines()) == 1
    assert checkpoint.load(run).train_state["progress"]["epoch"] == 1  # untouched


def test_classify_and_tag_average_by_default_and_ema_0_turns_it_off(tmp_path, capsys):
    """classify's and tag's default --ema 0.998 (docs/recipes.md), said in the model line; the language
    model's default is 0."""
    rows = [f"{w} {v}\t{int(w < v)}" for w in "abcdef" for v in "abcdef"]
    (tmp_path / "t.tsv").write_text("\n".join(rows) + "\n")
    small = ["--task", "classify", "--data", tmp_path / "t.tsv", "--hidden-size", "4", "--embedding-size", "4"]
    small += ["--char-hidden-size", "0", "--max-epochs", "1"]
    code, out, _ = cli(capsys, "train", *small, "--out", tmp_path / "on")
    assert code == 0 and "weights averaged (--ema 0.998)" in out
    assert any(k.startswith("ema.") for k in checkpoint.load(tmp_path / "on").arrays)
    code, out, _ = cli(capsys, "train", *small, "--ema", "0", "--out", tmp_path / "off")
    assert code == 0 and "averaged" not in out
    assert not any(k.startswith("ema.") for k in checkpoint.load(tmp_path / "off").arrays)
    tag = ["--task", "tag", "--data", Path(__file__).resolve().parents[1] / "examples" / "tag-dev.conllu"]
    tag += ["--hidden-size", "4", "--embedding-size", "4", "--char-hidden-size", "2", "--max-epochs", "0.05"]
    code, out, _ = cli(capsys, "train", *tag, "--out", tmp_path / "tag")
    assert code == 0 and "weights averaged (--ema 0.998)" in out
    run = lm_run(tmp_path, capsys, "lm", "--max-epochs", "1")
    assert not any(k.startswith("ema.") for k in checkpoint.load(run).arrays)


def test_every_task_says_so_in_its_model_line(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    code, out, _ = cli(
        capsys, "train", "--data", corpus, *SMALL, "--ema", "0.99", "--max-epochs", "0.2", "--out", tmp_path / "lm"
    )
    model_line = [line for line in out.splitlines() if line.startswith("model:")]
    assert code == 0 and len(model_line) == 1 and model_line[0].endswith(", weights averaged (--ema 0.99)")
    argv = ["train", "--task", "adding", "--length", "5", "--hidden-size", "4", "--max-epochs", "0.01"]
    code, out, _ = cli(capsys, *argv, "--ema", "0.9", "--out", tmp_path / "adding")
    assert code == 0 and "; weights averaged (--ema 0.9)" in out
