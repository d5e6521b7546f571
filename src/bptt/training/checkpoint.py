"""Run directories: checkpoints that a crash at any moment leaves loadable.

A run directory holds

    checkpoint.json                         the latest checkpoint: the commit point
    checkpoint-<step>.json                  the last `keep` checkpoints, when keep > 1
    weights-<step>-<sha>.safetensors        model parameters (names as in model.params)
    optimizer-<step>-<sha>.safetensors      optimizer buffers and other arrays ("opt.*", "state.*")
    metrics.jsonl                           one JSON line per evaluation, appended by the trainer
                                            (before it commits that checkpoint; `trim_metrics`
                                            drops what a killed run logged past its checkpoint)

A checkpoint JSON is

    {"format": "bptt-checkpoint", "version": 2, "bptt_version": "0.1.0", "step": 123,
     "model": {...RNNModel(**model)...}, "train": {...free JSON...},
     "weights": "weights-000000123-<sha>.safetensors",
     "optimizer": "optimizer-000000123-<sha>.safetensors",
     "files": {"weights-...safetensors": {"sha256": "...", "bytes": 4096}, "optimizer-...": {...}},
     "sha256": "..."}

"sha256" is `index_sha256` of the rest: the JSON itself is checksummed like the
tensor files, so an edited or corrupted checkpoint.json is refused too (version 1
had no such field).

Guarantees

- Atomic files: `atomic_write_bytes` writes a temporary file in the same
  directory, flushes and fsyncs it, renames it over the final name
  (os.replace) and fsyncs the directory. The final name is the whole old file
  or the whole new one, never a prefix; on any error (KeyboardInterrupt too)
  the temporary file is removed.
- A crash at any instant leaves a loadable checkpoint. `save` writes, in order:
    1. the two tensor files, under names no committed checkpoint uses with
       different content (the step and a prefix of the content's sha256: a
       name is only ever rewritten with the same bytes);
    2. checkpoint-<step>.json (keep > 1 only), a complete checkpoint itself;
    3. checkpoint.json, by one rename: the commit point. Before the rename
       it names the previous files, which are all still there; after it,
       the new ones, already durable (their renames were fsynced first);
    4. only then deletes the numbered checkpoints beyond the last `keep`,
       the tensor files that none of the remaining checkpoints names, and
       temporary files a killed save (or `trim_metrics`) left behind.
  A crash before 3 leaves the previous checkpoint plus orphan files (removed
  by the next save); a crash during 4 leaves orphans only. A save that fails
  with an error before 3 (a full disk: the message says how much it needed)
  removes the files it wrote at once. One writer per run directory: every
  command that writes holds `bptt.training.lock`. A load racing a save can
  find a file already pruned: it then reads the newly committed checkpoint.
- `load` checks everything before anything is used: the directory, JSON
  syntax, format and version, the JSON's own sha256, every listed file's size and sha256, the
  safetensors parse, tensor dtypes (float32, float64, integers). Any problem
  is a one-line CheckpointError naming the file and what is wrong.
- Nothing is ever pickled: tensors are safetensors, the rest JSON.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bptt.errors import BpttError, CheckpointError, DataError, UsageError

FORMAT, VERSION = "bptt-checkpoint", 2
INDEX = "checkpoint.json"
ROLES = ("weights", "optimizer")
_NUMBERED = re.compile(r"checkpoint-(\d+)\.json")
_TENSOR_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\.safetensors")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FLOATS = (np.dtype("float32"), np.dtype("float64"))


@dataclass
class Checkpoint:
    """A loaded, validated checkpoint. path is the run directory."""

    params: dict[str, np.ndarray]
    model_config: dict
    train_state: dict
    arrays: dict[str, np.ndarray]
    path: Path


# ---- atomic files ------------------------------------------------------------


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` so that `path` is either the old file or the whole new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0o666 & ~umask, like open()
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        _name_file(e, path, tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """atomic_write_bytes of `text` in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append `record` as one JSON line, flushed and fsynced.

    If a killed writer left a partial last line, the record starts on a new
    line, so only that partial line is lost.
    """
    line = json.dumps(record) + "\n"
    size = None
    try:
        with open(path, "a+b") as f:
            size = f.tell()
            if size > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    line = "\n" + line
            try:
                f.write(line.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
            except OSError:
                with contextlib.suppress(OSError):
                    f.truncate(size)  # no partial line left behind
                raise
    except OSError as e:
        _name_file(e, path)
        if e.errno == errno.ENOSPC:
            raise no_space(Path(path), len(line.encode("utf-8"))) from None
        raise


def no_space(path: Path, needed: int) -> CheckpointError:
    """The one line for a write that failed on a full disk: how much it needed, how much is free, what to do."""
    try:
        free = f"{_size(shutil.disk_usage(path.parent).free)} free"
    except OSError:
        free = "free space unknown"
    return CheckpointError(
        f"{path}: no space left on device (this write needs {_size(needed)}, {free}); free some space, "
        "keep fewer checkpoints (--keep 1) or write the run elsewhere (--out DIR)"
    )


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024


def _name_file(e: BaseException, path, tmp=None) -> None:
    """An OS error (a full disk, no permission) names the file the user asked for, not a temporary one."""
    if isinstance(e, OSError) and e.strerror and e.filename in (None, tmp, str(tmp)):
        e.filename = str(path)


def trim_metrics(path: str | os.PathLike, step: int) -> int:
    """Make a metrics.jsonl agree with a checkpoint at `step`; returns the lines dropped.

    The trainer appends a record, then commits the checkpoint. A run killed in
    between leaves a record (or a partial line) past its last checkpoint, which the
    resumed run would log again. Dropped: records whose "step" is after `step`, and
    an unterminated last line. Every other line is kept as it is. Rewritten
    atomically, and only when something is dropped.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline, else a partial line
    kept = [line for line in lines if not _after(line, step)]
    dropped = len(lines) - len(kept) + (1 if tail else 0)
    if dropped:
        atomic_write_bytes(path, b"".join(line + b"\n" for line in kept))
    return dropped


