"""The two hooks this change adds to bptt.training.loop: --diagnostics (every update's gradient norm
per tensor, and whether clipping fired, in grad-norms.jsonl, consistent with checkpoints and
rollbacks) and `stop` (a task ends its run after an evaluation)."""

import json

import numpy as np
import pytest

from bptt.model import RNNModel
from bptt.training import clipping
from test_fit import make


def _log(run_dir):
    return [json.loads(x) for x in (run_dir / "grad-norms.jsonl").read_text().splitlines()]


def test_gradient_norms_per_tensor_and_clipping(tmp_path, monkeypatch):
    seen = []
    original = clipping.clip_global_norm

    def spy(grads, threshold):
        seen.append({k: float(np.linalg.norm(g)) for k, g in grads.items()})
        return original(grads, threshold)

    monkeypatch.setattr(clipping, "clip_global_norm", spy)
    t = make(tmp_path, "d", diagnostics=True, clip_norm=0.5)
    t.fit()
    log = _log(tmp_path / "d")
    assert [r["step"] for r in log] == list(range(1, 25))
    for r, norms in zip(log, seen):
        assert r["norms"] == pytest.approx(norms, rel=1e-6)  # before clipping
        assert r["grad_norm"] == pytest.approx(np.sqrt(sum(v * v for v in r["norms"].values())), rel=1e-12)
        assert r["clipped"] == (r["grad_norm"] > 0.5)
    assert any(r["clipped"] for r in log) and not all(r["clipped"] for r in log)


def test_no_log_without_the_flag(tmp_path):
    make(tmp_path, "plain").fit()
    assert not (tmp_path / "plain" / "grad-norms.jsonl").exists()


def test_rolled_back_updates_leave_the_log(tmp_path, monkeypatch):
    original = RNNModel.backward
    calls = {"n": 0}

    def once_nan(self, fwd, dZ, horizon=None, **kw):
        grads, dh0 = original(self, fwd, dZ, horizon, **kw)
        calls["n"] += 1
        if calls["n"] == 7:
            grads["head.V"][0, 0] = np.nan
        return grads, dh0

    monkeypatch.setattr(RNNModel, "backward", once_nan)
    t = make(tmp_path, "nan", diagnostics=True)
    t.fit()
    steps = [r["step"] for r in _log(tmp_path / "nan")]
    assert steps == list(range(1, 25))  # step 6 (before the NaN) was undone and redone, logged once


def test_stop_hook_ends_the_run_after_an_evaluation(tmp_path):
    t = make(tmp_path, "stop")
    t._stop = lambda record: "good enough" if record["step"] >= 10 else None
    state = t.fit()
    assert state["step"] == 10 and state["stop_reason"] == "good enough"
