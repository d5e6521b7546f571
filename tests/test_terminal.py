"""What a user sees in a terminal and in a pipe: the progress bar and the log lines under a
pseudo-terminal, a reader that closes the pipe early, help texts, mistyped flags."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from bptt.cli import build_parser, main

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "COLUMNS": "160"}
TINY = ["--hidden-size", "8", "--num-layers", "1", "--embedding-size", "4", "--seq-length", "10"]
TINY += ["--batch-size", "2", "--samples", "0"]


def command(*argv) -> list[str]:
    return [sys.executable, "-m", "bptt.cli", *map(str, argv)]


def in_terminal(*argv, timeout: float = 120) -> tuple[int, str]:
    """Run bptt with stdout and stderr on one pseudo-terminal of 160 columns, as in a real terminal;
    (exit status, everything written to the terminal, raw: carriage returns and all)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    proc = subprocess.Popen(command(*argv), env=ENV, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([master], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                raise AssertionError(f"bptt {' '.join(map(str, argv))}: still running after {timeout} s")
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        if proc.poll() is None and time.monotonic() > deadline:
            proc.kill()
    return proc.wait(timeout=timeout), b"".join(chunks).decode("utf-8", "replace")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("the quick brown fox jumps over the lazy dog\n" * 60)
    return path


@pytest.fixture(scope="module")
def lm_run(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    assert main(["train", "--data", str(corpus), "--out", str(out), *TINY, "--max-epochs", "1"]) == 0
    return out


@pytest.mark.slow
def test_log_lines_start_a_line_of_their_own_and_the_bar_is_not_redrawn_after_the_summary(corpus, tmp_path):
    # --max-time stops after the first update, before the bar is full: the case where an unclosed
    # bar used to be drawn again at exit, under the summary
    code, screen = in_terminal(
        "train", "--data", corpus, "--out", tmp_path / "run", *TINY, "--eval-every", "3", "--max-epochs", "1"
    )
    assert code == 0, screen
    logs = [m.start() for m in re.finditer(r"step \d+ \| epoch", screen)]
    assert len(logs) >= 2, screen
    for at in logs:  # at the start of a line: after \n, or after the \r with which the bar clears itself
        assert screen[at - 1] in "\r\n", repr(screen[max(at - 80, 0) : at + 20])
    code, screen = in_terminal(
        "train", "--data", corpus, "--out", tmp_path / "early", *TINY, "--max-time", "1e-9", "--max-epochs", "1"
    )
    assert code == 0, screen
    assert "%|" in screen, "no progress bar was drawn: the test would prove nothing"
    after = screen[screen.index("stopped after") :]
    assert "%|" not in after, repr(after)


@pytest.mark.slow
def test_the_bar_shows_the_unit_and_throughput_of_the_log_lines(corpus, tmp_path):
    code, screen = in_terminal(
        "train", "--data", corpus, "--out", tmp_path / "run", *TINY, "--eval-every", "5", "--max-epochs", "1"
    )
    assert code == 0, screen
    bars = [line for line in re.split(r"[\r\n]", screen) if "%|" in line]
    assert bars, screen
    with_postfix = [b for b in bars if "tok/s" in b]
    assert with_postfix and all("train bpc " in b for b in with_postfix), bars
    assert not any(re.search(r"\bloss \d", b) for b in bars), bars  # nats are not shown next to bits
    log = [line for line in screen.splitlines() if re.search(r"step \d+ \| epoch", line)]
    assert all("train bpc" in line for line in log), log


def closed_pipe(*argv) -> subprocess.CompletedProcess:
    """Run bptt with stdout a pipe whose reading end is already closed (`| head` that has had enough)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(command(*argv), env=ENV, stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)


@pytest.mark.parametrize("what", ["generate", "evaluate", "help"])
def test_a_reader_that_closes_the_pipe_ends_the_command_quietly(lm_run, what):
    argv = {"generate": ["generate", lm_run, "--length", "2000"], "evaluate": ["evaluate", lm_run]}
    argv = argv.get(what, ["train", "--help"])
    done = closed_pipe(*argv)
    assert (done.returncode, done.stderr) == (0, "")


def command_parser(name: str = "train"):
    parser = build_parser()
    return next(a for a in parser._actions if a.choices and "train" in a.choices).choices[name]


def train_parser():
    return command_parser("train")


COMMANDS = ["train", "generate", "evaluate", "predict", "plot", "diagnose", "bench", "gradcheck"]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_has_help_and_shows_its_default(name):
    p = command_parser(name)
    for action in p._actions:
        if not action.option_strings or action.dest == "help":
            continue
        assert action.help, f"{action.option_strings[0]}: no help text"
        formatter = p._get_formatter()
        formatter.add_argument(action)
        text = " ".join(formatter.format_help().split())
        if action.default not in (None, False, ""):
            assert "default" in text, f"{action.option_strings[0]}: the default is not shown: {text}"
    if name in ("train", "gradcheck"):
        assert p.format_usage().strip() == f"usage: bptt {name} [options]"


def test_the_help_shows_the_language_models_numbers():
    text = " ".join(train_parser().format_help().split())
    for shown in ("learning rate (default: 0.002)", "(default: 10)", "updates between evaluations (default: 200)"):
        assert shown in text


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["train", "--hiden-size", "64"], "did you mean --hidden-size? (see: bptt train --help)"),
        (["generate", "run", "--lenght", "3"], "did you mean --length? (see: bptt generate --help)"),
        (["train", "--zzzz"], "unrecognized arguments: --zzzz (see: bptt train --help)"),
    ],
)
def test_a_mistyped_flag_gets_the_closest_option_and_the_subcommands_help(argv, expected, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("bptt: error: ") and err.strip().endswith(expected), err
    assert len(err.strip().splitlines()) == 1


def test_plot_of_a_directory_that_does_not_exist_says_so(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.strip() == f"bptt: error: {tmp_path / 'nope'}: no such run directory"


def test_bench_help_lists_the_configurations(capsys):
    from bptt import bench

    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in bench.CONFIGS)