def _after(line: bytes, step: int) -> bool:
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return False
    return isinstance(record, dict) and type(record.get("step")) is int and record["step"] > step


def read_jsonl(path: str | os.PathLike, required: tuple[str, ...]) -> list[dict]:
    """The records of a JSON-lines file written by `append_jsonl`, each an object with the
    `required` keys; DataError naming the file and line otherwise. Blank lines are skipped."""
    path = Path(path)
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except ValueError:
            raise DataError(f"{path}:{n}: not a JSON line") from None
        if not isinstance(r, dict) or not set(required) <= set(r):
            raise DataError(f"{path}:{n}: expected an object with {', '.join(required[:-1])} and {required[-1]}")
        records.append(r)
    return records


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems that refuse fsync on directories
        pass
    finally:
        os.close(fd)


# ---- save --------------------------------------------------------------------


def _safetensors(verb: str):
    """safetensors.numpy, imported here: it is the optional extra bptt[train]."""
    try:
        import safetensors.numpy as st
    except ImportError:
        raise BpttError(f"safetensors is needed to {verb} checkpoints: pip install 'bptt[train]'") from None
    return st


def is_run_dir(path: str | os.PathLike) -> bool:
    """True when `path` is a directory holding a checkpoint.json (valid or not)."""
    return (Path(path) / INDEX).is_file()


def save(
    run_dir: str | os.PathLike,
    params: dict[str, np.ndarray],
    model_config: dict,
    train_state: dict,
    arrays: dict[str, np.ndarray] | None = None,
    keep: int = 1,
    *,
    step: int | None = None,
) -> Path:
    """Commit a checkpoint into run_dir (created if needed); returns the checkpoint.json path.

    step defaults to train_state["progress"]["step"] (0 without one); it names
    the files, and a later save at the same step replaces that checkpoint.
    keep: how many checkpoints remain afterwards (the latest included).
    """
    from bptt.version import __version__

    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise UsageError(f"keep: got {keep!r}, expected an integer >= 1")
    step = _step_of(train_state) if step is None else int(step)
    st = _safetensors("save")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    index = {
        "format": FORMAT,
        "version": VERSION,
        "bptt_version": __version__,
        "step": step,
        "model": model_config,
        "train": train_state,
        "files": {},
    }
    json.dumps(index)  # not JSON-able: fail before any file is written
    blobs = {}
    for role, tensors in zip(ROLES, (params, arrays or {})):
        data = st.save(_prepared(tensors, role))
        sha = hashlib.sha256(data).hexdigest()
        name = f"{role}-{step:09d}-{sha[:16]}.safetensors"
        blobs[name] = data
        index[role] = name
        index["files"][name] = {"sha256": sha, "bytes": len(data)}
    index["sha256"] = index_sha256(index)
    text = json.dumps(index, indent=1)
    written: list[Path] = []  # files this save created, removed again if it fails before its commit
    try:
        for name, data in blobs.items():
            if not (run_dir / name).exists():
                written.append(run_dir / name)
            atomic_write_bytes(run_dir / name, data)
        if keep > 1:
            if not (run_dir / _numbered_name(step)).exists():
                written.append(run_dir / _numbered_name(step))
            atomic_write_text(run_dir / _numbered_name(step), text)
        atomic_write_text(run_dir / INDEX, text)  # the commit point
    except BaseException as e:
        for p in written:
            p.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            needed = sum(map(len, blobs.values())) + len(text.encode("utf-8")) * (2 if keep > 1 else 1)
            raise no_space(Path(e.filename or run_dir / INDEX), needed) from None
        raise
    _prune(run_dir, keep, index)
    return run_dir / INDEX


