"""Pretrained word vectors in the word2vec / GloVe text format, to initialise an embedding table E.

    [N D]                  optional first line: the number of vectors and their size
    word v_1 v_2 ... v_D   one vector per line, UTF-8, fields separated by whitespace

Only the words a vocabulary asks for are kept (a GloVe file holds far more than
any task's vocabulary), the first occurrence of each; the file is read line by
line, so its size is not held in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from bptt.errors import DataError


def read_vectors(
    path: Path | str, wanted: set[str], key: Callable[[str], str] = str
) -> tuple[int, dict[str, np.ndarray], int]:
    """(D, {key(word): v (D,) float64 for words whose key is in wanted}, vectors in the file).

    DataError naming path:line for a line that is not a word and D numbers, a header
    that is not two positive integers, bytes that are not UTF-8, or a file without vectors."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a word-vectors text file")
    D, found, count = None, {}, 0
    try:
        with open(path, encoding="utf-8", newline="") as f:
            for n, line in enumerate(f, 1):
                fields = line.split()
                if not fields:
                    continue
                if n == 1 and len(fields) == 2 and all(x.isdigit() for x in fields):  # "N D"
                    if int(fields[1]) < 1:
                        raise DataError(f"{path}:1: header {line.strip()!r}, expected 'N D' with D >= 1")
                    D = int(fields[1])
                    continue
                if D is None:
                    D = len(fields) - 1
                    if D < 1:
                        raise DataError(f"{path}:{n}: only {fields[0]!r}, expected a word and its vector")
                if len(fields) != D + 1:
                    raise DataError(f"{path}:{n}: {len(fields) - 1} numbers after the word {fields[0]!r}, expected {D}")
                count += 1
                k = key(fields[0])
                if k in wanted and k not in found:
                    try:
                        v = np.array(fields[1:], dtype=np.float64)
                    except ValueError:
                        bad = next(x for x in fields[1:] if not _is_float(x))
                        raise DataError(
                            f"{path}:{n}: {bad!r} in the vector of {fields[0]!r}, expected a number"
                        ) from None
                    if not np.isfinite(v).all():
                        raise DataError(f"{path}:{n}: the vector of {fields[0]!r} is not finite, expected numbers")
                    found[k] = v
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 ({e.reason} at byte {e.start} of a line), expected UTF-8 text") from None
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror})") from None
    if D is None or count == 0:
        raise DataError(f"{path}: no vectors, expected lines 'word v1 ... vD'")
    return D, found, count


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
