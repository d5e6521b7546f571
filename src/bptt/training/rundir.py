"""The directory a new run writes to: --out, checked, or else a fresh runs/NAME[-N].

A directory that holds anything is taken only if it is a bptt run's, and then
only with --overwrite, which deletes the run's own files and nothing else.
`check_writable` refuses, before any work starts, a place that cannot be written.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bptt.errors import UsageError
from bptt.training import distributed, lock

RUN_FILES = (
    "checkpoint",
    "weights-",
    "optimizer-",
    "metrics.jsonl",
    "samples.txt",
    "best",
    "grad-norms.jsonl",
    "result.json",
    "diagnose.",
    "grad-norms.png",
    "report.html",
    "events.out.tfevents.",  # --tensorboard
)


def choose_run_dir(args, name: str) -> Path:
    """--out, refused if it already holds something (unless --overwrite: then its run
    files are deleted, so call this only once everything else has been checked);
    else runs/<name>[-N]."""
    if args.out is None:
        base = Path("runs") / name
        out, n = base, 2
        while out.exists():
            out, n = Path(f"{base}-{n}"), n + 1
        check_writable(out, f"run directory {out}")
        lock.hold(out, args, what=f"run directory {out}")
        return out
    out = args.out
    check_writable(out, f"--out {out}")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file, expected a directory")
    lock.hold(out, args, what=f"--out {out}")  # before anything is checked or deleted: one writer at a time
    entries = [f for f in out.iterdir() if not lock.is_lock_file(f)] if out.is_dir() else []
    if entries:
        from bptt.training import checkpoint

        started = checkpoint.is_run_dir(out)
        if not started and not all(_run_file(f) for f in entries):
            raise UsageError(
                f"--out {out}: is not a bptt run directory, refusing to {'overwrite' if args.overwrite else 'use'} it"
            )
        if not args.overwrite:
            if not started:
                raise UsageError(
                    f"--out {out}: holds no checkpoint yet (a run stopped before its first); "
                    "pass --overwrite to start it over"
                )
            raise UsageError(
                f"--out {out}: already exists; pass --resume {out} to continue it or --overwrite to replace it"
            )
        comm = distributed.communicator()
        comm.barrier()  # under mpirun: every rank has judged the directory before rank 0 empties it
        if comm.is_root:
            for f in entries:
                if _run_file(f):
                    shutil.rmtree(f, ignore_errors=True) if f.is_dir() else f.unlink(missing_ok=True)
    return out


def check_writable(out: Path, what: str) -> None:
    """UsageError, before training starts, when `out` (or its nearest existing parent) cannot be written."""
    d = out
    while not d.exists() and d != d.parent:
        d = d.parent
    if d != out and not d.is_dir():
        raise UsageError(f"{what}: {d} is a file, expected a directory")
    if d.is_dir() and not os.access(d, os.W_OK | os.X_OK):
        raise UsageError(f"{what}: no permission to write in {d}")


def check_output_file(out: Path, args=None) -> None:
    """Before the work, for a command that writes one file `out` (--out, or its default inside the
    run): `out` can be written (`check_writable`), this process holds the run directory's lock when
    `out` goes into one (not while a trainer writes there), and `out` is not a directory."""
    from bptt.training.checkpoint import is_run_dir

    what = f"--out {out}"
    check_writable(out, what)
    if is_run_dir(out.parent):
        lock.hold(out.parent, args, create=False)
    if out.is_dir():
        raise UsageError(f"{what}: is a directory, expected a file")


def _run_file(path: Path) -> bool:
    """A file a run writes, the temporary file of one (a killed write leaves it behind),
    or the run's best/ directory (TrainOptions.keep_best)."""
    name = path.name
    if path.is_dir():
        return name == "best"
    if name.startswith(".") and name.endswith(".tmp"):
        name = name[1:]
    return path.is_file() and name.startswith(RUN_FILES + ("loss.png",))
