"""Weight dropout (DropConnect on each layer direction's recurrent matrix W, the weight-dropped
LSTM of Merity et al. 2018): the forward pass runs with W * M, and dL/dW = dL/d(W * M) * M.

BPTT against five-point central differences in float64 with the masks replayed from one seed
(`bptt.analysis.gradcheck`) for every cell, stacked and bidirectional, every mode, with the other
dropouts, memory-saving recomputation and a per-output horizon; the definition itself (training
with M equals evaluation with W * M, and W's gradient is the masked one); every cell against
torch autograd given the same masks; what the masks are; the configuration; and the CLI flag.
"""

from __future__ import annotations

import numpy as np
import pytest

from bptt import RNNModel, gradcheck
from bptt.cli import main
from bptt.errors import UsageError
from bptt.model import ModelConfig
from bptt.training import checkpoint
from helpers import make_batch, make_model

TOL = 1e-6
P = 0.4
LENGTHS = np.array([4, 2, 3])
CELLS = ["elman", "lstm", "gru"]
MODES = {  # id -> (mode, pooling)
    "m2m": ("many-to-many", "last"),
    "last": ("many-to-one", "last"),
    "mean,max": ("many-to-one", "mean,max"),
}


def _check(kind="embedding", lengths=LENGTHS, seed=0, **options):
    model = make_model(kind, dtype="float64", weight_dropout=P, **options)
    x, y, cond = make_batch(model, np.random.default_rng(seed))
    report = gradcheck(model, x, y, lengths, cond=cond)
    assert set(report) == set(model.params)
    assert max(report.values()) < TOL, report
    return model, x, y, cond


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("cell", CELLS)
def test_every_cell_stacked_and_bidirectional(cell, mode):
    m, p = MODES[mode]
    _check(cell=cell, mode=m, pooling=p, num_layers=2, bidirectional=True)


@pytest.mark.parametrize("cell", CELLS)
def test_with_every_other_dropout_locked(cell):
    sites = dict(input_dropout=P, dropout=P, output_dropout=P, variational_dropout=True)
    _check(cell=cell, mode="many-to-one", pooling="mean", num_layers=2, bidirectional=True, **sites)


@pytest.mark.parametrize(
    "kind, options",
    [
        ("features", dict(mode="many-to-one", pooling="max")),
        ("one-hot", dict(num_layers=2)),
        ("embedding", dict(mode="one-to-one", bidirectional=True, cell="lstm")),
        ("embedding", dict(mode="one-to-many", num_layers=2, cell="gru")),
        ("embedding", dict(mode="many-to-one", checkpoint_every=2, cell="lstm", bidirectional=True)),
        ("embedding", dict(mode="many-to-many", checkpoint_every=2, num_layers=2)),
    ],
    ids=["features", "one-hot", "one-to-one", "one-to-many", "recompute-lstm", "recompute-elman"],
)
def test_other_inputs_and_modes(kind, options):
    lengths = None if options.get("mode") in ("one-to-one", "one-to-many") else LENGTHS
    _check(kind, lengths=lengths, **options)


def test_horizon_replays_the_mask():
    """Per-output truncation checks the truncated objective with the same W * M."""
    model = make_model("embedding", weight_dropout=P, hidden_size=4, dtype="float64")
    x, y, _ = make_batch(model, np.random.default_rng(11), T=6)
    report = gradcheck(model, x, y, np.array([6, 3, 5]), horizon=2)
    assert max(report.values()) < TOL, report


