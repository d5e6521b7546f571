"""Crash tests: a real `bptt train` process killed with SIGKILL at seeded-random moments
and resumed each time ends with the weights of an uninterrupted run, bit for bit, and no
kill ever leaves a checkpoint that fails to load. SIGTERM saves, says how to resume and
exits 143. Every process runs on the CPU with one BLAS thread (the same for all runs)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bptt.training import checkpoint
from bptt.training.runs import load_run
from helpers import assert_same_run

pytestmark = pytest.mark.slow

WORDS = "the quick brown fox jumps over the lazy dog a stitch in time saves nine".split()
OPTIONS = [
    "--hidden-size",
    "32",
    "--num-layers",
    "2",
    "--embedding-size",
    "8",
    "--batch-size",
    "8",
    "--seq-length",
    "20",
    "--dropout",
    "0.1",
    "--valid-fraction",
    "0.02",
    "--eval-every",
    "2",
    "--keep",
    "3",
    "--samples",
    "0",
]
EPOCHS = ["--max-epochs", "3"]  # 639 updates, a checkpoint every 2: about 2 s uninterrupted on an idle machine
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
TIMEOUT = 60


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    r = random.Random(0)
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(" ".join(r.choice(WORDS) for _ in range(12)) for _ in range(600)) + "\n")
    return path


@pytest.fixture(scope="module")
def straight(corpus, tmp_path_factory) -> Path:
    """An uninterrupted run to compare against."""
    out = tmp_path_factory.mktemp("straight") / "run"
    done = bptt("train", "--data", corpus, "--out", out, *OPTIONS, *EPOCHS)
    assert done.returncode == 0, done.stderr
    return out


def bptt(*argv) -> subprocess.CompletedProcess:
    return subprocess.run(command(*argv), env=ENV, capture_output=True, text=True, timeout=TIMEOUT)


def command(*argv) -> list[str]:
    return [sys.executable, "-m", "bptt.cli", *map(str, argv)]


def committed_step(run: Path) -> int | None:
    """The step of checkpoint.json, read without validation (None while there is none)."""
    try:
        return json.loads((run / "checkpoint.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return None


def kill_after_progress(argv, run: Path, delay: float) -> tuple[int, int | None]:
    """Start `bptt argv`, wait until it commits a checkpoint past the current one, sleep `delay`, SIGKILL it.

    Returns (exit status, the committed step before the kill); the status is 0 when the
    run finished first."""
    before = committed_step(run)
    proc = subprocess.Popen(command(*argv), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + TIMEOUT
    try:
        while committed_step(run) in (None, before) and proc.poll() is None:
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.002)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        status = proc.wait(TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert status in (0, -signal.SIGKILL), proc.stderr.read()
    proc.stderr.close()
    return status, committed_step(run)


def assert_every_checkpoint_loads(run: Path) -> int:
    """checkpoint.json and every retained checkpoint-<step>.json load and build their model; returns the step."""
    model, ckpt = load_run(run)
    assert model.params.keys() == ckpt.params.keys()
    for numbered in run.glob("checkpoint-*.json"):
        step = int(numbered.stem.split("-")[1])
        assert checkpoint.load(run, step=step).train_state["progress"]["step"] == step
    return ckpt.train_state["progress"]["step"]


def test_sigkill_at_random_moments_then_resume_is_bit_identical(corpus, straight, tmp_path):
    rng = random.Random(7)
    run = tmp_path / "killed"
    first = ["train", "--data", corpus, "--out", run, *OPTIONS, *EPOCHS]
    kills, steps = 0, []
    for attempt in range(6):
        argv = first if attempt == 0 else ["train", "--resume", run]
        status, _ = kill_after_progress(argv, run, delay=rng.uniform(0.0, 0.25))
        if status == 0:
            break
        kills += 1
        steps.append(assert_every_checkpoint_loads(run))
    assert kills >= 4, f"only {kills} kills landed before the run finished"
    assert steps == sorted(steps) and steps[-1] > steps[0]  # each resume made progress, nothing was lost
    done = bptt("train", "--resume", run)
    assert done.returncode == 0, done.stderr
    assert_every_checkpoint_loads(run)
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    assert_same_run(straight, run)


def test_sigterm_saves_says_how_to_resume_and_exits_143(corpus, straight, tmp_path):
    run = tmp_path / "termed"
    proc = subprocess.Popen(
        command("train", "--data", corpus, "--out", run, *OPTIONS, *EPOCHS),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + TIMEOUT
    while committed_step(run) is None and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.002)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 128 + signal.SIGTERM, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bptt: interrupted: SIGTERM at step "), err
    assert lines[0].endswith(f"checkpoint saved in {run}; continue with: bptt train --resume {run}")
    step = int(lines[0].split("at step ")[1].split(";")[0])
    assert assert_every_checkpoint_loads(run) == step  # saved at the step it stopped, not an earlier evaluation
    done = bptt("train", "--resume", run)
    assert done.returncode == 0, done.stderr
    assert f"resuming {run} at step {step}" in done.stdout
    assert_same_run(straight, run)
