"""`bptt train --tensorboard`: event files in the run directory, read back with the tensorboard
package's own reader and checked against metrics.jsonl; a resume appends without repeating a step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bptt.cli import main
from bptt.training import checkpoint

TINY = ["--hidden-size", "8", "--num-layers", "1", "--embedding-size", "4", "--seq-length", "10"]
TINY += ["--batch-size", "2", "--samples", "0", "--sample-length", "20", "--eval-every", "5"]


def events(run: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    acc.Reload()
    return acc


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tb") / "corpus.txt"
    path.write_text("the quick brown fox jumps over the lazy dog\n" * 30)
    return path


def check_against_metrics(run: Path) -> None:
    acc = events(run)
    records = metrics(run)
    tags = acc.Tags()
    for key, tag in (("train_loss", "train/loss"), ("valid_loss", "valid/loss"), ("valid_bpc", "valid/bpc")):
        for key2, tag2 in ((key, tag), ("lr", "train/lr"), ("tokens_per_s", "train/tokens_per_s")):
            logged = {e.step: e.value for e in acc.Scalars(tag2)}
            assert sorted(logged) == [r["step"] for r in records], tag2  # each evaluation once
            np.testing.assert_allclose([logged[r["step"]] for r in records], [r[key2] for r in records], rtol=1e-6)
    steps = [e.step for e in acc.Scalars("update/loss")]
    assert steps == list(range(1, records[-1]["step"] + 1))  # every update once, in order
    params = checkpoint.load(run).params
    for name in params:
        assert len(acc.Scalars(f"update/grad_norm/{name}")) == len(steps)
        assert [h.step for h in acc.Histograms(f"weights/{name}")] == [r["step"] for r in records]
        assert [h.step for h in acc.Histograms(f"gradients/{name}")] == [r["step"] for r in records]
    last = acc.Histograms(f"weights/{name}")[-1].histogram_value
    assert last.num == params[name].size and np.isclose(last.sum, params[name].astype(np.float64).sum(), rtol=1e-5)
    clipped = [e.value for e in acc.Scalars("update/clipped")]
    assert set(clipped) <= {0.0, 1.0}
    texts = acc.Tensors("samples")
    assert [t.step for t in texts] == [r["step"] for r in records]
    assert "samples" in tags["tensors"]


def test_the_event_files_hold_what_metrics_jsonl_holds(corpus, tmp_path):
    run = tmp_path / "run"
    argv = ["train", "--data", str(corpus), "--out", str(run), *TINY, "--max-epochs", "1", "--tensorboard"]
    assert main(argv) == 0
    assert list(run.glob("events.out.tfevents.*"))
    check_against_metrics(run)


def test_a_resumed_run_appends_without_repeating_a_step(corpus, tmp_path):
    run = tmp_path / "run"
    first = ["train", "--data", str(corpus), "--out", str(run), *TINY, "--max-epochs", "0.5", "--tensorboard"]
    assert main(first) == 0
    assert main(["train", "--resume", str(run), "--max-epochs", "1"]) == 0
    assert len(list(run.glob("events.out.tfevents.*"))) == 2  # one file per session
    check_against_metrics(run)


def test_a_rollback_writes_no_undone_update(corpus, tmp_path, monkeypatch):
    from bptt.training.tbptt import Trainer

    real, calls = Trainer.train_step, {"n": 0}

    def train_step(self):
        calls["n"] += 1
        loss, n = real(self)
        if calls["n"] == 8:  # after the checkpoint at step 5: steps 6 and 7 are undone
            from bptt.training.loop import NonFinite

            raise NonFinite("a test")
        return loss, n

    monkeypatch.setattr(Trainer, "train_step", train_step)
    run = tmp_path / "run"
    argv = ["train", "--data", str(corpus), "--out", str(run), *TINY, "--max-epochs", "0.5", "--tensorboard"]
    assert main(argv) == 0
    check_against_metrics(run)


def test_long_memory_runs_log_their_predictions(tmp_path):
    run = tmp_path / "run"
    argv = ["train", "--task", "adding", "--length", "6", "--hidden-size", "4", "--batches-per-epoch", "5"]
    argv += ["--max-epochs", "1", "--eval-every", "5", "--valid-size", "8", "--test-size", "8", "--keep-training"]
    assert main([*argv, "--out", str(run), "--tensorboard"]) == 0
    texts = events(run).Tensors("samples")
    assert len(texts) == 1 and "target " in texts[0].tensor_proto.string_val[0].decode()
    check_valid = {e.step: e.value for e in events(run).Scalars("valid/error")}
    assert check_valid == {r["step"]: pytest.approx(r["valid_error"]) for r in metrics(run)}


def test_the_writer_needs_neither_torch_nor_tensorflow(tmp_path):
    code = (
        "import sys; from bptt.training import tensorboard as t; import numpy as np; "
        f"w = t.EventWriter({str(tmp_path)!r}); w.write([t.scalars(1, {{'a': 1.0}}), "
        "t.histograms(1, {'W': np.ones(3)}, 'weights'), t.text(1, 'samples', 'x')]); w.close(); "
        "assert 'torch' not in sys.modules and 'tensorflow' not in sys.modules, 'imported'"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_without_the_package_it_says_how_to_install_it(corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard.compat.proto", None)
    run = tmp_path / "run"
    assert main(["train", "--data", str(corpus), "--out", str(run), *TINY, "--tensorboard"]) == 2
    assert "pip install 'bptt[tensorboard]'" in capsys.readouterr().err
    assert not run.exists()
