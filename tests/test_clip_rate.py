"""The clipping rate of each evaluation (the fraction of updates since the previous one whose
gradient clipping changed): in the log line, in metrics.jsonl, and counted once per update."""

import json

import pytest

from bptt.cli import main
from test_train_lm import SMALL, TEXT


def _jsonl(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return path


def _train(corpus, out, *flags):
    return main(["train", "--data", str(corpus), "--out", str(out), "--diagnostics", *SMALL, *flags])


def test_clip_rate_is_the_fraction_of_updates_clipped_since_the_last_evaluation(corpus, tmp_path, capsys):
    # a large initial scale and lr make gradients explode now and then: a threshold at the median
    # norm clips some updates of each interval but not all
    out = tmp_path / "run"
    assert _train(corpus, out, "--init", "orthogonal", "--init-scale", "3", "--lr", "0.05", "--clip-norm", "2") == 0
    printed = capsys.readouterr().out
    metrics, updates = _jsonl(out / "metrics.jsonl"), _jsonl(out / "grad-norms.jsonl")
    assert [u["clipped"] for u in updates] == [u["grad_norm"] > 2 for u in updates]
    previous = 0
    for m in metrics:
        interval = [u for u in updates if previous < u["step"] <= m["step"]]
        clipped = sum(u["clipped"] for u in interval)
        assert m["clipped"] == clipped
        assert m["clip_rate"] == pytest.approx(clipped / len(interval), abs=1e-15)
        previous = m["step"]
    rates = {m["clip_rate"] for m in metrics}
    assert any(0 < r < 1 for r in rates), rates
    logged = [line.split("clipped ")[1].split(" ")[0] for line in printed.splitlines() if line.startswith("step ")]
    assert logged == [
        f"{m['clip_rate']:.0%}" if m["clip_rate"] in (0, 1) or 0.01 <= m["clip_rate"] <= 0.99 else "<1%"
        for m in metrics
    ]


def test_value_and_norm_clipping_together_count_an_update_once(corpus, tmp_path, capsys):
    out = tmp_path / "both"
    assert _train(corpus, out, "--lr", "0.05", "--clip-norm", "1e-6", "--clip-value", "1e-9") == 0
    metrics = _jsonl(out / "metrics.jsonl")
    assert all(m["clip_rate"] == 1.0 for m in metrics)  # both fire on every update: 100%, not 200%
    assert "clipped 100%" in capsys.readouterr().out


def test_no_clipping_rate_in_the_log_without_clipping(corpus, tmp_path, capsys):
    out = tmp_path / "none"
    assert _train(corpus, out, "--no-clip-norm") == 0
    assert "clipped" not in capsys.readouterr().out
    assert all(m["clip_rate"] == 0 for m in _jsonl(out / "metrics.jsonl"))
