"""ONNX export: onnxruntime computes what RNNModel.predict computes, for every input kind,
nonlinearity, layer count, direction, head and mode, with uneven lengths, with and without
the optional inputs; the final states too. float32 within 1e-5 through ONNX's RNN operator
and through a Scan, float64 within 1e-10 through a Scan. A run trained from the CLI runs
in a fresh process that never imports bptt."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from bptt import RNNModel, export
from bptt.cli import main
from bptt.errors import BpttError, UsageError
from bptt.training.runs import load_run
from helpers import make_model, random_h0

TOL = {"float32": 1e-5, "float64": 1e-10}
PATHS = [("float32", "op"), ("float32", "scan"), ("float64", "scan")]
PATH_IDS = ["f32-op", "f32-scan", "f64-scan"]


def session(proto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # not the warning that h0 / sequence_lens are overridable initializers
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def random_inputs(model: RNNModel, rng, B: int, T: int):
    if model.feature_vocab_sizes:
        cols = [rng.integers(0, n, (B, T)) for n in [model.vocab_size, *model.feature_vocab_sizes]]
        x = np.stack(cols, axis=2)
    elif model.uses_tokens:
        x = rng.integers(0, model.vocab_size, (B, T))
    else:
        x = rng.standard_normal((B, T, model.input_size)).astype(model.dtype)
    if model.mode == "one-to-one":
        x = x[:, 0]
    return x


def random_chars(model: RNNModel, rng, B: int, T: int, C: int = 5) -> np.ndarray:
    """(B, T, C) character ids (one-to-one: (B, C)): each token 0..C characters, then 0s."""
    n = rng.integers(0, C + 1, (B, T))
    n[0, 0] = C  # one token of the longest length, and some of none
    chars = np.where(np.arange(C) < n[..., None], rng.integers(1, model.char_vocab_size, (B, T, C)), 0)
    return chars[:, 0] if model.mode == "one-to-one" else chars


def check(model: RNNModel, recurrence: str, seed: int = 0, B: int = 4, T: int = 6, lengths=(6, 3, 0, 1)):
    """onnxruntime on random inputs against predict and forward().hn, with and without the optional inputs."""
    rng = np.random.default_rng(seed)
    model.eval()
    proto = export.build(model, recurrence=recurrence)
    sess = session(proto)
    tol = TOL[model.dtype]
    x = random_inputs(model, rng, B, T)
    feeds = {"inputs": x}
    kw = {}
    if model.char_hidden_size is not None:
        kw["chars"] = feeds["chars"] = random_chars(model, rng, B, T)
    if model.mode == "one-to-many":
        kw["cond"] = feeds["cond"] = rng.standard_normal((B, model.cond_size)).astype(model.dtype)
    cases = [({}, {})]
    if model.mode != "one-to-one":
        lens = np.array(lengths[:B], dtype=np.int64)
        if model.mode == "many-to-one":
            lens = np.maximum(lens, 1)  # bptt refuses a sequence of no steps to pool
        cases.append(({"sequence_lens": lens}, {"mask": lens}))
    parts = export.STATE_PARTS[: export.N_STATES[export.cell_of(model)]]  # h, and c for the LSTM
    if model.mode != "one-to-many":
        s0 = {f"{part}0": random_h0(model, rng, B).astype(model.dtype) for part in parts}
        h0 = s0["h0"] if len(parts) == 1 else tuple(s0.values())
        cases += [({**extra, **s0}, {**mine, "h0": h0}) for extra, mine in cases]
    for extra, mine in cases:
        y, *state_n = sess.run(None, {**feeds, **extra})
        assert y.dtype == model.dtype and all(s.dtype == model.dtype for s in state_n)
        want = model.predict(x, mine.get("mask"), mine.get("h0"), **kw)
        np.testing.assert_allclose(y, want, rtol=tol, atol=tol, err_msg=str(sorted(extra)))
        fwd = model.forward(x, mine.get("mask"), mine.get("h0"), **kw)
        assert len(state_n) == len(fwd.state_n) == len(parts)
        for part, got, expected in zip(parts, state_n, fwd.state_n):
            np.testing.assert_allclose(got, expected, rtol=tol, atol=tol, err_msg=f"{part}n {sorted(extra)}")
    return proto


@pytest.mark.parametrize(("dtype", "recurrence"), PATHS, ids=PATH_IDS)
@pytest.mark.parametrize("kind", ["features", "one-hot", "embedding"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu", "sigmoid", "identity"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_layers(dtype, recurrence, kind, nonlinearity, bidirectional):
    model = make_model(
        kind,
        num_layers=2,
        hidden_size=4,
        nonlinearity=nonlinearity,
        bidirectional=bidirectional,
        dtype=dtype,
        bias=nonlinearity != "relu",  # one nonlinearity without biases: B left out of the operator
        seed=3,
    )
    check(model, recurrence)


@pytest.mark.parametrize(("dtype", "recurrence"), PATHS, ids=PATH_IDS)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("kind", ["features", "one-hot", "embedding"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_gated_cells(dtype, recurrence, cell, kind, bidirectional, bias):
    """LSTM (ONNX gates i, o, f, c; c0 and cn) and GRU (z, r, h, linear_before_reset=1)."""
    options = dict(forget_bias=1.0) if cell == "lstm" and bias else {}
    model = make_model(
        kind, cell=cell, num_layers=2, hidden_size=4, bidirectional=bidirectional, bias=bias, dtype=dtype, **options
    )
    for name, value in model.params.items():  # biases far from their initial values, bn included
        model.params[name] = value + 0.3 * np.random.default_rng(7).standard_normal(value.shape).astype(dtype)
    check(model, recurrence)


MODES = {
    "many-to-many": dict(mode="many-to-many"),
    "many-to-one last": dict(mode="many-to-one", pooling="last"),
    "many-to-one mean": dict(mode="many-to-one", pooling="mean"),
    "many-to-one max": dict(mode="many-to-one", pooling="max"),
    "many-to-one last,mean,max": dict(mode="many-to-one", pooling="last,mean,max"),
    "one-to-many": dict(mode="one-to-many"),
    "one-to-one": dict(mode="one-to-one"),
}


@pytest.mark.parametrize(("dtype", "recurrence"), PATHS, ids=PATH_IDS)
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("head", ["softmax", "sigmoid", "linear"])
def test_modes_and_heads(dtype, recurrence, mode, head):
    options = dict(MODES[mode], head=head, dtype=dtype, hidden_size=3, output_size=3, seed=1)
    if mode not in ("one-to-many", "one-to-one"):
        options.update(num_layers=2, bidirectional=True)
    check(make_model("embedding", **options), recurrence)


@pytest.mark.parametrize(("dtype", "recurrence"), PATHS, ids=PATH_IDS)
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gated_modes(dtype, recurrence, mode, cell):
    """Pooling "last" reads hn, one-to-many starts the LSTM's c at zero."""
    options = dict(MODES[mode], cell=cell, dtype=dtype, hidden_size=3, output_size=3, seed=2)
    if mode not in ("one-to-many", "one-to-one"):
        options.update(num_layers=2, bidirectional=True)
    check(make_model("embedding", **options), recurrence)


