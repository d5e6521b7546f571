"""One writer per run directory (bptt.training.lock).

Two writers are made to overlap deterministically, not by timing luck: the first is a
real `bptt train` process whose training loop waits, once the command holds the lock and
has checked (and, for --overwrite, emptied) the run directory, for a line on its stdin;
the second starts only after the first said it is there. The second must be refused with
one line naming the first and change nothing; the first then finishes as if alone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from bptt.cli import main
from bptt.training import checkpoint, lock
from helpers import assert_same_run

TEXT = ("the quick brown fox jumps over the lazy dog.\n" * 8 + "a stitch in time saves nine.\n" * 8) * 3
SMALL = "--hidden-size 8 --num-layers 1 --embedding-size 4 --batch-size 4 --seq-length 10 --samples 0 --eval-every 5"
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")

# `bptt argv...`, paused at the start of training (inside the lock) until a line arrives on stdin
PAUSED = textwrap.dedent(
    """
    import sys
    from bptt.cli import main
    from bptt.training.loop import Loop

    fit = Loop.fit

    def paused(self):
        print("inside", flush=True)
        sys.stdin.readline()
        return fit(self)

    Loop.fit = paused
    sys.exit(main(sys.argv[1:]))
    """
)


def writer(kind: str, run: Path, corpus: Path) -> list[str]:
    """The command line of a writer of `kind` into run."""
    if kind == "resume":
        return ["train", "--resume", str(run), "--max-epochs", "1"]
    argv = ["train", *SMALL.split(), "--data", str(corpus), "--out", str(run), "--max-epochs", "0.5"]
    return argv + (["--overwrite"] if kind == "overwrite" else [])


@pytest.fixture(scope="module")
def started(tmp_path_factory) -> tuple[Path, Path]:
    """(a run trained for half an epoch, its corpus)."""
    base = tmp_path_factory.mktemp("lock")
    corpus = base / "corpus.txt"
    corpus.write_text(TEXT)
    run = base / "run"
    assert main(writer("train", run, corpus)) == 0
    return run, corpus


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def start_paused(argv: list[str]) -> subprocess.Popen:
    p = subprocess.Popen(
        [sys.executable, "-c", PAUSED, *argv], env=ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    for line in p.stdout:  # blocks until the first writer holds the lock (it prints its plans first)
        if line == "inside\n":
            return p
    raise AssertionError(f"the first writer ended before training, exit {p.wait()}")


@pytest.mark.slow
@pytest.mark.parametrize(
    "first,second",
    [
        ("train", "train"),
        ("resume", "resume"),
        ("train", "overwrite"),
        ("resume", "overwrite"),
        ("overwrite", "resume"),
    ],
)
def test_two_writers_one_proceeds_the_other_is_refused_at_once(first, second, started, tmp_path, capsys):
    trained, corpus = started
    run, alone = tmp_path / "run", tmp_path / "alone"
    if first != "train":  # resume and overwrite start from a trained run
        shutil.copytree(trained, run)
        shutil.copytree(trained, alone)
    a = start_paused(writer(first, run, corpus))
    try:
        before = snapshot(run)
        assert main(writer(second, run, corpus)) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        assert f"in use by pid {a.pid} on " in lines[0] and "(bptt train " in lines[0], lines[0]
        assert "Traceback" not in lines[0]
        assert snapshot(run) == before, "the refused writer changed the run"
    finally:
        out, _ = a.communicate("go\n", timeout=120)
    assert a.returncode == 0
    assert main(writer(first, alone, corpus)) == 0  # the same writer, alone
    assert_same_run(run, alone)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(steps) == len(set(steps)), "duplicated history"
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in alone.iterdir())
    assert not [p for p in run.iterdir() if lock.is_lock_file(p)], "the lock outlived its holder"


@pytest.mark.slow
def test_a_holder_killed_with_sigkill_leaves_no_lock_behind(started, tmp_path):
    trained, corpus = started
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    a = start_paused(writer("resume", run, corpus))
    a.send_signal(signal.SIGKILL)
    a.communicate(timeout=60)
    assert a.returncode == -signal.SIGKILL
    assert (run / lock.LOCK).exists()  # its files stay behind, and mean nothing
    assert main(["train", "--resume", str(run), "--max-epochs", "1"]) == 0  # at once: nothing to wait for


def test_readers_do_not_wait_for_the_writer(started, capsys):
    run, _ = started
    with held_elsewhere(run):
        assert main(["generate", str(run), "--length", "5"]) == 0
        assert main(["evaluate", str(run)]) == 0


def test_diagnose_and_plot_into_a_run_are_writers(started, tmp_path, capsys):
    run, _ = started
    with held_elsewhere(run) as pid:
        for argv in (["diagnose", str(run), "--no-plot"], ["plot", str(run)]):
            capsys.readouterr()
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert f"in use by pid {pid} on " in err and "(a test)" in err


class held_elsewhere:
    """Hold run's lock from another process for the duration of a with block; yields its pid."""

    def __init__(self, run: Path):
        self.run = run

    def __enter__(self) -> int:
        code = "import sys; from bptt.training import lock; lock.hold(sys.argv[1], 'a test'); print('held', flush=True); sys.stdin.readline(); lock.release_all()"
        self.p = subprocess.Popen(
            [sys.executable, "-c", code, str(self.run)],
            env=ENV,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.p.stdout.readline() == "held\n"
        return self.p.pid

    def __exit__(self, *exc) -> None:
        self.p.communicate("\n", timeout=60)


# ---- the lock itself ----------------------------------------------------------------


def test_a_second_take_in_another_process_is_refused_naming_the_holder(tmp_path):
    run = tmp_path / "run"
    with held_elsewhere(run) as pid:
        record = lock.holder(run)
        assert record["pid"] == pid and record["command"] == "a test"
        with pytest.raises(Exception) as e:
            lock.hold(run, "me")
        assert f"in use by pid {pid} on {record['host']} (a test) since " in str(e.value)
    assert not run.exists()  # the holder created it for nothing: it is gone with the lock


def test_release_deletes_its_files_and_a_directory_it_created_for_nothing(tmp_path):
    run = tmp_path / "a" / "run"
    held = lock.hold(run, "me")
    assert held.created and (run / lock.LOCK).exists() and lock.holder(run)["pid"] == os.getpid()
    assert lock.hold(run) is held  # this process holds it already
    lock.release_all()
    assert not run.exists()
    run.mkdir()
    (run / "keep.txt").write_text("x")
    lock.hold(run, "me")
    lock.release_all()
    assert [p.name for p in run.iterdir()] == ["keep.txt"]  # a directory it did not create stays


def test_no_directory_is_made_without_create(tmp_path):
    assert lock.hold(tmp_path / "none", create=False) is None
    assert not (tmp_path / "none").exists()


def test_stale_files_of_a_dead_holder_do_not_block(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / lock.LOCK).write_bytes(b"")
    (run / lock.HOLDER).write_text(json.dumps({"pid": 2**22 + 1, "host": "x", "command": "old", "started": "then"}))
    lock.hold(run, "me")
    assert lock.holder(run)["command"] == "me"
    lock.release_all()


def test_a_lock_file_deleted_under_a_waiter_is_not_locked_twice(tmp_path, monkeypatch):
    """A taker that opened the lock file just before its holder deleted it locks a file no name
    points to; it must notice and lock the file the name has now."""
    run = tmp_path / "run"
    run.mkdir()
    real_flock = lock._flock
    calls = []

    def flock_after_the_holder_left(fd, run_dir, what):
        if not calls:  # the holder deletes the file between our open and our flock
            (run_dir / lock.LOCK).unlink()
        calls.append(fd)
        real_flock(fd, run_dir, what)

    monkeypatch.setattr(lock, "_flock", flock_after_the_holder_left)
    held = lock.hold(run, "me")
    assert len(calls) == 2 and lock._same_file(run / lock.LOCK, held.fd)
    lock.release_all()


def test_a_reader_racing_a_save_reads_the_new_checkpoint(tmp_path, monkeypatch):
    run = tmp_path / "run"
    checkpoint.save(run, {"w": np.zeros(3)}, {}, {"progress": {"step": 1}})
    real = checkpoint._verified_bytes
    raced = []

    def racing(path, size, sha):
        if not raced:  # the writer commits step 2 (and prunes step 1's files) just as we read
            raced.append(1)
            checkpoint.save(run, {"w": np.ones(3)}, {}, {"progress": {"step": 2}})
        return real(path, size, sha)

    monkeypatch.setattr(checkpoint, "_verified_bytes", racing)
    ckpt = checkpoint.load(run)
    assert ckpt.train_state["progress"]["step"] == 2 and ckpt.params["w"].tolist() == [1, 1, 1]


def test_without_the_lock_training_works_as_before(started, tmp_path, monkeypatch, capsys):
    """BPTT_NO_LOCK=1 (file systems without flock): no lock files, a new run and a resume as before."""
    _, corpus = started
    monkeypatch.setenv("BPTT_NO_LOCK", "1")
    run = tmp_path / "run"
    assert main(writer("train", run, corpus)) == 0
    assert main(writer("resume", run, corpus)) == 0
    assert not [p for p in run.iterdir() if lock.is_lock_file(p)]
