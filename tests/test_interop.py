"""bptt against PyTorch autograd: the same loss and every gradient, and the interop round trip."""

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from bptt import RNNModel  # noqa: E402
from bptt.interop import from_torch, to_torch  # noqa: E402

B, T, D, H, K, V = 3, 5, 4, 5, 3, 7
LENGTHS = np.array([5, 2, 4])


def torch_reference(mods, x, y, *, head, mode, pooling, reduction, lengths=None, h0=None, cond_map=None, cond=None):
    """Loss computed with torch modules and torch losses; returns (loss, h0 tensor or None)."""
    emb, rnn, lin = mods
    xt = emb(torch.tensor(x)) if emb is not None else torch.tensor(x)
    if cond_map is not None:
        h0t = (
            torch.tanh(cond_map(torch.tensor(cond)))
            .reshape(x.shape[0], rnn.num_layers, -1)
            .permute(1, 0, 2)
            .contiguous()
        )
    else:
        h0t = None if h0 is None else torch.tensor(h0, requires_grad=True)
    if lengths is not None:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            xt, torch.tensor(lengths), batch_first=True, enforce_sorted=False
        )
        out, hn = rnn(packed, h0t)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        valid = torch.arange(x.shape[1])[None, :] < torch.tensor(lengths)[:, None]
    else:
        out, hn = rnn(xt, h0t)
        valid = torch.ones(out.shape[:2], dtype=torch.bool)
    if mode in ("many-to-many", "one-to-many"):
        z, yt = lin(out)[valid], torch.tensor(y)[valid]
    else:
        if pooling == "last":
            feat = torch.cat([hn[-2], hn[-1]], 1) if rnn.bidirectional else hn[-1]
        elif pooling == "mean":
            feat = (out * valid[..., None]).sum(1) / valid.sum(1, keepdim=True)
        else:
            feat = out.masked_fill(~valid[..., None], -torch.inf).max(1).values
        z, yt = lin(feat), torch.tensor(y)
    red = "mean" if reduction == "mean" else "sum"
    if head == "softmax":
        loss = F.cross_entropy(z, yt, reduction=red, ignore_index=-100)
    elif head == "sigmoid":
        loss = F.binary_cross_entropy_with_logits(z, yt.reshape(z.shape).to(z.dtype), reduction=red)
    else:
        loss = F.mse_loss(z, yt.reshape(z.shape).to(z.dtype), reduction=red)
    if reduction == "sum-over-time":
        loss = loss / x.shape[0]
    return loss, h0t


def torch_grads(mods, cond_map=None) -> dict:
    emb, rnn, lin = mods
    g = {"head.V": lin.weight.grad, "head.c": lin.bias.grad}
    for name, p in rnn.named_parameters():  # e.g. "weight_hh_l1_reverse"
        base, rest = name.split("_l")
        if base == "bias_hh":
            continue  # equal to bias_ih's gradient: b = bias_ih + bias_hh
        layer, _, reverse = rest.partition("_")
        g[
            f"rnn{layer}{'_reverse' if reverse else ''}." + {"weight_ih": "U", "weight_hh": "W", "bias_ih": "b"}[base]
        ] = p.grad
    if emb is not None:
        g["embed.E"] = emb.weight.grad
    if cond_map is not None:
        g["h0map.Q"], g["h0map.q"] = cond_map.weight.grad, cond_map.bias.grad
    return {k: v.numpy() for k, v in g.items()}


def make_targets(rng, head, lead):
    if head == "softmax":
        return rng.integers(0, K, lead)
    if head == "sigmoid":
        return rng.random(lead + (K,))
    return rng.standard_normal(lead + (K,))