@pytest.mark.parametrize(("dtype", "recurrence"), PATHS, ids=PATH_IDS)
@pytest.mark.parametrize("mode", ["many-to-many", "many-to-one"])
def test_feature_columns(dtype, recurrence, mode):
    model = RNNModel(
        vocab_size=7,
        embedding_size=3,
        feature_vocab_sizes=[4, 5],
        feature_embedding_size=2,
        hidden_size=4,
        output_size=3,
        bidirectional=True,
        mode=mode,
        pooling="max",
        dtype=dtype,
    )
    check(model, recurrence)


CHAR_CELLS = {  # the word-level cell, the encoder's cell (None: the word-level cell with its options)
    "elman relu, its own cell": ("elman", None, dict(nonlinearity="relu")),
    "lstm, its own cell": ("lstm", None, dict(forget_bias=1.0)),
    "gru, its own cell": ("gru", None, {}),
    "elman, an lstm encoder": ("elman", "lstm", {}),
    "lstm, a gru encoder": ("lstm", "gru", {}),
}


@pytest.mark.parametrize(("dtype", "recurrence"), PATHS, ids=PATH_IDS)
@pytest.mark.parametrize("cells", list(CHAR_CELLS))
@pytest.mark.parametrize("mode", ["many-to-many", "many-to-one last,mean,max", "one-to-one"])
def test_character_encoder(dtype, recurrence, cells, mode):
    """x_t = [E[w_t]; E_1[f_t]; h->_n; h<-_1]: the encoder's two cells over each token's characters,
    tokens of no characters and padded tokens included, next to feature columns."""
    cell, char_cell, options = CHAR_CELLS[cells]
    model = RNNModel(
        vocab_size=7,
        embedding_size=3,
        feature_vocab_sizes=[4],
        feature_embedding_size=2,
        char_vocab_size=6,
        char_embedding_size=3,
        char_hidden_size=2,
        char_cell=char_cell,
        cell=cell,
        hidden_size=4,
        output_size=3,
        bidirectional=mode != "one-to-one",
        dtype=dtype,
        seed=4,
        **MODES[mode],
        **options,
    )
    for name, value in model.params.items():  # biases far from their initial values
        model.params[name] = value + 0.3 * np.random.default_rng(8).standard_normal(value.shape).astype(dtype)
    proto = check(model, recurrence)
    assert [i.name for i in proto.graph.input][:2] == ["inputs", "chars"]