def index_sha256(index: dict) -> str:
    """sha256 of a checkpoint JSON's content but its "sha256" field: canonical JSON (sorted keys,
    no spaces), so it is the same for the file as written and as parsed back."""
    body = {k: v for k, v in index.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def _step_of(train_state: dict) -> int:
    progress = train_state.get("progress") if isinstance(train_state, dict) else None
    step = progress.get("step", 0) if isinstance(progress, dict) else 0
    return int(step)


def _numbered_name(step: int) -> str:
    return f"checkpoint-{step:09d}.json"


def _prepared(tensors: dict[str, np.ndarray], role: str) -> dict[str, np.ndarray]:
    """C-contiguous native-order copies-if-needed; TypeError for what load would refuse."""
    out = {}
    for k, v in tensors.items():
        a = np.asarray(v)
        if not _allowed(a.dtype):
            raise TypeError(f"{role} tensor {k!r}: dtype {a.dtype}, a checkpoint holds float32, float64 or integers")
        a = a.astype(a.dtype.newbyteorder("="), copy=False)
        out[k] = a if a.flags.c_contiguous else a.copy(order="C")  # keeps 0-d arrays 0-d
    return out


def _allowed(dtype: np.dtype) -> bool:
    return dtype in _FLOATS or dtype.kind in "iu"


def _prune(run_dir: Path, keep: int, current: dict) -> None:
    """Delete numbered checkpoints beyond the last `keep`, unreferenced tensor files, stale temporaries."""
    numbered = sorted((int(m.group(1)), p) for p in run_dir.iterdir() if (m := _NUMBERED.fullmatch(p.name)))
    kept = numbered[-keep:] if keep > 1 else []
    for _, p in numbered[: len(numbered) - len(kept)]:
        p.unlink(missing_ok=True)
    wanted = set(current["files"])
    for _, p in kept:
        wanted |= _referenced(p)
    for p in run_dir.iterdir():
        name = p.name
        unreferenced = (
            name.startswith(tuple(f"{r}-" for r in ROLES)) and name.endswith(".safetensors") and name not in wanted
        )
        stale = name.startswith((".weights-", ".optimizer-", ".checkpoint", ".metrics.jsonl.")) and name.endswith(
            ".tmp"
        )
        if (unreferenced or stale) and p.is_file():
            p.unlink(missing_ok=True)


def _referenced(index_path: Path) -> set[str]:
    """File names a checkpoint JSON lists; empty if it cannot be read (then it cannot be loaded either)."""
    try:
        files = json.loads(index_path.read_text(encoding="utf-8"))["files"]
        return {str(name) for name in files}
    except (OSError, ValueError, RecursionError, KeyError, TypeError):
        return set()


# ---- load --------------------------------------------------------------------


def load(run_dir: str | os.PathLike, step: int | None = None) -> Checkpoint:
    """The latest checkpoint of run_dir (or the retained one at `step`), validated.

    Raises CheckpointError naming the file and what is wrong.
    """
    run_dir = Path(run_dir)
    _check_dir(run_dir)
    index_path = run_dir / (INDEX if step is None else _numbered_name(step))
    for attempt in range(_RETRIES + 1):
        index = _read_index(index_path)
        names = _check_index(index, index_path)
        try:
            data = {
                name: _verified_bytes(run_dir / name, spec["bytes"], spec["sha256"])
                for name, spec in index["files"].items()
            }
            break
        except CheckpointError:
            # a reader racing the writer: a save committed a new checkpoint and pruned the files of the
            # one read here. Read the new one; a checkpoint.json that did not change means a real problem.
            if attempt == _RETRIES or _read_index_or_none(index_path) in (None, index):
                raise
    weights, arrays = (_parse_tensors(run_dir / names[role], data[names[role]]) for role in ROLES)
    return Checkpoint(weights, index["model"], index["train"], arrays, run_dir)


_RETRIES = 3


def _read_index_or_none(index_path: Path) -> dict | None:
    try:
        return _read_index(index_path)
    except CheckpointError:
        return None


def _check_dir(run_dir: Path) -> None:
    if not run_dir.exists():
        raise CheckpointError(f"{run_dir}: no such run directory")
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: is a file, expected a run directory")


def _read_index(index_path: Path) -> dict:
    if not index_path.is_file():
        raise CheckpointError(f"{index_path}: missing (not a bptt run directory, or no checkpoint written yet)")
    try:
        index = json.loads(index_path.read_bytes().decode("utf-8"))
    except OSError as e:
        raise CheckpointError(f"{index_path}: cannot be read ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise CheckpointError(f"{index_path}: not valid JSON (not UTF-8 text)") from None
    except (ValueError, RecursionError) as e:
        raise CheckpointError(f"{index_path}: not valid JSON ({_one_line(e)})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        found = index.get("format") if isinstance(index, dict) else type(index).__name__
        raise CheckpointError(f"{index_path}: not a bptt checkpoint (format {_short(found)}, expected {FORMAT!r})")
    version = index.get("version")
    if type(version) is not int or version != VERSION:
        by = index.get("bptt_version")
        by = f", written by bptt {by[:40]}" if isinstance(by, str) else ""
        raise CheckpointError(
            f"{index_path}: checkpoint format version {_short(version)}{by}; this bptt reads version {VERSION}"
        )
    try:
        intact = index.get("sha256") == index_sha256(index)
    except (ValueError, RecursionError):  # JSON that parses but does not serialise back (too deep)
        intact = False
    if not intact:
        raise CheckpointError(f"{index_path}: sha256 mismatch (the file was modified or corrupted)")
    return index


def _check_index(index: dict, index_path: Path) -> dict[str, str]:
    """{role: file name} once model, train and files are well-formed; CheckpointError otherwise."""
    for key in ("model", "train", "files"):
        if not isinstance(index.get(key), dict):
            raise CheckpointError(f"{index_path}: {key!r} missing or not a JSON object")
    files = index["files"]
    for name, spec in files.items():
        if not _TENSOR_FILE.fullmatch(name):
            raise CheckpointError(
                f"{index_path}: file name {_short(name)} is not a .safetensors file in the run directory"
            )
        ok = isinstance(spec, dict) and type(spec.get("bytes")) is int and spec["bytes"] >= 0
        if not ok or not isinstance(spec.get("sha256"), str) or not _SHA256.fullmatch(spec["sha256"]):
            raise CheckpointError(
                f"{index_path}: files[{name!r}] needs 'bytes' (an integer) and 'sha256' (64 hex digits)"
            )
    names = {}
    for role in ROLES:
        name = index.get(role)
        if not isinstance(name, str) or name not in files:
            raise CheckpointError(f"{index_path}: {role!r} must name one of the files it lists, found {_short(name)}")
        names[role] = name
    return names


def _verified_bytes(path: Path, size: int, sha: str) -> bytes:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror or e})") from None
    if len(data) != size:
        raise CheckpointError(f"{path}: {len(data)} bytes, expected {size} (truncated or replaced)")
    if hashlib.sha256(data).hexdigest() != sha:
        raise CheckpointError(f"{path}: sha256 mismatch (the file was modified or corrupted)")
    return data


def _parse_tensors(path: Path, data: bytes) -> dict[str, np.ndarray]:
    """The tensors in `data`, the verified content of `path`."""
    st = _safetensors("load")
    try:
        tensors = st.load(data)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001 - parse errors, and Rust panics (not Exceptions), mean a bad file
        raise CheckpointError(f"{path}: not a readable safetensors file ({_one_line(e)})") from None
    for k, v in tensors.items():
        if not _allowed(v.dtype):
            raise CheckpointError(f"{path}: tensor {k!r} has dtype {v.dtype}, expected float32, float64 or integers")
    return tensors


def check_params(params: dict[str, np.ndarray], expected: dict[str, tuple], source: str = "weights") -> None:
    """params has exactly the names and shapes of `expected`, or CheckpointError naming the first difference.

    source prefixes the message (e.g. the weights file's path).
    """
    for k, shape in expected.items():
        if k not in params:
            raise CheckpointError(f"{source}: tensor {k!r} missing")
        if tuple(params[k].shape) != tuple(shape):
            raise CheckpointError(f"{source}: tensor {k!r} has shape {tuple(params[k].shape)}, expected {tuple(shape)}")
    extra = [k for k in params if k not in expected]
    if extra:
        raise CheckpointError(f"{source}: unexpected tensor {extra[0]!r}")


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:200]
