"""RTRL (forward-mode sensitivities) against BPTT: the same gradients to 1e-9 in float64,
over inputs, heads, modes, poolings, nonlinearities, masks, loss masks and h_0; and
`bptt gradcheck --method rtrl`, including what it refuses."""

import json
import zlib

import numpy as np
import pytest

from bptt.analysis import rtrl
from bptt.analysis.gradcheck import relative_error
from bptt.cli import main
from helpers import make_batch, make_model, random_h0

CASES = [
    (kind, mode, head)
    for kind in ("features", "one-hot", "embedding")
    for mode in ("many-to-many", "many-to-one", "one-to-many", "one-to-one")
    for head in ("softmax", "sigmoid", "linear")
]


@pytest.mark.parametrize("kind,mode,head", CASES)
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu", "sigmoid", "identity"])
def test_rtrl_equals_bptt(kind, mode, head, nonlinearity):
    rng = np.random.default_rng(zlib.crc32(f"{kind}{mode}{head}{nonlinearity}".encode()))
    pooling = {"softmax": "last", "sigmoid": "mean", "linear": "max"}[head]
    model = make_model(
        kind,
        mode=mode,
        head=head,
        nonlinearity=nonlinearity,
        pooling=pooling,
        hidden_size=3,
        dtype="float64",
        seed=int(rng.integers(100)),
    )
    x, y, cond = make_batch(model, rng, B=3, T=5)
    mask = np.array([5, 2, 4]) if mode in ("many-to-many", "many-to-one") else None
    h0 = None if mode == "one-to-many" else random_h0(model, rng, 3)
    loss_b, g_b, s_b = model.loss_and_grads(x, y, mask, h0, cond=cond, return_state=True)
    loss_r, g_r, s_r = rtrl.loss_and_grads(model, x, y, mask, h0, cond=cond, return_state=True)
    assert loss_r == pytest.approx(loss_b, rel=1e-12) and list(g_r) == list(g_b)
    for k in g_b:
        assert relative_error(g_r[k], g_b[k]) < 1e-9, k
    if h0 is not None:
        assert relative_error(s_r["dh0"], s_b["dh0"]) < 1e-9


@pytest.mark.parametrize("reduction", ["sum-over-time", "mean", "sum"])
def test_rtrl_with_a_loss_mask_ignore_index_and_no_bias(reduction):
    rng = np.random.default_rng(4)
    model = make_model("one-hot", hidden_size=4, bias=False, dtype="float64", reduction=reduction)
    x, y, _ = make_batch(model, rng, B=2, T=6)
    y[1, 4] = model.ignore_index
    loss_mask = np.zeros((2, 6), bool)
    loss_mask[:, 3:] = True
    loss_b, g_b = model.loss_and_grads(x, y, loss_mask=loss_mask)
    loss_r, g_r = rtrl.loss_and_grads(model, x, y, loss_mask=loss_mask)
    assert loss_r == pytest.approx(loss_b, rel=1e-12)
    assert "rnn0.b" not in g_r and max(relative_error(g_r[k], g_b[k]) for k in g_b) < 1e-9


@pytest.mark.parametrize("head", ["sigmoid", "linear"])
def test_rtrl_mean_reduction_over_outputs(head):
    rng = np.random.default_rng(6)
    model = make_model("features", hidden_size=3, output_size=2, head=head, dtype="float64", reduction="mean")
    x, y, _ = make_batch(model, rng, B=3, T=4)
    loss_b, g_b = model.loss_and_grads(x, y, np.array([4, 1, 3]))
    loss_r, g_r = rtrl.loss_and_grads(model, x, y, np.array([4, 1, 3]))
    assert loss_r == pytest.approx(loss_b, rel=1e-12)
    assert max(relative_error(g_r[k], g_b[k]) for k in g_b) < 1e-9


@pytest.mark.parametrize(
    "options,match", [(dict(num_layers=2), "one recurrent layer"), (dict(bidirectional=True), "bidirectional")]
)
def test_rtrl_refuses_what_it_does_not_cover(options, match):
    model = make_model("features", **options)
    x, y, _ = make_batch(model, np.random.default_rng(0))
    with pytest.raises(ValueError, match=match):
        rtrl.loss_and_grads(model, x, y)


def test_gradcheck_cli_with_rtrl(capsys):
    assert (
        main(
            [
                "gradcheck",
                "--method",
                "rtrl",
                "--uneven",
                "--h0",
                "--mode",
                "many-to-one",
                "--pooling",
                "max",
                "--nonlinearity",
                "relu",
                "--json",
            ]
        )
        == 0
    )
    r = json.loads(capsys.readouterr().out)
    assert r["ok"] and r["method"] == "rtrl" and r["threshold"] == 1e-9
    assert set(r["max_relative_error"]) == {"rnn0.U", "rnn0.W", "rnn0.b", "head.V", "head.c", "h0"}
    assert main(["gradcheck", "--method", "rtrl", "--embedding-size", "3", "--backprop-steps", "8"]) == 0
    assert "below threshold 1e-09" in capsys.readouterr().out
    assert main(["gradcheck", "--method", "rtrl", "--horizon", "2"]) == 2
    assert "--method rtrl: computes the full gradient" in capsys.readouterr().err
    assert main(["gradcheck", "--method", "rtrl", "--num-layers", "2"]) == 2
    assert "one recurrent layer only" in capsys.readouterr().err


def test_rtrl_refuses_a_network_too_big_for_memory(monkeypatch):
    from bptt.training import resources

    monkeypatch.setattr(resources, "available_memory", lambda: 1000)  # bytes; the sensitivities need 4,608
    model = make_model("features", hidden_size=4)
    x, y, _ = make_batch(model, np.random.default_rng(0))
    with pytest.raises(ValueError, match="RTRL is for small networks"):
        rtrl.loss_and_grads(model, x, y)
