"""Parity with PyTorch autograd: the loss, every gradient of `grads`, dL/dh_0 and h_n.

The torch side is built by hand from nn.Embedding / nn.RNN / nn.Linear and the
torch loss modules (CrossEntropyLoss with ignore_index, BCEWithLogitsLoss,
MSELoss; "sum-over-time" is reduction="sum" divided by B). Padded batches go
through pack_padded_sequence(enforce_sorted=False). float64 must agree to
1e-10 relative, float32 to 1e-5.
"""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from bptt import RNNModel  # noqa: E402
from bptt.interop import TorchModules, from_torch, to_torch  # noqa: E402

B, T, D, E, H, K, V, C = 4, 6, 3, 3, 5, 3, 7, 2  # batch, steps, features, embedding, hidden, outputs, vocab, cond
LENGTHS = np.array([6, 2, 4, 1])  # uneven, unsorted, with a full-length and a one-step sequence
TOL = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=1e-5, atol=1e-6)}
DTYPES = ("float64", "float32")
SEQUENCE = ("many-to-many", "one-to-many")


# ---- the torch reference --------------------------------------------------------


def modules(*, dtype, layers=1, bi=False, f="tanh", bias=True, tokens=False, one_to_many=False, D=D, seed=0):
    """(embedding or None, rnn, linear, cond_map or None), torch-initialised from `seed`.

    The rnn is batch_first=True with bias_ih and bias_hh both non-zero."""
    torch.manual_seed(seed)
    dt = getattr(torch, dtype)
    emb = nn.Embedding(V, E, dtype=dt) if tokens else None
    rnn = nn.RNN(
        E if tokens else D,
        H,
        num_layers=layers,
        nonlinearity=f,
        bias=bias,
        batch_first=True,
        bidirectional=bi,
        dtype=dt,
    )
    lin = nn.Linear(H * (2 if bi else 1), K, dtype=dt)
    cond_map = nn.Linear(C, layers * H, dtype=dt) if one_to_many else None
    return emb, rnn, lin, cond_map


def torch_loss_module(head, reduction, ignore_index=-100):
    red = "mean" if reduction == "mean" else "sum"
    if head == "softmax":
        return nn.CrossEntropyLoss(reduction=red, ignore_index=ignore_index)
    return nn.BCEWithLogitsLoss(reduction=red) if head == "sigmoid" else nn.MSELoss(reduction=red)


def torch_forward(
    mods,
    x,
    y,
    *,
    head,
    mode,
    pooling="last",
    reduction="sum-over-time",
    lengths=None,
    h0=None,
    cond=None,
    ignore_index=-100,
):
    """The loss computed by torch. Returns (loss, h0 leaf tensor or None, h_n, logits)."""
    emb, rnn, lin, cond_map = mods
    dt = rnn.weight_hh_l0.dtype
    xt = emb(torch.as_tensor(x)) if emb is not None else torch.as_tensor(x, dtype=dt)
    Bx = xt.shape[0]
    if mode == "one-to-one":
        xt = xt[:, None]
    h0t = None
    if cond_map is not None:
        h0t = torch.tanh(cond_map(torch.as_tensor(cond, dtype=dt)))
        h0t = h0t.reshape(Bx, rnn.num_layers, H).permute(1, 0, 2).contiguous()
    elif h0 is not None:
        h0t = torch.tensor(h0, dtype=dt, requires_grad=True)
    Tx = xt.shape[1]
    if lengths is not None:
        packed = nn.utils.rnn.pack_padded_sequence(xt, torch.as_tensor(lengths), batch_first=True, enforce_sorted=False)
        out, hn = rnn(packed, h0t)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=Tx)
        valid = torch.arange(Tx)[None, :] < torch.as_tensor(lengths)[:, None]
    else:
        out, hn = rnn(xt, h0t)
        valid = torch.ones((Bx, Tx), dtype=torch.bool)
    if mode in SEQUENCE:
        z = lin(out)
        zl, yl = z[valid], torch.as_tensor(y)[valid]  # valid steps only, (N, K)
    else:
        if mode == "one-to-one" or pooling == "last":
            feat = torch.cat([hn[-2], hn[-1]], dim=1) if rnn.bidirectional else hn[-1]
        elif pooling == "mean":
            feat = (out * valid[..., None]).sum(1) / valid.sum(1, keepdim=True)
        else:
            feat = out.masked_fill(~valid[..., None], -torch.inf).amax(1)
        z = zl = lin(feat)
        yl = torch.as_tensor(y)
    if head != "softmax":
        yl = yl.to(dt)
    loss = torch_loss_module(head, reduction, ignore_index)(zl, yl)
    if reduction == "sum-over-time":
        loss = loss / Bx
    return loss, h0t, hn, z


