"""The LSTM and GRU cells on their own: finite differences in float64 for every parameter,
the input and the initial state (with masks, reverse, ids, no bias, the per-output horizon),
and parity with torch.nn.LSTM / nn.GRU (outputs, final states, every gradient, packed sequences)."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from bptt import blas
from bptt.analysis.gradcheck import relative_error
from bptt.errors import UsageError
from bptt.layers import elman, gated
from bptt.layers.gru import GRU
from bptt.layers.lstm import LSTM

CELLS = {"lstm": LSTM, "gru": GRU}
T, B, D, H = 5, 3, 3, 2


def numeric_grad(f, x: np.ndarray, eps: float = 1e-3) -> np.ndarray:
    """Five-point central differences of the scalar f() with respect to every entry of x (in place)."""
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        vals = []
        for step in (-2, -1, 1, 2):
            flat[i] = old + step * eps
            vals.append(f())
        flat[i] = old
        gflat[i] = (8 * (vals[2] - vals[1]) - (vals[3] - vals[0])) / (12 * eps)
    return g


def problem(name, rng, *, ids=False, bias=True, masked=False):
    cell = CELLS[name]()
    params = cell.init(D, H, bias, rng, dtype="float64")
    for k in params:  # larger than the pytorch draws, so every gate works away from 1/2
        params[k] = params[k] * 2.0
    X = rng.integers(0, D, (T, B)) if ids else rng.standard_normal((T, B, D))
    state0 = tuple(0.5 * rng.standard_normal((B, H)) for _ in range(cell.n_states))
    mask = None
    if masked:  # padding anywhere, including the first and last steps, and a row of one real step
        mask = rng.random((T, B)) < 0.6
        mask[:, 0] = [False, True, True, False, True]
        mask[:, 1] = [False, False, True, False, False]
    R = rng.standard_normal((T, B, H))
    S = tuple(rng.standard_normal((B, H)) for _ in range(cell.n_states))
    return cell, params, X, state0, mask, R, S


def loss_of(cell, params, X, state0, mask, reverse, R, S):
    out, state_n, _ = cell.forward(params, X, state0, mask=mask, reverse=reverse)
    return float((out * R).sum() + sum((s * w).sum() for s, w in zip(state_n, S)))


def truncated_loss(cell, params, X, state0, mask, reverse, R, S, tau, base):
    """sum_t R_t . h~_t + S . state~_T where each h~_t (and the final state) is recomputed over
    its last tau real steps from the state of the forward pass `base` held fixed
    (from state0 itself when there are at most tau real steps before it)."""
    Xp = X[::-1] if reverse else X
    Rp = R[::-1] if reverse else R
    m = np.ones((T, B), bool) if mask is None else (mask[::-1] if reverse else mask)
    counts = np.cumsum(m, axis=0)
    total = 0.0
    for b in range(B):
        for t in range(T):
            first = counts[t, b] - tau
            s = int(np.searchsorted(counts[:, b], first, side="right")) if first > 0 else 0
            start = tuple(p[b : b + 1] for p in state0) if s == 0 else tuple(p[b : b + 1] for p in base.state(s))
            out, state, _ = cell.forward(params, Xp[s : t + 1, b : b + 1], start, mask=m[s : t + 1, b : b + 1])
            total += float((out[-1] * Rp[t, b]).sum())
            if t == T - 1:
                total += sum(float((p[0] * w[b]).sum()) for p, w in zip(state, S))
    return total


def check_fd(name, *, ids=False, bias=True, masked=False, reverse=False, horizon=None, seed=0):
    rng = np.random.default_rng(seed)
    cell, params, X, state0, mask, R, S = problem(name, rng, ids=ids, bias=bias, masked=masked)
    out, state_n, cache = cell.forward(params, X, state0, mask=mask, reverse=reverse)
    dX, grads, dstate0 = cell.backward(R, S, cache, need_dX=True, horizon=horizon)
    assert set(grads) == set(params)
    if horizon is None:

        def f():
            return loss_of(cell, params, X, state0, mask, reverse, R, S)
    else:
        base = cache

        def f():
            return truncated_loss(cell, params, X, state0, mask, reverse, R, S, horizon, base)

    for k in params:
        assert grads[k].shape == params[k].shape and grads[k].dtype == np.float64
        assert relative_error(grads[k], numeric_grad(f, params[k])) < 1e-6, k
    for j, s0 in enumerate(state0):
        assert relative_error(dstate0[j], numeric_grad(f, s0)) < 1e-6, f"state0[{j}]"
    if ids:
        assert dX is None
    else:
        assert relative_error(dX, numeric_grad(f, X)) < 1e-6, "X"
    return cell, params, X, state0, mask, out, state_n


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("masked, reverse", [(False, False), (True, False), (True, True), (False, True)])
def test_finite_differences(name, masked, reverse):
    check_fd(name, masked=masked, reverse=reverse)


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("ids, bias", [(True, True), (False, False), (True, False)])
def test_finite_differences_ids_and_no_bias(name, ids, bias):
    check_fd(name, ids=ids, bias=bias, masked=True, reverse=ids)


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("tau, masked, reverse", [(1, False, False), (2, True, False), (3, True, True)])
def test_finite_differences_horizon(name, tau, masked, reverse):
    """The horizon sweep is the gradient of the truncated objective, over the whole state (h, c)."""
    check_fd(name, masked=masked, reverse=reverse, horizon=tau)


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize(
    "on_worker, masked, reverse, ids",
    [(True, True, False, False), (True, False, True, True), (False, True, True, False)],
)
def test_finite_differences_backward_in_blocks(name, on_worker, masked, reverse, ids, monkeypatch):
    """The backward loop block by block, each block's weight gradients on a second thread (or this one)."""
    monkeypatch.setattr(gated, "BLOCK_ROWS", 1)
    executor = ThreadPoolExecutor(1) if on_worker else None
    monkeypatch.setattr(blas, "worker", lambda: executor)
    assert gated.blocks(T, B, 2 * H) == [(3, 5), (1, 3), (0, 1)]
    try:
        check_fd(name, masked=masked, reverse=reverse, ids=ids)
    finally:
        if executor is not None:
            executor.shutdown()


