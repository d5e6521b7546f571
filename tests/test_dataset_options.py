"""The dataset tasks' shared options end to end, on small generated data: the classify defaults
(bidirectional, mean,max pooling, a 10% validation split), --valid-fraction for tag, classify and
regress (seeded, disjoint, rebuilt on --resume), --word-dropout for classify, --embeddings from a
word2vec / GloVe text file, and --folds K cross-validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bptt.cli import main
from bptt.data.vectors import read_vectors
from bptt.errors import DataError
from bptt.tasks import classify, common
from bptt.training import checkpoint
from helpers import assert_same_run

EX = Path(__file__).resolve().parents[1] / "examples"
TINY = ["--hidden-size", "4", "--embedding-size", "4", "--batch-size", "16"]


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def sentiment(path: Path, n: int = 60, seed: int = 0) -> Path:
    """n generated texts: filler words and one sentiment word, whose polarity is the label (60% "pos")."""
    rng = np.random.default_rng(seed)
    filler, pos, neg = ["the", "a", "film", "was", "very", "plot"], ["good", "great", "fine"], ["bad", "poor", "dull"]
    lines = []
    for _ in range(n):
        label = "pos" if rng.random() < 0.6 else "neg"
        words = list(rng.choice(filler, rng.integers(1, 5))) + [str(rng.choice(pos if label == "pos" else neg))]
        lines.append(" ".join(words) + "\t" + label)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ---- splits ------------------------------------------------------------------------------


def test_split_is_seeded_disjoint_and_complete():
    extra = {"data": "d", "valid_fraction": 0.2, "split_seed": 3}
    train, valid, test = common.split(50, extra)
    assert test is None and len(valid) == 10 and len(train) == 40
    assert sorted(np.concatenate([train, valid]).tolist()) == list(range(50))
    again = common.split(50, dict(extra))
    assert all(np.array_equal(a, b) for a, b in zip(again[:2], (train, valid)))
    assert not np.array_equal(common.split(50, dict(extra, split_seed=4))[1], valid)


def test_folds_are_stratified_and_partition_the_examples():
    y = np.array([0] * 30 + [1] * 12 + [2] * 5)
    fold = common.folds_of(y, 4, seed=1)
    for k in range(4):
        counts = np.bincount(y[fold == k], minlength=3)
        assert np.all(np.abs(counts - np.bincount(y) / 4) <= 1), counts
    tests = []
    for k in range(1, 5):
        train, valid, test = common.split(len(y), {"folds": 4, "fold": k, "split_seed": 1, "valid_fraction": 0.1}, y)
        assert not set(test) & (set(train) | set(valid))
        assert len(train) + len(valid) + len(test) == len(y)
        tests.extend(test.tolist())
    assert sorted(tests) == list(range(len(y)))  # each example held out exactly once


# ---- classify defaults, pooling, word dropout -----------------------------------------------


def test_classify_defaults_validate_on_a_seeded_tenth(tmp_path, capsys):
    data = sentiment(tmp_path / "s.tsv")
    code, out, _ = cli(capsys, "train", "--task", "classify", "--data", data, "--out", tmp_path / "r", *TINY)
    assert code == 0 and f"valid 0.1 of {data} (seed 0): 6 examples" in out
    cfg = checkpoint.load(tmp_path / "r").model_config
    assert cfg["bidirectional"] and cfg["pooling"] == "mean,max" and cfg["dtype"] == "float32"
    assert checkpoint.is_run_dir(tmp_path / "r" / "best") and "best valid accuracy" in out
    code, _, _ = cli(
        capsys, "train", "--task", "classify", "--data", data, "--out", tmp_path / "u", "--unidirectional",
        "--pooling", "last", "--valid-fraction", "0.2", *TINY,
    )  # fmt: skip
    cfg = checkpoint.load(tmp_path / "u").model_config
    assert code == 0 and not cfg["bidirectional"] and cfg["pooling"] == "last"


def test_classify_split_is_rebuilt_on_resume(tmp_path, capsys):
    data = sentiment(tmp_path / "s.tsv")
    args = ["train", "--task", "classify", "--data", data, "--word-dropout", "0.3", "--seed", "5", *TINY]
    assert cli(capsys, *args, "--out", tmp_path / "a", "--max-epochs", "2")[0] == 0
    assert cli(capsys, *args, "--out", tmp_path / "b", "--max-epochs", "1")[0] == 0
    assert cli(capsys, "train", "--resume", tmp_path / "b", "--max-epochs", "2")[0] == 0
    assert_same_run(tmp_path / "a", tmp_path / "b")


def test_word_dropout_replaces_training_words_only():
    X = [np.arange(1, 201)]
    y = np.array([1])
    b = classify.make_batch(X, y, [0], True, np.random.default_rng(0), 0.25)
    dropped = (b.inputs == 0).mean()
    assert 0.15 < dropped < 0.35
    assert (classify.make_batch(X, y, [0], True, None, 0.25).inputs != 0).all()  # evaluation: no dropout


def test_word_dropout_changes_classify_training(tmp_path, capsys):
    data = sentiment(tmp_path / "s.tsv")
    base = ["train", "--task", "classify", "--data", data, "--max-epochs", "1", *TINY]
    assert cli(capsys, *base, "--out", tmp_path / "a", "--word-dropout", "0")[0] == 0
    assert cli(capsys, *base, "--out", tmp_path / "b", "--word-dropout", "0.5")[0] == 0
    a = checkpoint.load(tmp_path / "a")
    b = checkpoint.load(tmp_path / "b")
    assert a.train_state["options"]["extra"]["word_dropout"] == 0.0
    assert b.train_state["options"]["extra"]["word_dropout"] == 0.5
    assert not np.array_equal(a.params["embed.E"], b.params["embed.E"])


# ---- --valid-fraction for tag and regress ----------------------------------------------------


def test_tag_and_regress_take_a_valid_fraction(tmp_path, capsys):
    code, out, _ = cli(
        capsys, "train", "--task", "tag", "--data", EX / "tag-train.conllu", "--valid-fraction", "0.2",
        "--out", tmp_path / "t", "--max-epochs", "1", *TINY,
    )  # fmt: skip
    assert code == 0 and "valid 0.2 of" in out and "valid accuracy" in out
    assert checkpoint.is_run_dir(tmp_path / "t" / "best")
    code, out, _ = cli(
        capsys, "train", "--task", "regress", "--data", EX / "regress.csv", "--valid-fraction", "0.25",
        "--out", tmp_path / "r", "--max-epochs", "1", "--hidden-size", "4",
    )  # fmt: skip
    assert code == 0 and "valid mse" in out and checkpoint.is_run_dir(tmp_path / "r" / "best")
    code, out, _ = cli(
        capsys, "train", "--task", "regress", "--data", EX / "regress.csv", "--out", tmp_path / "n",
        "--max-epochs", "1", "--hidden-size", "4",
    )  # fmt: skip
    assert code == 0 and "valid" not in out  # regress validates only when asked to


# ---- --embeddings ------------------------------------------------------------------------------


def test_read_vectors_with_and_without_header(tmp_path):
    (tmp_path / "h.txt").write_text("3 2\nthe 1 2\nGood 3 4\nthe 9 9\n", encoding="utf-8")
    (tmp_path / "n.txt").write_text("the 1 2\nGood 3 4\n", encoding="utf-8")
    for name in ("h.txt", "n.txt"):
        D, found, count = read_vectors(tmp_path / name, {"the", "good"}, str.lower)
        assert D == 2 and sorted(found) == ["good", "the"] and count == (3 if name == "h.txt" else 2)
        np.testing.assert_array_equal(found["the"], [1, 2])  # the first occurrence wins
    (tmp_path / "bad.txt").write_bytes(b"the 1 2\n\xff 3 4\n")
    with pytest.raises(DataError, match="bad.txt: not UTF-8"):
        read_vectors(tmp_path / "bad.txt", {"the"})


def test_embeddings_initialise_the_vocabulary_rows(tmp_path, capsys):
    data = sentiment(tmp_path / "s.tsv")
    rng = np.random.default_rng(0)
    vectors = {w: rng.standard_normal(6).round(4) for w in ("good", "bad", "film", "absent")}
    text = "4 6\n" + "".join(f"{w} {' '.join(map(str, v))}\n" for w, v in vectors.items())
    (tmp_path / "v.txt").write_text(text, encoding="utf-8")
    code, out, _ = cli(
        capsys, "train", "--task", "classify", "--data", data, "--embeddings", tmp_path / "v.txt",
        "--out", tmp_path / "r", "--hidden-size", "4", "--max-epochs", "1", "--lr", "1e-12",
    )  # fmt: skip
    assert code == 0
    itos = checkpoint.load(tmp_path / "r").train_state["options"]["extra"]["vocab"]["itos"]
    assert f"embeddings: 3 of {len(itos) - 1} vocabulary words found in {tmp_path / 'v.txt'}" in out
    ckpt = checkpoint.load(tmp_path / "r")
    E = ckpt.params["embed.E"]
    assert ckpt.model_config["embedding_size"] == 6
    for w in ("good", "bad", "film"):
        np.testing.assert_allclose(E[itos.index(w)], vectors[w], atol=1e-6)


# ---- --folds -------------------------------------------------------------------------------------


def test_folds_write_one_run_per_fold_and_the_summary(tmp_path, capsys):
    data = sentiment(tmp_path / "s.tsv", n=40)
    code, out, _ = cli(
        capsys, "train", "--task", "classify", "--data", data, "--folds", "2", "--out", tmp_path / "cv",
        "--max-epochs", "2", *TINY,
    )  # fmt: skip
    assert code == 0
    cv = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert cv["folds"] == 2 and len(cv["accuracy"]) == 2 and sum(f["n"] for f in cv["per_fold"]) == 40
    acc = np.array(cv["accuracy"])
    assert cv["mean"] == pytest.approx(acc.mean()) and cv["std"] == pytest.approx(acc.std(ddof=1))
    assert "2-fold cross-validation of" in out and f"{cv['mean']:.4f}" in out
    for k in (1, 2):
        fold = tmp_path / "cv" / f"fold-{k}"
        assert checkpoint.is_run_dir(fold) and checkpoint.is_run_dir(fold / "best")
        extra = checkpoint.load(fold).train_state["options"]["extra"]
        assert extra["folds"] == 2 and extra["fold"] == k
    # the held-out accuracy is that of the best weights on the fold's own test part
    from bptt import tasks

    model, _, extra, _ = tasks.task_of(tmp_path / "cv" / "fold-2" / "best")
    assert classify.heldout_report(model.eval(), extra)["accuracy"] == cv["accuracy"][1]
    code, _, err = cli(capsys, "train", "--resume", tmp_path / "cv" / "fold-1", "--folds", "2")
    assert code == 2 and "--folds: a cross-validation is K runs" in err
    code, _, err = cli(capsys, "train", "--task", "classify", "--data", data, "--folds", "2", "--out", tmp_path / "cv")
    assert code == 2 and "already exists; pass --overwrite" in err


def test_tag_takes_embeddings_too(tmp_path, capsys):
    (tmp_path / "v.txt").write_text("the 0.5 -0.5 0.25\nof 1 2 3\n", encoding="utf-8")
    code, out, _ = cli(
        capsys, "train", "--task", "tag", "--data", EX / "tag-train.conllu", "--embeddings", tmp_path / "v.txt",
        "--lowercase", "--out", tmp_path / "t", "--max-epochs", "1", "--hidden-size", "4", "--lr", "1e-12",
    )  # fmt: skip
    assert code == 0 and "vocabulary words found in" in out
    ckpt = checkpoint.load(tmp_path / "t")
    itos = ckpt.train_state["options"]["extra"]["vocab"]["itos"]
    assert ckpt.model_config["embedding_size"] == 3
    np.testing.assert_allclose(ckpt.params["embed.E"][itos.index("the")], [0.5, -0.5, 0.25], atol=1e-6)
