"""`bptt train --resume RUN` with other flags: the budget, evaluation and output flags apply; a flag
that contradicts the run (architecture, data, task, optimizer) is refused in one line naming it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bptt.cli import main
from bptt.training import checkpoint
from bptt.training.resumable import RESUMABLE

TINY = ["--hidden-size", "8", "--num-layers", "1", "--embedding-size", "4", "--seq-length", "10"]
TINY += ["--batch-size", "2", "--samples", "0", "--eval-every", "10"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("resume")
    corpus = root / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog\n" * 40)
    out = root / "run"
    assert main(["train", "--data", str(corpus), "--out", str(out), *TINY, "--max-epochs", "0.5"]) == 0
    return out


@pytest.fixture
def copy(run, tmp_path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--hidden-size", "64"], "--hidden-size 64: the run {run} has --hidden-size 8;"),
        (["--num-layers", "2"], "--num-layers 2: the run {run} has --num-layers 1;"),
        (["--bidirectional"], "--bidirectional: the run {run} was trained without it;"),
        (["--optimizer", "sgd"], "--optimizer sgd: the run {run} has --optimizer adam;"),
        (["--weight-decay", "0.1"], "--weight-decay 0.1: the run {run} has --weight-decay 0;"),
        (["--input-dropout", "0.1"], "--input-dropout 0.1: the run {run} has --input-dropout 0;"),
        (["--variational-dropout"], "--variational-dropout: the run {run} was trained without it;"),
        (["--lr", "0.1"], "--lr 0.1: the run {run} has --lr 0.002;"),
        (["--task", "adding"], "--task adding: the run {run} has --task lm;"),
        (["--level", "word"], "--level word: the run {run} has --level char;"),
        (["--seq-length", "20"], "--seq-length 20: the run {run} has --seq-length 10;"),
        (["--out", "elsewhere"], "--out: not with --resume"),
        (["--max-epochs", "2", "--dtype", "float64"], "--dtype float64: the run {run} has --dtype float32;"),
    ],
)
def test_a_flag_that_contradicts_the_run_is_refused_by_name(copy, flags, message, capsys):
    before = (copy / "checkpoint.json").read_bytes()
    assert main(["train", "--resume", str(copy), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bptt: error: " + message.format(run=copy)), err
    assert len(err.splitlines()) == 1 and "--max-epochs" in err  # and it says what may be given
    assert (copy / "checkpoint.json").read_bytes() == before


def test_a_config_file_that_contradicts_the_run_is_refused_too(copy, tmp_path, capsys):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"hidden_size": 16}))
    assert main(["train", "--resume", str(copy), "--config", str(config)]) == 2
    assert "--hidden-size 16: the run" in capsys.readouterr().err


def test_the_runs_own_values_and_the_resumable_flags_are_accepted(copy, capsys):
    argv = ["train", "--resume", str(copy), *TINY, "--max-epochs", "1", "--eval-every", "7", "--keep", "2"]
    assert main(argv) == 0
    options = checkpoint.load(copy).train_state["options"]
    assert (options["max_epochs"], options["eval_every"], options["keep"]) == (1.0, 7, 2)
    assert options["extra"]["samples"] == 0


def test_the_resumable_flags_are_documented():
    text = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    for dest in RESUMABLE:
        assert f"--{dest.replace('_', '-')}" in text