def torch_grads(mods, bias_hh: bool = False) -> dict[str, np.ndarray]:
    """The .grad of every torch parameter under its bptt name; "rnn{k}.b" is bias_ih's
    gradient (bias_hh's with bias_hh=True: the two are equal, b = bias_ih + bias_hh)."""
    emb, rnn, lin, cond_map = mods
    g = {"head.V": lin.weight.grad, "head.c": lin.bias.grad}
    for layer, suffix in itertools.product(range(rnn.num_layers), ("", "_reverse")[: 1 + rnn.bidirectional]):
        name = f"rnn{layer}{suffix}"
        g[f"{name}.U"] = getattr(rnn, f"weight_ih_l{layer}{suffix}").grad
        g[f"{name}.W"] = getattr(rnn, f"weight_hh_l{layer}{suffix}").grad
        if rnn.bias:
            g[f"{name}.b"] = getattr(rnn, f"bias_{'hh' if bias_hh else 'ih'}_l{layer}{suffix}").grad
    if emb is not None:
        g["embed.E"] = emb.weight.grad
    if cond_map is not None:
        g["h0map.Q"], g["h0map.q"] = cond_map.weight.grad, cond_map.bias.grad
    return {k: v.numpy() for k, v in g.items()}


def bptt_model(mods, **options) -> RNNModel:
    """The bptt model holding the torch weights (from_torch, plus h0map for one-to-many)."""
    emb, rnn, lin, cond_map = mods
    if cond_map is not None:
        options.update(mode="one-to-many", cond_size=C)
    model = from_torch(rnn, lin, emb, **options)
    if cond_map is not None:
        model.params["h0map.Q"][...] = cond_map.weight.detach().numpy()
        model.params["h0map.q"][...] = cond_map.bias.detach().numpy()
    return model


def targets(rng, head, lead, dtype):
    if head == "softmax":
        return rng.integers(0, K, lead)
    if head == "sigmoid":
        return rng.random(lead + (K,)).astype(dtype)
    return rng.standard_normal(lead + (K,)).astype(dtype)


def assert_parity(model, mods, x, y, *, mask=None, lengths=None, h0=None, cond=None, pooling="last", ignore_index=-100):
    """bptt's loss, every gradient, dh0 and hn equal torch's, to the dtype's tolerance."""
    loss, grads, state = model.loss_and_grads(x, y, lengths if mask is None else mask, h0, cond=cond, return_state=True)
    tloss, h0t, hn, _ = torch_forward(
        mods,
        x,
        y,
        head=model.head,
        mode=model.mode,
        pooling=pooling,
        reduction=model.reduction,
        lengths=lengths,
        h0=h0,
        cond=cond,
        ignore_index=ignore_index,
    )
    tloss.backward()
    tol = TOL[model.dtype]
    np.testing.assert_allclose(loss, tloss.item(), rtol=tol["rtol"], atol=0, err_msg="loss")
    expected = torch_grads(mods)
    assert set(grads) == set(expected) == set(model.params)
    for k, g in grads.items():
        assert g.dtype == np.dtype(model.dtype) and g.shape == model.params[k].shape, k
        np.testing.assert_allclose(g, expected[k], **tol, err_msg=k)
    for k, g in torch_grads(mods, bias_hh=True).items():
        if k.endswith(".b"):
            np.testing.assert_allclose(grads[k], g, **tol, err_msg=f"{k} vs bias_hh")
    np.testing.assert_allclose(state["hn"], hn.detach().numpy(), **tol, err_msg="hn")
    if h0 is not None:
        np.testing.assert_allclose(state["dh0"], h0t.grad.numpy(), **tol, err_msg="dh0")


