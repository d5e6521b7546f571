"""--rare-word-dropout ALPHA (Kiperwasser and Goldberg 2016): a training occurrence of word w,
seen c_w times in the training part, becomes <unk> with probability alpha / (alpha + c_w), and
with --word-dropout P as an independent event, p_w = 1 - (1 - P)(1 - alpha / (alpha + c_w)).
The formula, the drop rates it gives over many seeded draws, no dropout at evaluation, and the
tag and classify runs end to end on small generated data (counts of the training part only,
saved with the run, an exact resume)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bptt.cli import main
from bptt.tasks import classify, common, tag
from bptt.training import checkpoint
from helpers import assert_same_run

TINY = ["--hidden-size", "4", "--embedding-size", "4", "--batch-size", "8", "--char-hidden-size", "0"]


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def tagged(path: Path, n: int = 40, seed: int = 0) -> Path:
    """n generated CoNLL-U sentences: Zipf-distributed nouns ("w0" most often) after "the"/"a"."""
    rng = np.random.default_rng(seed)
    nouns = [f"w{k}" for k in range(30)]
    zipf = 1 / np.arange(1, 31)
    lines = []
    for _ in range(n):
        words = [(str(rng.choice(["the", "a"])), "DET"), (str(rng.choice(nouns, p=zipf / zipf.sum())), "NOUN")]
        words.append(("runs", "VERB"))
        lines += [f"{i}\t{w}\t{w}\t{t}\t_\t_\t0\troot\t_\t_" for i, (w, t) in enumerate(words, 1)] + [""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def texts(path: Path, n: int = 60, seed: int = 0) -> Path:
    """n generated `text<TAB>label` lines: Zipf-distributed filler words and a sentiment word."""
    rng = np.random.default_rng(seed)
    filler = [f"f{k}" for k in range(20)]
    zipf = 1 / np.arange(1, 21)
    lines = []
    for _ in range(n):
        label = "pos" if rng.random() < 0.5 else "neg"
        words = list(rng.choice(filler, rng.integers(1, 5), p=zipf / zipf.sum()))
        lines.append(" ".join([*words, "good" if label == "pos" else "bad"]) + "\t" + label)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def texts_of(path: Path) -> list[str]:
    return [line.split("\t")[0] for line in path.read_text().splitlines()]


# ---- the formula and the draws ----------------------------------------------------------------


def test_the_probability_is_alpha_over_alpha_plus_count():
    counts = np.array([7, 1, 3, 100, 0])
    p = common.word_drop_probabilities(counts, 0.25)
    np.testing.assert_allclose(p, [0.0, 0.25 / 1.25, 0.25 / 3.25, 0.25 / 100.25, 1.0], rtol=1e-15)
    both = common.word_drop_probabilities(counts, 0.25, 0.1)
    np.testing.assert_allclose(both[1:], 1 - 0.9 * (1 - p[1:]), rtol=1e-15)
    assert both[0] == 0.0  # <unk>: nothing left to drop
    # alpha 0 is --word-dropout alone, bit for bit (so the draws of a run without the flag are unchanged)
    assert (common.word_drop_probabilities(counts, 0.0, 0.1)[1:] == 0.1).all()
    assert not common.word_drop_probabilities(counts, 0.0).any()


DRAWS = 400
COUNTS = np.array([0, 1, 4, 20, 200])  # id 0 is <unk>


def _rates(make, p) -> np.ndarray:
    """The share of the occurrences of each id 0..4 dropped, over DRAWS seeded batches of 50 of each."""
    dropped, seen = np.zeros(5), np.zeros(5)
    rng = np.random.default_rng(0)
    for _ in range(DRAWS):
        ids, out = make(rng, p)
        np.add.at(seen, ids, 1)
        np.add.at(dropped, ids, out == 0)
    return dropped / seen


def _classify(rng, p):
    X = [np.repeat(np.arange(5), 50)]
    return X[0], classify.make_batch(X, np.array([1]), [0], True, rng, p).inputs[0]


def _tag(rng, p):
    X = [np.stack([np.repeat(np.arange(5), 50), np.full(250, 3)], axis=1)]  # a word column and a suffix column
    b = tag.make_batch(X, [np.zeros(250, np.int64)], [0], rng, p)
    assert (b.inputs[0, :, 1] == 3).all()  # only the word column is dropped
    return X[0][:, 0], b.inputs[0, :, 0]


@pytest.mark.parametrize("make", [_classify, _tag], ids=["classify", "tag"])
@pytest.mark.parametrize("P", [0.0, 0.3])
def test_each_word_is_dropped_at_its_rate(make, P):
    alpha = 2.0
    rates = _rates(make, common.word_drop_probabilities(COUNTS, alpha, P))
    expected = 1 - (1 - P) * (1 - alpha / (alpha + COUNTS[1:]))
    sd = np.sqrt(expected * (1 - expected) / (50 * DRAWS))
    assert rates[0] == 1.0  # <unk> stays <unk>
    assert (np.abs(rates[1:] - expected) < 4 * sd + 1e-3).all(), (rates, expected)
    assert rates[1] > rates[2] > rates[3] > rates[4]


def test_nothing_is_dropped_at_evaluation():
    p = common.word_drop_probabilities(COUNTS, 1000.0, 0.5)  # almost every word, if it were training
    X = [np.repeat(np.arange(1, 5), 50)]
    np.testing.assert_array_equal(classify.make_batch(X, None, [0], True, None, p).inputs[0], X[0])
    np.testing.assert_array_equal(tag.make_batch(X, None, [0], None, p).inputs[0], X[0])


# ---- end to end ---------------------------------------------------------------------------------


def test_tag_counts_the_training_part_only_and_saves_the_counts(tmp_path, capsys):
    data = tagged(tmp_path / "t.conllu")
    argv = ["train", "--task", "tag", "--data", data, "--valid-fraction", "0.25", "--max-epochs", "1", *TINY]
    code, out, _ = cli(capsys, *argv, "--rare-word-dropout", "0.5", "--out", tmp_path / "r")
    assert code == 0 and "word dropout 0.25, rare-word dropout 0.5:" in out, out
    extra = checkpoint.load(tmp_path / "r").train_state["options"]["extra"]
    assert extra["rare_word_dropout"] == 0.5
    sentences = tag.read_tagged(data, extra)
    part, held_out, _ = common.split(len(sentences), extra)
    assert len(held_out) == 10
    counts = Counter(w for i in part for w in sentences[i].words)
    assert extra["word_counts"] == [0] + [counts[w] for w in extra["vocab"]["itos"][1:]]
    assert sum(extra["word_counts"]) == 3 * len(part) < 3 * len(sentences)
    # the flag changes training; without it the run saves no counts
    assert cli(capsys, *argv, "--out", tmp_path / "n")[0] == 0
    plain = checkpoint.load(tmp_path / "n")
    assert "word_counts" not in plain.train_state["options"]["extra"]
    assert not np.array_equal(plain.params["embed.E"], checkpoint.load(tmp_path / "r").params["embed.E"])


def test_tag_validation_and_evaluate_see_every_word(tmp_path, capsys):
    """With alpha so large that training drops nearly every word, the best validation accuracy is
    still that of `bptt evaluate` on the same file: neither drops a word."""
    data, valid = tagged(tmp_path / "t.conllu"), tagged(tmp_path / "v.conllu", 12, seed=1)
    argv = ["train", "--task", "tag", "--data", data, "--valid", valid, "--max-epochs", "2", *TINY]
    code, out, _ = cli(capsys, *argv, "--rare-word-dropout", "1000", "--out", tmp_path / "r")
    assert code == 0
    best = float(out.split("best valid accuracy: ")[1].split()[0])
    code, out, _ = cli(capsys, "evaluate", tmp_path / "r", "--data", valid, "--json")
    assert code == 0
    assert round(json.loads(out)["accuracy"], 4) == best


def test_classify_with_rare_word_dropout(tmp_path, capsys):
    data = texts(tmp_path / "s.tsv")
    argv = ["train", "--task", "classify", "--data", data, "--max-epochs", "1", *TINY]
    code, out, _ = cli(capsys, *argv, "--rare-word-dropout", "0.25", "--word-dropout", "0", "--out", tmp_path / "c")
    assert code == 0 and "word dropout 0, rare-word dropout 0.25:" in out, out
    extra = checkpoint.load(tmp_path / "c").train_state["options"]["extra"]
    # the classify default --valid-fraction 0.1 holds out 6 of the 60 texts; the counts are the other 54's
    assert extra["valid_fraction"] == 0.1 and sum(extra["word_counts"]) < sum(len(t.split()) for t in texts_of(data))
    assert len(extra["word_counts"]) == len(extra["vocab"]["itos"])


@pytest.mark.parametrize("task", ["tag", "classify"])
def test_a_resumed_run_draws_the_same_drops(tmp_path, capsys, task):
    data = tagged(tmp_path / "t.conllu") if task == "tag" else texts(tmp_path / "s.tsv")
    common_argv = ["train", "--task", task, "--data", data, "--rare-word-dropout", "1", "--seed", "3", *TINY]
    assert cli(capsys, *common_argv, "--out", tmp_path / "a", "--max-epochs", "2")[0] == 0
    assert cli(capsys, *common_argv, "--out", tmp_path / "b", "--max-epochs", "1")[0] == 0
    code, out, _ = cli(capsys, "train", "--resume", tmp_path / "b", "--max-epochs", "2")
    assert code == 0 and "resuming" in out
    assert_same_run(tmp_path / "a", tmp_path / "b")
