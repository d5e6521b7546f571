"""One writer per run directory: an exclusive OS lock held by every command that writes into it.

    RUN/.bptt-lock         an empty file; the writer holds flock(LOCK_EX) on it while it writes
    RUN/.bptt-lock.json    {"pid", "host", "command", "started"} of the holder, written atomically

A second writer tries flock(LOCK_EX | LOCK_NB), fails at once, and is refused
with one line naming the holder (CheckpointError), before it changes anything.
Readers (generate, evaluate) take no lock and never wait: a checkpoint is
committed by one rename (`bptt.training.checkpoint`), so they see the old one or
the new one.

The kernel drops an flock when the last descriptor of its holder closes, so
the lock vanishes with its process, kill -9 included; the two files may stay
behind and mean nothing until a process holds the lock again. A holder
deletes both files, and a directory it created for a run that never
committed a checkpoint, before it lets go. That deletion is safe because every
taker checks, once it holds the flock, that the path still names the file it
locked (same inode), and starts over if not: two processes can never hold
locks on two different files of one name.

Network filesystems: see docs/run-directories.md (on Linux, flock over NFS is
a byte-range lock over the whole file, honoured by every client since 2.6.12).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import socket
from pathlib import Path

from bptt.errors import CheckpointError, UsageError
from bptt.training import distributed

LOCK = ".bptt-lock"
HOLDER = ".bptt-lock.json"
_HELD: dict[str, RunLock] = {}  # realpath -> the lock this process holds on it


class RunLock:
    """The lock a process holds on one run directory; `release` lets go of it."""

    def __init__(self, run_dir: Path, fd: int, created: bool):
        self.run_dir, self.fd, self.created = run_dir, fd, created

    def release(self) -> None:
        """Delete the lock's files (and a created directory that never got a checkpoint), then unlock."""
        if self.fd < 0:
            return
        from bptt.training.checkpoint import is_run_dir

        try:
            with contextlib.suppress(OSError):
                (self.run_dir / HOLDER).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                if _same_file(self.run_dir / LOCK, self.fd):
                    (self.run_dir / LOCK).unlink()
            if self.created and self.run_dir.is_dir() and not is_run_dir(self.run_dir):
                import shutil

                shutil.rmtree(self.run_dir, ignore_errors=True)  # failed before its first checkpoint: leave nothing
        finally:
            os.close(self.fd)
            self.fd = -1
            _HELD.pop(_key(self.run_dir), None)


def hold(run_dir: str | os.PathLike, args=None, *, create: bool = True, what: str | None = None) -> RunLock | None:
    """Take the exclusive lock of run_dir for this process until `release_all` (the CLI's end).

    create: make run_dir (and its parents) if missing; without it, a missing
    run_dir (or a file) is left for the caller to report, and None returned.
    args: the parsed command line, recorded as the holder's command.
    what: how messages name run_dir ("--out RUN"). Taking a lock this process
    already holds returns it. CheckpointError naming the holder when another
    process holds it; UsageError when run_dir cannot be written.
    """
    run_dir = Path(run_dir)
    what = what or str(run_dir)
    if _key(run_dir) in _HELD:
        return _HELD[_key(run_dir)]
    if os.environ.get("BPTT_NO_LOCK") == "1" or not distributed.communicator().is_root:
        return None  # under mpirun rank 0 alone writes the run directory, and holds its lock
    created = False
    while True:
        if not run_dir.is_dir():
            if not create or run_dir.exists():
                return None
            try:
                run_dir.mkdir(parents=True)
                created = True
            except FileExistsError:
                pass  # another process made it first: lock it like any other
            except PermissionError as e:
                raise UsageError(f"{what}: no permission to write in {Path(e.filename or run_dir).parent}") from None
        fd = _open(run_dir / LOCK, what)
        if fd is None:
            continue  # the directory went away between the check and the open
        try:
            _flock(fd, run_dir, what)
        except BaseException:
            os.close(fd)
            raise
        if _same_file(run_dir / LOCK, fd):
            break
        os.close(fd)  # the holder we waited for deleted that file: lock the one the name now has
    lock = RunLock(run_dir, fd, created)
    _HELD[_key(run_dir)] = lock
    try:
        _write_holder(run_dir, args)
    except BaseException:
        lock.release()
        raise
    return lock


def release_all() -> None:
    """Release every lock this process holds (the CLI calls it when a command ends, however it ends)."""
    for lock in list(_HELD.values()):
        lock.release()


def is_lock_file(path: Path) -> bool:
    """A file of the lock (or the temporary file of its holder record), not of the run."""
    return path.name in (LOCK, HOLDER) or (path.name.startswith(f".{HOLDER}.") and path.name.endswith(".tmp"))


def holder(run_dir: str | os.PathLike) -> dict | None:
    """The holder record a locking process wrote, or None (none written, or unreadable)."""
    try:
        record = json.loads((Path(run_dir) / HOLDER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


# ---- helpers -------------------------------------------------------------------


def _key(run_dir: Path) -> str:
    return os.path.realpath(run_dir)


def _open(path: Path, what: str) -> int | None:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except FileNotFoundError:
        return None
    except PermissionError:
        raise UsageError(f"{what}: no permission to write in {path.parent}") from None


def _flock(fd: int, run_dir: Path, what: str) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX (Windows): no OS lock to take
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise CheckpointError(f"{what}: {_in_use_by(run_dir)}; wait for it to end or stop it first") from None
    except OSError as e:
        if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise CheckpointError(
                f"{what}: the file system does not support file locks ({e.strerror}); "
                "use a local directory, or set BPTT_NO_LOCK=1 if you are sure nothing else writes there"
            ) from None
        raise


def _in_use_by(run_dir: Path) -> str:
    """'in use by pid P on host H (command) since T', from the holder's record."""
    import time

    for _ in range(20):  # the holder writes its record just after it locks: give it a moment
        record = holder(run_dir)
        if record and not _dead_here(record):
            break
        time.sleep(0.05)
    if not record:
        return "in use by another process (it has not recorded its name)"
    return (
        f"in use by pid {record.get('pid')} on {record.get('host')} ({record.get('command')}) "
        f"since {record.get('started')}"
    )


def _dead_here(record: dict) -> bool:
    """A stale record: a process of this host that no longer exists (its lock died with it)."""
    pid = record.get("pid")
    if record.get("host") != socket.gethostname() or type(pid) is not int or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _same_file(path: Path, fd: int) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _command(args) -> str:
    if args is None:
        return "python"
    if isinstance(args, str):
        return args
    argv = getattr(args, "argv", None) or []
    return " ".join(["bptt", str(getattr(args, "command", "") or ""), *map(str, argv)]).replace("  ", " ").strip()


def _write_holder(run_dir: Path, args) -> None:
    """The holder record, by one rename (a reader sees none or all of it); best effort, not fsynced:
    the lock does not depend on it, and a full disk must not stop the run before its own message."""
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": _command(args),
        "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    tmp = run_dir / f".{HOLDER}.{os.getpid()}.tmp"
    try:
        tmp.write_text(json.dumps(record) + "\n", encoding="utf-8")
        os.replace(tmp, run_dir / HOLDER)
    except OSError:
        tmp.unlink(missing_ok=True)
