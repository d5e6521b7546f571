"""What the trainers optimise, checked update by update against the truncated objective
written out independently in torch.

The gradient tests (finite differences, torch parity, RTRL) check `RNNModel`'s
gradient for a loss the test builds itself. These tests check the gradient the
trainers actually apply: real training runs through the CLI (SGD, float64, no
clipping, tiny data), every update's parameter change recorded, and compared
with -lr * (the gradient of the objective the update should minimise), which
is written here from its definition as a torch program and differentiated by
autograd. No bptt code computes a loss, a mask, a window, a carried state or a
gradient in the reference; bptt only provides the data (the streams, the batches).

Language models (`bptt.training.tbptt.Trainer`), B streams read k1 steps at a time:

    stateful chunking   L = the k1 new steps, from the state the previous forward pass
                        reached at the chunk's start (a constant)
    TBPTT(k1, k2)       forward over the last k2 steps, the loss on the last k1 only,
                        from the previous forward pass's state at the window's start
    horizon tau         L = sum over the k1 new steps of L_t(h~_t), h~_t recomputed over
                        tau steps from the forward pass's h_{t-tau} held constant

Dataset tasks (`bptt.training.batches.BatchTrainer`): every task's bucketed
batches of whole padded sequences, L = the model's loss on the batch, exact BPTT.
"""

from __future__ import annotations

import numpy as np
import pytest

from bptt.cli import main
from bptt.training import optim
from bptt.training.batches import Batch, BatchTrainer
from bptt.training.loop import TrainOptions
from bptt.training.tbptt import Trainer

torch = pytest.importorskip("torch")

LR = 0.3
ACT = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "identity": lambda a: a,
}


# ---- the model, from its definition ---------------------------------------------


def layer_inputs(cfg: dict, P: dict, inputs: np.ndarray) -> torch.Tensor:
    """x_t, batch-first (B, T, D): embedding rows (and feature-column rows), one-hot, or the features."""
    if cfg["vocab_size"] is None:
        return torch.tensor(np.asarray(inputs, np.float64))
    ids = torch.tensor(np.asarray(inputs, np.int64))
    if cfg["embedding_size"] is None:
        return torch.nn.functional.one_hot(ids, cfg["vocab_size"]).double()
    if ids.ndim == 2:
        return P["embed.E"][ids]
    tables = ["embed.E"] + [f"embed{f}.E" for f in range(1, ids.shape[2])]
    return torch.cat([P[name][ids[..., f]] for f, name in enumerate(tables)], dim=2)


def run_layers(cfg: dict, P: dict, x: torch.Tensor, h0: torch.Tensor, valid: torch.Tensor):
    """h^l_t = f(U^l h^{l-1}_t + W^l h^l_{t-1} + b^l), h carried unchanged over padded steps.

    x (B, T, D), h0 (L * dirs, B, H), valid (B, T) bool. Returns (top (B, T, dirs * H),
    final states (L * dirs, B, H), states [k][t] = h after t + 1 steps of layer-direction k)."""
    f, T = ACT[cfg["nonlinearity"]], x.shape[1]
    dirs = 2 if cfg["bidirectional"] else 1
    finals, states = [], []
    for layer in range(cfg["num_layers"]):
        outs = []
        for d in range(dirs):
            name = f"rnn{layer}" + ("_reverse" if d else "")
            U, W, b = P[f"{name}.U"], P[f"{name}.W"], P.get(f"{name}.b")
            h = h0[layer * dirs + d]
            out = [None] * T
            for t in reversed(range(T)) if d else range(T):
                a = x[:, t] @ U.T + h @ W.T
                if b is not None:
                    a = a + b
                h = torch.where(valid[:, t, None], f(a), h)
                out[t] = h
            finals.append(h)
            states.append(out)
            outs.append(torch.stack(out, dim=1))
        x = torch.cat(outs, dim=2)
    return x, torch.stack(finals), states


