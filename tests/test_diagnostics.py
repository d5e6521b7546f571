"""bptt.analysis.diagnostics and `bptt diagnose`: the (t, k) terms add up to the BPTT gradient, each
term equals the explicit product of Jacobians, Jacobian norms and spectra are right, and the
command writes its JSON and plots for language-model and task runs."""

import json

import numpy as np
import pytest

from bptt.analysis import diagnostics
from bptt.cli import main
from helpers import make_batch, make_model


def _explicit_terms(model, x, y, mask):
    """C[t, k] for W, U, b of a one-layer model, from the lecture-notes formula with
    explicit (H, H) Jacobian matrices: sum_b g_t (prod_{i=k+1}^t diag f'(a_i) W) diag f'(a_k) [h_{k-1}; x_k; 1]."""
    m = model.astype(np.float64)
    fwd = m.forward(x, mask)
    _, dZ = m.loss(fwd, y)
    taps = {}
    m.backward(fwd, dZ, taps=taps)
    dout, dhn = taps[(0, 0)]
    cache = fwd.caches[0][0]
    Hs, W = cache.Hs, cache.W
    T, B, H = Hs.shape[0] - 1, Hs.shape[1], Hs.shape[2]
    real = np.ones((T, B), bool) if cache.pad is None else ~cache.pad[:, :, 0]
    fp = (1 - Hs[1:] ** 2) * real[:, :, None]
    g = np.zeros((T, B, H))
    if dout is not None:
        g += dout
    g[T - 1] += dhn
    X = np.eye(cache.U.shape[1])[cache.X] if cache.X.dtype.kind in "iu" else cache.X
    C = {"W": np.zeros((T, T, H, H)), "U": np.zeros((T, T, H, X.shape[2])), "b": np.zeros((T, T, H))}
    for b in range(B):
        for t in range(T):
            J = np.eye(H)  # dh_t / dh_k, identity through padded steps
            for k in range(t, -1, -1):
                delta = (g[t, b] @ J) * fp[k, b]
                C["W"][t, k] += np.outer(delta, Hs[k, b])
                C["U"][t, k] += np.outer(delta, X[k, b])
                C["b"][t, k] += delta
                if real[k, b]:
                    J = J @ (fp[k, b][:, None] * W)
    return C