@pytest.mark.parametrize("vocab, ids", [(3, True), (50, True), (7, False)])  # small and large vocabulary, floats
@pytest.mark.parametrize("bias", [True, False])
def test_input_term_by_gate_is_the_input_term_split_by_gate(vocab, ids, bias):
    rng = np.random.default_rng(5)
    G, n, steps, rows = 3, 5, 4, 2
    U, b = rng.standard_normal((G * n, vocab)), rng.standard_normal(G * n) if bias else None
    X = rng.integers(0, vocab, (steps, rows)) if ids else rng.standard_normal((steps, rows, vocab))
    want = elman.input_term(U, b, X, out=np.empty((steps, rows, G * n)))
    got = gated.input_term_by_gate(U, b, X, out=np.empty((G, steps, rows, n)))
    np.testing.assert_allclose(got, want.reshape(steps, rows, G, n).transpose(2, 0, 1, 3), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("name", CELLS)
def test_cache_gates_are_the_gates_of_the_definition(name):
    """cache.gate(k) (whatever the cache's layout) against the equations in the module docstrings."""
    rng = np.random.default_rng(4)
    cell, params, X, state0, _, _, _ = problem(name, rng)
    _, _, cache = cell.forward(params, X, state0)
    U, W, b = params["U"], params["W"], params["b"]
    sig = lambda a: 1.0 / (1.0 + np.exp(-a))  # noqa: E731
    for t in range(T):
        h = cache.state(t)[0]
        a = X[t] @ U.T + b
        r = h @ W.T
        if name == "lstm":
            want = [sig(a[:, :H] + r[:, :H]), sig(a[:, H : 2 * H] + r[:, H : 2 * H])]
            want += [np.tanh(a[:, 2 * H : 3 * H] + r[:, 2 * H : 3 * H]), sig(a[:, 3 * H :] + r[:, 3 * H :])]
        else:
            rt, zt = sig(a[:, :H] + r[:, :H]), sig(a[:, H : 2 * H] + r[:, H : 2 * H])
            want = [rt, zt, np.tanh(a[:, 2 * H :] + rt * (r[:, 2 * H :] + params["bn"]))]
        for k, w in enumerate(want):
            np.testing.assert_allclose(cache.gate(k)[t], w, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", CELLS)
def test_horizon_at_least_T_is_full_bptt(name):
    rng = np.random.default_rng(1)
    cell, params, X, state0, mask, R, S = problem(name, rng, masked=True)
    _, _, cache = cell.forward(params, X, state0, mask=mask)
    full = cell.backward(R, S, cache)
    _, _, cache = cell.forward(params, X, state0, mask=mask)
    cut = cell.backward(R, S, cache, horizon=T)
    np.testing.assert_allclose(cut[0], full[0], rtol=1e-12, atol=1e-14)
    for k in full[1]:
        np.testing.assert_allclose(cut[1][k], full[1][k], rtol=1e-12, atol=1e-14)
    for a, b in zip(cut[2], full[2]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", CELLS)
def test_padding_never_changes_state_or_gradients(name):
    """Padding leaves every state part alone: a padded batch equals each row run on its real steps."""
    rng = np.random.default_rng(2)
    cell, params, X, state0, mask, R, S = problem(name, rng, masked=True)
    for reverse in (False, True):
        out, state_n, cache = cell.forward(params, X, state0, mask=mask, reverse=reverse)
        _, grads, dstate0 = cell.backward(R * mask[..., None], S, cache, need_dX=False)
        total = {k: np.zeros_like(v) for k, v in grads.items()}
        for b in range(B):
            real = mask[:, b]
            o, s, c = cell.forward(params, X[real, b : b + 1], tuple(p[b : b + 1] for p in state0), reverse=reverse)
            np.testing.assert_allclose(out[real, b], o[:, 0], rtol=1e-13, atol=1e-15)
            for p, q in zip(state_n, s):
                np.testing.assert_allclose(p[b], q[0], rtol=1e-13, atol=1e-15)
            _, g, d0 = cell.backward(R[real, b : b + 1], tuple(w[b : b + 1] for w in S), c, need_dX=False)
            for k in total:
                total[k] += g[k]
            for p, q in zip(dstate0, d0):
                np.testing.assert_allclose(p[b], q[0], rtol=1e-12, atol=1e-14)
        for k in total:
            np.testing.assert_allclose(grads[k], total[k], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", CELLS)
def test_ids_are_one_hot_columns_of_U(name):
    rng = np.random.default_rng(3)
    cell, params, ids, state0, mask, R, S = problem(name, rng, ids=True, masked=True)
    onehot = np.eye(D)[ids]
    a = cell.forward(params, ids, state0, mask=mask)
    b = cell.forward(params, onehot, state0, mask=mask)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-14)
    ga, gb = cell.backward(R, S, a[2])[1], cell.backward(R, S, b[2])[1]
    for k in ga:
        np.testing.assert_allclose(ga[k], gb[k], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("ids", [False, True])
def test_step_is_forward_one_step_at_a_time(name, ids):
    rng = np.random.default_rng(4)
    cell, params, X, state0, _, _, _ = problem(name, rng, ids=ids)
    out, state_n, _ = cell.forward(params, X, state0)
    state = state0
    for t in range(T):
        h, state = cell.step(params, X[t], state)
        np.testing.assert_array_equal(h, out[t])
    for a, b in zip(state, state_n):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", CELLS)
def test_float32_stays_float32(name):
    rng = np.random.default_rng(5)
    cell = CELLS[name]()
    params = cell.init(D, H, True, rng, dtype="float32")
    assert all(p.dtype == np.float32 for p in params.values())
    X = rng.standard_normal((T, B, D)).astype(np.float32)
    out, state_n, cache = cell.forward(params, X, cell.zero_state(B, H, np.float32))
    dX, grads, dstate0 = cell.backward(np.ones_like(out), None, cache)
    assert out.dtype == dX.dtype == np.float32
    assert all(s.dtype == np.float32 for s in (*state_n, *dstate0, *grads.values()))


def test_shapes_and_init():
    rng = np.random.default_rng(6)
    assert LSTM().shapes(5, 4, True) == {"U": (16, 5), "W": (16, 4), "b": (16,)}
    assert GRU().shapes(5, 4, True) == {"U": (12, 5), "W": (12, 4), "b": (12,), "bn": (4,)}
    assert GRU().shapes(5, 4, False) == {"U": (12, 5), "W": (12, 4)}
    for cell in (LSTM(), GRU(), LSTM(forget_bias=1.0)):
        for scheme in ("pytorch", "xavier", "orthogonal", "identity", "spectral"):
            for bias in (True, False) if getattr(cell, "forget_bias", 0.0) == 0.0 else (True,):
                p = cell.init(5, 4, bias, rng, scheme=scheme, dtype="float64")
                assert {k: v.shape for k, v in p.items()} == cell.shapes(5, 4, bias)
                assert all(v.dtype == np.float64 for v in p.values())
    b0 = LSTM().init(5, 400, True, np.random.default_rng(7), dtype="float64")["b"]
    b1 = LSTM(forget_bias=1.0).init(5, 400, True, np.random.default_rng(7), dtype="float64")["b"]
    np.testing.assert_allclose(b1 - b0, np.r_[np.zeros(400), np.ones(400), np.zeros(800)], atol=1e-15)
    assert np.abs(b0).max() <= 2 / np.sqrt(400)


def test_bad_options_are_one_line_usage_errors():
    for make in (lambda: LSTM(nonlinearity="relu"), lambda: GRU(nonlinearity="sigmoid"), lambda: GRU(forget_bias=1.0)):
        with pytest.raises(UsageError) as e:
            make()
        assert "\n" not in str(e.value)
    with pytest.raises(UsageError, match="forget_bias"):
        LSTM(forget_bias=1.0).init(3, 2, False, np.random.default_rng(0))
    with pytest.raises(UsageError, match="horizon"):
        cell = LSTM()
        p = cell.init(3, 2, True, np.random.default_rng(0), dtype="float64")
        _, _, c = cell.forward(p, np.zeros((2, 1, 3)), cell.zero_state(1, 2, np.float64))
        cell.backward(None, None, c, horizon=0)


# --- parity with torch ---------------------------------------------------------------------------


def torch_pair(name, rng, *, bias=True, bidirectional=False, dtype="float64"):
    import torch

    torch.manual_seed(int(rng.integers(1 << 30)))
    cls = torch.nn.LSTM if name == "lstm" else torch.nn.GRU
    mod = cls(D, H, bias=bias, bidirectional=bidirectional).to(getattr(torch, dtype))
    with torch.no_grad():  # torch's draws are small; larger weights saturate some gates
        for p in mod.parameters():
            p.mul_(3.0)
    return mod


def params_from_torch(name, mod, suffix=""):
    """Our parameters from torch's: U = weight_ih, W = weight_hh, b = b_ih + b_hh
    (GRU: b = b_ih + (b_hr, b_hz, 0), bn = b_hn)."""
    get = {k: v.detach().numpy().copy() for k, v in mod.named_parameters()}
    p = {"U": get[f"weight_ih_l0{suffix}"], "W": get[f"weight_hh_l0{suffix}"]}
    if f"bias_ih_l0{suffix}" in get:
        b_ih, b_hh = get[f"bias_ih_l0{suffix}"], get[f"bias_hh_l0{suffix}"]
        if name == "lstm":
            p["b"] = b_ih + b_hh
        else:
            p["b"] = b_ih + np.r_[b_hh[: 2 * H], np.zeros(H)]
            p["bn"] = b_hh[2 * H :]
    return p


def torch_grads_as_ours(name, mod, suffix=""):
    """Torch's gradients in our layout, checking that the two bias gradients agree where they must."""
    g = {k: v.grad.numpy() for k, v in mod.named_parameters()}
    out = {"U": g[f"weight_ih_l0{suffix}"], "W": g[f"weight_hh_l0{suffix}"]}
    if f"bias_ih_l0{suffix}" in g:
        gi, gh = g[f"bias_ih_l0{suffix}"], g[f"bias_hh_l0{suffix}"]
        out["b"] = gi
        if name == "lstm":
            np.testing.assert_allclose(gh, gi, rtol=1e-13)
        else:
            np.testing.assert_allclose(gh[: 2 * H], gi[: 2 * H], rtol=1e-13)
            out["bn"] = gh[2 * H :]
    return out


def rel(a, b) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


@pytest.mark.parametrize("name, bias", list(itertools.product(CELLS, (True, False))))
def test_parity_with_torch(name, bias):
    import torch

    rng = np.random.default_rng(10)
    mod = torch_pair(name, rng, bias=bias)
    X = rng.standard_normal((T, B, D))
    state0 = tuple(0.5 * rng.standard_normal((B, H)) for _ in range(2 if name == "lstm" else 1))
    R, S = rng.standard_normal((T, B, H)), [rng.standard_normal((B, H)) for _ in state0]

    xt = torch.tensor(X, requires_grad=True)
    st = [torch.tensor(s[None], requires_grad=True) for s in state0]
    out_t, sn_t = mod(xt, tuple(st) if name == "lstm" else st[0])
    sn_t = sn_t if name == "lstm" else (sn_t,)
    loss = (out_t * torch.tensor(R)).sum() + sum((s[0] * torch.tensor(w)).sum() for s, w in zip(sn_t, S))
    loss.backward()

    cell = CELLS[name]()
    params = params_from_torch(name, mod)
    out, state_n, cache = cell.forward(params, X, state0)
    dX, grads, dstate0 = cell.backward(R, S, cache)
    assert rel(out, out_t.detach().numpy()) < 1e-10
    for a, b in zip(state_n, sn_t):
        assert rel(a, b.detach().numpy()[0]) < 1e-10
    tg = torch_grads_as_ours(name, mod)
    assert set(tg) == set(grads)
    for k in grads:
        assert rel(grads[k], tg[k]) < 1e-10, k
    assert rel(dX, xt.grad.numpy()) < 1e-10
    for a, b in zip(dstate0, st):
        assert rel(a, b.grad.numpy()[0]) < 1e-10


@pytest.mark.parametrize("name", CELLS)
def test_parity_with_torch_packed_bidirectional(name):
    """Variable lengths through pack_padded_sequence, both directions: our forward cell on the mask
    and our reverse cell (reverse=True) against torch's l0 and l0_reverse weights."""
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    rng = np.random.default_rng(11)
    mod = torch_pair(name, rng, bidirectional=True)
    lengths = np.array([5, 2, 4])
    mask = np.arange(T)[:, None] < lengths[None, :]
    X = rng.standard_normal((T, B, D))
    n_states = 2 if name == "lstm" else 1
    state0 = [0.5 * rng.standard_normal((2, B, H)) for _ in range(n_states)]
    R = rng.standard_normal((T, B, 2 * H)) * mask[..., None]
    S = [rng.standard_normal((2, B, H)) for _ in range(n_states)]

    xt = torch.tensor(X, requires_grad=True)
    st = [torch.tensor(s, requires_grad=True) for s in state0]
    packed = pack_padded_sequence(xt, torch.tensor(lengths), enforce_sorted=False)
    out_p, sn_t = mod(packed, tuple(st) if name == "lstm" else st[0])
    out_t, _ = pad_packed_sequence(out_p, total_length=T)
    sn_t = sn_t if name == "lstm" else (sn_t,)
    loss = (out_t * torch.tensor(R)).sum() + sum((s * torch.tensor(w)).sum() for s, w in zip(sn_t, S))
    loss.backward()
    tgrad = {k: v.grad.numpy() for k, v in mod.named_parameters()}

    cell = CELLS[name]()
    dX = np.zeros_like(X)
    for d, suffix in enumerate(("", "_reverse")):
        params = params_from_torch(name, mod, suffix)
        s0 = tuple(s[d] for s in state0)
        out, state_n, cache = cell.forward(params, X, s0, mask=mask, reverse=d == 1)
        Rd = R[..., d * H : (d + 1) * H]
        assert rel(out * mask[..., None], out_t.detach().numpy()[..., d * H : (d + 1) * H]) < 1e-10
        for a, b in zip(state_n, sn_t):
            assert rel(a, b.detach().numpy()[d]) < 1e-10
        dXd, grads, dstate0 = cell.backward(Rd, tuple(w[d] for w in S), cache)
        dX += dXd
        tg = torch_grads_as_ours(name, mod, suffix)
        for k in grads:
            assert rel(grads[k], tg[k]) < 1e-10, (k, suffix)
        for a, b in zip(dstate0, st):
            assert rel(a, b.grad.numpy()[d]) < 1e-10
    assert rel(dX, xt.grad.numpy()) < 1e-10
    assert tgrad  # torch produced its gradients
