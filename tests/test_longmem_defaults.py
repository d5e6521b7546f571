"""The long-memory tasks' defaults solve the case the docs show: the adding problem at T = 50."""

from __future__ import annotations

import json

import pytest

from bptt.cli import main


@pytest.mark.slow
def test_adding_at_t50_passes_with_the_defaults(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--task", "adding", "--length", "50", "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["solved"], result
    assert "adding (sum variant), T=50: PASS" in capsys.readouterr().out
