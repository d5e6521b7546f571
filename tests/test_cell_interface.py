"""The recurrent-cell interface (bptt.layers.cell): Elman satisfies it, and a new cell
written here, registered from this file alone, trains, gradchecks and checkpoints
through the CLI without any other module knowing about it."""

from __future__ import annotations

import numpy as np
import pytest

from bptt import RNNModel
from bptt.analysis.gradcheck import gradcheck, relative_error
from bptt.cli import main as cli_main
from bptt.errors import UsageError
from bptt.layers import cells, recompute
from bptt.layers.cell import Cell
from bptt.layers.elman import Elman
from bptt.training import checkpoint, runs


class Toy(Cell):
    """h_t = softsign(W h_{t-1} + U x_t + b), softsign(a) = a / (1 + |a|): a cell no
    module of bptt knows, written plainly step by step (no code shared with Elman)."""

    name = "toy"
    nonlinearities = ("softsign",)

    def __init__(self, nonlinearity="tanh", **options):
        # the model passes its nonlinearity option; this cell has one fixed f
        super().__init__("softsign", **options)

    def shapes(self, D, H, bias):
        return {"U": (H, D), "W": (H, H), "b": (H,)} if bias else {"U": (H, D), "W": (H, H)}

    def init(self, D, H, bias, rng, scheme="pytorch", scale=1.0, dtype="float32"):
        k = 1.0 / np.sqrt(H)
        return {n: rng.uniform(-k, k, s).astype(dtype) for n, s in self.shapes(D, H, bias).items()}

    @staticmethod
    def _x(U, x):
        return U[:, x].T if x.dtype.kind in "iu" else x @ U.T

    def forward(self, params, X, state0, mask=None, reverse=False):
        order = range(X.shape[0] - 1, -1, -1) if reverse else range(X.shape[0])
        h = state0[0]
        states, pre, out = [h], [], np.zeros((X.shape[0],) + h.shape, h.dtype)
        for t in order:
            a = self._x(params["U"], X[t]) + h @ params["W"].T + params.get("b", 0)
            new = a / (1 + np.abs(a))
            if mask is not None:
                new = np.where(mask[t][:, None], new, h)
            h = new
            states.append(h)
            pre.append(a)
            out[t] = h
        return out, (h,), ToyCache(list(order), X, mask, states, pre, params)

    def backward(self, dout, dstate_n, cache, need_dX=True, horizon=None):
        self.refuse_horizon(horizon)
        p = cache.params
        grads = {n: np.zeros_like(v) for n, v in p.items()}
        floats = cache.X.dtype.kind == "f"
        dX = np.zeros(cache.X.shape[:2] + (p["U"].shape[1],), p["W"].dtype) if need_dX and floats else None
        dh = np.zeros_like(cache.states[0]) if dstate_n is None else dstate_n[0].copy()
        for i in range(len(cache.order) - 1, -1, -1):
            t = cache.order[i]
            if dout is not None:
                dh = dh + dout[t]
            keep = np.ones(dh.shape[0], bool) if cache.mask is None else cache.mask[t]
            da = dh / (1 + np.abs(cache.pre[i])) ** 2 * keep[:, None]
            grads["W"] += da.T @ cache.states[i]
            if "b" in grads:
                grads["b"] += da.sum(axis=0)
            if floats:
                grads["U"] += da.T @ cache.X[t]
                if dX is not None:
                    dX[t] = da @ p["U"]
            else:
                np.add.at(grads["U"].T, cache.X[t], da)
            dh = da @ p["W"] + dh * ~keep[:, None]
        return dX, grads, (dh,)

    def step(self, params, x, state):
        a = self._x(params["U"], x) + state[0] @ params["W"].T + params.get("b", 0)
        h = a / (1 + np.abs(a))
        return h, (h,)


class ToyCache:
    def __init__(self, order, X, mask, states, pre, params):
        self.order, self.X, self.mask, self.states, self.pre, self.params = order, X, mask, states, pre, params

    def state(self, t):
        return (self.states[t],)


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(cells.CELLS, "toy", Toy)  # the one registry line, from this file


# ---- Elman satisfies the interface ----------------------------------------------


def _elman_problem(ids: bool, rng, T=5, B=3, D=4, H=3):
    cell = cells.make_cell("elman")
    params = cell.init(D, H, True, rng, dtype="float64")
    X = rng.integers(0, D, (T, B)) if ids else rng.standard_normal((T, B, D))
    mask = np.arange(T)[:, None] < np.array([T, 2, 4])[None, :]
    state0 = (0.5 * rng.standard_normal((B, H)),)
    return cell, params, X, mask, state0


