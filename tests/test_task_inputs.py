"""Bad input to the dataset tasks that the table in test_bad_input.py cannot state as a row:
a machine with too little memory. (The malformed CoNLL-U, TSV and CSV files, tags and labels
that do not fit, and the options the tasks refuse are rows of that table.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from bptt.cli import main

EX = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize(
    "task",
    [
        ["--task", "tag", "--data", EX / "tag-dev.conllu"],
        ["--task", "classify", "--data", EX / "sentiment3.csv"],
        ["--task", "regress", "--data", EX / "regress.csv"],
        ["--task", "spell"],
    ],
    ids=["tag", "classify", "regress", "spell"],
)
def test_a_model_too_big_for_memory_is_refused_first(tmp_path, capsys, monkeypatch, task):
    from bptt.training import resources

    monkeypatch.setattr(resources, "available_memory", lambda: 2**12)  # 4 KiB
    out = tmp_path / "run"
    assert main(["train", *map(str, task), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bptt: error: ") and "training needs about" in err, err
    assert not out.exists(), "nothing may be written for bad input"