@pytest.mark.parametrize("recurrence", ["op", "scan"])
def test_dynamic_batch_and_time(recurrence):
    """One file, any batch size and sequence length."""
    model = make_model("one-hot", bidirectional=True, hidden_size=4).eval()
    sess = session(export.build(model, recurrence=recurrence))
    rng = np.random.default_rng(2)
    for B, T in [(1, 9), (5, 2), (2, 1)]:
        x = rng.integers(0, 6, (B, T))
        y, hn = sess.run(None, {"inputs": x})
        np.testing.assert_allclose(y, model.predict(x), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(hn, model.forward(x).hn, rtol=1e-5, atol=1e-5)


def test_the_file_checks_and_documents_itself(tmp_path):
    model = make_model("embedding", num_layers=2, bidirectional=True, mode="many-to-one", pooling="mean")
    path = export.to_onnx(model, tmp_path / "m.onnx", vocab=list("abcdef"), labels=["x", "y", "z"])
    onnx.checker.check_model(str(path), full_check=True)
    proto = onnx.load(str(path))
    meta = {p.key: json.loads(p.value) for p in proto.metadata_props}
    assert meta["vocab"] == list("abcdef") and meta["labels"] == ["x", "y", "z"]
    assert meta["config"]["pooling"] == "mean" and meta["recurrence"] == "op"
    graph = proto.graph
    assert [i.name for i in graph.input] == ["inputs", "sequence_lens", "h0"]
    assert [o.name for o in graph.output] == ["outputs", "hn"]
    assert all(v.doc_string for v in [*graph.input, *graph.output])
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in graph.output]
    assert dims == [["batch", 3], [4, "batch", 3]]
    sess = session(proto)
    assert sess.get_modelmeta().custom_metadata_map["labels"] == '["x", "y", "z"]'
    assert [i.name for i in sess.get_overridable_initializers()] == ["sequence_lens", "h0"]


