"""Dropout at every site: on the inputs x_t (input_dropout), between layers (dropout), on the
top layer's outputs (output_dropout), per step or locked per sequence (variational_dropout).

BPTT against five-point central differences in float64 with the masks replayed from one seed
(`bptt.analysis.gradcheck`), for each site, locked and not, every cell, many-to-many and
many-to-one with last / mean / max pooling, bidirectional, uneven lengths; input and output
dropout against torch autograd given the same masks; then what the masks
are (locked masks constant over time, padded steps carrying no gradient, evaluation equal to no
dropout), the configuration, ONNX export, and the CLI flags (train, resume exactly).
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from bptt import RNNModel, gradcheck
from bptt.cli import main
from bptt.errors import UsageError
from bptt.layers import dropout as dropout_layer
from bptt.model import ModelConfig
from bptt.training import checkpoint, distributed
from helpers import make_batch, make_model

TOL = 1e-6
P = 0.4
SITES = {
    "input": dict(input_dropout=P),
    "between": dict(dropout=P),
    "output": dict(output_dropout=P),
    "all": dict(input_dropout=P, dropout=P, output_dropout=P),
}
MODES = {  # id -> (mode, pooling)
    "m2m": ("many-to-many", "last"),
    "last": ("many-to-one", "last"),
    "mean": ("many-to-one", "mean"),
    "max": ("many-to-one", "max"),
}
LENGTHS = np.array([4, 2, 3])


def _check(kind="embedding", lengths=LENGTHS, **options):
    rng = np.random.default_rng(zlib.crc32(repr(sorted(options.items())).encode()))
    model = make_model(kind, **options)
    x, y, cond = make_batch(model, rng)
    report = gradcheck(model, x, y, lengths, cond=cond)
    assert set(report) == set(model.params)
    assert max(report.values()) < TOL, report
    return model, x, y, cond


def _dropped_something(model, x, lengths, cond=None):
    """The masks of one forward pass hold zeros: the check above saw dropout at work."""
    fwd = model.forward(x, lengths, cond=cond, rng=np.random.default_rng(0))
    masks = [m for m in (fwd.in_drop, *fwd.drops, fwd.out_drop) if m is not None]
    return bool(masks) and all((m == 0).any() for m in masks)


@pytest.mark.parametrize("locked", [False, True], ids=["per-step", "locked"])
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("site", list(SITES))
def test_elman_every_site(site, mode, locked):
    m, p = MODES[mode]
    options = dict(SITES[site], mode=m, pooling=p, num_layers=2, bidirectional=True, variational_dropout=locked)
    model, x, _, _ = _check(dtype="float64", **options)
    assert _dropped_something(model, x, LENGTHS)


@pytest.mark.parametrize("mode, locked", [("m2m", False), ("last", True), ("mean", False), ("max", True)])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gated_cells_every_site(cell, mode, locked):
    m, p = MODES[mode]
    options = dict(SITES["all"], cell=cell, mode=m, pooling=p, num_layers=2, bidirectional=True)
    _check(variational_dropout=locked, **options)


@pytest.mark.parametrize(
    "kind, options",
    [
        ("features", dict(input_dropout=P, output_dropout=P, mode="many-to-one", pooling="mean")),
        ("features", dict(input_dropout=P, output_dropout=P, variational_dropout=True)),
        ("one-hot", dict(output_dropout=P, dropout=P, num_layers=2)),
        ("embedding", dict(SITES["all"], mode="one-to-one", num_layers=2, bidirectional=True)),
        ("embedding", dict(SITES["all"], mode="one-to-many", num_layers=2, variational_dropout=True)),
        ("embedding", dict(SITES["all"], mode="many-to-one", num_layers=2, checkpoint_every=2)),
        ("embedding", dict(SITES["all"], mode="many-to-many", checkpoint_every=2, cell="gru")),
    ],
    ids=["features-mean", "features-locked", "one-hot", "one-to-one", "one-to-many", "recompute-last", "recompute-gru"],
)
def test_other_inputs_and_modes(kind, options):
    lengths = None if options.get("mode") in ("one-to-one", "one-to-many") else LENGTHS
    _check(kind, lengths=lengths, **options)


@pytest.mark.parametrize("locked", [False, True])
def test_horizon_replays_the_masks(locked):
    """Per-output truncation checks the truncated objective with the same masks."""
    rng = np.random.default_rng(11)
    model = make_model("embedding", input_dropout=P, output_dropout=P, variational_dropout=locked, hidden_size=4)
    x, y, _ = make_batch(model, rng, T=6)
    report = gradcheck(model, x, y, np.array([6, 3, 5]), horizon=2)
    assert max(report.values()) < TOL, report


@pytest.mark.parametrize("locked", [False, True], ids=["per-step", "locked"])
@pytest.mark.parametrize("mode", ["m2m", "last", "mean"])
def test_input_and_output_dropout_against_torch_autograd(mode, locked):
    """nn.Embedding -> x * m_in -> nn.RNN (bidirectional) -> h * m_out -> pooling -> nn.Linear,
    with bptt's masks, through torch autograd: the loss and every gradient to 1e-10."""
    torch = pytest.importorskip("torch")
    from test_torch_parity import bptt_model, modules, torch_grads

    m, p = MODES[mode]
    mods = modules(dtype="float64", bi=True, tokens=True, seed=2)
    emb, rnn, lin, _ = mods
    model = bptt_model(mods, mode=m, pooling=p, input_dropout=P, output_dropout=P, variational_dropout=locked)
    rng = np.random.default_rng(8)
    B, T = 4, 6
    x = rng.integers(0, model.vocab_size, (B, T))
    y = rng.integers(0, model.output_size, (B, T) if m == "many-to-many" else (B,))
    fwd = model.forward(x, rng=np.random.default_rng(9))
    loss, dZ = model.loss(fwd, y)
    grads, _ = model.backward(fwd, dZ)

    def batch_first(mask):  # time-major (T or 1, B, D) -> (B, T or 1, D)
        return torch.tensor(np.ascontiguousarray(mask.transpose(1, 0, 2)))

    xe = emb(torch.tensor(x)) * batch_first(fwd.in_drop)
    out, hn = rnn(xe)
    if mode == "last":
        z = lin(torch.cat([hn[0], hn[1]], dim=1) * torch.tensor(fwd.out_drop[0]))
    else:
        out = out * batch_first(fwd.out_drop)
        z = lin(out.mean(dim=1) if mode == "mean" else out)
    ce = torch.nn.CrossEntropyLoss(reduction="sum")
    tloss = ce(z.reshape(-1, z.shape[-1]), torch.tensor(y).reshape(-1)) / B  # sum over t, mean over sequences
    tloss.backward()
    np.testing.assert_allclose(loss, tloss.item(), rtol=1e-10)
    expected = torch_grads(mods)
    assert set(grads) == set(expected)
    for k, g in grads.items():
        np.testing.assert_allclose(g, expected[k], rtol=1e-10, atol=1e-12, err_msg=k)