def model_loss(cfg: dict, P: dict, inputs, targets, mask=None, cond=None, loss_mask=None, h0=None):
    """(L, the loss summed over its terms, the number of terms) on one batch (batch-first
    arrays), from the definitions in the docs:
    heads softmax + cross-entropy, sigmoid + binary cross-entropy, linear + squared error
    (no 1/2); reductions "sum-over-time" (sum over t, mean over sequences), "mean"
    (over the loss terms, and over K outputs for sigmoid/linear), "sum"."""
    assert cfg["dropout"] == 0
    x = layer_inputs(cfg, P, inputs)
    B, T = x.shape[:2]
    valid = torch.ones(B, T, dtype=torch.bool)
    if mask is not None:
        m = np.asarray(mask)
        valid = torch.tensor(m.astype(bool) if m.ndim == 2 else np.arange(T)[None] < m[:, None])
    L, H = cfg["num_layers"] * (2 if cfg["bidirectional"] else 1), cfg["hidden_size"]
    if cond is not None:
        c = torch.tensor(np.asarray(cond, np.float64))
        h0 = torch.tanh(c @ P["h0map.Q"].T + P["h0map.q"]).reshape(B, cfg["num_layers"], H).permute(1, 0, 2)
    elif h0 is None:
        h0 = torch.zeros(L, B, H, dtype=torch.float64)
    top, finals, _ = run_layers(cfg, P, x, h0, valid)
    K, head = cfg["output_size"], cfg["head"]
    if cfg["mode"] in ("many-to-many", "one-to-many"):
        Z = top @ P["head.V"].T + P["head.c"]  # (B, T, K)
        terms = valid.clone()
        if loss_mask is not None:
            terms &= torch.tensor(np.asarray(loss_mask, bool))
    else:
        feats = []  # one per pooling, side by side ("mean,max": [mean_t h_t; max_t h_t])
        for kind in ["last"] if cfg["mode"] == "one-to-one" else cfg["pooling"].split(","):
            if kind == "last":
                n_top = 2 if cfg["bidirectional"] else 1
                feats.append(torch.cat(list(finals[-n_top:]), dim=1))
            elif kind == "mean":
                feats.append((top * valid[..., None]).sum(1) / valid.sum(1, keepdim=True))
            else:
                feats.append(top.masked_fill(~valid[..., None], -torch.inf).max(1).values)
        feat = torch.cat(feats, dim=1)
        Z = (feat @ P["head.V"].T + P["head.c"])[:, None]  # (B, 1, K): one row per sequence
        terms = torch.ones(B, 1, dtype=torch.bool)
    Y = np.asarray(targets)
    if cfg["mode"] not in ("many-to-many", "one-to-many"):
        Y = Y[:, None]
    if head == "softmax":
        y = torch.tensor(Y.astype(np.int64))
        terms &= y != cfg["ignore_index"]
        logp = torch.log_softmax(Z, dim=2)
        per = -torch.gather(logp, 2, torch.where(terms, y, 0)[..., None])[..., 0]
        per_row = 1
    else:
        y = torch.tensor(Y.astype(np.float64)).reshape(Z.shape)
        if head == "sigmoid":
            per = (torch.nn.functional.softplus(Z) - y * Z).sum(2)  # -y log s(z) - (1-y) log(1-s(z))
        else:
            per = ((Z - y) ** 2).sum(2)
        per_row = K
    total, n = (per * terms).sum(), int(terms.sum())
    if cfg["reduction"] == "sum-over-time":
        return total / B, total, n
    if cfg["reduction"] == "mean":
        return total / (n * per_row), total, n
    return total, total, n


def leaves(params: dict) -> dict:
    return {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}


def grads_of(loss: torch.Tensor, P: dict) -> dict:
    g = torch.autograd.grad(loss, list(P.values()), allow_unused=True)
    return {k: np.zeros(P[k].shape) if gk is None else gk.numpy() for k, gk in zip(P, g)}


# ---- recording what the trainer applies -------------------------------------------


class Recorder:
    """Every SGD step: the parameters before and after; and the trainer that took it."""

    def __init__(self, monkeypatch, trainer_cls):
        self.steps, self.trainers = [], []
        step, init = optim.SGD.step, trainer_cls.__init__

        def recording_step(opt, params, grads):
            before = {k: v.copy() for k, v in params.items()}
            step(opt, params, grads)
            self.steps.append((before, {k: v.copy() for k, v in params.items()}))

        def recording_init(trainer, *args, **kw):
            init(trainer, *args, **kw)
            self.trainers.append(trainer)

        monkeypatch.setattr(optim.SGD, "step", recording_step)
        monkeypatch.setattr(trainer_cls, "__init__", recording_init)

    @property
    def trainer(self):
        assert len(self.trainers) == 1
        return self.trainers[0]


