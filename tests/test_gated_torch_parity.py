"""RNNModel(cell="lstm" | "gru") against torch.nn.LSTM / nn.GRU (+ nn.Linear, + nn.Embedding) in
float64: the loss, every gradient, the final states (h_n, c_n) and dL/d(h_0, c_0) to 1e-10,
with packed variable-length sequences, 1-2 layers, both directions; and bptt.interop both ways."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from bptt import RNNModel  # noqa: E402
from bptt.interop import from_torch, to_torch  # noqa: E402

B, T, D, E, H, K, V = 4, 6, 3, 3, 4, 3, 7
LENGTHS = np.array([6, 2, 4, 1])
TORCH = {"lstm": nn.LSTM, "gru": nn.GRU}


def modules(cell, *, layers, bi, tokens, bias=True, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    emb = nn.Embedding(V, E, dtype=dtype) if tokens else None
    rnn = TORCH[cell](
        E if tokens else D, H, num_layers=layers, bias=bias, batch_first=True, bidirectional=bi, dtype=dtype
    )
    with torch.no_grad():  # larger than torch's draws, so that gates leave their linear region
        for p in rnn.parameters():
            p.mul_(2.5)
    lin = nn.Linear(H * (2 if bi else 1), K, dtype=dtype)
    return emb, rnn, lin


def torch_run(mods, x, y, *, lengths, state0, many_to_one):
    """Loss (sum over steps and sequences / B, cross-entropy), with h0 (and c0) leaf tensors."""
    emb, rnn, lin = mods
    xt = emb(torch.as_tensor(x)) if emb is not None else torch.as_tensor(x)
    s0 = [torch.tensor(s, requires_grad=True) for s in state0] if state0 is not None else None
    hx = None if s0 is None else (tuple(s0) if isinstance(rnn, nn.LSTM) else s0[0])
    packed = nn.utils.rnn.pack_padded_sequence(xt, torch.as_tensor(lengths), batch_first=True, enforce_sorted=False)
    out, sn = rnn(packed, hx)
    out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
    sn = sn if isinstance(rnn, nn.LSTM) else (sn,)
    if many_to_one:
        hn = sn[0]
        feat = torch.cat([hn[-2], hn[-1]], dim=1) if rnn.bidirectional else hn[-1]
        loss = nn.functional.cross_entropy(lin(feat), torch.as_tensor(y), reduction="sum") / B
    else:
        valid = torch.arange(T)[None, :] < torch.as_tensor(lengths)[:, None]
        z = lin(out)[valid]
        loss = nn.functional.cross_entropy(z, torch.as_tensor(y)[valid], reduction="sum") / B
    loss.backward()
    return loss.item(), sn, s0


def torch_grads(cell, mods) -> dict[str, np.ndarray]:
    emb, rnn, lin = mods
    g = {"head.V": lin.weight.grad.numpy(), "head.c": lin.bias.grad.numpy()}
    if emb is not None:
        g["embed.E"] = emb.weight.grad.numpy()
    for layer, suffix in itertools.product(range(rnn.num_layers), ("", "_reverse")[: 1 + rnn.bidirectional]):
        name = f"rnn{layer}{suffix}"
        get = lambda w, end=f"_l{layer}{suffix}": getattr(rnn, w + end).grad.numpy()  # noqa: E731
        g[f"{name}.U"], g[f"{name}.W"] = get("weight_ih"), get("weight_hh")
        if rnn.bias:
            g[f"{name}.b"] = get("bias_ih")
            if cell == "gru":
                g[f"{name}.bn"] = get("bias_hh")[2 * H :]
                np.testing.assert_allclose(get("bias_hh")[: 2 * H], get("bias_ih")[: 2 * H], rtol=1e-12)
            else:
                np.testing.assert_allclose(get("bias_hh"), get("bias_ih"), rtol=1e-12)
    return g


def rel(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a) - b) / max(np.linalg.norm(b), 1e-300))


@pytest.mark.parametrize("cell", TORCH)
@pytest.mark.parametrize(
    "layers, bi, tokens, many_to_one, given_state",
    [
        (1, False, False, False, True),
        (2, True, True, False, True),
        (2, False, True, True, False),
        (1, True, False, True, True),
    ],
)
def test_parity_with_torch(cell, layers, bi, tokens, many_to_one, given_state):
    rng = np.random.default_rng(1)
    mods = modules(cell, layers=layers, bi=bi, tokens=tokens)
    mode = dict(mode="many-to-one", pooling="last") if many_to_one else {}
    model = from_torch(mods[1], mods[2], mods[0], reduction="sum-over-time", **mode)
    assert model.cell.name == cell and model.dtype == "float64"
    x = rng.integers(0, V, (B, T)) if tokens else rng.standard_normal((B, T, D))
    y = rng.integers(0, K, (B,) if many_to_one else (B, T))
    n_states = 2 if cell == "lstm" else 1
    state0 = None
    if given_state:
        state0 = tuple(0.5 * rng.standard_normal((layers * (1 + bi), B, H)) for _ in range(n_states))
    h0 = None if state0 is None else (state0 if n_states == 2 else state0[0])
    loss, grads, state = model.loss_and_grads(x, y, LENGTHS, h0, return_state=True)
    tloss, sn, s0 = torch_run(mods, x, y, lengths=LENGTHS, state0=state0, many_to_one=many_to_one)
    assert abs(loss - tloss) <= 1e-10 * abs(tloss)
    expected = torch_grads(cell, mods)
    assert set(expected) == set(grads)
    for k in grads:
        assert rel(grads[k], expected[k]) < 1e-10, k
    names = ("h", "c")[:n_states]
    for name, part in zip(names, sn):
        assert rel(state[f"{name}n"], part.detach().numpy()) < 1e-10, name
    if s0 is not None:
        for name, leaf in zip(names, s0):
            assert rel(state[f"d{name}0"], leaf.grad.numpy()) < 1e-10, name


@pytest.mark.parametrize("cell", TORCH)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_round_trip_is_exact(cell, bias, dtype):
    """model -> to_torch -> from_torch gives back every parameter bit for bit; torch's modules
    compute what the model computes."""
    model = RNNModel(
        vocab_size=V, embedding_size=E, hidden_size=H, output_size=K, num_layers=2, bidirectional=True,
        bias=bias, cell=cell, dtype=dtype, seed=3,
    )  # fmt: skip
    mods = to_torch(model)
    assert isinstance(mods.rnn, TORCH[cell]) and mods.rnn.batch_first
    back = from_torch(mods.rnn, mods.linear, mods.embedding)
    assert back.cell.name == cell and set(back.params) == set(model.params)
    for k, v in model.params.items():
        assert back.params[k].dtype == v.dtype
        np.testing.assert_array_equal(back.params[k], v, err_msg=k)
    again = to_torch(back)
    for a, b in zip(mods.rnn.parameters(), again.rnn.parameters(), strict=True):
        assert torch.equal(a, b)
    x = np.random.default_rng(4).integers(0, V, (B, T))
    with torch.no_grad():
        out, _ = mods.rnn(mods.embedding(torch.as_tensor(x)))
        z = mods.linear(out).numpy()
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == "float64" else dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.eval().forward(x).Z.transpose(1, 0, 2), z, **tol)


def test_interop_refuses_what_torch_cannot_hold():
    from bptt.layers import cells
    from bptt.layers.elman import Elman

    class Other(Elman):
        name = "other"

    cells.CELLS["other"] = Other
    try:
        with pytest.raises(ValueError, match="cell: torch has no counterpart of the 'other' cell"):
            to_torch(RNNModel(input_size=D, hidden_size=H, output_size=K, cell="other"))
    finally:
        del cells.CELLS["other"]
    rnn = nn.GRU(D, H, dtype=torch.float64)
    with pytest.raises(ValueError, match="cell: got 'elman', but the torch modules have 'gru'"):
        from_torch(rnn, output_size=K, cell="elman")