@pytest.mark.parametrize("kind", ["features", "one-hot"])
@pytest.mark.parametrize("mode", ["many-to-many", "many-to-one"])
def test_each_term_is_the_product_of_jacobians(kind, mode):
    rng = np.random.default_rng(1)
    model = make_model(kind, mode=mode, hidden_size=3, dtype="float64", seed=2)
    x, y, _ = make_batch(model, rng, B=3, T=5)
    mask = np.array([5, 2, 4])
    C = _explicit_terms(model, x, y, mask)
    report = diagnostics.diagnose(model, x, y, mask)
    layer = report["layers"][0]
    T = 5
    for name in ("W", "U", "b"):
        heat = np.linalg.norm(C[name].reshape(T, T, -1), axis=2)
        np.testing.assert_allclose(layer["heatmap"][name], heat, rtol=1e-10, atol=1e-14, err_msg=name)
        for lag in range(T):
            want = sum(C[name][t, t - lag] for t in range(lag, T))
            np.testing.assert_allclose(layer["lag_sums"][name][lag], want, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("kind", ["features", "one-hot", "embedding"])
@pytest.mark.parametrize(
    "mode,pooling,bidirectional",
    [
        ("many-to-many", "last", False),
        ("many-to-many", "last", True),
        ("many-to-one", "last", False),
        ("many-to-one", "last", True),
        ("many-to-one", "mean", True),
        ("many-to-one", "max", False),
        ("one-to-many", "last", False),
    ],
)
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu", "sigmoid"])
def test_contributions_add_up_to_the_bptt_gradient(kind, mode, pooling, bidirectional, nonlinearity):
    rng = np.random.default_rng(0)
    model = make_model(
        kind,
        mode=mode,
        pooling=pooling,
        num_layers=2,
        bidirectional=bidirectional,
        nonlinearity=nonlinearity,
        hidden_size=4,
        dtype="float64",
        seed=5,
    )
    x, y, cond = make_batch(model, rng, B=3, T=6)
    mask = None if mode == "one-to-many" else np.array([6, 2, 4])
    report = diagnostics.diagnose(model, x, y, mask, cond=cond, heatmap=False)
    _, grads = model.astype(np.float64).loss_and_grads(x, y, mask, cond=cond)
    assert len(report["layers"]) == 2 * (2 if bidirectional else 1)
    for layer in report["layers"]:
        for t in ("W", "U", "b"):
            g = grads[f"{layer['name']}.{t}"]
            total = layer["lag_sums"][t].sum(axis=0)
            assert np.abs(total - g).max() <= 1e-12 * max(np.abs(g).max(), 1e-300), (layer["name"], t)


def test_jacobian_norms_and_rate_of_a_scaled_orthogonal_w():
    # identity f and W = 0.5 Q: ||dh_t/dh_k||_2 = 0.5^(t-k) exactly, Frobenius 0.5^(t-k) sqrt(H)
    model = make_model(
        "features", nonlinearity="identity", hidden_size=5, dtype="float64", init="orthogonal", init_scale=0.5
    )
    x, y, _ = make_batch(model, np.random.default_rng(0), B=2, T=12)
    j = diagnostics.diagnose(model, x, y, np.array([12, 7]))["layers"][0]["jacobian"]
    lag = np.array(j["lag"])
    assert lag.tolist() == list(range(1, 13)) and j["sequences"] == [2] * 7 + [1] * 5
    np.testing.assert_allclose(j["spectral"], 0.5**lag, rtol=1e-10)
    np.testing.assert_allclose(j["frobenius"], 0.5**lag * np.sqrt(5), rtol=1e-10)
    assert j["rate_spectral"] == pytest.approx(0.5, rel=1e-10)


def test_spectrum_against_numpy():
    model = make_model("features", nonlinearity="sigmoid", hidden_size=6, dtype="float64", seed=3)
    x, y, _ = make_batch(model, np.random.default_rng(0), B=2, T=4)
    s = diagnostics.diagnose(model, x, y)["layers"][0]["spectrum"]
    W = model.params["rnn0.W"]
    assert s["sigma_max_W"] == pytest.approx(np.linalg.svd(W, compute_uv=False)[0])
    assert s["spectral_radius_W"] == pytest.approx(np.abs(np.linalg.eigvals(W)).max())
    assert s["gamma"] == 0.25 and s["bound"] == 4.0 and s["vanishing_guaranteed"]
    h = model.forward(x).caches[0][0].Hs[1:]
    assert s["mean_abs_fprime"] == pytest.approx(float((h * (1 - h)).mean()))


def test_lag_buckets_share():
    S = {"W": np.zeros((120, 2, 2))}
    S["W"][0] = 1.0
    S["W"][5] = 1.0
    S["W"][50] = 2.0
    S["W"][110] = -2.0
    share = diagnostics.by_lag(S)["W"]["share_by_lag_bucket"]
    assert share == pytest.approx(
        {"0": 2 / 12, "1-9": 2 / 12, "10-99": 4 / 12, "100+": 4 / 12}
    )  # Frobenius norms 2, 2, 4, 4


TEXT = "the quick brown fox jumps over the lazy dog.\n" * 40


def test_diagnose_cli_on_a_language_model_run(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text(TEXT)
    run = tmp_path / "lm"
    assert (
        main(
            [
                "train",
                "--data",
                str(corpus),
                "--out",
                str(run),
                "--hidden-size",
                "8",
                "--num-layers",
                "2",
                "--embedding-size",
                "4",
                "--batch-size",
                "4",
                "--seq-length",
                "10",
                "--samples",
                "0",
                "--max-epochs",
                "1",
                "--eval-every",
                "5",
                "--diagnostics",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["diagnose", str(run), "--steps", "30", "--batch-size", "3", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert {"loss", "steps", "batch", "layers", "training", "data"} <= set(r)
    assert r["steps"] == 30 and r["batch"] == 3 and "held-out" in r["data"]
    assert [layer["name"] for layer in r["layers"]] == ["rnn0", "rnn1"]
    layer = r["layers"][1]
    assert {"spectrum", "jacobian", "contributions", "heatmap"} <= set(layer)
    assert len(layer["heatmap"]["W"]) == 30 and len(layer["jacobian"]["lag"]) == 30
    assert set(layer["contributions"]["W"]["share_by_lag_bucket"]) == {"0", "1-9", "10-99"}
    history = [json.loads(x) for x in (run / "grad-norms.jsonl").read_text().splitlines()]
    assert (
        r["training"]["updates"]
        == len(history)
        == json.loads((run / "checkpoint.json").read_text())["train"]["progress"]["step"]
    )
    assert set(history[0]["norms"]) == {
        "embed.E",
        "rnn0.U",
        "rnn0.W",
        "rnn0.b",
        "rnn1.U",
        "rnn1.W",
        "rnn1.b",
        "head.V",
        "head.c",
    }
    assert sum(h["clipped"] for h in history) == r["training"]["clipped"]
    assert json.loads((run / "diagnose.json").read_text()) == r
    pytest.importorskip("matplotlib")
    for name in ("diagnose.png", "grad-norms.png"):
        assert (run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = tmp_path / "elsewhere"
    assert main(["diagnose", str(run), "--data", str(corpus), "--steps", "12", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "sigma_max(W)" in printed and "dL/dW by lag" in printed and (out / "diagnose.png").exists()


def test_diagnose_refuses_bad_input(tmp_path, capsys):
    assert main(["diagnose", str(tmp_path / "nothing")]) == 2
    assert "nothing" in capsys.readouterr().err


@pytest.mark.parametrize("radius", [0.5, 1.0, 1.7])
def test_spectral_init_sets_the_spectral_radius(radius):
    from bptt import RNNModel

    model = RNNModel(
        input_size=3, hidden_size=32, output_size=2, init="spectral", init_scale=radius, dtype="float64", seed=1
    )
    W = model.params["rnn0.W"]
    assert np.abs(np.linalg.eigvals(W)).max() == pytest.approx(radius, rel=1e-12)
    assert not model.params["rnn0.b"].any()
    other = RNNModel(
        input_size=3, hidden_size=32, output_size=2, init="spectral", init_scale=radius, dtype="float64", seed=1
    )
    np.testing.assert_array_equal(W, other.params["rnn0.W"])  # seeded
    x, y, _ = make_batch(make_model("features"), np.random.default_rng(0))
    assert diagnostics.spectrum(model.forward(x).caches[0][0])["spectral_radius_W"] == pytest.approx(radius, rel=1e-12)


def test_diagnose_cli_on_a_run_without_data_uses_random_inputs(tmp_path, capsys):
    from bptt.model import RNNModel
    from bptt.training.batches import BatchTrainer
    from bptt.training.loop import TrainOptions
    from test_fit import SignOfSum

    model = RNNModel(
        input_size=1,
        hidden_size=5,
        output_size=1,
        head="sigmoid",
        mode="many-to-one",
        num_layers=2,
        bidirectional=True,
        pooling="mean",
    )
    opts = TrainOptions(max_epochs=1, eval_every=3, extra={"task": "sign-of-sum"})
    BatchTrainer(model, SignOfSum(), None, tmp_path / "run", opts, log=lambda s: None).fit()
    assert main(["diagnose", str(tmp_path / "run"), "--steps", "9", "--json", "--no-plot"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert "random sequences" in r["data"] and "sign-of-sum" in r["data"]
    assert [x["name"] for x in r["layers"]] == ["rnn0", "rnn0_reverse", "rnn1", "rnn1_reverse"]
    assert not (tmp_path / "run" / "diagnose.png").exists()
    assert main(["diagnose", str(tmp_path / "run"), "--data", "x.txt"]) == 2
    assert "--data: only for language-model runs" in capsys.readouterr().err
    assert main(["diagnose", str(tmp_path / "run"), "--steps", "5000"]) == 2
    assert "at most 1000" in capsys.readouterr().err


def test_diagnose_cli_on_a_tagger_with_feature_columns(tmp_path, capsys):
    """Random inputs for a run without data of its own have the run's feature columns too."""
    from bptt.data.batching import Batch
    from bptt.model import RNNModel
    from bptt.training.batches import BatchTrainer
    from bptt.training.loop import TrainOptions

    class Tags:
        n_batches = 2

        def batch(self, epoch, k):
            rng = np.random.default_rng([epoch, k])
            return Batch(np.stack([rng.integers(0, n, (4, 6)) for n in (7, 3, 2)], axis=2), rng.integers(0, 4, (4, 6)))

    model = RNNModel(
        vocab_size=7,
        embedding_size=3,
        feature_vocab_sizes=[3, 2],
        feature_embedding_size=2,
        hidden_size=4,
        output_size=4,
        bidirectional=True,
    )
    opts = TrainOptions(max_epochs=1, eval_every=2, extra={"task": "tag-like"})
    BatchTrainer(model, Tags(), None, tmp_path / "run", opts, log=lambda s: None).fit()
    assert main(["diagnose", str(tmp_path / "run"), "--steps", "6", "--json", "--no-plot"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert "random sequences" in r["data"] and [x["name"] for x in r["layers"]] == ["rnn0", "rnn0_reverse"]