# ---- what the masks are ----------------------------------------------------------


def test_make_mask_locked_and_scaled():
    rng = np.random.default_rng(0)
    m = dropout_layer.make_mask(rng, (5, 3, 4), 0.25, np.float64, locked=True)
    assert m.shape == (1, 3, 4) and set(np.unique(m)) <= {0.0, 1 / 0.75}
    m = dropout_layer.make_mask(rng, (50, 3, 4), 0.25, "float32")
    assert m.shape == (50, 3, 4) and m.dtype == np.float32 and set(np.unique(m)) == {0.0, np.float32(1 / 0.75)}


@pytest.mark.parametrize("locked", [False, True])
def test_locked_masks_are_constant_over_time(locked):
    model = make_model("embedding", num_layers=2, variational_dropout=locked, **SITES["all"])
    B, T = 3, 12
    fwd = model.forward(np.random.default_rng(1).integers(0, 6, (B, T)), rng=np.random.default_rng(2))
    expected = {"in": (T, B, 3), "between": (T, B, 3), "out": (T, B, 3)}
    for site, mask in zip(expected, (fwd.in_drop, fwd.drops[0], fwd.out_drop)):
        assert mask.shape == ((1,) + expected[site][1:] if locked else expected[site]), site
        full = np.broadcast_to(mask, expected[site])
        assert (full == full[:1]).all() == locked, site  # per-step masks differ somewhere in 12 steps
    assert fwd.drops[1] is None  # nothing above the top layer but output dropout


