"""Checkpoints: round trips, atomic commits, damage detected with the file named, retention, no pickle."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bptt import RNNModel
from bptt.errors import BpttError, CheckpointError
from bptt.training import checkpoint

SRC = Path(__file__).resolve().parents[1] / "src" / "bptt"
TRAIN = {
    "progress": {"step": 3, "best_valid": None, "elapsed": 1.5},
    "rng": {"bit_generator": "PCG64", "state": {"state": 2**100 + 7, "inc": 5}},
    "options": {"extra": {"vocab": ["a", "b", "\u00e9", "\n"]}, "lrs": [0.1, 1e-3]},
}


def model(dtype: str = "float32") -> RNNModel:
    return RNNModel(vocab_size=5, embedding_size=3, hidden_size=4, dtype=dtype)


def save_at(run_dir: Path, step: int, keep: int = 1, arrays: dict | None = None, dtype: str = "float32") -> dict:
    """Save a checkpoint whose every weight equals `step`; returns its params."""
    m = model(dtype)
    params = {k: np.full_like(v, step) for k, v in m.params.items()}
    train = json.loads(json.dumps(TRAIN))
    train["progress"]["step"] = step
    checkpoint.save(run_dir, params, m.config.to_dict(), train, arrays, keep=keep)
    return params


def files(run_dir: Path) -> list[str]:
    return sorted(p.name for p in run_dir.iterdir())


def index_of(run_dir: Path, name: str = "checkpoint.json") -> dict:
    return json.loads((run_dir / name).read_text())


def weights_path(run_dir: Path) -> Path:
    return run_dir / index_of(run_dir)["weights"]


def write_sealed(run_dir: Path, index: dict) -> None:
    """Write checkpoint.json with its own checksum updated: an edit that passes the sha256 check."""
    index["sha256"] = checkpoint.index_sha256(index)
    (run_dir / "checkpoint.json").write_text(json.dumps(index))


def rewrite_file(run_dir: Path, role: str, data: bytes) -> None:
    """Replace a tensor file and make checkpoint.json agree with it, to reach the safetensors parser."""
    index = index_of(run_dir)
    name = index[role]
    (run_dir / name).write_bytes(data)
    index["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    write_sealed(run_dir, index)


# ---- round trips ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip(tmp_path, dtype):
    m = model(dtype)
    rng = np.random.default_rng(0)
    params = {k: rng.standard_normal(v.shape).astype(dtype) for k, v in m.params.items()}
    arrays = {
        "opt.exp_avg.head.V": rng.standard_normal((5, 4)).astype(dtype),
        "state.h": np.zeros((1, 2, 4), dtype),
        "state.history": np.zeros((2, 0, 2), np.int64),
        "state.scalar": np.array(2.5, dtype),
        "state.t": np.arange(3, dtype=np.int32),
    }
    checkpoint.save(tmp_path / "run", params, m.config.to_dict(), TRAIN, arrays)
    ck = checkpoint.load(tmp_path / "run")
    assert ck.path == tmp_path / "run"
    assert ck.model_config == m.config.to_dict() and ck.train_state == TRAIN
    for saved, loaded in ((params, ck.params), (arrays, ck.arrays)):
        assert saved.keys() == loaded.keys()
        for k in saved:
            assert loaded[k].dtype == saved[k].dtype and loaded[k].shape == saved[k].shape, k
            np.testing.assert_array_equal(loaded[k], saved[k])
    again = RNNModel(**ck.model_config)
    checkpoint.check_params(ck.params, {k: v.shape for k, v in again.params.items()})


@pytest.mark.parametrize("arrays", [None, {}])
def test_empty_arrays_and_layout(tmp_path, arrays):
    save_at(tmp_path, 7, arrays=arrays)
    ck = checkpoint.load(tmp_path)
    assert ck.arrays == {}
    assert ck.train_state["rng"]["state"]["state"] == 2**100 + 7  # big ints survive JSON
    index = index_of(tmp_path)
    assert (index["format"], index["version"], index["step"]) == ("bptt-checkpoint", 2, 7)
    assert (
        index["sha256"]
        == checkpoint.index_sha256(index)
        == checkpoint.index_sha256(json.loads(json.dumps(index, indent=3)))
    )
    assert set(index["files"]) == {index["weights"], index["optimizer"]}
    assert re.fullmatch(r"weights-000000007-[0-9a-f]{16}\.safetensors", index["weights"])
    assert files(tmp_path) == sorted(["checkpoint.json", index["weights"], index["optimizer"]])
    assert checkpoint.is_run_dir(tmp_path) and not checkpoint.is_run_dir(tmp_path / "nope")


def test_save_refuses_what_load_would_refuse(tmp_path):
    with pytest.raises(TypeError, match="'state.mask'.*bool"):
        save_at(tmp_path, 1, arrays={"state.mask": np.ones(2, bool)})
    with pytest.raises(TypeError):  # not JSON-able: fails before any file is written
        checkpoint.save(tmp_path / "r", {}, {}, {"x": object()})
    assert not (tmp_path / "r").exists() or files(tmp_path / "r") == []
    with pytest.raises(ValueError, match="keep"):
        checkpoint.save(tmp_path / "k", {}, {}, {}, keep=0)


def test_missing_safetensors_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(
        BpttError, match=re.escape("safetensors is needed to save checkpoints: pip install 'bptt[train]'")
    ):
        save_at(tmp_path, 1)


# ---- atomic writes ---------------------------------------------------------------


@pytest.mark.parametrize("keep", [1, 2])
@pytest.mark.parametrize("fail_at", [0, 1, 2, 3])
@pytest.mark.parametrize("error", [OSError, KeyboardInterrupt])
def test_a_save_killed_at_any_rename_leaves_the_previous_checkpoint(tmp_path, monkeypatch, keep, fail_at, error):
    save_at(tmp_path, 1, keep=keep)
    before = files(tmp_path)
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) > fail_at:
            raise error("killed")
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    committed = fail_at >= (3 if keep == 1 else 4)
    if committed:
        save_at(tmp_path, 2, keep=keep)
    else:
        with pytest.raises(error):
            save_at(tmp_path, 2, keep=keep)
    monkeypatch.setattr(os, "replace", real)
    assert not [n for n in files(tmp_path) if n.endswith(".tmp")]
    ck = checkpoint.load(tmp_path)
    assert ck.train_state["progress"]["step"] == (2 if committed else 1)
    assert all((v == (2 if committed else 1)).all() for v in ck.params.values())
    if not committed:
        assert set(before) <= set(files(tmp_path))  # nothing of the committed checkpoint was touched
    save_at(tmp_path, 3, keep=keep)  # the next save cleans up what the killed one left
    assert len([n for n in files(tmp_path) if n.startswith("weights-")]) == keep


def test_atomic_write_keeps_the_old_file_on_error(tmp_path, monkeypatch):
    target = tmp_path / "samples.txt"
    checkpoint.atomic_write_text(target, "old")

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.atomic_write_text(target, "new and longer")
    assert target.read_text() == "old" and files(tmp_path) == ["samples.txt"]
    monkeypatch.undo()
    checkpoint.atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and files(tmp_path) == ["samples.txt"]


def test_stale_temporaries_of_a_killed_save_are_removed(tmp_path):
    save_at(tmp_path, 1)
    for name in (
        ".weights-000000002-ab.safetensors.1234.tmp",
        ".checkpoint.json.99.tmp",
        "weights-000000009-ff.safetensors",
        ".metrics.jsonl.3c4d.tmp",
    ):
        (tmp_path / name).write_bytes(b"partial")
    (tmp_path / ".plot.png.5.tmp").write_bytes(b"someone else's")
    save_at(tmp_path, 2)
    assert [n for n in files(tmp_path) if n.startswith(".") or "000000009" in n] == [".plot.png.5.tmp"]


def test_append_jsonl(tmp_path):
    path = tmp_path / "metrics.jsonl"
    checkpoint.append_jsonl(path, {"step": 1, "loss": 2.5})
    with open(path, "a") as f:
        f.write('{"step": 2, "lo')  # a writer killed mid-line
    checkpoint.append_jsonl(path, {"step": 3})
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == {"step": 1, "loss": 2.5} and json.loads(lines[-1]) == {"step": 3}
    assert len(lines) == 3


def test_trim_metrics_drops_what_a_killed_run_logged_past_its_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    assert checkpoint.trim_metrics(path, 5) == 0 and not path.exists()  # no metrics yet: nothing to do
    lines = [
        '{"step": 2}',
        "a note someone wrote",
        '{"step": 4, "x": [1]}',
        '{"step": 6}',
        '{"step": 5}',
        '["step", 9]',
    ]
    path.write_text("\n".join(lines) + '\n{"step": 8, "lo')  # killed mid-line
    assert checkpoint.trim_metrics(path, 5) == 2
    assert path.read_text().splitlines() == [x for x in lines if x != '{"step": 6}']
    before = path.stat().st_mtime_ns, path.read_bytes()
    assert checkpoint.trim_metrics(path, 5) == 0
    assert (path.stat().st_mtime_ns, path.read_bytes()) == before  # untouched when nothing is dropped
    assert checkpoint.trim_metrics(path, 0) == 3 and path.read_text().splitlines() == [lines[1], lines[5]]


# ---- damage ------------------------------------------------------------------------


def truncate(run_dir):
    p = weights_path(run_dir)
    p.write_bytes(p.read_bytes()[:-10])
    return p.name


def flip_byte(run_dir):
    p = weights_path(run_dir)
    data = bytearray(p.read_bytes())
    data[-3] ^= 0x01
    p.write_bytes(bytes(data))
    return p.name


def delete_weights(run_dir):
    p = weights_path(run_dir)
    p.unlink()
    return p.name


def delete_optimizer(run_dir):
    p = run_dir / index_of(run_dir)["optimizer"]
    p.unlink()
    return p.name


def malformed_json(run_dir):
    (run_dir / "checkpoint.json").write_text('{"format": "bptt-checkpoint", ')
    return "checkpoint.json"


def wrong_version(run_dir):
    index = index_of(run_dir)
    index["version"] = 99
    (run_dir / "checkpoint.json").write_text(json.dumps(index))
    return "checkpoint.json"


def edited_json(run_dir):
    index = index_of(run_dir)
    index["train"]["progress"]["step"] = 6  # a one-character edit, checksum left as it was
    (run_dir / "checkpoint.json").write_text(json.dumps(index))
    return "checkpoint.json"


def edited_checksum(run_dir):
    index = index_of(run_dir)
    index["sha256"] = "0" * 64
    (run_dir / "checkpoint.json").write_text(json.dumps(index))
    return "checkpoint.json"


def no_index(run_dir):
    (run_dir / "checkpoint.json").unlink()
    return "checkpoint.json"


def not_safetensors(run_dir):
    rewrite_file(run_dir, "weights", b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    return index_of(run_dir)["weights"]


def path_outside(run_dir):
    index = index_of(run_dir)
    spec = index["files"].pop(index["weights"])
    index["weights"] = "../elsewhere.safetensors"
    index["files"]["../elsewhere.safetensors"] = spec
    write_sealed(run_dir, index)
    return "checkpoint.json"


def bool_tensor(run_dir):
    import safetensors.numpy as stn

    rewrite_file(run_dir, "optimizer", stn.save({"state.mask": np.ones(3, bool)}))
    return index_of(run_dir)["optimizer"]


DAMAGE = {
    truncate: "bytes, expected",
    flip_byte: "sha256 mismatch",
    delete_weights: "missing",
    delete_optimizer: "missing",
    malformed_json: "not valid JSON",
    no_index: "missing",
    wrong_version: "version 99, written by bptt 0.1.0; this bptt reads version 2",
    edited_json: "sha256 mismatch",
    edited_checksum: "sha256 mismatch",
    not_safetensors: "not a readable safetensors file",
    path_outside: "not a .safetensors file in the run directory",
    bool_tensor: "'state.mask' has dtype bool",
}


@pytest.mark.parametrize("damage", DAMAGE, ids=[f.__name__ for f in DAMAGE])
def test_damage_is_a_checkpoint_error_naming_the_file(tmp_path, damage):
    save_at(tmp_path, 5, arrays={"state.h": np.zeros((1, 2, 4), np.float32)})
    name = damage(tmp_path)
    with pytest.raises(CheckpointError) as e:
        checkpoint.load(tmp_path)
    message = str(e.value)
    assert name in message and DAMAGE[damage] in message, message
    assert "\n" not in message


def test_run_dir_that_is_a_file_or_missing(tmp_path):
    (tmp_path / "run").write_text("not a directory")
    with pytest.raises(CheckpointError, match=r"run: is a file, expected a run directory"):
        checkpoint.load(tmp_path / "run")
    with pytest.raises(CheckpointError, match=r"gone: no such run directory"):
        checkpoint.load(tmp_path / "gone")


def test_check_params_names_the_first_difference():
    expected = {"a": (2, 3), "b": (4,)}
    ok = {"a": np.zeros((2, 3)), "b": np.zeros(4)}
    checkpoint.check_params(ok, expected)
    for params, what in (
        (dict(ok, c=np.zeros(1)), "unexpected tensor 'c'"),
        ({"a": ok["a"]}, "tensor 'b' missing"),
        (dict(ok, a=np.zeros((3, 2))), "tensor 'a' has shape (3, 2), expected (2, 3)"),
    ):
        with pytest.raises(CheckpointError, match=re.escape(f"w.safetensors: {what}")):
            checkpoint.check_params(params, expected, source="w.safetensors")


# ---- retention ---------------------------------------------------------------------


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_keep_retains_exactly_n_checkpoints(tmp_path, keep):
    for step in range(1, 6):
        save_at(tmp_path, step, keep=keep, arrays={"state.h": np.full((1, 2, 4), step, np.float32)})
    names = files(tmp_path)
    numbered = [n for n in names if n.startswith("checkpoint-")]
    assert numbered == ([] if keep == 1 else [f"checkpoint-{s:09d}.json" for s in range(6 - keep, 6)])
    assert len([n for n in names if n.startswith("weights-")]) == keep
    assert len([n for n in names if n.startswith("optimizer-")]) == keep
    assert checkpoint.load(tmp_path).train_state["progress"]["step"] == 5
    if keep > 1:
        assert (tmp_path / "checkpoint.json").read_bytes() == (tmp_path / numbered[-1]).read_bytes()
        for step in range(6 - keep, 6):
            ck = checkpoint.load(tmp_path, step=step)
            assert (ck.arrays["state.h"] == step).all() and (ck.params["head.V"] == step).all()
    save_at(tmp_path, 6, keep=1)  # a smaller keep drops the older ones
    assert len(files(tmp_path)) == 3


def test_saving_twice_at_one_step_replaces_that_checkpoint(tmp_path):
    save_at(tmp_path, 4, keep=2)
    m = model()
    checkpoint.save(
        tmp_path,
        {k: np.full_like(v, 9) for k, v in m.params.items()},
        m.config.to_dict(),
        {"progress": {"step": 4}},
        keep=2,
    )
    assert (checkpoint.load(tmp_path).params["head.c"] == 9).all()
    assert (checkpoint.load(tmp_path, step=4).params["head.c"] == 9).all()
    assert len([n for n in files(tmp_path) if n.startswith("weights-")]) == 1


# ---- arbitrary bytes: a checkpoint or CheckpointError, never another exception -------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("template")
    save_at(run, 2, arrays={"state.h": np.zeros((1, 2, 4), np.float32), "state.n": np.arange(3)})
    return run


def load_or_checkpoint_error(template: Path, mutate) -> None:
    with tempfile.TemporaryDirectory() as d:
        run = Path(d) / "run"
        shutil.copytree(template, run)
        mutate(run)
        try:
            checkpoint.load(run)
        except CheckpointError as e:
            assert "\n" not in str(e)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY
@given(data=st.binary(max_size=300))
def test_any_bytes_as_checkpoint_json(template, data):
    load_or_checkpoint_error(template, lambda run: (run / "checkpoint.json").write_bytes(data))


@PROPERTY
@given(
    path=st.sampled_from(
        [
            ("format",),
            ("version",),
            ("model",),
            ("train",),
            ("files",),
            ("weights",),
            ("optimizer",),
            ("files", "W"),
            ("files", "W", "bytes"),
            ("files", "W", "sha256"),
            ("files", "new"),
            ("sha256",),
        ]
    ),
    value=json_values,
    sealed=st.booleans(),
)
def test_any_json_in_any_field_of_checkpoint_json(template, path, value, sealed):
    """sealed: the checksum of checkpoint.json updated after the edit, to reach the checks behind it."""

    def mutate(run):
        index = index_of(run)
        path_ = [index["weights"] if p == "W" else p for p in path]
        node = index
        for key in path_[:-1]:
            node = node[key]
        node[path_[-1]] = value
        if sealed and path != ("sha256",):
            write_sealed(run, index)
        else:
            (run / "checkpoint.json").write_text(json.dumps(index))

    load_or_checkpoint_error(template, mutate)


@PROPERTY
@given(data=st.binary(max_size=300), checksummed=st.booleans())
def test_any_bytes_as_weights_file(template, data, checksummed):
    def mutate(run):
        if checksummed:
            rewrite_file(run, "weights", data)
        else:
            weights_path(run).write_bytes(data)

    load_or_checkpoint_error(template, mutate)


@PROPERTY
@given(cut=st.integers(0, 10_000), flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), max_size=3))
def test_damaged_safetensors_with_matching_checksum(template, cut, flips):
    def mutate(run):
        data = bytearray(weights_path(run).read_bytes())
        for at, bits in flips:
            data[at % len(data)] ^= bits
        rewrite_file(run, "weights", bytes(data[: len(data) - cut % (len(data) + 1)]))

    load_or_checkpoint_error(template, mutate)


# ---- never pickle --------------------------------------------------------------------


def test_no_module_uses_pickle():
    banned = re.compile(
        r"^\s*(import|from)\s+(c?pickle|_pickle|dill|joblib|shelve)\b|\bpickle\.\w+\(|allow_pickle\s*=\s*True", re.M
    )
    sources = sorted(SRC.rglob("*.py"))
    assert len(sources) > 10
    offenders = [
        f"{p.relative_to(SRC)}: {m.group(0).strip()}"
        for p in sources
        for m in banned.finditer(p.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def unsafe_loads(source: str) -> list[str]:
    """Calls that can unpickle: np.load / numpy.load without allow_pickle=False, torch.load without
    weights_only=True, and pickle-protocol readers (pickle/marshal/shelve.load(s), pandas.read_pickle)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
        kw = {k.arg: k.value.value for k in node.keywords if isinstance(k.value, ast.Constant)}
        name = f"{owner}.{node.func.attr}"
        if node.func.attr == "load" and owner in ("np", "numpy") and kw.get("allow_pickle") is not False:
            found.append(f"line {node.lineno}: {name} without allow_pickle=False")
        elif node.func.attr == "load" and owner == "torch" and kw.get("weights_only") is not True:
            found.append(f"line {node.lineno}: {name} without weights_only=True")
        elif owner in ("pickle", "cPickle", "marshal", "shelve", "dill", "joblib") or node.func.attr == "read_pickle":
            found.append(f"line {node.lineno}: {name}")
    return found


def test_no_load_can_unpickle():
    assert unsafe_loads(
        "np.load(f)\nnumpy.load(f, allow_pickle=True)\ntorch.load(p)\npd.read_pickle(p)\nmarshal.loads(b)"
    ) == [
        "line 1: np.load without allow_pickle=False",
        "line 2: numpy.load without allow_pickle=False",
        "line 3: torch.load without weights_only=True",
        "line 4: pd.read_pickle",
        "line 5: marshal.loads",
    ]
    assert unsafe_loads("np.load(f, allow_pickle=False)\ntorch.load(p, weights_only=True)\nst.load(data)") == []
    offenders = [
        f"{p.relative_to(SRC)}: {hit}"
        for p in sorted(SRC.rglob("*.py"))
        for hit in unsafe_loads(p.read_text(encoding="utf-8"))
    ]
    assert offenders == []
