"""Counts in the docs come from the suite: a number the docs give for tests is marked with the
tests it counts, and this test collects them and compares.

The marker is an HTML comment right after the number (invisible when rendered):

    over every combination ... (216<!-- count: tests/test_gradcheck.py::test_bptt_matches_finite_differences --> cases)

naming one or more pytest node-id prefixes joined by " + "; the number must equal how
many tests pytest collects under them. In docs/*.md a count of cases, tests or rows
without a marker is an error, so a new count cannot be written by hand.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKED = re.compile(r"(\d[\d,]*)<!-- count: ([^>]+?) -->")
COUNT_PHRASE = re.compile(r"\b(\d[\d,]*)(<!-- count: [^>]+ -->)?( (?:test )?(?:cases|tests|rows)\b)")
STRICT = sorted((ROOT / "docs").glob("*.md"))  # README.md joins once its counts are marked
CHECKED = [*STRICT, ROOT / "README.md"]


def markers() -> list[tuple[Path, int, list[str]]]:
    found = []
    for doc in CHECKED:
        if doc.exists():
            for number, spec in MARKED.findall(doc.read_text(encoding="utf-8")):
                found.append((doc, int(number.replace(",", "")), [s.strip() for s in spec.split("+")]))
    return found


def collected(prefixes: set[str]) -> list[str]:
    """Node ids pytest collects under the files the prefixes name."""
    files = sorted({p.split("::")[0] for p in prefixes})
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return [line for line in r.stdout.splitlines() if "::" in line]


def count(ids: list[str], prefix: str) -> int:
    """Tests whose node id is `prefix` or starts with it followed by "::" or "[" (or "/" for a directory)."""
    return sum(1 for i in ids if i == prefix or i.startswith((prefix + "::", prefix + "[", prefix.rstrip("/") + "/")))


def test_every_marked_count_is_what_the_suite_collects():
    found = markers()
    if not found:
        pytest.skip("no counted numbers in the docs yet")
    ids = collected({p for _, _, spec in found for p in spec})
    wrong = []
    for doc, number, spec in found:
        actual = sum(count(ids, p) for p in spec)
        if actual != number:
            wrong.append(f"{doc.name}: {number:,} for {' + '.join(spec)}, the suite collects {actual:,}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("doc", STRICT, ids=lambda p: p.name)
def test_counts_of_tests_in_the_docs_are_marked(doc):
    # "rows" counts tests only in the bad-input table's sense; batch rows and table rows are left alone
    found = COUNT_PHRASE.finditer(doc.read_text(encoding="utf-8"))
    unmarked = [m.group(0) for m in found if m.group(2) is None and not m.group(3).endswith("rows")]
    assert not unmarked, f"{doc.name}: counts without a <!-- count: ... --> marker: {unmarked}"


def test_the_marker_syntax_is_understood():
    ids = ["tests/a.py::test_x[1]", "tests/a.py::test_x[2]", "tests/a.py::test_xy", "tests/b.py::test_z"]
    assert count(ids, "tests/a.py::test_x") == 2 and count(ids, "tests/a.py") == 3 and count(ids, "tests") == 4
    text = "grid (1,216<!-- count: tests/a.py + tests/b.py::test_z --> cases) and 12 rows"
    assert MARKED.findall(text) == [("1,216", "tests/a.py + tests/b.py::test_z")]
    assert [m.group(0) for m in COUNT_PHRASE.finditer(text) if m.group(2) is None] == ["12 rows"]