def test_locked_input_mask_drops_the_same_units_at_every_step():
    """The first layer sees x_t * m with one m: with W = 0, z_t = V tanh(U (x_t * m) + b) + c."""
    model = make_model("features", input_dropout=0.5, variational_dropout=True, head="linear", output_size=1)
    model.params["rnn0.W"][:] = 0
    x = np.ones((4, 6, 3))
    fwd = model.forward(x, rng=np.random.default_rng(3))
    assert fwd.in_drop.shape == (1, 4, 3) and (fwd.in_drop == 0).any()
    p = model.params
    h = np.tanh(np.broadcast_to(fwd.in_drop, (6, 4, 3)) @ p["rnn0.U"].T + p["rnn0.b"])
    np.testing.assert_allclose(fwd.Z, h @ p["head.V"].T + p["head.c"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fwd.Z, np.broadcast_to(fwd.Z[:1], fwd.Z.shape))  # the same at every step


@pytest.mark.parametrize("mode", list(MODES))
def test_padded_steps_carry_no_gradient(mode):
    """Token 5 appears only in padding: its embedding row gets no gradient, and changing the
    padded inputs changes neither the loss nor any gradient, with every mask on."""
    m, p = MODES[mode]
    model = make_model(
        "embedding", mode=m, pooling=p, num_layers=2, bidirectional=True, dtype="float64", **SITES["all"]
    )
    rng = np.random.default_rng(4)
    x, y, _ = make_batch(model, rng, T=5)
    lengths = np.array([5, 2, 3])
    pad = np.arange(5)[None, :] >= lengths[:, None]
    x = np.where(pad, 5, x % 5)
    loss, grads = model.loss_and_grads(x, y, lengths, rng=np.random.default_rng(9))
    assert not grads["embed.E"][5].any()
    other = np.where(pad, (x + 2) % 5, x)
    loss2, grads2 = model.loss_and_grads(other, y, lengths, rng=np.random.default_rng(9))
    assert loss2 == loss
    for k in grads:
        if k != "embed.E":
            np.testing.assert_array_equal(grads2[k], grads[k], err_msg=k)


@pytest.mark.parametrize("locked", [False, True])
@pytest.mark.parametrize("mode", list(MODES))
def test_evaluation_is_deterministic_and_equals_no_dropout(mode, locked):
    m, p = MODES[mode]
    common = dict(mode=m, pooling=p, num_layers=2, bidirectional=True, seed=3)
    model = make_model("embedding", variational_dropout=locked, **common, **SITES["all"])
    plain = make_model("embedding", **common)
    x, _, _ = make_batch(model, np.random.default_rng(5))
    np.testing.assert_array_equal(model.predict(x, LENGTHS), plain.predict(x, LENGTHS))
    model.training = False
    a, b = model.forward(x, LENGTHS), model.forward(x, LENGTHS)
    np.testing.assert_array_equal(a.Z, b.Z)
    np.testing.assert_array_equal(a.Z, plain.forward(x, LENGTHS).Z)
    assert a.in_drop is None and a.out_drop is None and a.drops == [None, None]
    model.training = True
    assert not np.array_equal(model.forward(x, LENGTHS).Z, a.Z)


def test_masks_split_over_mpi_ranks_are_the_single_process_masks():
    """A rank's share of a locked (1, B, D) mask is the rows the single process draws."""
    shape = (1, 4, 3)
    whole = dropout_layer.make_mask(np.random.default_rng(6), shape, 0.5, np.float64, locked=True)
    parts = [
        dropout_layer.make_mask(
            distributed._Rows(np.random.default_rng(6), 4, rows), (7, 2, 3), 0.5, np.float64, locked=True
        )
        for rows in (slice(0, 2), slice(2, 4))
    ]
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), whole)


# ---- configuration ---------------------------------------------------------------


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(input_dropout=1.0), "input_dropout: got 1.0, expected a number in [0, 1)"),
        (dict(output_dropout=-0.1), "output_dropout: got -0.1"),
        (dict(input_dropout="0.2"), "input_dropout: got '0.2'"),
        (dict(variational_dropout="yes"), "variational_dropout: got 'yes', expected True or False"),
        (dict(vocab_size=6, input_dropout=0.2), "input_dropout: one-hot token inputs are looked up"),
    ],
)
def test_bad_options_are_one_usage_error(options, message):
    kw = dict(input_size=3, hidden_size=3, output_size=2) if "vocab_size" not in options else dict(output_size=2)
    with pytest.raises(UsageError) as e:
        ModelConfig(**kw, **options)
    assert message in str(e.value)


def test_fields_sit_after_dropout_and_old_checkpoints_load():
    names = [f.name for f in ModelConfig.__dataclass_fields__.values()]
    i = names.index("dropout")
    assert names[i : i + 4] == ["dropout", "input_dropout", "output_dropout", "variational_dropout"]
    model = make_model("embedding", input_dropout=0.1, output_dropout=0.2, variational_dropout=True)
    d = model.config.to_dict()
    assert (d["input_dropout"], d["output_dropout"], d["variational_dropout"]) == (0.1, 0.2, True)
    assert RNNModel(**d).config == model.config
    for k in ("input_dropout", "output_dropout", "variational_dropout"):
        del d[k]  # a checkpoint written before these options
    old = RNNModel(**d).config
    assert (old.input_dropout, old.output_dropout, old.variational_dropout) == (0.0, 0.0, False)