def test_refusals_write_nothing(tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")
    with pytest.raises(UsageError, match="recurrence 'op': onnxruntime runs RNN/LSTM/GRU in float32 only"):
        export.to_onnx(make_model(dtype="float64"), path, recurrence="op")
    with pytest.raises(UsageError, match="recurrence: got 'loop', expected one of op, scan"):
        export.to_onnx(make_model(), path, recurrence="loop")
    monkeypatch.delitem(export.OP_LAYOUTS, "elman")
    with pytest.raises(UsageError, match="a 'elman' cell has no ONNX mapping yet"):
        export.to_onnx(make_model(), path)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["m.onnx"]


ROUND_TRIPS = {
    "one-hot, bidirectional, 2 layers": dict(kind="one-hot", num_layers=2, bidirectional=True),
    "embedding, no bias": dict(kind="embedding", bias=False, nonlinearity="relu"),
    "features, many-to-one max": dict(kind="features", mode="many-to-one", pooling="max"),
    "one-to-many": dict(kind="embedding", mode="one-to-many", num_layers=2),
    "lstm, one-hot, bidirectional": dict(kind="one-hot", cell="lstm", bidirectional=True, forget_bias=1.0),
    "gru, 2 layers": dict(kind="features", cell="gru", num_layers=2),
    "gru, no bias": dict(kind="embedding", cell="gru", bias=False),
    "lstm, a character encoder": dict(
        kind="embedding", cell="lstm", bidirectional=True, char_vocab_size=5, char_hidden_size=2, forget_bias=1.0
    ),
    "elman, a gru character encoder, 2 layers": dict(
        kind="embedding", num_layers=2, char_vocab_size=5, char_hidden_size=3, char_cell="gru", bias=False
    ),
}


@pytest.mark.parametrize(("dtype", "recurrence"), PATHS, ids=PATH_IDS)
@pytest.mark.parametrize("case", list(ROUND_TRIPS))
def test_round_trip(tmp_path, dtype, recurrence, case):
    """from_onnx reads every parameter back out of its ONNX layout, bit for bit."""
    options = dict(ROUND_TRIPS[case])
    model = make_model(options.pop("kind"), dtype=dtype, seed=5, **options)
    back = export.from_onnx(export.to_onnx(model, tmp_path / "m.onnx", recurrence=recurrence))
    assert back.config == model.config and back.params.keys() == model.params.keys()
    for k, v in model.params.items():
        assert back.params[k].dtype == v.dtype, k
        np.testing.assert_array_equal(back.params[k], v, err_msg=k)


def test_from_onnx_refuses_other_files(tmp_path):
    from bptt.errors import DataError

    proto = export.build(make_model())
    del proto.metadata_props[:]
    (tmp_path / "other.onnx").write_bytes(proto.SerializeToString())
    with pytest.raises(DataError, match="other.onnx: no 'config' entry in its metadata"):
        export.from_onnx(tmp_path / "other.onnx")


def test_without_the_onnx_package_one_line(tmp_path, monkeypatch):
    """A BpttError, which the CLI prints as one line."""
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    with pytest.raises(BpttError, match=r"the onnx package is needed to export: pip install 'bptt\[onnx\]'"):
        export.to_onnx(make_model(), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


# ---- from the CLI, run where bptt is not -------------------------------------------

TEXT = ("the quick brown fox jumps over the lazy dog.\n" * 8 + "ROMEO: a stitch in time saves nine.\n" * 8) * 2
SMALL = "--hidden-size 8 --num-layers 2 --embedding-size 4 --batch-size 4 --seq-length 10 --samples 0 --max-epochs 1"
DOC = Path(__file__).resolve().parents[1] / "docs" / "deployment.md"


def doc_example() -> str:
    """The first Python block of docs/deployment.md: the five-line onnxruntime example."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index("```python\n") + len("```python\n")
    return text[start : text.index("```", start)]


def test_the_doc_example_is_five_lines():
    assert len([line for line in doc_example().splitlines() if line.strip()]) == 5


def test_cli_run_deployed_without_bptt(tmp_path, capsys):
    """docs/deployment.md's example, on a run trained and exported by the CLI, in a process without bptt."""
    (tmp_path / "corpus.txt").write_text(TEXT)
    run = tmp_path / "runs" / "shakespeare"
    assert main(["train", "--data", str(tmp_path / "corpus.txt"), "--out", str(run), *SMALL.split()]) == 0
    assert main(["export", str(run), "--format", "onnx"]) == 0
    assert capsys.readouterr().err.strip().endswith(f"wrote {run / 'model.onnx'}")
    script = tmp_path / "deployed.py"
    script.write_text(
        doc_example()
        + "import sys\n"
        + "np.savez(sys.argv[1], probs=probs, hn=hn, ids=ids)\n"
        + "assert not any(m == 'bptt' or m.startswith('bptt.') for m in sys.modules), 'bptt was imported'\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-I", str(script), str(tmp_path / "out.npz")], check=True, cwd=tmp_path, env=env)
    got = np.load(tmp_path / "out.npz")
    model, _ = load_run(run)
    assert got["ids"].shape == (1, 6)
    np.testing.assert_allclose(got["probs"], model.predict(got["ids"]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["hn"], model.forward(got["ids"]).hn, rtol=1e-5, atol=1e-5)


def test_cli_task_run_metadata_and_bad_input(tmp_path, capsys):
    """A tagger with feature columns and (by default) a character encoder: its labels and
    vocabularies travel with the file; the file runs; refused exports print one line and leave no file."""
    ex = Path(__file__).resolve().parents[1] / "examples"
    run = tmp_path / "tag"
    train = ["train", "--task", "tag", "--data", str(ex / "tag-train.conllu"), "--out", str(run)]
    opts = ["--max-epochs", "0.2", "--hidden-size", "4", "--embedding-size", "4", "--features", "suffix,shape"]
    opts += ["--char-hidden-size", "3", "--char-embedding-size", "2"]
    assert main(train + opts) == 0
    out = tmp_path / "tagger.onnx"
    assert main(["export", str(run), "--out", str(out), "--recurrence", "scan"]) == 0
    proto = onnx.load(str(out))
    meta = {p.key: json.loads(p.value) for p in proto.metadata_props}
    model, ckpt = load_run(run)
    extra = ckpt.train_state["options"]["extra"]
    assert meta["task"] == "tag" and meta["labels"] == extra["labels"]
    assert meta["vocab"] == extra["vocab"]["itos"] and meta["features"] == ["suffix", "shape"]
    assert [len(v) for v in meta["feature_vocabs"]] == list(model.feature_vocab_sizes)
    assert meta["recurrence"] == "scan" and meta["chars"] == extra["chars"] and meta["chars"][:2] == ["<pad>", "<unk>"]
    rng = np.random.default_rng(0)
    x, chars = random_inputs(model, rng, 3, 5), random_chars(model, rng, 3, 5)
    y = session(proto).run(None, {"inputs": x, "chars": chars, "sequence_lens": np.array([5, 2, 4])})[0]  # then hn, cn
    np.testing.assert_allclose(y, model.predict(x, np.array([5, 2, 4]), chars=chars), rtol=1e-5, atol=1e-5)
    capsys.readouterr()
    out.unlink()
    for argv, message in [
        (["export", str(tmp_path / "nothing")], "nothing"),
        (["export", str(run), "--out", str(tmp_path)], "is a directory, expected a file"),
        (["export", str(run), "--format", "tflite"], "invalid choice: 'tflite'"),
    ]:
        try:
            code = main(argv)
        except SystemExit as e:  # argparse's own errors exit from inside the parser
            code = e.code
        assert code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert not out.exists() and not (run / "model.onnx").exists()