def assert_update(before: dict, after: dict, expected_grads: dict, what: str) -> None:
    assert set(expected_grads) == set(before), what
    for k in before:
        np.testing.assert_allclose(
            after[k] - before[k], -LR * expected_grads[k], rtol=1e-7, atol=1e-13, err_msg=f"{what}: {k}"
        )


def train(tmp_path, *argv) -> None:
    argv = [
        "train",
        *argv,
        "--optimizer",
        "sgd",
        "--lr",
        str(LR),
        "--no-clip-norm",
        "--dtype",
        "float64",
        "--out",
        tmp_path / "run",
        "--seed",
        "3",
    ]
    assert main([str(a) for a in argv]) == 0


# ---- language models: the three truncations ---------------------------------------

CORPUS = "the cat sat on the mat; a bat ate the rat. " * 3  # 132 characters, 11 symbols


def lm_reference(cfg: dict, theta: dict, inputs: np.ndarray, targets: np.ndarray, n_updates: int, k1, k2, tau):
    """The parameters after each of `n_updates` updates of truncated BPTT on streams, and each
    update's mean loss per new token; on streams
    inputs/targets (B, n), from the definition (module docstring). Epochs restart at
    position 0 from h = 0; chunk k of an epoch holds positions [k k1, (k+1) k1)."""
    B, n = inputs.shape
    n_chunks = -(-n // k1)
    L, H = cfg["num_layers"], cfg["hidden_size"]
    keep = k2 - k1  # steps before the chunk that the window also spans
    theta = {k: v.copy() for k, v in theta.items()}
    out, losses = [], []
    for u in range(n_updates):
        k = u % n_chunks
        if k == 0:
            carried = {0: torch.zeros(L, B, H, dtype=torch.float64)}  # h after position p, keyed by p
        lo, hi = k * k1, min((k + 1) * k1, n)
        s = max(lo - keep, 0)
        h_start = carried[s]  # a constant: computed by an earlier forward pass
        P = leaves(theta)
        x = layer_inputs(cfg, P, inputs[:, s:hi])
        y = torch.tensor(targets[:, s:hi])
        T = hi - s
        valid = torch.ones(B, T, dtype=torch.bool)
        if tau is None:
            top, _, states = run_layers(cfg, P, x, h_start, valid)
            Z = top[:, lo - s :] @ P["head.V"].T + P["head.c"]
            loss = torch.nn.functional.cross_entropy(Z.reshape(-1, Z.shape[2]), y[:, lo - s :].reshape(-1))
        else:
            with torch.no_grad():
                _, _, states = run_layers(cfg, P, x, h_start, valid)
            hs = [h_start[0]] + [h.detach() for h in states[0]]  # hs[i]: h after i steps of the window
            loss = 0.0
            for i in range(lo - s + 1, T + 1):  # the loss on step i (1-based) of the window
                j = max(i - tau, 0)  # backpropagates through steps j+1..i only
                _, fin, _ = run_layers(cfg, P, x[:, j:i], hs[j][None], valid[:, j:i])
                z = fin[0] @ P["head.V"].T + P["head.c"]
                loss = loss + torch.nn.functional.cross_entropy(z, y[:, i - 1], reduction="sum")
            loss = loss / (B * (hi - lo))
        losses.append(loss.item())
        g = grads_of(loss, P)
        # what the next window starts from: this forward pass's state at that position
        nxt = max(hi - keep, 0)
        if hi < n and nxt > s:
            carried[nxt] = torch.stack([states[layer][nxt - s - 1] for layer in range(L)]).detach()
        theta = {kk: v - LR * g[kk] for kk, v in theta.items()}
        out.append(theta)
    return out, losses


LM_CASES = {
    "stateful chunking": dict(argv=["--seq-length", "4", "--num-layers", "1"], k2=4, tau=None),
    "stateful chunking, 2 layers": dict(argv=["--seq-length", "4", "--num-layers", "2"], k2=4, tau=None),
    "TBPTT(3, 7)": dict(argv=["--seq-length", "3", "--backprop-steps", "7", "--num-layers", "1"], k2=7, tau=None),
    "TBPTT(4, 6), 2 layers, embedding": dict(
        argv=["--seq-length", "4", "--backprop-steps", "6", "--num-layers", "2", "--embedding-size", "3"],
        k2=6,
        tau=None,
    ),
    "TBPTT(1, 3)": dict(argv=["--seq-length", "1", "--backprop-steps", "3", "--num-layers", "1"], k2=3, tau=None),
    "TBPTT(3, 7), memory-saving BPTT": dict(
        argv=["--seq-length", "3", "--backprop-steps", "7", "--num-layers", "1", "--checkpoint-every", "2"],
        k2=7,
        tau=None,
    ),
    "horizon 3": dict(argv=["--seq-length", "4", "--horizon", "3", "--num-layers", "1"], k2=6, tau=3),
    "horizon 5, relu": dict(
        argv=["--seq-length", "3", "--horizon", "5", "--num-layers", "1", "--nonlinearity", "relu"], k2=7, tau=5
    ),
}


SLOW = {"TBPTT(1, 3)", "horizon 5, relu"}  # over 5 s on a loaded 2-core machine


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in LM_CASES], ids=list(LM_CASES)
)
def test_language_model_updates_follow_the_truncated_objective(tmp_path, monkeypatch, name):
    """Two epochs (a short last chunk, an epoch restart, windows that start mid-stream)."""
    case = LM_CASES[name]
    (tmp_path / "corpus.txt").write_text(CORPUS)
    returned = []
    update = Trainer.update
    monkeypatch.setattr(Trainer, "update", lambda trainer, X, Y: returned.append(update(trainer, X, Y)) or returned[-1])
    rec = Recorder(monkeypatch, Trainer)
    train(
        tmp_path,
        "--data",
        tmp_path / "corpus.txt",
        "--valid-fraction",
        "0.1",
        "--hidden-size",
        "3",
        "--batch-size",
        "3",
        "--max-epochs",
        "2",
        "--samples",
        "0",
        *case["argv"],
    )
    trainer = rec.trainer
    k1 = trainer.opts.seq_length
    streams = trainer.streams
    n = streams.inputs.shape[1]
    assert n % k1 != 0 or k1 == 1, "the case should have a short last chunk"
    assert len(rec.steps) == 2 * -(-n // k1)
    expected, expected_loss = lm_reference(
        trainer.model.config.to_dict(),
        rec.steps[0][0],
        np.asarray(streams.inputs),
        np.asarray(streams.targets),
        len(rec.steps),
        k1,
        case["k2"],
        case["tau"],
    )
    theta = rec.steps[0][0]
    for u, ((before, after), want) in enumerate(zip(rec.steps, expected)):
        # the update the trainer applied, against the reference's from the same parameters
        g = {k: (theta[k] - want[k]) / LR for k in theta}
        assert_update(before, after, g, f"{name}, update {u + 1}")
        theta = want
    np.testing.assert_allclose(returned, expected_loss, rtol=1e-10)  # the loss per token it reports


# ---- dataset tasks: bucketed batches of whole sequences ---------------------------------

CONLLU = """\
1	the	_	DET	_	_	0	_	_	_
2	cat	_	NOUN	_	_	0	_	_	_
3	sat	_	VERB	_	_	0	_	_	_

1	a	_	DET	_	_	0	_	_	_
2	dog	_	NOUN	_	_	0	_	_	_

1	cats	_	NOUN	_	_	0	_	_	_
2	sat	_	VERB	_	_	0	_	_	_
3	on	_	ADP	_	_	0	_	_	_
4	mats	_	NOUN	_	_	0	_	_	_

1	dogs	_	NOUN	_	_	0	_	_	_
2	ran	_	VERB	_	_	0	_	_	_

1	the	_	DET	_	_	0	_	_	_
2	mat	_	NOUN	_	_	0	_	_	_
3	sat	_	VERB	_	_	0	_	_	_
4	on	_	ADP	_	_	0	_	_	_
5	a	_	DET	_	_	0	_	_	_

"""

TSV = "text\tlabel\na good film\t1\nbad\t0\nnot good at all\t0\ngood good\t1\na bad bad film\t0\n"
TSV3 = "text\tlabel\na good film\tpos\nbad\tneg\nnot good at all\tneg\nfine\tmid\ngood good\tpos\nso so\tmid\n"
CSV_ONE = "input,target\n0.1 0.5 -0.3,0.2\n0.4,-0.1\n-0.2 0.3,0.5\n0.9 -0.5 0.1 0.2,0.0\n0.3 0.3,0.7\n"
CSV_STEPS = "input,target\n0.1 0.5 -0.3,0.2 0.1 0.0\n0.4,-0.1\n-0.2 0.3,0.5 0.4\n0.9 -0.5 0.1 0.2,0.0 0.1 0.2 0.3\n"

SMALL = ["--hidden-size", "3", "--batch-size", "2", "--max-epochs", "2"]
# the reference below is the Elman recursion without dropout: classify's defaults (an LSTM with
# embedding and output dropout and, at word level, a character encoder) are set back to it; word
# dropout and the split act on the batches
ELMAN = ["--cell", "elman", "--input-dropout", "0", "--output-dropout", "0"]
CLASSIFY_WORDS = [*ELMAN, "--char-hidden-size", "0"]
# the tagger's word-level model alone (this reference has no character encoder): no encoder, no feature
# columns, and the Elman cell instead of the tagger's default LSTM
TAG_ELMAN = ["--cell", "elman"]
TAG_WORDS_ONLY = [*TAG_ELMAN, "--char-hidden-size", "0", "--features", "none"]
TASKS = {
    "tag, bidirectional, feature columns": (
        "tag.conllu",
        CONLLU,
        [
            "--task",
            "tag",
            "--embedding-size",
            "3",
            "--features",
            "suffix,shape",
            "--feature-embedding-size",
            "2",
            "--char-hidden-size",
            "0",
            *TAG_ELMAN,
        ],
    ),
    "tag, unidirectional, word dropout": (
        "tag.conllu",
        CONLLU,
        ["--task", "tag", "--embedding-size", "3", "--unidirectional", "--word-dropout", "0.3", *TAG_WORDS_ONLY],
    ),
    "classify two labels, last": (
        "c.tsv",
        TSV,
        ["--task", "classify", "--embedding-size", "3", "--pooling", "last", *CLASSIFY_WORDS],
    ),
    "classify defaults (bidirectional, last,mean,max, a valid split)": (
        "c.tsv",
        TSV + "a good good film\t1\nbad film\t0\nnot bad\t1\ngood\t1\nnot good\t0\nbad bad\t0\n",
        ["--task", "classify", "--embedding-size", "3", "--pooling", "last,mean,max", *CLASSIFY_WORDS],
    ),
    "classify two labels, mean, bidirectional, 2 layers": (
        "c.tsv",
        TSV,
        ["--task", "classify", "--pooling", "mean", "--bidirectional", "--num-layers", "2", *CLASSIFY_WORDS],
    ),
    "classify three labels, max, characters": (
        "c3.tsv",
        TSV3,
        ["--task", "classify", "--pooling", "max", "--level", "char", *ELMAN],
    ),
    "regress many-to-one": ("r.csv", CSV_ONE, ["--task", "regress"]),
    "regress many-to-many": ("r.csv", CSV_STEPS, ["--task", "regress", "--nonlinearity", "relu"]),
    "tag, memory-saving BPTT": (
        "tag.conllu",
        CONLLU,
        ["--task", "tag", "--embedding-size", "3", "--num-layers", "2", "--checkpoint-every", "2", *TAG_WORDS_ONLY],
    ),
    "spell (one-to-many)": (None, None, ["--task", "spell", "--max-number", "30", "--embedding-size", "3"]),
    "adding": (None, None, ["--task", "adding", "--length", "6", "--batches-per-epoch", "3"]),
    "copy": (None, None, ["--task", "copy", "--length", "2", "--batches-per-epoch", "2"]),
    "temporal-order": (None, None, ["--task", "temporal-order", "--length", "10", "--batches-per-epoch", "3"]),
}
LONGMEM = ["--valid-size", "4", "--test-size", "4", "--keep-training"]


@pytest.mark.parametrize("name", list(TASKS))
def test_task_updates_follow_the_batch_loss(tmp_path, monkeypatch, name):
    file, text, argv = TASKS[name]
    data = []
    if file is not None:
        (tmp_path / file).write_text(text)
        data = ["--data", tmp_path / file]
    if argv[1] in ("adding", "copy", "temporal-order"):
        argv = argv + LONGMEM
    batches, returned = [], []
    update = BatchTrainer.update

    def recording_update(trainer, batch):
        batches.append(batch)
        returned.append(update(trainer, batch))
        return returned[-1]

    monkeypatch.setattr(BatchTrainer, "update", recording_update)
    rec = Recorder(monkeypatch, BatchTrainer)
    train(tmp_path, *argv, *data, *SMALL)
    cfg = rec.trainer.model.config.to_dict()
    assert len(rec.steps) == len(batches) >= 3
    if file is not None or argv[1] == "spell":  # datasets: padded batches of whole sequences
        assert any(b.mask is not None and np.min(b.mask) < b.inputs.shape[1] for b in batches), "no padding"
    for u, ((before, after), batch, (mean, n)) in enumerate(zip(rec.steps, batches, returned)):
        P = leaves(before)
        loss, total, n_terms = model_loss(cfg, P, batch.inputs, batch.targets, batch.mask, batch.cond, batch.loss_mask)
        assert_update(before, after, grads_of(loss, P), f"{name}, update {u + 1}")
        assert n == n_terms and mean == pytest.approx(total.item() / n_terms, rel=1e-10)  # what it reports


class Fixed:
    """A source of given batches (the loss mask and ignore_index no task uses yet)."""

    def __init__(self, batches):
        self.batches = batches
        self.n_batches = len(batches)

    def batch(self, epoch, k):
        return self.batches[k]


@pytest.mark.parametrize("reduction", ["sum-over-time", "mean", "sum"])
def test_batch_trainer_applies_the_loss_mask_and_ignore_index(tmp_path, monkeypatch, reduction):
    from bptt import RNNModel

    rng = np.random.default_rng(4)
    model = RNNModel(vocab_size=5, hidden_size=3, output_size=4, reduction=reduction, dtype="float64", seed=1)
    batches = []
    for _ in range(3):
        y = rng.integers(0, 4, (3, 5))
        y[0, 1] = -100
        lm = rng.random((3, 5)) < 0.6
        lm[:, -1] = True
        batches.append(Batch(rng.integers(0, 5, (3, 5)), y, mask=np.array([5, 3, 4]), loss_mask=lm))
    one = np.zeros((3, 5), bool)
    one[2, 1] = True  # a batch with a single loss term
    batches.append(Batch(rng.integers(0, 5, (3, 5)), rng.integers(0, 4, (3, 5)), loss_mask=one))
    returned = []
    update = BatchTrainer.update
    monkeypatch.setattr(BatchTrainer, "update", lambda t, b: returned.append(update(t, b)) or returned[-1])
    rec = Recorder(monkeypatch, BatchTrainer)
    opts = TrainOptions(optimizer="sgd", lr=LR, clip_norm=None, eval_every=100, max_epochs=1)
    BatchTrainer(model, Fixed(batches), None, tmp_path / "run", opts, log=lambda *a: None).fit()
    assert len(rec.steps) == 4
    for u, ((before, after), b, (mean, n)) in enumerate(zip(rec.steps, batches, returned)):
        P = leaves(before)
        loss, total, n_terms = model_loss(model.config.to_dict(), P, b.inputs, b.targets, b.mask, None, b.loss_mask)
        assert_update(before, after, grads_of(loss, P), f"update {u + 1}")
        assert n == n_terms and mean == pytest.approx(total.item() / n_terms, rel=1e-10)


def test_the_reference_is_not_vacuous():
    """The reference objective differs between the truncations it tells apart: a loss on
    all k2 steps, or a horizon ignored, gives a different update (else the tests above
    could not catch either)."""
    from bptt import RNNModel

    model = RNNModel(vocab_size=4, hidden_size=3, dtype="float64", seed=0)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 4, (2, 13)), rng.integers(0, 4, (2, 13))
    base, _ = lm_reference(model.config.to_dict(), model.params, x, y, 3, 3, 7, None)
    assert not np.allclose(
        base[2]["rnn0.W"], lm_reference(model.config.to_dict(), model.params, x, y, 3, 3, 3, None)[0][2]["rnn0.W"]
    )
    tau, _ = lm_reference(model.config.to_dict(), model.params, x, y, 3, 3, 4, 2)
    assert not np.allclose(
        tau[2]["rnn0.W"], lm_reference(model.config.to_dict(), model.params, x, y, 3, 3, 4, None)[0][2]["rnn0.W"]
    )
