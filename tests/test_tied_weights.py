"""Tied input and output embeddings (Press & Wolf 2017): z_t = E h_t + c with E the embedding
table. BPTT against finite differences in float64 for every parameter (the cells, 1-2 layers,
dropout, TBPTT windows, the per-output horizon); against torch (nn.Embedding + nn.RNN/LSTM/GRU +
nn.Linear whose weight is the embedding's); RTRL; the refusals; and a tied run trained, resumed,
sampled, evaluated and exported from the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bptt import RNNModel, gradcheck
from bptt.errors import UsageError
from bptt.interop import from_torch, to_torch
from bptt.training import checkpoint
from test_train_lm import SMALL, TEXT

V, H, B, T = 7, 4, 3, 6
TOL = 1e-6


def tied(cell="elman", layers=1, **kw):
    return RNNModel(
        vocab_size=V, embedding_size=H, hidden_size=H, num_layers=layers, cell=cell, tie_weights=True, seed=5, **kw
    )


def batch(seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T)), rng


def test_params_hold_the_table_once_and_the_head_reads_it():
    m = tied()
    assert "head.V" not in m.params and m.head_key == "embed.E"
    untied = RNNModel(vocab_size=V, embedding_size=H, hidden_size=H, seed=5)
    assert sum(p.size for p in untied.params.values()) - sum(p.size for p in m.params.values()) == V * H
    x, _, _ = batch(0)
    fwd = m.forward(x)
    feat = fwd.feat
    np.testing.assert_allclose(fwd.Z.reshape(-1, V), feat @ m.params["embed.E"].T + m.params["head.c"], rtol=1e-6)


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("dropout", [0.0, 0.4])
def test_every_gradient_matches_finite_differences(cell, layers, dropout):
    m = tied(cell, layers, dropout=dropout, reduction="mean")
    x, y, rng = batch(layers * 10 + int(dropout * 10))
    h0 = 0.5 * rng.standard_normal((layers, B, H))
    h0 = h0 if cell != "lstm" else (h0, 0.5 * rng.standard_normal((layers, B, H)))
    report = gradcheck(m, x, y, None, h0, max_entries=None)
    assert set(m.params) <= set(report) and "head.V" not in report
    assert max(report.values()) < TOL, report


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
@pytest.mark.parametrize("variational", [False, True])
def test_every_dropout_site_with_tied_weights(cell, variational):
    m = tied(cell, 2, dropout=0.3, input_dropout=0.3, output_dropout=0.3, variational_dropout=variational)
    x, y, _ = batch(11)
    report = gradcheck(m, x, y, max_entries=None)
    assert set(report) == set(m.params) and max(report.values()) < TOL, report


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_tbptt_window_and_horizon(cell):
    m = tied(cell, 1)
    x, y, _ = batch(3)
    loss_mask = np.zeros((B, T), bool)
    loss_mask[:, 2:] = True  # TBPTT(k1=4, k2=6): losses on the last k1 steps of the window
    report = gradcheck(m, x, y, loss_mask=loss_mask, max_entries=None)
    assert max(report.values()) < TOL, report
    report = gradcheck(m, x, y, horizon=2, max_entries=None)
    assert max(report.values()) < TOL, report


def test_rtrl_agrees():
    from bptt.analysis import rtrl

    m = tied().astype(np.float64)
    x, y, _ = batch(4)
    _, g_bptt = m.loss_and_grads(x, y)
    _, g_rtrl = rtrl.loss_and_grads(m, x, y)
    assert g_rtrl.keys() == g_bptt.keys()
    for k in g_bptt:
        np.testing.assert_allclose(g_rtrl[k], g_bptt[k], rtol=1e-9, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_torch_with_linear_weight_the_embedding_weight(cell):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    layers = 2
    emb = nn.Embedding(V, H, dtype=torch.float64)
    rnn = {"elman": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell](H, H, num_layers=layers, batch_first=True)
    rnn = rnn.double()
    lin = nn.Linear(H, V, dtype=torch.float64)
    lin.weight = emb.weight  # the tie, as torch's word_language_model does it
    m = from_torch(rnn, lin, emb, reduction="mean")
    assert m.tie_weights and "head.V" not in m.params
    x, y, _ = batch(6)
    loss, grads = m.loss_and_grads(x, y)
    out, _ = rnn(emb(torch.as_tensor(x)))
    t_loss = nn.functional.cross_entropy(lin(out).reshape(-1, V), torch.as_tensor(y).reshape(-1))
    t_loss.backward()
    assert abs(loss - t_loss.item()) < 1e-10
    np.testing.assert_allclose(grads["embed.E"], emb.weight.grad.numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(grads["head.c"], lin.bias.grad.numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(grads["rnn1.W"], rnn.weight_hh_l1.grad.numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(grads["rnn0.U"], rnn.weight_ih_l0.grad.numpy(), rtol=0, atol=1e-10)
    back = to_torch(m)
    assert back.linear.weight is back.embedding.weight  # tied both ways
    np.testing.assert_array_equal(back.embedding.weight.detach().numpy(), m.params["embed.E"])


def test_untied_torch_modules_give_an_untied_model_and_a_contradiction_is_refused():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    emb, rnn, lin = nn.Embedding(V, H), nn.RNN(H, H, batch_first=True), nn.Linear(H, V)
    assert not from_torch(rnn, lin, emb).tie_weights
    with pytest.raises(UsageError, match="tie_weights: got True"):
        from_torch(rnn, lin, emb, tie_weights=True)


def test_a_bidirectional_sequence_model_ties_twice_its_hidden_size():
    m = RNNModel(vocab_size=V, embedding_size=2 * H, hidden_size=H, bidirectional=True, tie_weights=True)
    x, y, _ = batch(7)
    assert max(gradcheck(m, x, y, max_entries=None).values()) < TOL
    with pytest.raises(UsageError, match=r"hidden_size \(4\) x 2 directions = 8, must equal embedding_size \(4\)"):
        RNNModel(vocab_size=V, embedding_size=H, hidden_size=H, bidirectional=True, tie_weights=True)


@pytest.mark.parametrize(
    "options,message",
    [
        (
            dict(vocab_size=V, embedding_size=3, hidden_size=H),
            r"hidden_size \(4\) = 4, must equal embedding_size \(3\)",
        ),
        (
            dict(vocab_size=V, embedding_size=8, hidden_size=H, output_size=V, bidirectional=True, mode="many-to-one"),
            "sequence mode",
        ),
        (dict(vocab_size=V, hidden_size=H), "needs token inputs with an embedding table"),
        (dict(input_size=3, hidden_size=H, output_size=V), "needs token inputs"),
        (
            dict(vocab_size=V, embedding_size=H, hidden_size=H, output_size=5),
            r"output_size \(5\) must equal vocab_size",
        ),
    ],
)
def test_sizes_that_do_not_fit_are_refused_in_one_line(options, message):
    with pytest.raises(UsageError, match=message):
        RNNModel(tie_weights=True, **options)


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return path


def test_cli_mismatched_sizes_name_both_flags(corpus, tmp_path, capsys):
    from bptt.cli import main

    args = ["train", "--data", str(corpus), "--out", str(tmp_path / "r"), *SMALL, "--tie-weights"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--embedding-size 8 must equal --hidden-size 16" in err
    assert not (tmp_path / "r").exists()
    assert main(["train", "--task", "adding", "--tie-weights"]) == 2
    assert "--tie-weights: only for language models" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_train_resume_generate_evaluate_export(corpus, tmp_path, monkeypatch, capsys):
    from bptt.cli import main
    from bptt.export import from_onnx
    from test_train_lm import _interrupt_at

    small = list(SMALL)
    del small[small.index("--embedding-size") : small.index("--embedding-size") + 2]  # --tie-weights sets it
    opts = ["--data", str(corpus), *small, "--tie-weights", "--num-layers", "2", "--dropout", "0.2"]
    out, cut = tmp_path / "tied", tmp_path / "cut"
    assert main(["train", *opts, "--out", str(out)]) == 0
    params = checkpoint.load(out).params
    assert "head.V" not in params and params["embed.E"].shape[1] == 16
    assert json.loads((out / "checkpoint.json").read_text())["model"]["tie_weights"] is True
    _interrupt_at(7, monkeypatch)  # a tied run cut between two evaluations and resumed: the same weights
    assert main(["train", *opts, "--out", str(cut)]) == 130
    monkeypatch.undo()
    assert main(["train", "--resume", str(cut)]) == 0
    resumed = checkpoint.load(cut).params
    for k in params:
        np.testing.assert_array_equal(params[k], resumed[k], err_msg=k)
    capsys.readouterr()
    assert main(["generate", str(out), "--prime", "the ", "--length", "20", "--seed", "1"]) == 0
    assert capsys.readouterr().out.startswith("the ")
    assert main(["evaluate", str(out), "--data", str(corpus)]) == 0
    pytest.importorskip("onnx")
    onnx_path = tmp_path / "tied.onnx"
    assert main(["export", str(out), "--out", str(onnx_path)]) == 0
    back = from_onnx(onnx_path)
    assert back.tie_weights and set(back.params) == set(params)
    np.testing.assert_array_equal(back.params["embed.E"], params["embed.E"])