CASES = [
    dict(
        layers=l, bi=bi, f=f, head=h, mode=m, pooling=p, reduction=r, masked=mk, tokens=tok, bias=bias, h0=h0, dtype=dt
    )
    for (l, bi, f, h, (m, p), r, mk, tok, bias, h0, dt) in itertools.product(
        (1, 2),
        (False, True),
        ("tanh", "relu"),
        ("softmax", "sigmoid", "linear"),
        (("many-to-many", "last"), ("many-to-one", "last"), ("many-to-one", "mean"), ("many-to-one", "max")),
        ("sum-over-time", "mean"),
        (False, True),
        (False, True),
        (True,),
        (True,),
        ("float64",),
    )
][::7] + [
    dict(
        layers=2,
        bi=True,
        f="tanh",
        head="softmax",
        mode="many-to-many",
        pooling="last",
        reduction="mean",
        masked=True,
        tokens=True,
        bias=False,
        h0=False,
        dtype="float64",
    ),
    dict(
        layers=2,
        bi=True,
        f="tanh",
        head="softmax",
        mode="many-to-many",
        pooling="last",
        reduction="mean",
        masked=True,
        tokens=True,
        bias=True,
        h0=True,
        dtype="float32",
    ),
    dict(
        layers=1,
        bi=False,
        f="relu",
        head="sigmoid",
        mode="many-to-one",
        pooling="last",
        reduction="sum-over-time",
        masked=True,
        tokens=False,
        bias=True,
        h0=True,
        dtype="float32",
    ),
]


