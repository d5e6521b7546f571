"""Labelled texts (TSV/CSV) for classification and float sequences (CSV) for regression.

Classification files:

- TSV: one example per line, `TEXT<TAB>LABEL` (split at the last tab). A first
  line `sentence<TAB>label` or `text<TAB>label` is a header and skipped (the
  layout of GLUE's SST-2). With --text-column/--label-column the file has a
  header naming its columns instead.
- CSV (a .csv file): a header row, then rows read by the csv module (quoted
  fields, commas inside quotes); the text and label columns are named by
  --text-column (default "text") and --label-column (default "label").

Regression files are CSV with a header; the input column holds one sequence as
whitespace-separated steps, each step one number or several joined by ":"
("0.1:2 0.3:1" is T=2 steps of D=2 features); the target column one value per
sequence (many-to-one) or one per step (many-to-many), in the same notation.

Every problem is a DataError naming the file, the line and what was expected.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bptt.data.text import read_text
from bptt.errors import DataError

TSV_HEADERS = ({"sentence", "label"}, {"text", "label"})


@dataclass
class Example:
    text: str
    label: str
    line: int


def is_csv(path: Path) -> bool:
    return path.suffix.lower() == ".csv"


def read_labelled(
    path: Path | str, text_column: str | None = None, label_column: str | None = None, encoding: str = "utf-8"
) -> list[Example]:
    """(text, label, line) of every example; TSV by default, CSV for .csv files or named columns."""
    path = Path(path)
    text = read_text(path, encoding)
    if is_csv(path) or text_column is not None or label_column is not None:
        rows = _rows(path, text, "," if is_csv(path) else "\t")
        return [
            Example(r[0], r[1], n) for r, n in _columns(path, rows, [text_column or "text", label_column or "label"])
        ]
    return _read_tsv(path, text)


def read_texts(path: Path | str, text_column: str | None = None, encoding: str = "utf-8") -> list[str]:
    """The texts to classify, labels not needed: a CSV's (or a headed TSV's) text column, else every
    non-blank line (a TEXT<TAB>LABEL line's text; a GLUE-style header is skipped)."""
    path = Path(path)
    text = read_text(path, encoding)
    if is_csv(path) or text_column is not None:
        rows = _rows(path, text, "," if is_csv(path) else "\t")
        return [fields[0] for fields, _ in _columns(path, rows, [text_column or "text"])]
    lines = [line for line in text.split("\n") if line.strip()]
    if lines and {f.strip().lower() for f in lines[0].rsplit("\t", 1)} in TSV_HEADERS:
        lines = lines[1:]
    return [line.rsplit("\t", 1)[0] for line in lines]


def _read_tsv(path: Path, text: str) -> list[Example]:
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            raise DataError(f"{path}:{n}: empty line, expected TEXT<TAB>LABEL")
        if "\t" not in line:
            raise DataError(
                f"{path}:{n}: no tab, expected TEXT<TAB>LABEL (or pass --text-column/--label-column for a file with a header)"
            )
        body, label = line.rsplit("\t", 1)
        if n == 1 and {body.strip().lower(), label.strip().lower()} in TSV_HEADERS:
            continue
        out.append(_example(path, n, body, label))
    if not out:
        raise DataError(f"{path}: no examples, expected lines of TEXT<TAB>LABEL")
    return out


def _example(path: Path, n: int, body: str, label: str) -> Example:
    if not label.strip():
        raise DataError(f"{path}:{n}: empty label, expected a label after the text")
    if not body.strip():
        raise DataError(f"{path}:{n}: empty text, expected the text before its label")
    return Example(body, label.strip(), n)


def _rows(path: Path, text: str, delimiter: str):
    """(fields, line) of every data row of a delimited file with a header; the header first."""
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, strict=True)
    try:
        for row in reader:
            yield row, reader.line_num
    except csv.Error as e:
        raise DataError(
            f"{path}:{reader.line_num}: {e}, expected {'CSV' if delimiter == ',' else 'TSV'} fields"
        ) from None


def _columns(path: Path, rows, names: list[str]):
    """The fields named `names` of each data row, with its line; errors for missing columns and short rows."""
    rows = iter(rows)
    header, _ = next(rows, (None, None))
    if header is None:
        raise DataError(f"{path}: empty, expected a header row")
    header = [h.strip() for h in header]
    if len(set(names)) < len(names):
        raise DataError(
            f"{path}: column {names[0]!r} asked for twice, expected two different columns "
            "(--text-column/--label-column or --input-column/--target-column)"
        )
    index = []
    for name in names:
        if header.count(name) > 1:
            raise DataError(
                f"{path}:1: column {name!r} appears {header.count(name)} times in the header, expected once"
            )
        if name not in header:
            found = ", ".join(" ".join(h.split())[:40] for h in header[:20]) + (
                ", ..." if len(header) > 20 else ""
            )  # one line
            raise DataError(
                f"{path}:1: no column {name!r} in the header (found: {found}), "
                "expected it (choose columns with --text-column/--label-column or --input-column/--target-column)"
            )
        index.append(header.index(name))
    out = []
    for row, n in rows:
        if not any(f.strip() for f in row):
            raise DataError(f"{path}:{n}: empty line, expected a row with {len(header)} fields")
        if len(row) != len(header):
            raise DataError(f"{path}:{n}: found {len(row)} fields, expected {len(header)} as in the header")
        fields = [row[i] for i in index]
        for name, f in zip(names, fields):
            if not f.strip():
                raise DataError(f"{path}:{n}: empty {name!r}, expected a value")
        out.append((fields, n))
    if not out:
        raise DataError(f"{path}: a header and no rows, expected at least one example")
    return out


def parse_steps(path: Path, n: int, cell: str, what: str) -> np.ndarray:
    """'0.1:2 0.3:1' -> (T, D) float64; DataError naming the line for anything else."""
    try:
        steps = [[float(v) for v in s.split(":")] for s in cell.split()]
    except ValueError:
        raise DataError(
            f"{path}:{n}: {what} {cell.strip()[:40]!r}, expected numbers (steps separated by spaces, "
            "features within a step by ':')"
        ) from None
    widths = {len(s) for s in steps}
    if len(widths) != 1:
        raise DataError(
            f"{path}:{n}: {what} steps with {sorted(widths)} features, expected the same number in every step"
        )
    a = np.array(steps, dtype=np.float64)
    if not np.isfinite(a).all():
        raise DataError(f"{path}:{n}: {what} holds NaN or infinity, expected finite numbers")
    return a


def read_sequences(
    path: Path | str,
    input_column: str = "input",
    target_column: str = "target",
    encoding: str = "utf-8",
    need_targets: bool = True,
):
    """[(inputs (T, D), targets (1 or T, K) or None, line)] of a regression CSV."""
    path = Path(path)
    text = read_text(path, encoding)
    names = [input_column, target_column] if need_targets else [input_column]
    out = []
    for fields, n in _columns(path, _rows(path, text, ","), names):
        x = parse_steps(path, n, fields[0], input_column)
        y = parse_steps(path, n, fields[1], target_column) if need_targets else None
        out.append((x, y, n))
    D = out[0][0].shape[1]
    for x, _y, n in out:
        if x.shape[1] != D:
            raise DataError(f"{path}:{n}: {x.shape[1]} input features per step, expected {D} as on line {out[0][2]}")
    return out
