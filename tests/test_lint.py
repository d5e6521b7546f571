"""The formatter, the linter and the import contracts configured in pyproject.toml pass on the whole tree."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ruff(*argv) -> subprocess.CompletedProcess:
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert exe, "ruff is not installed: pip install -e '.[test]'"
    return subprocess.run([exe, *argv], cwd=ROOT, capture_output=True, text=True)


def test_ruff_format_leaves_every_file_unchanged():
    done = _ruff("format", "--check", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_check_finds_nothing():
    done = _ruff("check", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    """import-linter's contracts of root/pyproject.toml, checked on the package in root/src."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert exe, "import-linter is not installed: pip install -e '.[test]'"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([exe, "--no-cache", "--no-logo"], cwd=root, env=env, capture_output=True, text=True)


def test_imports_keep_the_layering():
    """Every import runs downward (errors < ... < cli), no command imports another, no cycles."""
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    """The contract is not vacuous: one import of a command into the lowest layer breaks it."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copytree(ROOT / "src" / "bptt", tmp_path / "src" / "bptt", ignore=shutil.ignore_patterns("__pycache__"))
    errors = tmp_path / "src" / "bptt" / "errors.py"
    errors.write_text(errors.read_text() + "\n\ndef _upward():\n    from bptt.commands import train  # noqa: F401\n")
    done = _lint_imports(tmp_path)
    assert done.returncode != 0
    assert "bptt.errors is not allowed to import bptt.commands" in done.stdout, done.stdout
