"""A run with validation data keeps its best evaluation's weights in RUN_DIR/best, and
evaluate, predict, generate and export use them unless given --last.

To tell the two apart for certain, the tests overwrite RUN_DIR/best with zero weights:
a model whose weights are all zero predicts the uniform distribution, so its loss is
log K exactly, while the trained weights (the latest checkpoint) do better."""

import json
import math
from pathlib import Path

import numpy as np

from bptt.cli import main
from bptt.training import checkpoint

EX = Path(__file__).resolve().parents[1] / "examples"
TEXT = ("the quick brown fox jumps over the lazy dog.\n" * 8 + "a stitch in time saves nine.\n" * 8) * 3
SMALL = ["--hidden-size", "16", "--num-layers", "1", "--embedding-size", "8", "--batch-size", "4"]
SMALL += ["--seq-length", "10", "--eval-every", "5", "--samples", "0", "--max-epochs", "2"]


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def zero_best(run: Path) -> None:
    """Replace RUN_DIR/best's weights with zeros, and their moving average if the run keeps one
    (--ema, classify's default: what the commands use), keeping everything else of that checkpoint."""
    best = checkpoint.load(run / "best")
    zeros = {k: np.zeros_like(v) for k, v in best.params.items()}
    arrays = {k: np.zeros_like(v) if k.startswith("ema.") else v for k, v in best.arrays.items()}
    checkpoint.save(run / "best", zeros, best.model_config, best.train_state, arrays)


def lm_run(tmp_path, capsys, *extra) -> tuple[Path, str]:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    run = tmp_path / "lm"
    code, out, _ = cli(capsys, "train", "--data", corpus, "--out", run, *SMALL, *extra)
    assert code == 0
    return run, out


def test_a_language_model_keeps_and_uses_its_best_weights(tmp_path, capsys):
    run, out = lm_run(tmp_path, capsys)
    assert (run / "best" / checkpoint.INDEX).is_file()
    assert "weights: the best evaluation's (step" in out  # the run ends with them
    V = checkpoint.load(run).model_config["vocab_size"]
    zero_best(run)
    code, out, err = cli(capsys, "evaluate", run, "--json")
    assert code == 0 and "weights: the best evaluation's" in err and "--last" in err
    assert math.isclose(json.loads(out)["loss_nats"], math.log(V), rel_tol=1e-5)  # zero weights: uniform
    code, out, err = cli(capsys, "evaluate", run, "--json", "--last")
    assert code == 0 and "weights: the latest checkpoint" in err
    assert json.loads(out)["loss_nats"] < 0.9 * math.log(V)  # trained
    code, out, err = cli(capsys, "generate", run, "--length", "5", "--seed", "0")
    assert code == 0 and "weights: the best evaluation's" in err
    code, out, err = cli(capsys, "generate", run, "--length", "5", "--seed", "0", "--last")
    assert code == 0 and "weights: the latest checkpoint" in err


def test_no_keep_best_keeps_only_the_latest(tmp_path, capsys):
    run, out = lm_run(tmp_path, capsys, "--no-keep-best")
    assert not (run / "best").exists() and "weights: the best" not in out
    code, _, err = cli(capsys, "evaluate", run)
    assert code == 0 and "weights: the latest checkpoint" in err


def test_a_classifier_predicts_and_exports_with_its_best_weights(tmp_path, capsys):
    run = tmp_path / "c"
    code, out, _ = cli(
        capsys,
        "train",
        "--task",
        "classify",
        "--data",
        EX / "sentiment-train.tsv",
        "--valid",
        EX / "sentiment-dev.tsv",
        "--out",
        run,
        "--max-epochs",
        "2",
        "--hidden-size",
        "8",
        "--embedding-size",
        "8",
    )
    assert code == 0 and f"the best evaluation's weights are in {run / 'best'}" in out
    zero_best(run)
    (tmp_path / "texts.txt").write_text("a great film\nnot good at all\n")
    code, out, err = cli(capsys, "predict", run, "--data", tmp_path / "texts.txt")
    assert code == 0 and "weights: the best evaluation's" in err
    rows = [line.split("\t") for line in out.splitlines()[1:]]
    assert all(float(p) == 0.5 for row in rows for p in row[1:])  # zero weights: sigmoid(0)
    code, out, err = cli(capsys, "predict", run, "--data", tmp_path / "texts.txt", "--last")
    assert code == 0 and "weights: the latest checkpoint" in err
    assert any(float(p) != 0.5 for row in [line.split("\t") for line in out.splitlines()[1:]] for p in row[1:])
    code, _, err = cli(capsys, "export", run, "--out", tmp_path / "m.onnx")
    assert code == 0 and "weights: the best evaluation's" in err and (tmp_path / "m.onnx").is_file()
