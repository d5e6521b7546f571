"""The README's two set-up commands exist, and CI runs exactly the test command it shows."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands():
    text = (ROOT / "README.md").read_text()
    blocks = text.split("```sh\n")[1:3]
    return [b.split("\n```")[0].strip() for b in blocks]


def test_first_command_installs_and_trains():
    first, _ = _commands()
    assert first.startswith("python3 -m venv .venv") and first.endswith("bptt train")


def test_ci_runs_the_readme_test_command():
    _, second = _commands()
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert second in ci, "the last line of .ci/run must be the README's test command"
    assert second.endswith("python -m pytest -q")