@pytest.mark.parametrize("c", CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_loss_and_every_gradient_match_torch(c):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    dt = getattr(torch, c["dtype"])
    emb = torch.nn.Embedding(V, D, dtype=dt) if c["tokens"] else None
    rnn = torch.nn.RNN(
        D,
        H,
        num_layers=c["layers"],
        nonlinearity=c["f"],
        bias=c["bias"],
        batch_first=True,
        bidirectional=c["bi"],
        dtype=dt,
    )
    lin = torch.nn.Linear(H * (2 if c["bi"] else 1), K, dtype=dt)
    model = from_torch(rnn, lin, emb, head=c["head"], mode=c["mode"], pooling=c["pooling"], reduction=c["reduction"])
    x = rng.integers(0, V, (B, T)) if c["tokens"] else rng.standard_normal((B, T, D)).astype(c["dtype"])
    lead = (B, T) if c["mode"] == "many-to-many" else (B,)
    y = make_targets(rng, c["head"], lead)
    if c["head"] != "softmax":
        y = y.astype(c["dtype"])
    lengths = LENGTHS if c["masked"] else None
    h0 = (
        (0.5 * rng.standard_normal((c["layers"] * (2 if c["bi"] else 1), B, H))).astype(c["dtype"]) if c["h0"] else None
    )
    loss, grads, state = model.loss_and_grads(x, y, lengths, h0, return_state=True)
    tloss, h0t = torch_reference(
        (emb, rnn, lin),
        x,
        y,
        head=c["head"],
        mode=c["mode"],
        pooling=c["pooling"],
        reduction=c["reduction"],
        lengths=lengths,
        h0=h0,
    )
    tloss.backward()
    rtol, atol = (1e-10, 1e-12) if c["dtype"] == "float64" else (1e-5, 1e-6)
    assert loss == pytest.approx(tloss.item(), rel=rtol)
    expected = torch_grads((emb, rnn, lin))
    assert set(expected) == set(grads)
    for k in grads:
        assert grads[k].dtype == np.dtype(c["dtype"])
        np.testing.assert_allclose(grads[k], expected[k], rtol=rtol, atol=atol, err_msg=k)
    if h0 is not None:
        np.testing.assert_allclose(state["dh0"], h0t.grad.numpy(), rtol=rtol, atol=atol)
        np.testing.assert_allclose(state["hn"], torch_hn(emb, rnn, x, lengths, h0), rtol=rtol, atol=atol)


def torch_hn(emb, rnn, x, lengths, h0):
    with torch.no_grad():
        xt = emb(torch.tensor(x)) if emb is not None else torch.tensor(x)
        if lengths is not None:
            xt = torch.nn.utils.rnn.pack_padded_sequence(
                xt, torch.tensor(lengths), batch_first=True, enforce_sorted=False
            )
        return rnn(xt, torch.tensor(h0))[1].numpy()


@pytest.mark.parametrize("layers", [1, 2])
def test_one_to_many_matches_torch(layers):
    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    dt = torch.float64
    emb = torch.nn.Embedding(V, D, dtype=dt)
    rnn = torch.nn.RNN(D, H, num_layers=layers, batch_first=True, dtype=dt)
    lin = torch.nn.Linear(H, K, dtype=dt)
    cond_map = torch.nn.Linear(2, layers * H, dtype=dt)
    model = from_torch(rnn, lin, emb, mode="one-to-many", cond_size=2)
    model.params["h0map.Q"][...] = cond_map.weight.detach().numpy()
    model.params["h0map.q"][...] = cond_map.bias.detach().numpy()
    x, y, cond = rng.integers(0, V, (B, T)), rng.integers(0, K, (B, T)), rng.standard_normal((B, 2))
    loss, grads = model.loss_and_grads(x, y, LENGTHS, cond=cond)
    tloss, _ = torch_reference(
        (emb, rnn, lin),
        x,
        y,
        head="softmax",
        mode="one-to-many",
        pooling="last",
        reduction="sum-over-time",
        lengths=LENGTHS,
        cond_map=cond_map,
        cond=cond,
    )
    tloss.backward()
    assert loss == pytest.approx(tloss.item(), rel=1e-10)
    expected = torch_grads((emb, rnn, lin), cond_map)
    for k in grads:
        np.testing.assert_allclose(grads[k], expected[k], rtol=1e-10, atol=1e-12, err_msg=k)


def test_ignore_index_matches_torch():
    torch.manual_seed(2)
    rng = np.random.default_rng(2)
    rnn = torch.nn.RNN(D, H, batch_first=True, dtype=torch.float64)
    lin = torch.nn.Linear(H, K, dtype=torch.float64)
    model = from_torch(rnn, lin, reduction="mean")
    x, y = rng.standard_normal((B, T, D)), rng.integers(0, K, (B, T))
    y[0, 2] = y[1, 4] = -100
    loss, grads = model.loss_and_grads(x, y)
    tloss, _ = torch_reference(
        (None, rnn, lin), x, y, head="softmax", mode="many-to-many", pooling="last", reduction="mean"
    )
    tloss.backward()
    assert loss == pytest.approx(tloss.item(), rel=1e-12)
    expected = torch_grads((None, rnn, lin))
    assert set(expected) == set(grads)  # every gradient
    for k in grads:
        np.testing.assert_allclose(grads[k], expected[k], rtol=1e-10, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("bi", [False, True])
def test_round_trip_is_exact(bi):
    model = RNNModel(
        vocab_size=V,
        embedding_size=D,
        hidden_size=H,
        output_size=K,
        num_layers=2,
        bidirectional=bi,
        nonlinearity="relu",
        dtype="float64",
        seed=3,
    )
    mods = to_torch(model)
    back = from_torch(mods.rnn, mods.linear, mods.embedding)
    for k, v in model.params.items():
        np.testing.assert_array_equal(back.params[k], v, err_msg=k)
    x = np.random.default_rng(4).integers(0, V, (B, T))
    with torch.no_grad():
        out, _ = mods.rnn(mods.embedding(torch.tensor(x)))
        probs = torch.softmax(mods.linear(out), -1).numpy()
    np.testing.assert_allclose(model.predict(x), probs, rtol=1e-12)


def test_interop_refuses_what_torch_cannot_express():
    with pytest.raises(ValueError, match="sigmoid"):
        to_torch(RNNModel(input_size=3, hidden_size=4, output_size=2, nonlinearity="sigmoid"))
    with pytest.raises(ValueError, match="one-hot"):
        to_torch(RNNModel(vocab_size=5, hidden_size=4))
    with pytest.raises(ValueError, match="hidden_size: got 7, but the torch modules have 4"):
        from_torch(torch.nn.RNN(3, 4), output_size=2, hidden_size=7)