@pytest.mark.parametrize("cell", CELLS)
def test_training_runs_the_masked_matrix_and_masks_its_gradient(cell):
    """Training with weight dropout is evaluation of the same model with W replaced by W * M:
    the same logits and every other gradient, and dL/dW = dL/d(W * M) * M."""
    opts = dict(cell=cell, num_layers=2, bidirectional=True, mode="many-to-one", pooling="mean,max", seed=4)
    model = make_model("embedding", dtype="float64", weight_dropout=P, **opts)
    x, y, _ = make_batch(model, np.random.default_rng(2))
    fwd = model.forward(x, LENGTHS, rng=np.random.default_rng(7))
    grads, _ = model.backward(fwd, model.loss(fwd, y)[1])
    assert sorted(fwd.weight_drops) == ["rnn0", "rnn0_reverse", "rnn1", "rnn1_reverse"]
    plain = make_model("embedding", dtype="float64", **opts)
    for k, v in model.params.items():
        plain.params[k][...] = v
    for name, M in fwd.weight_drops.items():
        plain.params[f"{name}.W"] *= M
    pfwd = plain.forward(x, LENGTHS)
    expected, _ = plain.backward(pfwd, plain.loss(pfwd, y)[1])
    np.testing.assert_allclose(fwd.Z, pfwd.Z, rtol=1e-13, atol=1e-15)
    for k in grads:
        name = k.split(".")[0]
        want = expected[k] * fwd.weight_drops[name] if k.endswith(".W") and name in fwd.weight_drops else expected[k]
        np.testing.assert_allclose(grads[k], want, rtol=1e-12, atol=1e-14, err_msg=k)
    dropped = [M == 0 for M in fwd.weight_drops.values()]
    assert all(d.any() for d in dropped)
    for name, M in fwd.weight_drops.items():  # a dropped weight learns nothing from this batch
        assert not grads[f"{name}.W"][M == 0].any()


@pytest.mark.parametrize("cell", CELLS)
def test_against_torch_autograd(cell):
    """torch's nn.RNN / nn.LSTM / nn.GRU run through torch.func.functional_call with
    weight_hh = W * M (bptt's masks), bidirectional and two layers: loss and every gradient."""
    torch = pytest.importorskip("torch")
    from bptt.interop import to_torch

    model = make_model("embedding", dtype="float64", cell=cell, num_layers=2, bidirectional=True, seed=1)
    model = RNNModel(**model.config.replace(weight_dropout=P, mode="many-to-one", pooling="mean").to_dict())
    rng = np.random.default_rng(3)
    B, T = 4, 5
    x = rng.integers(0, model.vocab_size, (B, T))
    y = rng.integers(0, model.output_size, (B,))
    fwd = model.forward(x, rng=np.random.default_rng(9))
    loss, dZ = model.loss(fwd, y)
    grads, _ = model.backward(fwd, dZ)

    def tail(name):  # "rnn1_reverse" -> "l1_reverse", torch's suffix
        layer, _, suffix = name[3:].partition("_")
        return f"l{layer}" + (f"_{suffix}" if suffix else "")

    rnn, lin, emb = to_torch(model)
    weights = dict(rnn.named_parameters())
    for name, M in fwd.weight_drops.items():
        weights[f"weight_hh_{tail(name)}"] = weights[f"weight_hh_{tail(name)}"] * torch.tensor(M)
    out, _ = torch.func.functional_call(rnn, weights, (emb(torch.tensor(x)),))
    z = lin(out.mean(dim=1))
    tloss = torch.nn.CrossEntropyLoss(reduction="sum")(z, torch.tensor(y)) / B
    tloss.backward()
    np.testing.assert_allclose(loss, tloss.item(), rtol=1e-12)
    expected = {"head.V": lin.weight.grad, "head.c": lin.bias.grad, "embed.E": emb.weight.grad}
    for name in fwd.weight_drops:
        for key, torch_name in (("U", "weight_ih"), ("W", "weight_hh"), ("b", "bias_ih")):
            expected[f"{name}.{key}"] = getattr(rnn, f"{torch_name}_{tail(name)}").grad
        if cell == "gru":  # bn is the n row of bias_hh, inside r * (W_n h + b_hn)
            expected[f"{name}.bn"] = getattr(rnn, f"bias_hh_{tail(name)}").grad[2 * model.hidden_size :]
    assert set(grads) == set(expected)
    for k, g in grads.items():
        np.testing.assert_allclose(g, expected[k].numpy(), rtol=1e-10, atol=1e-12, err_msg=k)


# ---- what the masks are ----------------------------------------------------------


def test_masks_have_the_shape_of_w_and_are_scaled():
    model = make_model("embedding", cell="lstm", hidden_size=5, num_layers=2, weight_dropout=0.25)
    fwd = model.forward(np.zeros((3, 4), np.int64), rng=np.random.default_rng(0))
    for name, M in fwd.weight_drops.items():
        assert M.shape == model.params[f"{name}.W"].shape == (20, 5) and M.dtype == np.float32
        assert set(np.unique(M)) == {0.0, np.float32(1 / 0.75)}
    assert not np.array_equal(fwd.weight_drops["rnn0"], fwd.weight_drops["rnn1"])


