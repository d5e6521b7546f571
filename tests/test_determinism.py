"""Determinism: the same seed and the same BLAS thread count give the same run, bit for
bit (weights, every metric but timings, samples), in one process or in two; another
seed gives another run. What else changes results (the thread count, the BLAS kernels)
is in README's Reliability section."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from bptt.cli import main
from bptt.training import checkpoint
from helpers import assert_same_run

TEXT = ("the quick brown fox jumps over the lazy dog.\n" * 8 + "a stitch in time saves nine.\n" * 8) * 3
OPTIONS = [
    "--hidden-size",
    "16",
    "--num-layers",
    "2",
    "--embedding-size",
    "8",
    "--batch-size",
    "4",
    "--seq-length",
    "6",
    "--backprop-steps",
    "9",
    "--dropout",
    "0.3",
    "--eval-every",
    "7",
    "--samples",
    "2",
    "--sample-length",
    "40",
    "--max-epochs",
    "2",
]


@pytest.mark.parametrize("level", ["char", "word"])
def test_same_seed_same_run(tmp_path, level, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    runs = {name: tmp_path / name for name in ("a", "b", "other")}
    for name, seed in (("a", "3"), ("b", "3"), ("other", "4")):
        assert (
            main(["train", "--data", str(corpus), "--level", level, *OPTIONS, "--seed", seed, "--out", str(runs[name])])
            == 0
        )
    assert_same_run(runs["a"], runs["b"])
    assert (runs["a"] / "samples.txt").read_text() == (runs["b"] / "samples.txt").read_text()
    other = checkpoint.load(runs["other"]).params
    assert not np.array_equal(other["head.V"], checkpoint.load(runs["a"]).params["head.V"])


@pytest.mark.slow
def test_same_seed_same_run_in_separate_processes(tmp_path):
    """Two interpreters with different hash seeds (set and dict order of strings), same thread count."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    for name, hash_seed in (("a", "1"), ("b", "2")):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed, OPENBLAS_NUM_THREADS="2", OMP_NUM_THREADS="2")
        argv = ["train", "--data", str(corpus), "--level", "word", *OPTIONS, "--out", str(tmp_path / name)]
        done = subprocess.run(
            [sys.executable, "-m", "bptt.cli", *argv], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
    assert_same_run(tmp_path / "a", tmp_path / "b")
