"""The dataset tasks end to end through the CLI: train, predict, evaluate, generate, resume,
on the example data the project ships (examples/, written by examples/make_data.py);
every task's model configuration through `bptt gradcheck`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bptt.cli import main
from bptt.training import checkpoint

EX = Path(__file__).resolve().parents[1] / "examples"
FAST = ["--hidden-size", "8", "--embedding-size", "8"]


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


# ---- gradients of every task's configuration ---------------------------------

GRADCHECKS = {
    "tag (bidirectional, affix columns)": [
        "--embedding-size",
        "3",
        "--feature-columns",
        "2",
        "--bidirectional",
        "--uneven",
        "--reduction",
        "mean",
    ],
    "tag (two layers)": [
        "--embedding-size",
        "3",
        "--num-layers",
        "2",
        "--bidirectional",
        "--uneven",
        "--reduction",
        "mean",
    ],
    "classify two labels, last": [
        "--embedding-size",
        "3",
        "--mode",
        "many-to-one",
        "--head",
        "sigmoid",
        "--output-size",
        "1",
        "--uneven",
        "--reduction",
        "mean",
    ],
    "classify two labels, mean, bidirectional": [
        "--embedding-size",
        "3",
        "--mode",
        "many-to-one",
        "--head",
        "sigmoid",
        "--output-size",
        "1",
        "--pooling",
        "mean",
        "--bidirectional",
        "--uneven",
        "--reduction",
        "mean",
    ],
    "classify K labels, max": [
        "--embedding-size",
        "3",
        "--mode",
        "many-to-one",
        "--head",
        "softmax",
        "--output-size",
        "3",
        "--pooling",
        "max",
        "--uneven",
        "--reduction",
        "mean",
    ],
    "classify characters (one-hot)": [
        "--mode",
        "many-to-one",
        "--head",
        "softmax",
        "--output-size",
        "3",
        "--uneven",
        "--reduction",
        "mean",
    ],
    "regress many-to-one": [
        "--input",
        "features",
        "--mode",
        "many-to-one",
        "--head",
        "linear",
        "--output-size",
        "1",
        "--uneven",
        "--reduction",
        "mean",
    ],
    "regress many-to-many": [
        "--input",
        "features",
        "--mode",
        "many-to-many",
        "--head",
        "linear",
        "--output-size",
        "2",
        "--uneven",
        "--reduction",
        "mean",
    ],
    "spell (one-to-many)": ["--embedding-size", "3", "--mode", "one-to-many", "--uneven", "--reduction", "mean"],
}


@pytest.mark.parametrize("name", list(GRADCHECKS))
def test_task_model_passes_gradcheck(capsys, name):
    code, out, _ = cli(capsys, "gradcheck", *GRADCHECKS[name], "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"], report
    assert max(report["max_relative_error"].values()) < 1e-6


# ---- tagging -------------------------------------------------------------------


def test_tag_train_predict_evaluate(tmp_path, capsys):
    run = tmp_path / "tag"
    code, out, _ = cli(
        capsys,
        "train",
        "--task",
        "tag",
        "--data",
        EX / "tag-train.conllu",
        "--valid",
        EX / "tag-dev.conllu",
        "--out",
        run,
        "--max-epochs",
        "2",
        "--features",
        "suffix,shape",
        "--word-dropout",
        "0.1",
        "--lr",
        "0.01",
        *FAST,
    )
    assert code == 0 and "valid accuracy" in out and "features suffix, shape" in out
    cfg = checkpoint.load(run).model_config
    assert cfg["bidirectional"] and len(cfg["feature_vocab_sizes"]) == 2
    code, out, _ = cli(capsys, "predict", run, "--data", EX / "tag-dev.conllu")
    assert code == 0
    import conllu

    predicted, original = conllu.parse(out), conllu.parse((EX / "tag-dev.conllu").read_text())
    assert len(predicted) == len(original)
    for p, o in zip(predicted, original):  # everything but UPOS kept: ranges, empty nodes, comments
        assert [t["id"] for t in p] == [t["id"] for t in o] and p.metadata == o.metadata
        assert all(t["upos"] not in (None, "_") for t in p if isinstance(t["id"], int))
    (tmp_path / "plain.txt").write_text("the dorvel walked .\nKelpu can sing\n")
    code, out, _ = cli(capsys, "predict", run, "--data", tmp_path / "plain.txt", "--out", tmp_path / "plain.conllu")
    sents = conllu.parse((tmp_path / "plain.conllu").read_text())
    assert [len(s) for s in sents] == [4, 3]
    code, out, _ = cli(capsys, "evaluate", run, "--json")
    report = json.loads(out)
    assert code == 0 and 0 < report["accuracy"] <= 1 and "NOUN" in report["per_class"]
    code, out, _ = cli(capsys, "evaluate", run / "best", "--json")  # the best epoch's checkpoint
    best_state = checkpoint.load(run / "best").train_state["progress"]
    assert code == 0 and json.loads(out)["accuracy"] == pytest.approx(best_state["best_valid"])
    assert np.array(report["confusion"]).sum() == report["n"] == 1017
    pytest.importorskip("matplotlib")
    code, out, _ = cli(capsys, "evaluate", run, "--plot", tmp_path / "cm.png")
    assert code == 0 and "confusion matrix" in out and (tmp_path / "cm.png").read_bytes()[:4] == b"\x89PNG"


def _weights(run):
    return checkpoint.load(run).params


def test_tag_resume_is_exact(tmp_path, capsys):
    """2 epochs straight == 1 epoch, then --resume to 2 (word dropout and shuffling are seeded per batch)."""
    common = [
        "train",
        "--task",
        "tag",
        "--data",
        EX / "tag-dev.conllu",
        "--word-dropout",
        "0.2",
        "--features",
        "prefix",
        "--batch-size",
        "16",
        *FAST,
    ]
    assert cli(capsys, *common, "--out", tmp_path / "a", "--max-epochs", "2")[0] == 0
    assert cli(capsys, *common, "--out", tmp_path / "b", "--max-epochs", "1")[0] == 0
    code, out, _ = cli(capsys, "train", "--resume", tmp_path / "b", "--max-epochs", "2")
    assert code == 0 and "resuming" in out
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_tag_unidirectional(tmp_path, capsys):
    code, _, _ = cli(
        capsys,
        "train",
        "--task",
        "tag",
        "--data",
        EX / "tag-dev.conllu",
        "--unidirectional",
        "--out",
        tmp_path / "u",
        "--max-epochs",
        "1",
        *FAST,
    )
    assert code == 0 and not checkpoint.load(tmp_path / "u").model_config["bidirectional"]


# ---- classification --------------------------------------------------------------


def test_classify_binary_tsv(tmp_path, capsys):
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
        "1",
        "--pooling",
        "mean",
        *FAST,
    )
    assert code == 0 and "valid auc" in out
    cfg = checkpoint.load(run).model_config
    assert cfg["head"] == "sigmoid" and cfg["output_size"] == 1 and cfg["pooling"] == "mean"
    (tmp_path / "texts.txt").write_text("a great film\nnot good at all\n")
    code, out, _ = cli(capsys, "predict", run, "--data", tmp_path / "texts.txt")
    lines = out.splitlines()
    assert lines[0] == "label\tp_0\tp_1" and len(lines) == 3
    p = [float(v) for v in lines[1].split("\t")[1:]]
    assert abs(sum(p) - 1) < 1e-5 and lines[1].split("\t")[0] == ("1" if p[1] >= 0.5 else "0")
    code, out, _ = cli(capsys, "evaluate", run, "--json")
    report = json.loads(out)
    assert 0 <= report["roc_auc"] <= 1 and report["n"] == 300


def test_classify_three_labels_csv_char_level(tmp_path, capsys):
    run = tmp_path / "c3"
    code, out, _ = cli(
        capsys,
        "train",
        "--task",
        "classify",
        "--data",
        EX / "sentiment3.csv",
        "--level",
        "char",
        "--out",
        run,
        "--max-epochs",
        "1",
        "--pooling",
        "max",
        *FAST,
    )
    assert code == 0 and "3 labels (negative, neutral, positive), char level" in out
    assert checkpoint.load(run).model_config["head"] == "softmax"
    code, out, _ = cli(capsys, "evaluate", run, "--data", EX / "sentiment3.csv")
    assert code == 0 and "macro precision" in out and "confusion matrix" in out


# ---- regression ----------------------------------------------------------------------


@pytest.mark.parametrize("name,mode", [("regress.csv", "many-to-one"), ("regress-steps.csv", "many-to-many")])
def test_regress(tmp_path, capsys, name, mode):
    run = tmp_path / "r"
    code, out, _ = cli(
        capsys,
        "train",
        "--task",
        "regress",
        "--data",
        EX / name,
        "--valid",
        EX / name,
        "--out",
        run,
        "--max-epochs",
        "3",
        "--hidden-size",
        "8",
    )
    assert code == 0 and "valid mse" in out
    assert checkpoint.load(run).model_config["mode"] == mode
    code, out, _ = cli(capsys, "evaluate", run, "--json")
    report = json.loads(out)
    assert report["mse"] >= 0 and report["mae"] >= 0
    code, out, _ = cli(capsys, "predict", run, "--data", EX / name)
    rows = (EX / name).read_text().splitlines()[1:]
    lines = out.splitlines()
    assert len(lines) == len(rows)
    n_steps = [len(r.split(",")[0].split()) for r in rows]
    assert [len(line.split()) for line in lines] == (n_steps if mode == "many-to-many" else [1] * len(rows))


# ---- one-to-many -------------------------------------------------------------------------


def test_spell_number_words():
    from bptt.tasks.spell import digits, words

    assert words(0) == "zero" and words(42) == "forty-two" and words(907) == "nine hundred seven"
    assert words(120_015) == "one hundred twenty thousand fifteen"
    np.testing.assert_array_equal(digits([42], 3).reshape(3, 10).argmax(axis=1), [0, 4, 2])


def test_spell_train_generate_evaluate(tmp_path, capsys):
    run = tmp_path / "s"
    code, out, _ = cli(
        capsys,
        "train",
        "--task",
        "spell",
        "--max-number",
        "99",
        "--out",
        run,
        "--max-epochs",
        "2",
        "--hidden-size",
        "16",
    )
    assert code == 0 and "0..99" in out and "valid exact" in out
    code, out, _ = cli(capsys, "generate", run, "--cond", "7 42")
    assert code == 0 and [line.split("\t")[0] for line in out.splitlines()] == ["7", "42"]
    code, out, _ = cli(capsys, "evaluate", run, "--json")
    assert code == 0 and json.loads(out)["n"] == 10


@pytest.mark.parametrize(
    "task",
    [
        ["--task", "classify", "--data", EX / "sentiment3.csv", "--pooling", "max", "--bidirectional"],
        ["--task", "regress", "--data", EX / "regress-steps.csv"],
        ["--task", "spell", "--max-number", "99"],
    ],
    ids=["classify", "regress", "spell"],
)
def test_resume_is_exact_for_every_task(tmp_path, capsys, task):
    common = ["train", *task, "--hidden-size", "8", "--batch-size", "16"]
    assert cli(capsys, *common, "--out", tmp_path / "a", "--max-epochs", "2")[0] == 0
    assert cli(capsys, *common, "--out", tmp_path / "b", "--max-epochs", "1")[0] == 0
    assert cli(capsys, "train", "--resume", tmp_path / "b", "--max-epochs", "2")[0] == 0
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_overwrite_removes_the_replaced_runs_best(tmp_path, capsys):
    """--overwrite starts over: no best/ of the run it replaced is left to be predicted from."""
    run = tmp_path / "tag"
    train = ["train", "--task", "tag", "--data", EX / "tag-train.conllu", "--out", run, "--max-epochs", "1", *FAST]
    assert cli(capsys, *train, "--valid", EX / "tag-dev.conllu")[0] == 0
    assert checkpoint.is_run_dir(run / "best")
    assert cli(capsys, *train, "--overwrite")[0] == 0  # no validation data: no best/ of its own
    assert not (run / "best").exists()