def test_evaluation_and_zero_draw_nothing():
    """Evaluation runs W itself; weight_dropout=0 draws no mask, so the other dropouts' masks
    (and every run trained before the option) stay what they were."""
    common = dict(num_layers=2, bidirectional=True, input_dropout=P, output_dropout=P, seed=3)
    model = make_model("embedding", weight_dropout=P, **common)
    plain = make_model("embedding", **common)
    x, _, _ = make_batch(model, np.random.default_rng(5))
    np.testing.assert_array_equal(model.predict(x, LENGTHS), plain.predict(x, LENGTHS))
    a = plain.forward(x, LENGTHS, rng=np.random.default_rng(1))
    assert a.weight_drops == {}
    b = make_model("embedding", weight_dropout=0.0, **common).forward(x, LENGTHS, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(a.in_drop, b.in_drop)
    np.testing.assert_array_equal(a.Z, b.Z)
    model.training = False
    assert model.forward(x, LENGTHS).weight_drops == {}


@pytest.mark.parametrize(
    "value, message",
    [(1.0, "weight_dropout: got 1.0, expected a number in [0, 1)"), (-0.5, "weight_dropout: got -0.5")],
)
def test_bad_values_are_one_usage_error(value, message):
    with pytest.raises(UsageError) as e:
        ModelConfig(input_size=3, hidden_size=3, output_size=2, weight_dropout=value)
    assert message in str(e.value)


def test_old_checkpoints_load_without_it():
    d = make_model("embedding", weight_dropout=0.2).config.to_dict()
    assert d["weight_dropout"] == 0.2 and RNNModel(**d).weight_dropout == 0.2
    del d["weight_dropout"]
    assert RNNModel(**d).weight_dropout == 0.0


def test_rtrl_refuses_it_in_training():
    from bptt.analysis import rtrl

    model = make_model("embedding", weight_dropout=P, dtype="float64")
    with pytest.raises(UsageError, match="weight_dropout 0"):
        rtrl.check_supported(model)
    model.training = False
    rtrl.check_supported(model)


# ---- the CLI ---------------------------------------------------------------------


def test_cli_trains_and_resumes_exactly(tmp_path, capsys):
    from test_dropout_sites import LM, TEXT, _same_weights

    corpus = tmp_path / "c.txt"
    corpus.write_text(TEXT)
    common = ["train", "--data", str(corpus), *LM, "--cell", "lstm", "--weight-dropout", "0.3"]
    assert main([*common, "--out", str(tmp_path / "a"), "--max-epochs", "2"]) == 0
    assert main([*common, "--out", str(tmp_path / "b"), "--max-epochs", "1"]) == 0
    assert main(["train", "--resume", str(tmp_path / "b"), "--max-epochs", "2"]) == 0
    _same_weights(tmp_path / "a", tmp_path / "b")
    assert checkpoint.load(tmp_path / "a").model_config["weight_dropout"] == 0.3
    assert main([*common, "--out", str(tmp_path / "c"), "--max-epochs", "2", "--weight-dropout", "0"]) == 0
    wa, wc = checkpoint.load(tmp_path / "a").params, checkpoint.load(tmp_path / "c").params
    assert not np.array_equal(wa["rnn0.W"], wc["rnn0.W"])  # the flag reaches the model
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "b"), "--weight-dropout", "0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--weight-dropout 0.5: the run" in err[0] and "has --weight-dropout 0.3" in err[0]


def test_cli_bad_value_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--out", str(tmp_path / "o"), "--weight-dropout", "1"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "argument --weight-dropout: got 1, expected a number in [0, 1)" in err[0], err
    assert not (tmp_path / "o").exists()


def test_onnx_export_runs_w_itself_and_keeps_the_option(tmp_path):
    pytest.importorskip("onnxruntime")
    from bptt import export
    from test_export import check

    model = make_model("embedding", cell="lstm", weight_dropout=P, num_layers=2, mode="many-to-one", pooling="mean")
    check(model, "scan")  # onnxruntime computes what predict (evaluation: no mask) computes
    back = export.from_onnx(export.to_onnx(model, tmp_path / "m.onnx"))
    assert back.config == model.config and back.weight_dropout == P
