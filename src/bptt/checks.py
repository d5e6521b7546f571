"""Argument checks at the boundary: each error names the argument, what was given and what was expected."""

from __future__ import annotations

import numbers

import numpy as np


def choice(name: str, value, options) -> None:
    if value not in options:
        raise ValueError(f"{name}: got {value!r}, expected one of {', '.join(map(str, options))}")


def positive_int(name: str, value, allow_none: bool = False, minimum: int = 1) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}: got {value!r}, expected an integer >= {minimum}")


def probability(name: str, value) -> None:
    if not isinstance(value, numbers.Real) or not (0.0 <= float(value) < 1.0):
        raise ValueError(f"{name}: got {value!r}, expected a number in [0, 1)")


def array(name: str, value, ndims: tuple[int, ...], kind: str | None = None) -> np.ndarray:
    """np.asarray(value), checked for its number of dimensions and its kind.

    kind: "int" for integer ids, "float" for real numbers (ints are accepted
    and converted by the caller), "bool" for masks (0/1 numbers accepted).
    """
    try:
        a = np.asarray(value)
    except Exception as e:  # ragged lists and the like
        raise ValueError(f"{name}: could not be read as an array ({e})") from None
    if a.ndim not in ndims:
        want = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(f"{name}: got an array of shape {a.shape}, expected {want}")
    if kind == "int" and a.dtype.kind not in "iu":
        raise ValueError(f"{name}: got dtype {a.dtype}, expected integer token ids")
    if kind == "float" and a.dtype.kind not in "fiu":
        raise ValueError(f"{name}: got dtype {a.dtype}, expected real numbers")
    if kind == "float" and a.size and not np.isfinite(a).all():
        raise ValueError(f"{name}: contains NaN or infinity, expected finite numbers")
    if kind == "bool":
        if a.dtype.kind not in "biu" and not (a.dtype.kind == "f" and np.isin(a, (0, 1)).all()):
            raise ValueError(f"{name}: got dtype {a.dtype}, expected booleans (or 0/1)")
        if a.dtype.kind != "b" and not np.isin(a, (0, 1)).all():
            raise ValueError(f"{name}: expected only 0 and 1 (or booleans)")
    return a


def shape(name: str, a: np.ndarray, expected: tuple) -> None:
    """expected may hold None for 'any size'."""
    ok = a.ndim == len(expected) and all(e is None or e == s for s, e in zip(a.shape, expected))
    if not ok:
        want = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        raise ValueError(f"{name}: got shape {a.shape}, expected {want}")


def in_range(name: str, a: np.ndarray, low: int, high: int, allowed=()) -> None:
    """Every entry of a in [low, high), except entries equal to a value in `allowed`."""
    bad = (a < low) | (a >= high)
    for v in allowed:
        bad &= a != v
    if bad.any():
        v = a[bad].flat[0]
        extra = f" (or {', '.join(map(str, allowed))})" if allowed else ""
        raise ValueError(f"{name}: found {v}, expected values in [{low}, {high}){extra}")
