"""Shared by the tests: small random problems (a model, inputs, targets, mask and h0 that fit
it), and a comparison of two training runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bptt import RNNModel

INPUT_KINDS = ("features", "one-hot", "embedding")


def make_model(kind: str = "features", **options) -> RNNModel:
    sizes = {
        "features": dict(input_size=3),
        "one-hot": dict(vocab_size=6),
        "embedding": dict(vocab_size=6, embedding_size=3),
    }
    options.setdefault("hidden_size", 3)
    options.setdefault("output_size", 3)
    if options.get("mode") == "one-to-many":
        options.setdefault("cond_size", 2)
    return RNNModel(**sizes[kind], **options)


def make_batch(model: RNNModel, rng: np.random.Generator, B: int = 3, T: int = 4, lengths=None):
    """(inputs, targets, cond) for `model`, batch-first."""
    mode, K = model.mode, model.output_size
    if mode == "one-to-one":
        T = 1
    x = (
        rng.integers(0, model.vocab_size, (B, T))
        if model.uses_tokens
        else rng.standard_normal((B, T, model.input_size))
    )
    lead = (B, T) if mode in ("many-to-many", "one-to-many") else (B,)
    if model.head == "softmax":
        y = rng.integers(0, K, lead)
    elif model.head == "sigmoid":
        y = rng.random(lead + (K,))
    else:
        y = rng.standard_normal(lead + (K,))
    cond = rng.standard_normal((B, model.cond_size)) if mode == "one-to-many" else None
    return x, y, cond


def random_h0(model: RNNModel, rng: np.random.Generator, B: int) -> np.ndarray:
    return 0.5 * rng.standard_normal((model.num_layers * model.num_directions, B, model.hidden_size))


def assert_same_run(a: Path, b: Path) -> None:
    """Two run directories hold bit-identical weights and the same metrics but for timings,
    each evaluation logged once."""
    from bptt.training import checkpoint

    wa, wb = checkpoint.load(a).params, checkpoint.load(b).params
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)
    timings = {"tokens_per_s", "time"}
    ma, mb = (
        [
            {k: v for k, v in json.loads(line).items() if k not in timings}
            for line in (r / "metrics.jsonl").read_text().splitlines()
        ]
        for r in (a, b)
    )
    assert ma == mb


def poison_gradient(monkeypatch, call: int, tensor: str, value: float = np.nan) -> None:
    """Make RNNModel.backward put `value` into grads[tensor] on its `call`-th call (1-based)."""
    original = RNNModel.backward
    calls = {"n": 0}

    def backward(self, fwd, dZ, horizon=None):
        grads, dh0 = original(self, fwd, dZ, horizon)
        calls["n"] += 1
        if calls["n"] == call:
            grads[tensor][(0,) * grads[tensor].ndim] = value
        return grads, dh0

    monkeypatch.setattr(RNNModel, "backward", backward)
