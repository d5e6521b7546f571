"""Every code name the docs point at (`bptt.module.function`, in backticks) exists."""

import importlib
import re
from pathlib import Path

import pytest

DOCS = sorted((Path(__file__).parent.parent / "docs").glob("*.md"))


def dotted_names(path: Path) -> list[str]:
    return sorted(set(re.findall(r"`(bptt(?:\.\w+)+)`", path.read_text(encoding="utf-8"))))


def resolve(name: str):
    parts = name.split(".")
    for i in range(len(parts), 0, -1):  # the longest importable module prefix, then attributes
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(name)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_named_function_exists(doc):
    names = dotted_names(doc)
    missing = []
    for name in names:
        try:
            resolve(name)
        except (ImportError, AttributeError):
            missing.append(name)
    assert not missing, f"{doc.name} names code that does not exist: {missing}"


def test_the_derivation_points_at_the_code():
    names = dotted_names(Path(__file__).parent.parent / "docs" / "derivation.md")
    assert len(names) >= 20
