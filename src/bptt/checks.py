"""Argument checks at the boundary: each error names the argument, what was given and what was expected.

Every check raises `bptt.errors.UsageError` (a ValueError too), the one type for
an argument a user got wrong, and says it in one form:

    "NAME: got VALUE, expected WHAT"          e.g. "lr: got -0.1, expected a positive finite number"

A kind of number is an `Expect`: what it must be (`ok`) and how a message says
so (`words`). The library checks values with `Expect.check(name, value)`; the
command line's argparse types (`bptt.training.options`) check the same rules,
so a flag and the argument it becomes are refused alike.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from bptt.errors import UsageError


def require(name: str, value, ok: bool, expected: str) -> None:
    """UsageError "name: got value, expected <expected>" unless ok."""
    if not ok:
        raise UsageError(f"{name}: got {value!r}, expected {expected}")


def is_real(x) -> bool:
    """A real number (Python or NumPy), not a bool."""
    return isinstance(x, (numbers.Real, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def is_int(x) -> bool:
    """An integer (Python or NumPy), not a bool."""
    return isinstance(x, numbers.Integral) and not isinstance(x, (bool, np.bool_))


class Expect(NamedTuple):
    """What an argument must be: `ok(value)`, in the words of a message."""

    words: str
    ok: Callable[[Any], bool]

    def check(self, name: str, value):
        """value, or UsageError "name: got value, expected <words>"."""
        require(name, value, self.ok(value), self.words)
        return value


POSITIVE_NUMBER = Expect("a positive finite number", lambda v: is_real(v) and math.isfinite(v) and v > 0)
NON_NEGATIVE_NUMBER = Expect("a finite number >= 0", lambda v: is_real(v) and math.isfinite(v) and v >= 0)
FINITE_NUMBER = Expect("a finite number", lambda v: is_real(v) and math.isfinite(v))
FRACTION = Expect("a number in [0, 1)", lambda v: is_real(v) and 0 <= v < 1)
OPEN_FRACTION = Expect("a number in (0, 1)", lambda v: is_real(v) and 0 < v < 1)
POSITIVE_INT = Expect("a positive integer", lambda v: is_int(v) and v >= 1)
NON_NEGATIVE_INT = Expect("an integer >= 0", lambda v: is_int(v) and v >= 0)


def choice(name: str, value, options) -> None:
    require(name, value, value in options, f"one of {', '.join(map(str, options))}")


def positive_int(name: str, value, allow_none: bool = False, minimum: int = 1) -> None:
    if value is None and allow_none:
        return
    require(name, value, is_int(value) and value >= minimum, f"an integer >= {minimum}")


def probability(name: str, value) -> None:
    FRACTION.check(name, value)


def array(name: str, value, ndims: tuple[int, ...], kind: str | None = None) -> np.ndarray:
    """np.asarray(value), checked for its number of dimensions and its kind.

    kind: "int" for integer ids, "float" for real numbers (ints are accepted
    and converted by the caller), "bool" for masks (0/1 numbers accepted).
    """
    try:
        a = np.asarray(value)
    except Exception as e:  # ragged lists and the like
        raise UsageError(f"{name}: could not be read as an array ({e})") from None
    if a.ndim not in ndims:
        want = " or ".join(f"{n}-D" for n in ndims)
        raise UsageError(f"{name}: got an array of shape {a.shape}, expected {want}")
    if kind == "int" and a.dtype.kind not in "iu":
        raise UsageError(f"{name}: got dtype {a.dtype}, expected integer token ids")
    if kind == "float" and a.dtype.kind not in "fiu":
        raise UsageError(f"{name}: got dtype {a.dtype}, expected real numbers")
    if kind == "float" and a.size and not np.isfinite(a).all():
        raise UsageError(f"{name}: contains NaN or infinity, expected finite numbers")
    if kind == "bool":
        if a.dtype.kind not in "biu" and not (a.dtype.kind == "f" and np.isin(a, (0, 1)).all()):
            raise UsageError(f"{name}: got dtype {a.dtype}, expected booleans (or 0/1)")
        if a.dtype.kind != "b" and not np.isin(a, (0, 1)).all():
            raise UsageError(f"{name}: expected only 0 and 1 (or booleans)")
    return a


def shape(name: str, a: np.ndarray, expected: tuple) -> None:
    """expected may hold None for 'any size'."""
    ok = a.ndim == len(expected) and all(e is None or e == s for s, e in zip(a.shape, expected))
    if not ok:
        want = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        raise UsageError(f"{name}: got shape {a.shape}, expected {want}")


def in_range(name: str, a: np.ndarray, low: int, high: int, allowed=()) -> None:
    """Every entry of a in [low, high), except entries equal to a value in `allowed`."""
    bad = (a < low) | (a >= high)
    for v in allowed:
        bad &= a != v
    if bad.any():
        v = a[bad].flat[0]
        extra = f" (or {', '.join(map(str, allowed))})" if allowed else ""
        raise UsageError(f"{name}: found {v}, expected values in [{low}, {high}){extra}")
