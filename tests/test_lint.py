"""The formatter and the linter configured in pyproject.toml pass on the whole tree."""

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