def test_onnx_export_ignores_dropout(tmp_path):
    pytest.importorskip("onnxruntime")
    from bptt import export
    from test_export import check

    model = make_model(
        "embedding", num_layers=2, bidirectional=True, mode="many-to-one", variational_dropout=True, **SITES["all"]
    )
    check(model, "scan")
    back = export.from_onnx(export.to_onnx(model, tmp_path / "m.onnx"))
    assert back.config == model.config


# ---- the CLI ---------------------------------------------------------------------

TEXT = ("the quick brown fox jumps over the lazy dog.\n" * 8 + "a stitch in time saves nine.\n" * 8) * 2
FLAGS = ["--input-dropout", "0.2", "--dropout", "0.3", "--output-dropout", "0.25", "--variational-dropout"]
LM = ["--hidden-size", "8", "--num-layers", "2", "--embedding-size", "4", "--batch-size", "4", "--seq-length", "10"]
LM += ["--samples", "0", "--eval-every", "5"]


def _same_weights(a, b):
    wa, wb = checkpoint.load(a).params, checkpoint.load(b).params
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)


def test_cli_lm_trains_and_resumes_exactly(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text(TEXT)
    common = ["train", "--data", str(corpus), *LM, *FLAGS]
    assert main([*common, "--out", str(tmp_path / "a"), "--max-epochs", "2"]) == 0
    assert main([*common, "--out", str(tmp_path / "b"), "--max-epochs", "1"]) == 0
    assert main(["train", "--resume", str(tmp_path / "b"), "--max-epochs", "2"]) == 0
    _same_weights(tmp_path / "a", tmp_path / "b")
    cfg = checkpoint.load(tmp_path / "a").model_config
    assert (cfg["input_dropout"], cfg["dropout"], cfg["output_dropout"], cfg["variational_dropout"]) == (
        0.2,
        0.3,
        0.25,
        True,
    )
    # the original command line, resumed, is accepted; another dropout is refused in one line
    assert main([*common, "--resume", str(tmp_path / "b"), "--max-epochs", "2"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "b"), "--output-dropout", "0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--output-dropout 0.5: the run" in err[0] and "has --output-dropout 0.25" in err[0]


@pytest.mark.slow
def test_cli_classify_trains_and_resumes_exactly(tmp_path):
    from test_tasks import EX

    common = ["train", "--task", "classify", "--data", str(EX / "sentiment-dev.tsv"), "--pooling", "max"]
    common += ["--hidden-size", "6", "--embedding-size", "4", "--batch-size", "32", *FLAGS]
    assert main([*common, "--out", str(tmp_path / "a"), "--max-epochs", "2"]) == 0
    assert main([*common, "--out", str(tmp_path / "b"), "--max-epochs", "1"]) == 0
    assert main(["train", "--resume", str(tmp_path / "b"), "--max-epochs", "2"]) == 0
    _same_weights(tmp_path / "a", tmp_path / "b")
    assert checkpoint.load(tmp_path / "a").model_config["variational_dropout"] is True


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--input-dropout", "1"], "argument --input-dropout: got 1, expected a number in [0, 1)"),
        (["--output-dropout", "-0.2"], "argument --output-dropout: got -0.2, expected a number in [0, 1)"),
        (["--output-dropout", "x"], "argument --output-dropout: got x"),
        (
            ["--variational-dropout=yes"],
            "argument --variational-dropout/--no-variational-dropout: ignored explicit argument 'yes'",
        ),
    ],
)
def test_cli_bad_values_one_line(flags, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--out", str(tmp_path / "o"), *flags])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "o").exists()


def test_rtrl_refuses_the_dropout_it_does_not_model(capsys):
    from bptt.analysis import rtrl

    model = make_model("embedding", output_dropout=P, dtype="float64")
    with pytest.raises(UsageError, match="rtrl: written out without dropout masks"):
        rtrl.check_supported(model)
    model.training = False
    rtrl.check_supported(model)
    assert main(["gradcheck", "--method", "rtrl", "--input", "features", "--input-dropout", "0.3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--method rtrl: written out without dropout masks" in err[0]