def inputs(rng, tokens, dtype, B=B, T=T, D=D):
    return rng.integers(0, V, (B, T)) if tokens else rng.standard_normal((B, T, D)).astype(dtype)


def h0_for(rng, layers, bi, dtype, B=B):
    return (0.5 * rng.standard_normal((layers * (2 if bi else 1), B, H))).astype(dtype)


# ---- architecture: layers x directions x nonlinearity x bias x inputs x dtype --------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", [False, True], ids=["features", "embedding"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("f", ["tanh", "relu"])
@pytest.mark.parametrize("bi", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("layers", [1, 2])
def test_architectures(layers, bi, f, bias, tokens, dtype):
    """Many-to-many softmax with a given h_0, unpadded."""
    rng = np.random.default_rng(0)
    mods = modules(dtype=dtype, layers=layers, bi=bi, f=f, bias=bias, tokens=tokens)
    model = bptt_model(mods)
    x, y, h0 = inputs(rng, tokens, dtype), targets(rng, "softmax", (B, T), dtype), h0_for(rng, layers, bi, dtype)
    assert_parity(model, mods, x, y, h0=h0)


# ---- heads x reductions x modes -------------------------------------------------------

MODES = [
    ("many-to-many", "last"),
    ("many-to-one", "last"),
    ("many-to-one", "mean"),
    ("many-to-one", "max"),
    ("one-to-one", "last"),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bi", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("mode,pooling", MODES, ids=[f"{m}-{p}" for m, p in MODES])
@pytest.mark.parametrize("reduction", ["sum-over-time", "mean", "sum"])
@pytest.mark.parametrize("head", ["softmax", "sigmoid", "linear"])
def test_heads_reductions_modes(head, reduction, mode, pooling, bi, dtype):
    """Two tanh layers, float features, unpadded."""
    rng = np.random.default_rng(1)
    mods = modules(dtype=dtype, layers=2, bi=bi, seed=1)
    model = bptt_model(mods, head=head, mode=mode, pooling=pooling, reduction=reduction)
    if mode == "one-to-one":
        x = rng.standard_normal((B, D)).astype(dtype)
    else:
        x = inputs(rng, False, dtype)
    y = targets(rng, head, (B, T) if mode in SEQUENCE else (B,), dtype)
    assert_parity(model, mods, x, y, pooling=pooling)


def test_one_to_one_token_input():
    """One-to-one with ids (B,) through an embedding, and a given h_0."""
    rng = np.random.default_rng(2)
    mods = modules(dtype="float64", layers=2, bi=True, tokens=True, seed=2)
    model = bptt_model(mods, mode="one-to-one", output_size=K)
    x, y, h0 = rng.integers(0, V, B), rng.integers(0, K, B), h0_for(rng, 2, True, "float64")
    assert_parity(model, mods, x, y, h0=h0)


# ---- padded batches against packed sequences ------------------------------------------

PADDED = [("many-to-many", "last"), ("many-to-one", "last"), ("many-to-one", "mean"), ("many-to-one", "max")]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("given_h0", [False, True], ids=["h0=0", "h0"])
@pytest.mark.parametrize("mode,pooling", PADDED, ids=[f"{m}-{p}" for m, p in PADDED])
@pytest.mark.parametrize("bi", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("layers", [1, 2])
def test_padded_against_packed(layers, bi, mode, pooling, given_h0, dtype):
    rng = np.random.default_rng(3)
    tokens = layers == 2  # embedding input in half the cases
    mods = modules(dtype=dtype, layers=layers, bi=bi, f="relu" if bi else "tanh", tokens=tokens, seed=3)
    model = bptt_model(mods, mode=mode, pooling=pooling, reduction="mean" if bi else "sum-over-time")
    x = inputs(rng, tokens, dtype)
    y = targets(rng, "softmax", (B, T) if mode in SEQUENCE else (B,), dtype)
    h0 = h0_for(rng, layers, bi, dtype) if given_h0 else None
    assert_parity(model, mods, x, y, lengths=LENGTHS, h0=h0, pooling=pooling)


@pytest.mark.parametrize("head", ["sigmoid", "linear"])
def test_padded_float_heads_mean_over_valid_elements(head):
    """mean = torch's mean over valid tokens x K for BCEWithLogits and MSE, padding excluded."""
    rng = np.random.default_rng(4)
    mods = modules(dtype="float64", layers=2, bi=True, seed=4)
    model = bptt_model(mods, head=head, reduction="mean")
    x, y = inputs(rng, False, "float64"), targets(rng, head, (B, T), "float64")
    assert_parity(model, mods, x, y, lengths=LENGTHS, h0=h0_for(rng, 2, True, "float64"))


def test_mask_as_bool_matrix_equals_lengths():
    rng = np.random.default_rng(5)
    mods = modules(dtype="float64", layers=2, bi=True, seed=5)
    model = bptt_model(mods)
    x, y = inputs(rng, False, "float64"), targets(rng, "softmax", (B, T), "float64")
    mask = np.arange(T)[None, :] < LENGTHS[:, None]
    assert_parity(model, mods, x, y, mask=mask, lengths=LENGTHS)


# ---- one-to-many: h_0 = tanh(Linear(cond)), teacher forcing ---------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("reduction", ["sum-over-time", "mean"])
@pytest.mark.parametrize("head", ["softmax", "sigmoid", "linear"])
@pytest.mark.parametrize("layers", [1, 2])
def test_one_to_many(layers, head, reduction, padded, dtype):
    """The input at step t is the target of step t-1 (a start token / zeros at t = 0):
    token ids through an embedding for softmax, the K target values as features otherwise."""
    rng = np.random.default_rng(6)
    tokens = head == "softmax"
    mods = modules(dtype=dtype, layers=layers, tokens=tokens, one_to_many=True, D=K, seed=6)
    model = bptt_model(mods, head=head, reduction=reduction, output_size=K)
    y = targets(rng, head, (B, T), dtype)
    if tokens:
        x = np.concatenate([np.full((B, 1), K), y[:, :-1]], axis=1)  # id K (< V) is the start token
    else:
        x = np.concatenate([np.zeros((B, 1, K), dtype), y[:, :-1]], axis=1)
    cond = rng.standard_normal((B, C)).astype(dtype)
    assert_parity(model, mods, x, y, lengths=LENGTHS if padded else None, cond=cond)


# ---- ignore_index -------------------------------------------------------------------


@pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("reduction", ["sum-over-time", "mean", "sum"])
@pytest.mark.parametrize("ignore_index", [-100, -1, 1])
def test_ignore_index(ignore_index, reduction, padded):
    """Ignored targets carry no loss; "mean" divides by the non-ignored (valid) tokens only.
    ignore_index=1 is a real class id: torch ignores it all the same."""
    rng = np.random.default_rng(7)
    mods = modules(dtype="float64", layers=2, bi=True, tokens=True, seed=7)
    model = bptt_model(mods, reduction=reduction, ignore_index=ignore_index, output_size=K)
    x, y = inputs(rng, True, "float64"), rng.integers(0, K, (B, T))
    y[0, 1] = y[0, 5] = y[2, 0] = y[3, 0] = ignore_index  # (3, 0) is that sequence's only step
    assert_parity(model, mods, x, y, lengths=LENGTHS if padded else None, ignore_index=ignore_index)


# ---- one-hot token input (no embedding): torch sees one_hot(ids) as features -----------


@pytest.mark.parametrize("bi", [False, True], ids=["uni", "bi"])
def test_one_hot_tokens_equal_one_hot_features(bi):
    rng = np.random.default_rng(8)
    mods = modules(dtype="float64", layers=2, bi=bi, D=V, seed=8)
    _, rnn, lin, _ = mods
    model = RNNModel(vocab_size=V, hidden_size=H, output_size=K, num_layers=2, bidirectional=bi, dtype="float64")
    model.params.update(from_torch(rnn, lin).params)  # the same names and shapes: U is (H, V)
    ids, y = rng.integers(0, V, (B, T)), rng.integers(0, K, (B, T))
    loss, grads, state = model.loss_and_grads(ids, y, LENGTHS, return_state=True)
    x = np.eye(V)[ids]
    tloss, _, hn, _ = torch_forward(mods, x, y, head="softmax", mode="many-to-many", lengths=LENGTHS)
    tloss.backward()
    np.testing.assert_allclose(loss, tloss.item(), rtol=1e-10)
    expected = torch_grads(mods)
    assert set(grads) == set(expected)
    for k in grads:
        np.testing.assert_allclose(grads[k], expected[k], **TOL["float64"], err_msg=k)
    np.testing.assert_allclose(state["hn"], hn.detach().numpy(), **TOL["float64"])


# ---- interop: from_torch / to_torch ----------------------------------------------------


def torch_predict(emb, rnn, lin, x, head="softmax", lengths=None):
    """Batch-first probabilities from the torch modules (zeros at padded steps)."""
    with torch.no_grad():
        xt = emb(torch.as_tensor(x)) if emb is not None else torch.as_tensor(x)
        if not rnn.batch_first:
            xt = xt.transpose(0, 1)
        if lengths is not None:
            xt = nn.utils.rnn.pack_padded_sequence(
                xt, torch.as_tensor(lengths), batch_first=rnn.batch_first, enforce_sorted=False
            )
        out, hn = rnn(xt)
        if lengths is not None:
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=rnn.batch_first, total_length=T)
        if not rnn.batch_first:
            out = out.transpose(0, 1)
        z = lin(out)
        y = torch.softmax(z, -1) if head == "softmax" else torch.sigmoid(z) if head == "sigmoid" else z
        if lengths is not None:
            y = y * (torch.arange(T)[None, :] < torch.as_tensor(lengths)[:, None])[..., None]
        return y.numpy(), hn.numpy()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", [False, True], ids=["features", "embedding"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("bi", [False, True], ids=["uni", "bi"])
def test_round_trip_is_exact(bi, bias, tokens, dtype):
    """model -> to_torch -> from_torch gives back every parameter bit for bit; the torch
    modules predict what the model predicts."""
    sizes = dict(vocab_size=V, embedding_size=E) if tokens else dict(input_size=D)
    model = RNNModel(
        **sizes,
        hidden_size=H,
        output_size=K,
        num_layers=2,
        bidirectional=bi,
        bias=bias,
        nonlinearity="relu",
        head="sigmoid",
        dtype=dtype,
        seed=9,
    )
    mods = to_torch(model)
    assert isinstance(mods, TorchModules) and mods.rnn.batch_first
    assert (mods.embedding is None) == (not tokens)
    tdt = getattr(torch, dtype)
    for p in [*mods.rnn.parameters(), *mods.linear.parameters()]:
        assert p.dtype == tdt
    if bias:
        for name, p in mods.rnn.named_parameters():
            if name.startswith("bias_hh"):
                assert not p.detach().any(), name
    back = from_torch(*mods, head="sigmoid")
    assert back.dtype == dtype and set(back.params) == set(model.params)
    for k, v in model.params.items():
        assert back.params[k].dtype == v.dtype
        np.testing.assert_array_equal(back.params[k], v, err_msg=k)
    # and torch -> bptt -> torch: the same tensors again
    again = to_torch(back)
    for a, b in zip(mods.rnn.parameters(), again.rnn.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(mods.linear.parameters(), again.linear.parameters(), strict=True):
        assert torch.equal(a, b)
    rng = np.random.default_rng(10)
    x = inputs(rng, tokens, dtype)
    probs, hn = torch_predict(mods.embedding, mods.rnn, mods.linear, x, "sigmoid", LENGTHS)
    np.testing.assert_allclose(model.predict(x, LENGTHS), probs, **TOL[dtype])
    _, _, state = model.loss_and_grads(x, rng.random((B, T, K)), LENGTHS, return_state=True)
    np.testing.assert_allclose(state["hn"], hn, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("tokens", [False, True], ids=["features", "embedding"])
def test_from_torch_computes_what_torch_computes(tokens, batch_first, dtype):
    """Torch-initialised modules, bias_ih and bias_hh both non-zero, time-major or batch-first."""
    torch.manual_seed(11)
    dt = getattr(torch, dtype)
    emb = nn.Embedding(V, E, dtype=dt) if tokens else None
    rnn = nn.RNN(
        E if tokens else D, H, num_layers=2, nonlinearity="relu", bidirectional=True, batch_first=batch_first, dtype=dt
    )
    lin = nn.Linear(2 * H, K, dtype=dt)
    model = from_torch(rnn, lin, emb)
    assert model.dtype == dtype and model.uses_tokens == tokens and model.bidirectional and model.num_layers == 2
    b = (rnn.bias_ih_l1_reverse + rnn.bias_hh_l1_reverse).detach().numpy()
    np.testing.assert_array_equal(model.params["rnn1_reverse.b"], b)
    x = inputs(np.random.default_rng(12), tokens, dtype)
    probs, _ = torch_predict(emb, rnn, lin, x)
    np.testing.assert_allclose(model.predict(x), probs, **TOL[dtype])
    probs, hn = torch_predict(emb, rnn, lin, x, lengths=LENGTHS)
    np.testing.assert_allclose(model.predict(x, LENGTHS), probs, **TOL[dtype])


def test_from_torch_options():
    torch.manual_seed(13)
    rnn = nn.RNN(D, H, num_layers=2, dropout=0.25, dtype=torch.float64)
    model = from_torch(rnn, output_size=K, head="linear", mode="many-to-one", pooling="max", reduction="mean", seed=1)
    assert (model.head, model.mode, model.pooling, model.reduction) == ("linear", "many-to-one", "max", "mean")
    assert model.dropout == 0.25 and model.params["head.V"].shape == (K, H)  # head initialised by RNNModel
    lin = nn.Linear(H, K, bias=False, dtype=torch.float64)
    assert not from_torch(rnn, lin).params["head.c"].any()
    for option, value in [
        ("hidden_size", H + 1),
        ("num_layers", 1),
        ("nonlinearity", "relu"),
        ("bias", False),
        ("bidirectional", True),
        ("dtype", "float32"),
        ("input_size", D + 1),
        ("dropout", 0.0),
        ("output_size", K + 1),
    ]:
        with pytest.raises(ValueError, match=f"^{option}: "):
            from_torch(rnn, lin, **{option: value})
    with pytest.raises(ValueError, match="output_size"):
        from_torch(rnn, head="sigmoid")
    with pytest.raises(ValueError, match="in_features"):
        from_torch(rnn, nn.Linear(H + 1, K, dtype=torch.float64))
    with pytest.raises(ValueError, match="embedding_dim"):
        from_torch(rnn, lin, nn.Embedding(V, D + 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="linear: weights are torch.float32"):
        from_torch(rnn, nn.Linear(H, K))
    with pytest.raises(ValueError, match="rnn: got Linear"):
        from_torch(nn.Linear(D, H), lin)
    with pytest.raises(ValueError, match="proj_size=2"):
        from_torch(nn.LSTM(D, H, proj_size=2, dtype=torch.float64), lin)
    with pytest.raises(ValueError, match="float32 or float64"):
        from_torch(nn.RNN(D, H, dtype=torch.float16), output_size=K)


def test_to_torch_refuses_what_nn_rnn_cannot_express():
    for f in ("sigmoid", "identity"):
        with pytest.raises(ValueError, match=f"nonlinearity: .*{f}"):
            to_torch(RNNModel(input_size=D, hidden_size=H, output_size=K, nonlinearity=f))
    with pytest.raises(ValueError, match="one-hot"):
        to_torch(RNNModel(vocab_size=V, hidden_size=H))


def test_interop_imports_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from bptt import RNNModel\n"
        "from bptt.interop import to_torch\n"
        "try:\n"
        "    to_torch(RNNModel(input_size=2, hidden_size=2, output_size=2))\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "PyTorch is needed for bptt.interop: pip install torch"