def test_registry_names_elman_and_refuses_unknown_cells():
    assert cells.CELLS["elman"] is Elman and isinstance(cells.make_cell("elman"), Cell)
    assert RNNModel(input_size=2, output_size=2).cell.name == "elman"
    with pytest.raises(UsageError, match="cell: got 'nope', expected one of elman"):
        cells.make_cell("nope")
    with pytest.raises(ValueError, match="cell: got 'nope'"):
        RNNModel(input_size=2, output_size=2, cell="nope")
    with pytest.raises(UsageError, match="forget_bias: not an option of the elman cell"):
        cells.make_cell("elman", forget_bias=1.0)


@pytest.mark.parametrize("ids", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_elman_forward_returns_state_tuples_and_honours_masks(ids, reverse):
    rng = np.random.default_rng(0)
    cell, params, X, mask, state0 = _elman_problem(ids, rng)
    out, state_n, cache = cell.forward(params, X, state0, mask, reverse)
    assert isinstance(state_n, tuple) and len(state_n) == cell.n_states == 1
    assert out.shape == (5, 3, 3) and state_n[0].shape == (3, 3)
    for b, length in enumerate([5, 2, 4]):  # each sequence alone, unpadded: the same states
        alone, sn, _ = cell.forward(params, X[:length, b : b + 1], (state0[0][b : b + 1],), None, reverse)
        np.testing.assert_allclose(out[:length, b], alone[:, 0], rtol=1e-14)
        np.testing.assert_allclose(state_n[0][b], sn[0][0], rtol=1e-14)
    assert all(isinstance(cache.state(t), tuple) for t in range(6))
    np.testing.assert_array_equal(cache.state(0)[0], state0[0])
    np.testing.assert_array_equal(cache.state(5)[0], state_n[0])


@pytest.mark.parametrize("ids", [False, True])
def test_elman_step_is_one_step_of_forward(ids):
    rng = np.random.default_rng(1)
    cell, params, X, _, state0 = _elman_problem(ids, rng, T=1)
    out, state_n, _ = cell.forward(params, X, state0)
    h, state = cell.step(params, X[0], state0)
    np.testing.assert_allclose(h, out[0], rtol=1e-14)
    np.testing.assert_allclose(state[0], state_n[0], rtol=1e-14)


def _cell_fd_check(cell, params, X, mask, state0, reverse, rng):
    """Every parameter, dX and dstate0 of one cell against central differences, float64."""
    T, B = X.shape[:2]
    G = rng.standard_normal((T, B, params["W"].shape[0]))
    Gn = rng.standard_normal(state0[0].shape)

    def objective():
        out, sn, _ = cell.forward(params, X, state0, mask, reverse)
        return float((out * G).sum() + (sn[0] * Gn).sum())

    _, _, cache = cell.forward(params, X, state0, mask, reverse)
    dX, grads, dstate0 = cell.backward(G, (Gn,), cache)
    assert isinstance(dstate0, tuple) and set(grads) == set(params)
    tensors = dict(params, h0=state0[0])
    analytic = dict(grads, h0=dstate0[0])
    if X.dtype.kind == "f":
        tensors["X"], analytic["X"] = X, dX
    for name, theta in tensors.items():
        flat = theta.reshape(-1)
        numeric = np.empty(flat.size)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + 1e-6
            up = objective()
            flat[i] = old - 1e-6
            down = objective()
            flat[i] = old
            numeric[i] = (up - down) / 2e-6
        assert relative_error(analytic[name].reshape(-1), numeric) < 1e-6, name


@pytest.mark.parametrize("ids", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_elman_backward_is_the_gradient_with_masks_and_reverse(ids, reverse):
    rng = np.random.default_rng(2)
    cell, params, X, mask, state0 = _elman_problem(ids, rng)
    _cell_fd_check(cell, params, X, mask, state0, reverse, rng)


@pytest.mark.parametrize("reverse", [False, True])
def test_toy_backward_is_the_gradient(reverse):
    rng = np.random.default_rng(3)
    cell = Toy()
    params = cell.init(4, 3, True, rng, dtype="float64")
    X = rng.standard_normal((5, 3, 4))
    mask = np.arange(5)[:, None] < np.array([5, 2, 4])[None, :]
    _cell_fd_check(cell, params, X, mask, (0.5 * rng.standard_normal((3, 3)),), reverse, rng)


@pytest.mark.parametrize("cell_name", ["elman", "toy"])
def test_recompute_wraps_any_cell(toy, cell_name):
    """The memory-saving mode runs through forward/backward only: same results as the full pass."""
    rng = np.random.default_rng(4)
    cell = cells.make_cell(cell_name)
    params = cell.init(4, 3, True, rng, dtype="float64")
    X = rng.standard_normal((7, 2, 4))
    mask = np.arange(7)[:, None] < np.array([7, 4])[None, :]
    state0 = (rng.standard_normal((2, 3)),)
    dout, dhn = rng.standard_normal((7, 2, 3)), (rng.standard_normal((2, 3)),)
    for reverse in (False, True):
        out1, sn1, c1 = cell.forward(params, X, state0, mask, reverse)
        wrapped = recompute.Recomputed(cell, every=3)
        out2, sn2, c2 = wrapped.forward(params, X, state0, mask, reverse)
        np.testing.assert_allclose(out2, out1, rtol=0, atol=1e-12)
        np.testing.assert_allclose(sn2[0], sn1[0], rtol=0, atol=1e-12)
        for t in range(8):
            np.testing.assert_allclose(c2.state(t)[0], c1.state(t)[0], rtol=0, atol=1e-12)
        dX1, g1, ds1 = cell.backward(dout, dhn, c1)
        dX2, g2, ds2 = wrapped.backward(dout, dhn, c2)
        np.testing.assert_allclose(dX2, dX1, rtol=0, atol=1e-12)
        np.testing.assert_allclose(ds2[0], ds1[0], rtol=0, atol=1e-12)
        for k in g1:
            np.testing.assert_allclose(g2[k], g1[k], rtol=0, atol=1e-12)


def test_model_step_goes_through_the_cell(toy):
    rng = np.random.default_rng(5)
    for cell in ("elman", "toy"):
        model = RNNModel(vocab_size=5, embedding_size=3, hidden_size=4, num_layers=2, cell=cell, dtype="float64")
        ids = rng.integers(0, 5, (2, 6))
        fwd = model.eval().forward(ids)
        h = model.zero_state(2)
        for t in range(6):
            z, h = model.step(ids[:, t], h)
            np.testing.assert_allclose(z, fwd.Z[t], rtol=1e-12)
        np.testing.assert_allclose(h, fwd.hn, rtol=1e-12)


# ---- a new cell through the model and the CLI ----------------------------------


@pytest.mark.parametrize(
    "options",
    [
        dict(mode="many-to-many", num_layers=2, bidirectional=True),
        dict(mode="many-to-one", pooling="last", checkpoint_every=2),
        dict(mode="one-to-many", cond_size=2),
    ],
    ids=["bi-stack", "recompute", "one-to-many"],
)
def test_toy_cell_gradchecks_through_the_model(toy, options):
    rng = np.random.default_rng(6)
    model = RNNModel(input_size=3, hidden_size=3, output_size=2, cell="toy", dtype="float64", **options)
    assert {k.split(".")[1] for k in model.params if k.startswith("rnn0.")} == {"U", "W", "b"}
    x = rng.standard_normal((2, 4, 3))
    y = rng.integers(0, 2, (2, 4) if model.mode != "many-to-one" else (2,))
    cond = rng.standard_normal((2, 2)) if model.mode == "one-to-many" else None
    mask = None if cond is not None else np.array([4, 2])
    report = gradcheck(model, x, y, mask, cond=cond)
    assert set(report) == set(model.params) and max(report.values()) < 1e-6, report


def test_toy_cell_refuses_a_horizon(toy):
    model = RNNModel(input_size=2, hidden_size=2, output_size=2, cell="toy")
    x, y = np.zeros((1, 3, 2)), np.zeros((1, 3), int)
    with pytest.raises(UsageError, match="horizon: the toy cell has no per-output truncation"):
        model.loss_and_grads(x, y, horizon=2)


@pytest.mark.slow
def test_toy_cell_trains_gradchecks_and_resumes_through_the_cli(toy, tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("abcabcabdabcabcabd\n" * 40, encoding="utf-8")
    common = ["--data", str(corpus), "--cell", "toy", "--hidden-size", "6", "--seq-length", "8"]
    common += ["--batch-size", "4", "--eval-every", "20", "--samples", "0"]
    run = tmp_path / "run"
    assert cli_main(["train", *common, "--max-epochs", "1", "--out", str(run)]) == 0
    ckpt = checkpoint.load(run)
    assert ckpt.model_config["cell"] == "toy"
    model, _ = runs.load_run(run)
    assert isinstance(model.cell, Toy)
    first = {k: v.copy() for k, v in ckpt.params.items()}
    assert cli_main(["train", *common, "--max-epochs", "2", "--resume", str(run)]) == 0
    again = checkpoint.load(run)
    assert again.train_state["progress"]["epoch"] > ckpt.train_state["progress"]["epoch"]
    assert any(not np.array_equal(again.params[k], first[k]) for k in first)
    capsys.readouterr()
    argv = ["gradcheck", "--cell", "toy", "--num-layers", "2", "--uneven", "--h0", "--seq-length", "4"]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "rnn1.W" in out and "below threshold" in out


def test_checkpoint_without_a_cell_reads_as_elman(tmp_path):
    model = RNNModel(vocab_size=4, hidden_size=3)
    config = {k: v for k, v in model.config.items() if k != "cell"}  # as bptt before cells wrote it
    checkpoint.save(tmp_path / "old", model.params, config, {"progress": {"step": 1}})
    loaded, _ = runs.load_run(tmp_path / "old")
    assert loaded.cell.name == "elman"
    for k, v in model.params.items():
        np.testing.assert_array_equal(loaded.params[k], v)
