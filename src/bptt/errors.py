"""The errors bptt raises for bad input, each printed by the CLI as one line (exit 2).

Messages name the file, the line where there is one, what was found and what
was expected: `DataError("corpus.txt:12: expected TEXT<TAB>LABEL, found no tab")`.
"""

from __future__ import annotations


class BpttError(Exception):
    """Base of every error that is the user's input, not a bug."""


class DataError(BpttError, ValueError):
    """A data file that cannot be read as expected (missing, empty, malformed, wrong encoding)."""


class CheckpointError(BpttError):
    """A run directory or checkpoint that is missing, truncated, tampered with or incompatible."""


class UsageError(BpttError, ValueError):
    """An argument or option the user got wrong: out of range, of the wrong kind, or not fitting
    the others. Every check of `bptt.checks` raises it; a ValueError too, for callers that catch that."""


def where(path, line: int | None = None) -> str:
    """'path' or 'path:line', the prefix of a message about a file."""
    return f"{path}:{line}" if line is not None else f"{path}"


class Interrupted(Exception):
    """SIGINT or SIGTERM stopped a command after it saved its work; the CLI exits 128 + signum
    (130 for SIGINT, 143 for SIGTERM), as a shell reports a process the signal ended."""

    def __init__(self, message: str, signum: int = 2):
        super().__init__(message)
        self.signum = int(signum)
