"""Run directories: checkpoints that a crash at any moment leaves loadable.

A run directory holds

    weights-<step>.safetensors    model parameters
    optimizer-<step>.safetensors  optimizer buffers and carried state ("opt.*", "state.*")
    checkpoint.json               the commit point: format, version, model config,
                                  training state, and the name, size and sha256
                                  of the two files above
    metrics.jsonl                 one JSON line per evaluation (appended)

`save` writes the tensor files under new names first, then replaces
checkpoint.json atomically (temporary file, fsync, rename, fsync of the
directory). Until the rename, checkpoint.json names the previous, complete
files; after it, the new ones. Files no longer named by the last `keep`
checkpoints are deleted only after that. So a kill at any instant leaves a
checkpoint.json whose files exist and match their checksums.

`load` checks all of that before anything is used: format and version,
file sizes, checksums, tensor dtypes. Weights are safetensors and the rest
JSON: nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bptt.errors import BpttError, CheckpointError

FORMAT, VERSION = "bptt-checkpoint", 1
INDEX = "checkpoint.json"
ALLOWED = {np.dtype(t) for t in ("float32", "float64", "int32", "int64")}


def _safetensors():
    try:
        import safetensors.numpy as st
    except ImportError:
        raise BpttError("safetensors is needed for checkpoints: pip install 'bptt[train]'") from None
    return st


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that `path` is either the old file or the whole new one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_run_dir(path: Path) -> bool:
    return (Path(path) / INDEX).is_file()


@dataclass
class Checkpoint:
    params: dict[str, np.ndarray]
    model_config: dict
    train_state: dict
    arrays: dict[str, np.ndarray]
    path: Path


def save(run_dir: Path, params: dict, model_config: dict, train_state: dict, arrays: dict | None = None, keep: int = 1) -> None:
    """Write a checkpoint for step train_state["progress"]["step"] (see the module docstring)."""
    from bptt import __version__

    st = _safetensors()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    step = int(train_state.get("progress", {}).get("step", 0))
    files = {}
    for kind, tensors in (("weights", params), ("optimizer", arrays or {})):
        name = f"{kind}-{step:09d}.safetensors"
        data = st.save({k: np.ascontiguousarray(v) for k, v in tensors.items()})
        atomic_write_bytes(run_dir / name, data)
        files[kind] = {"name": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    index = {"format": FORMAT, "version": VERSION, "bptt_version": __version__, "step": step,
             "model": model_config, "train": train_state, "files": files}  # fmt: skip
    text = json.dumps(index, indent=1)
    if keep > 1:
        atomic_write_text(run_dir / f"checkpoint-{step:09d}.json", text)
    atomic_write_text(run_dir / INDEX, text)  # the commit point
    _prune(run_dir, keep)


def _prune(run_dir: Path, keep: int) -> None:
    """Delete tensor files and old indexes that none of the last `keep` checkpoints names."""
    olds = sorted(run_dir.glob("checkpoint-*.json"))
    for old in olds[: max(len(olds) - keep, 0)]:
        old.unlink(missing_ok=True)
    wanted = set()
    for idx in [run_dir / INDEX] + sorted(run_dir.glob("checkpoint-*.json")):
        try:
            wanted |= {f["name"] for f in json.loads(idx.read_text())["files"].values()}
        except (OSError, ValueError, KeyError, TypeError):
            continue
    for f in list(run_dir.glob("weights-*.safetensors")) + list(run_dir.glob("optimizer-*.safetensors")):
        if f.name not in wanted:
            f.unlink(missing_ok=True)


def load(run_dir: Path) -> Checkpoint:
    """The latest checkpoint of run_dir, validated; CheckpointError naming what is wrong."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise CheckpointError(f"{run_dir}: no such run directory")
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: is a file, expected a run directory")
    index_path = run_dir / INDEX
    if not index_path.is_file():
        raise CheckpointError(f"{index_path}: missing (not a bptt run directory, or no checkpoint written yet)")
    try:
        index = json.loads(index_path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{index_path}: not valid JSON ({e})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise CheckpointError(f"{index_path}: not a bptt checkpoint (format field missing or wrong)")
    if index.get("version") != VERSION:
        raise CheckpointError(f"{index_path}: checkpoint format version {index.get('version')!r}, this bptt reads version {VERSION}")
    try:
        model, train, files = index["model"], index["train"], index["files"]
        specs = [(kind, files[kind]["name"], int(files[kind]["bytes"]), str(files[kind]["sha256"])) for kind in ("weights", "optimizer")]
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{index_path}: incomplete (needs model, train and files entries)") from None
    if not isinstance(model, dict) or not isinstance(train, dict):
        raise CheckpointError(f"{index_path}: model and train must be JSON objects")
    tensors = {kind: _load_tensors(run_dir, name, size, sha) for kind, name, size, sha in specs}
    return Checkpoint(tensors["weights"], model, train, tensors["optimizer"], run_dir)


def _load_tensors(run_dir: Path, name, size: int, sha: str) -> dict[str, np.ndarray]:
    if not isinstance(name, str) or "/" in name or "\\" in name or name.startswith("."):
        raise CheckpointError(f"{run_dir / INDEX}: bad file name {name!r}")
    path = run_dir / name
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    data = path.read_bytes()
    if len(data) != size:
        raise CheckpointError(f"{path}: {len(data)} bytes, expected {size} (truncated or replaced)")
    if hashlib.sha256(data).hexdigest() != sha:
        raise CheckpointError(f"{path}: checksum mismatch (the file was modified or corrupted)")
    try:
        tensors = _safetensors().load(data)
    except Exception as e:  # noqa: BLE001 - any parse failure of a checksummed file is a corrupt checkpoint
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    for k, v in tensors.items():
        if v.dtype not in ALLOWED:
            raise CheckpointError(f"{path}: tensor {k} has dtype {v.dtype}, expected float32/float64/int32/int64")
    return tensors


def check_params(params: dict[str, np.ndarray], expected: dict[str, tuple]) -> None:
    """Names and shapes of params equal `expected`, or CheckpointError naming the first difference."""
    for k, shape in expected.items():
        if k not in params:
            raise CheckpointError(f"weights: tensor {k} missing")
        if tuple(params[k].shape) != tuple(shape):
            raise CheckpointError(f"weights: tensor {k} has shape {tuple(params[k].shape)}, expected {tuple(shape)}")
    extra = sorted(set(params) - set(expected))
    if extra:
        raise CheckpointError(f"weights: unexpected tensor {extra[0]}")
