"""`bptt diagnose` as a user meets it: distinct chunks of a short text, a progress bar in a
terminal, and Jacobian norms that stay exact on products too large to square."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from bptt.analysis import diagnostics
from bptt.cli import main
from bptt.commands.diagnose import batch_for
from bptt.layers import elman
from bptt.training.runs import load_run
from test_terminal import in_terminal

TINY = ["--hidden-size", "8", "--num-layers", "1", "--embedding-size", "4", "--seq-length", "10"]
TINY += ["--batch-size", "2", "--samples", "0", "--max-epochs", "0.2"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("diag")
    corpus = root / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog\n" * 30)
    out = root / "run"
    assert main(["train", "--data", str(corpus), "--out", str(out), *TINY]) == 0
    return out


def args_for(run: Path, data: Path, **kw) -> argparse.Namespace:
    base = dict(run_dir=run, data=data, encoding="utf-8", batch_size=8, steps=100, seed=0)
    return argparse.Namespace(**{**base, **kw})


@pytest.mark.parametrize("length, chunks", [(64, 1), (105, 5), (2000, 8)])
def test_the_chunks_of_a_language_model_batch_are_distinct(run, tmp_path, length, chunks):
    text = tmp_path / "short.txt"
    letters = list("abcdefghijklmnopqrstuvwxyz ")
    text.write_text("".join(np.random.default_rng(length).choice(letters, length - 1)) + "\n")
    model, ckpt = load_run(run)
    batch, said = batch_for(model, ckpt, args_for(run, text))
    rows = {tuple(r) for r in batch["inputs"]}
    assert len(rows) == len(batch["inputs"]) == chunks
    T = min(100, length - 1)
    assert said.startswith(f"{chunks} chunk{'s' if chunks > 1 else ''} of {T} tokens")


def test_a_text_as_long_as_one_chunk_is_one_chunk(run, tmp_path, capsys):
    text = tmp_path / "tiny.txt"
    text.write_text(("the quick brown fox jumps over the lazy dog " * 2)[:63] + "\n")
    assert main(["diagnose", str(run), "--data", str(text), "--out", str(tmp_path / "d"), "--no-plot"]) == 0
    assert "1 chunk of 63 tokens" in capsys.readouterr().out


@pytest.mark.slow
def test_diagnose_shows_progress_in_a_terminal(run, tmp_path):
    code, screen = in_terminal("diagnose", run, "--out", tmp_path / "d", "--no-plot")
    assert code == 0, screen
    assert "diagnose:" in screen and "part" in screen, screen


def test_jacobian_norms_of_products_too_large_to_square():
    # identity f and W = 10 Q (Q orthogonal): ||dh_t/dh_k||_2 = 10^(t-k), up to 1e200, whose square overflows
    H, T = 4, 200
    Q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((H, H)))
    cache = elman.Cache(
        X=np.zeros((T, 1, 1)),
        Hs=np.zeros((T + 1, 1, H)),
        pad=None,
        U=np.zeros((H, 1)),
        W=10 * Q,
        nonlinearity="identity",
        reverse=False,
    )
    j = diagnostics.jacobian_norms(cache)
    lag = np.array(j["lag"], dtype=float)
    np.testing.assert_allclose(np.log10(j["spectral"]), lag, rtol=1e-12)
    np.testing.assert_allclose(np.log10(j["frobenius"]), lag + 0.5 * np.log10(H), rtol=1e-12)


def test_jacobian_norms_against_the_svd_of_each_product():
    rng = np.random.default_rng(1)
    H, T, B = 6, 15, 3
    Hs = np.tanh(rng.standard_normal((T + 1, B, H)))
    W = rng.standard_normal((H, H))
    cache = elman.Cache(
        X=np.zeros((T, B, 1)), Hs=Hs, pad=None, U=np.zeros((H, 1)), W=W, nonlinearity="tanh", reverse=False
    )
    j = diagnostics.jacobian_norms(cache, max_sequences=B)
    fp = 1 - Hs[1:] ** 2
    for lag in (1, 5, 15):
        s = []
        for b in range(B):
            P = np.eye(H)
            for i in range(T - 1, T - 1 - lag, -1):
                P = P @ (fp[i, b][:, None] * W)
            s.append(np.linalg.svd(P, compute_uv=False))
        assert j["spectral"][lag - 1] == pytest.approx(np.exp(np.mean([np.log(v[0]) for v in s])), rel=1e-10)
        fro = np.exp(np.mean([0.5 * np.log((v**2).sum()) for v in s]))
        assert j["frobenius"][lag - 1] == pytest.approx(fro, rel=1e-10)
