"""Bad input through the CLI, one row each: one line naming the problem, the exit status,
no traceback, and nothing written or changed.

A row is (id, argv, files, exit status, a substring of the one-line message):

    argv    the command line; {tmp} is the test's directory, {run} / {wrun} copies of
            a trained character / word language-model run inside it
    files   what to create first, {path: content}: bytes or str are written, None
            deletes, READONLY makes a directory nobody may write in, a function
            is called with the path (to damage a file of a run); "@weights" and
            "@optimizer" name a run's current tensor files

Every file under {tmp} (the run copies included) must be byte for byte the same
afterwards. Rows for CoNLL-U, TSV and CSV readers join this table when those tasks land.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from bptt import checkpoint, resources
from bptt.cli import main

TEXT = ("the quick brown fox jumps over the lazy dog.\n" * 8 + "a stitch in time saves nine.\n" * 8) * 3
SMALL = "--hidden-size 8 --num-layers 1 --embedding-size 4 --batch-size 4 --seq-length 10 --samples 0 --max-epochs 0.5"
T = f"train {SMALL} --out {{tmp}}/out"  # a train command line that fails, if a row is wrong, in a second
READONLY = "<a directory without write permission>"
HUGE_LINE = "a" * 2_000_000  # one line, 2 MB, one distinct character
GIANT = 10**8
TOML_ERROR = "c.toml: not valid TOML" if sys.version_info >= (3, 11) else "c.toml: TOML needs Python 3.11"


def cut(n):
    return lambda p: p.write_bytes(p.read_bytes()[:-n])


def flip(p):
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x40
    p.write_bytes(bytes(data))


def edit_index(sealed=True, **changes):
    """Change fields of checkpoint.json ("a.b": value sets index["a"]["b"]); sealed: update its
    checksum too, as a checkpoint written by another version of bptt would be."""

    def apply(p):
        index = json.loads(p.read_text())
        for dotted, value in changes.items():
            *path, last = dotted.split(".")
            node = index
            for key in path:
                node = node[key]
            node[last] = value
        if sealed:
            index["sha256"] = checkpoint.index_sha256(index)
        p.write_text(json.dumps(index))

    return apply


ROWS = [
    # ---- train: the text ----
    ("missing", f"{T} --data {{tmp}}/missing.txt", {}, 2, "missing.txt: no such file"),
    ("empty", f"{T} --data {{tmp}}/e.txt", {"e.txt": b""}, 2, "e.txt: is empty (0 bytes)"),
    ("whitespace", f"{T} --data {{tmp}}/w.txt", {"w.txt": " \n\t\n"}, 2, "w.txt: is empty (only whitespace)"),
    ("binary", f"{T} --data {{tmp}}/b.bin", {"b.bin": bytes(range(256)) * 4}, 2, "b.bin: looks like a binary file (a NUL byte at offset 0)"),
    ("late NUL", f"{T} --data {{tmp}}/n.txt", {"n.txt": TEXT.encode() * 50 + b"\0"}, 2, f"a NUL byte at offset {len(TEXT) * 50}"),
    ("latin-1", f"{T} --data {{tmp}}/l.txt", {"l.txt": "caf\xe9\n".encode("latin-1")}, 2, "l.txt: is not utf-8 text (invalid byte 0xe9 at offset 3)"),
    ("cut UTF-8", f"{T} --data {{tmp}}/u.txt", {"u.txt": TEXT.encode() + "é".encode()[:1]}, 2, "u.txt: is not utf-8 text"),
    ("wrong encoding", f"{T} --data {{tmp}}/c.txt --encoding utf-16", {"c.txt": TEXT[:-1]}, 2, "c.txt: is not utf-16 text"),
    ("unknown encoding", f"{T} --data {{tmp}}/c.txt --encoding klingon", {"c.txt": TEXT}, 2, "--encoding klingon: unknown encoding name"),
    ("directory", f"{T} --data {{tmp}}", {}, 2, "is a directory, expected a text file"),
    ("huge line", f"{T} --data {{tmp}}/h.txt", {"h.txt": HUGE_LINE}, 2, "h.txt: only the character 'a', a language model needs at least 2"),
    ("huge line, words", f"{T} --data {{tmp}}/h.txt --level word --min-freq 2", {"h.txt": " ".join(f"w{i}" for i in range(100_000))},
     2, "h.txt: a vocabulary of only <unk> with --min-freq"),  # fmt: skip
    ("too short", f"{T} --data {{tmp}}/s.txt --valid-fraction 0.1", {"s.txt": "abcdefghij" * 3}, 2, "training tokens, but --batch-size 4 x --seq-length 10"),
    ("valid missing", f"{T} --data {{tmp}}/c.txt --valid {{tmp}}/v.txt", {"c.txt": TEXT}, 2, "v.txt: no such file"),
    ("valid unknown char", f"{T} --data {{tmp}}/c.txt --valid {{tmp}}/v.txt", {"c.txt": TEXT, "v.txt": "the Zebra\n"}, 2,
     "v.txt:1:5: character 'Z' is not in the model's vocabulary"),  # fmt: skip
    ("word vocab of 1", f"{T} --data {{tmp}}/c.txt --level word --vocab-size 1", {"c.txt": TEXT}, 2, "a vocabulary of only <unk> with --vocab-size"),
    # ---- train: option values ----
    ("lr nan", f"{T} --lr nan", {}, 2, "argument --lr: got nan, expected a positive finite number"),
    ("lr inf", f"{T} --lr inf", {}, 2, "argument --lr: got inf"),
    ("lr negative", f"{T} --lr -0.1", {}, 2, "argument --lr: got -0.1"),
    ("hidden negative", f"{T} --hidden-size -4", {}, 2, "argument --hidden-size: got -4, expected a positive integer"),
    ("hidden zero", f"{T} --hidden-size 0", {}, 2, "argument --hidden-size: got 0"),
    ("seq-length zero", f"{T} --seq-length 0", {}, 2, "argument --seq-length: got 0"),
    ("batch negative", f"{T} --batch-size -1", {}, 2, "argument --batch-size: got -1"),
    ("hidden not a number", f"{T} --hidden-size many", {}, 2, "argument --hidden-size: got many"),
    ("dropout 1", f"{T} --dropout 1", {}, 2, "argument --dropout: got 1, expected a number in [0, 1)"),
    ("valid-fraction", f"{T} --valid-fraction 1.5", {}, 2, "argument --valid-fraction: got 1.5"),
    ("max-epochs zero", f"{T} --max-epochs 0", {}, 2, "argument --max-epochs: got 0"),
    ("seed negative", f"{T} --seed -1", {}, 2, "argument --seed: got -1, expected an integer >= 0"),
    ("max-rollbacks", f"{T} --max-rollbacks -1", {}, 2, "argument --max-rollbacks: got -1"),
    ("samples", f"{T} --samples -2", {}, 2, "argument --samples: got -2"),
    ("k2 < k1", f"{T} --data {{tmp}}/c.txt --backprop-steps 5", {"c.txt": TEXT}, 2, "--backprop-steps: got 5, expected at least --seq-length (10)"),
    ("horizon, 2 layers", f"{T} --data {{tmp}}/c.txt --horizon 3 --num-layers 2", {"c.txt": TEXT}, 2, "--horizon: the per-output horizon is defined for --num-layers 1"),
    ("bidirectional LM", f"{T} --data {{tmp}}/c.txt --bidirectional", {"c.txt": TEXT}, 2, "a language model reads left to right"),
    ("level choice", f"{T} --level sentence", {}, 2, "argument --level: invalid choice: 'sentence'"),
    ("unknown flag", f"{T} --bogus 3", {}, 2, "unrecognized arguments: --bogus 3"),
    ("too big for memory", f"{T} --data {{tmp}}/c.txt --hidden-size {GIANT}", {"c.txt": TEXT}, 2, "GiB is available; use a smaller --hidden-size"),
    # ---- train: the run directory ----
    ("out is a file", f"{T} --data {{tmp}}/c.txt --out {{tmp}}/c.txt", {"c.txt": TEXT}, 2, "c.txt: is a file, expected a directory"),
    ("out under a file", f"{T} --data {{tmp}}/c.txt --out {{tmp}}/c.txt/run", {"c.txt": TEXT}, 2, "c.txt is a file, expected a directory"),
    ("out not a run", f"{T} --data {{tmp}}/c.txt --out {{tmp}}/d --overwrite", {"c.txt": TEXT, "d/notes.txt": "mine"}, 2,
     "d: is not a bptt run directory, refusing to overwrite it"),  # fmt: skip
    ("out is a run", f"{T} --data {{tmp}}/c.txt --out {{run}}", {"c.txt": TEXT}, 2, "already exists; pass --resume"),
    ("out read-only", f"{T} --data {{tmp}}/c.txt --out {{tmp}}/ro/run", {"c.txt": TEXT, "ro": READONLY}, 2, "ro/run: no permission to write in"),
    ("unwritable run dir", f"{T} --data {{tmp}}/c.txt --out {{tmp}}/ro", {"c.txt": TEXT, "ro": READONLY}, 2, "ro: no permission to write in"),
    # ---- train --config ----
    ("config unknown key", f"{T} --config {{tmp}}/c.json", {"c.json": '{"hiden_size": 3}'}, 2, "c.json: unknown option 'hiden_size'"),
    ("config bad JSON", f"{T} --config {{tmp}}/c.json", {"c.json": '{"hidden_size": '}, 2, "c.json: not valid JSON"),
    ("config bad TOML", f"{T} --config {{tmp}}/c.toml", {"c.toml": "hidden_size = = 3"}, 2, TOML_ERROR),
    ("config out of range", f"{T} --config {{tmp}}/c.json", {"c.json": '{"hidden-size": -3}'}, 2, "c.json: argument --hidden-size: got -3"),
    ("config not a table", f"{T} --config {{tmp}}/c.json", {"c.json": "[1, 2]"}, 2, "c.json: expected a table of option = value"),
    ("config list value", f"{T} --config {{tmp}}/c.json", {"c.json": '{"lr": [1, 2]}'}, 2, "c.json: lr expects a single value"),
    ("config flag not bool", f"{T} --config {{tmp}}/c.json", {"c.json": '{"lowercase": "yes"}'}, 2, "c.json: lowercase expects true or false"),
    ("config missing", f"{T} --config {{tmp}}/none.toml", {}, 2, "none.toml: no such file"),
    ("config binary", f"{T} --config {{tmp}}/c.json", {"c.json": b"\x00\xff"}, 2, "c.json: looks like a binary file"),
    # ---- train --resume ----
    ("resume missing", "train --resume {tmp}/nowhere", {}, 2, "nowhere: no such run directory"),
    ("resume a file", "train --resume {tmp}/c.txt", {"c.txt": TEXT}, 2, "c.txt: is a file, expected a run directory"),
    ("resume no checkpoint", "train --resume {tmp}/d", {"d/metrics.jsonl": ""}, 2, "checkpoint.json: missing"),
    ("resume truncated", "train --resume {run}", {"{run}/@weights": cut(10)}, 2, "bytes, expected"),
    ("resume tampered", "train --resume {run}", {"{run}/@weights": flip}, 2, "sha256 mismatch (the file was modified or corrupted)"),
    ("resume no optimizer", "train --resume {run}", {"{run}/@optimizer": None}, 2, "safetensors: missing"),
    ("resume bad JSON", "train --resume {run}", {"{run}/checkpoint.json": '{"format": "bptt-'}, 2, "checkpoint.json: not valid JSON"),
    ("resume edited JSON", "train --resume {run}", {"{run}/checkpoint.json": edit_index(False, **{"train.lr": 0.5})}, 2,
     "checkpoint.json: sha256 mismatch (the file was modified or corrupted)"),  # fmt: skip
    ("resume new version", "train --resume {run}", {"{run}/checkpoint.json": edit_index(version=99)}, 2, "checkpoint format version 99"),
    ("resume other shape", "train --resume {run}", {"{run}/checkpoint.json": edit_index(**{"model.hidden_size": 9})}, 2, "run: tensor 'rnn0.U' has shape (8, 4), expected (9, 4)"),
    ("resume bad model", "train --resume {run}", {"{run}/checkpoint.json": edit_index(**{"model.nonlinearity": "gelu"})}, 2,
     "the model configuration in checkpoint.json is not usable"),  # fmt: skip
    ("resume bad step", "train --resume {run}", {"{run}/checkpoint.json": edit_index(**{"train.progress.step": "7"})}, 2, "progress 'step' is '7', expected an integer"),
    ("resume cursor", "train --resume {run}", {"{run}/checkpoint.json": edit_index(**{"train.progress.chunk": 10**6})}, 2, "an epoch of this run has"),
    ("resume lr", "train --resume {run}", {"{run}/checkpoint.json": edit_index(**{"train.lr": -1})}, 2, "learning rate -1, expected a positive number"),
    ("resume rng", "train --resume {run}", {"{run}/checkpoint.json": edit_index(**{"train.rng": {}})}, 2, "the training state does not fit this run"),
    ("resume batch size", "train --resume {run}", {"{run}/checkpoint.json": edit_index(**{"train.options.batch_size": 3})}, 2, "state.h has shape (1, 4, 8), expected (1, 3, 8)"),
    ("resume vocabulary", "train --resume {run}", {"{run}/checkpoint.json": edit_index(**{"train.options.extra.vocab.itos": ["a", "b"]})}, 2,
     "a vocabulary of 2 tokens for a model of 29"),  # fmt: skip
    ("resume data changed", "train --resume {run}", {"corpus.txt": TEXT + "more\n"}, 2, "the training data"),
    ("resume data gone", "train --resume {run}", {"corpus.txt": None}, 2, "corpus.txt: no such file"),
    ("resume read-only", "train --resume {run}", {"{run}": READONLY}, 2, "run: no permission to write in"),
    # ---- generate ----
    ("generate no run", "generate {tmp}/nowhere", {}, 2, "nowhere: no such run directory"),
    ("generate unknown char", "generate {run} --prime Zebra", {}, 2, "--prime:1:1: character 'Z' is not in the model's vocabulary"),
    ("generate empty prime", "generate {run} --prime=", {}, 2, "--prime: expected at least one character"),
    ("generate length 0", "generate {run} --length 0", {}, 2, "argument --length: got 0"),
    ("generate temperature nan", "generate {run} --temperature nan", {}, 2, "argument --temperature: got nan"),
    ("generate top-k", "generate {run} --top-k -1", {}, 2, "argument --top-k: got -1"),
    ("generate seed", "generate {run} --seed -5", {}, 2, "argument --seed: got -5"),
    ("generate truncated", "generate {run}", {"{run}/@weights": cut(1)}, 2, "bytes, expected"),
    ("generate no vocabulary", "generate {run}", {"{run}/checkpoint.json": edit_index(**{"train.options.extra.vocab": [1]})}, 2, "run: checkpoint.json: vocabulary: found list"),
    ("generate word prime", "generate {wrun} --prime=' '", {}, 2, "--prime: no token of the vocabulary in it"),
    # ---- evaluate ----
    ("evaluate empty", "evaluate {run} --data {tmp}/e.txt", {"e.txt": ""}, 2, "e.txt: is empty"),
    ("evaluate unknown char", "evaluate {run} --data {tmp}/t.txt", {"t.txt": "the fox\nthe Zebra"}, 2, "t.txt:2:5: character 'Z'"),
    ("evaluate one token", "evaluate {run} --data {tmp}/t.txt", {"t.txt": "a"}, 2, "t.txt: 1 tokens, expected at least 2"),
    ("evaluate tampered", "evaluate {run}", {"{run}/@optimizer": flip}, 2, "sha256 mismatch"),
    ("evaluate not a run", "evaluate {tmp}", {}, 2, "checkpoint.json: missing"),
    # ---- plot ----
    ("plot no metrics", "plot {run}", {"{run}/metrics.jsonl": None}, 2, "metrics.jsonl: missing"),
    ("plot empty metrics", "plot {run}", {"{run}/metrics.jsonl": "\n"}, 2, "metrics.jsonl: empty"),
    ("plot bad line", "plot {run}", {"{run}/metrics.jsonl": '{"step": 1, "train_loss": 2}\n{oops\n'}, 2, "metrics.jsonl:2: not a JSON line"),
    ("plot huge line", "plot {run}", {"{run}/metrics.jsonl": "x" * 3_000_000}, 2, "metrics.jsonl:1: not a JSON line"),
    ("plot binary metrics", "plot {run}", {"{run}/metrics.jsonl": b"\xff\xfe\x00garbage"}, 2, "metrics.jsonl:1: not a JSON line"),
    ("plot wrong record", "plot {run}", {"{run}/metrics.jsonl": '{"step": 1}\n'}, 2, "metrics.jsonl:1: expected an object with step and train_loss"),
    ("plot out nowhere", "plot {run} --out {tmp}/no/such/dir/x.png", {}, 2, "x.png: No such file or directory"),
    # ---- gradcheck ----
    ("gradcheck hidden 0", "gradcheck --hidden-size 0", {}, 2, "argument --hidden-size: got 0"),
    ("gradcheck eps nan", "gradcheck --eps nan", {}, 2, "argument --eps: got nan"),
    ("gradcheck k2 < k1", "gradcheck --seq-length 5 --backprop-steps 2", {}, 2, "--backprop-steps: got 2, expected k2 >= --seq-length"),
    ("gradcheck TBPTT bidir", "gradcheck --backprop-steps 8 --bidirectional", {}, 2, "TBPTT windows need a unidirectional many-to-many model"),
    ("gradcheck bidir 1-to-many", "gradcheck --mode one-to-many --bidirectional", {}, 2, "bidirectional: a one-to-many model generates left to right"),
    ("gradcheck huge", f"gradcheck --hidden-size {GIANT}", {}, 2, "the gradient check needs about"),
    ("gradcheck mode", "gradcheck --mode some-to-some", {}, 2, "argument --mode: invalid choice"),
    # ---- the command itself ----
    ("unknown command", "trian", {}, 2, "argument COMMAND: invalid choice: 'trian'"),
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A trained character run and a word run (with their corpus), to copy into each test."""
    base = tmp_path_factory.mktemp("runs")
    (base / "corpus.txt").write_text(TEXT)
    for name, extra in (("run", []), ("wrun", ["--level", "word", "--seq-length", "3"])):
        argv = ["train", *SMALL.split(), "--data", str(base / "corpus.txt"), "--out", str(base / name), "--eval-every", "10", *extra]
        assert main(argv) == 0
    return {"run": base / "run", "wrun": base / "wrun", "corpus": base / "corpus.txt"}


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under root with its content (None for directories)."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def make_files(tmp: Path, files: dict, places: dict, monkeypatch) -> None:
    for spec, content in files.items():
        path = Path(spec.format(**places)) if spec.startswith("{") else tmp / spec
        if path.name.startswith("@"):
            path = path.parent / json.loads((path.parent / "checkpoint.json").read_text())[path.name[1:]]
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            path.unlink()
        elif content is READONLY:
            path.mkdir(exist_ok=True)
            path.chmod(0o555)
            if os.geteuid() == 0:  # root writes anywhere whatever the mode: deny it as the kernel would a user
                real = os.access
                monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == path else real(p, mode, **kw))
        elif callable(content):
            content(path)
        else:
            path.write_bytes(content if isinstance(content, bytes) else content.encode())


def run_cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's usage errors
        return e.code


@pytest.mark.parametrize("argv,files,code,message", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_bad_input(argv, files, code, message, runs, tmp_path, monkeypatch, capsys):
    places = {"tmp": tmp_path, "run": tmp_path / "run", "wrun": tmp_path / "wrun"}
    for name in ("run", "wrun"):
        if f"{{{name}}}" in argv or any(f"{{{name}}}" in k for k in files):
            shutil.copytree(runs[name], places[name])
            # the run remembers its corpus by path: point it at this test's copy
            edit_index(**{"train.options.extra.data": str(tmp_path / "corpus.txt")})(places[name] / "checkpoint.json")
            (tmp_path / "corpus.txt").write_text(TEXT)
    make_files(tmp_path, files, places, monkeypatch)
    before = snapshot(tmp_path)
    try:
        status = run_cli([a.format(**places) for a in shlex.split(argv)])
    finally:
        for p in tmp_path.rglob("*"):
            if p.is_dir():
                p.chmod(0o755)  # so that pytest can clean up
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert status == code, (status, err)
    assert len(lines) == 1 and lines[0].startswith("bptt: error: "), err
    assert message in lines[0], lines[0]
    assert "Traceback" not in err + out
    assert snapshot(tmp_path) == before, "files were written or changed"


def test_the_table_covers_every_command():
    assert len(ROWS) >= 40 and len({r[0] for r in ROWS}) == len(ROWS)
    commands = {shlex.split(r[1].replace(T, "train"))[0] for r in ROWS}
    assert {"train", "generate", "evaluate", "plot", "gradcheck"} <= commands
    assert any("--resume" in r[1] for r in ROWS) and any("--config" in r[1] for r in ROWS)
    assert any("--level word" in r[1] for r in ROWS)


# ---- errors that are not the user's ---------------------------------------------


@pytest.mark.parametrize("error,code,line", [
    (RuntimeError("a bug\nover two lines"), 1,
     "bptt: internal error: RuntimeError: a bug over two lines (re-run with --debug for the traceback)"),
    (MemoryError("Unable to allocate 74.5 GiB for an array with shape (100000, 100000)"), 2,
     "bptt: error: out of memory (Unable to allocate 74.5 GiB for an array with shape (100000, 100000)); use smaller sizes"),
])  # fmt: skip
def test_errors_while_running_are_one_line_and_debug_shows_the_traceback(runs, monkeypatch, capsys, error, code, line):
    from bptt import generate

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(generate, "sample", fail)
    argv = ["generate", str(runs["run"]), "--length", "3"]
    assert main(argv) == code
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(line), lines
    with pytest.raises(type(error)):
        main(["--debug", *argv])


def test_a_full_disk_while_saving_is_one_line_naming_the_file(runs, tmp_path, monkeypatch, capsys):
    import errno

    real = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    out = tmp_path / "run"
    assert main(["train", *SMALL.split(), "--data", str(runs["corpus"]), "--out", str(out), "--eval-every", "2"]) == 2
    monkeypatch.setattr(os, "fsync", real)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"bptt: error: {out / 'metrics.jsonl'}: No space left on device"]
    assert not out.exists()  # it failed before its first checkpoint: nothing left behind


def test_a_run_killed_before_its_first_checkpoint_can_be_started_over(runs, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".weights-000000002-ab.safetensors.1f2e.tmp").write_bytes(b"partial")
    (out / "metrics.jsonl").write_text('{"step": 2, "train_loss": 3.0}\n')
    argv = ["train", *SMALL.split(), "--data", str(runs["corpus"]), "--out", str(out)]
    assert main(argv) == 2
    assert "holds no checkpoint yet (a run stopped before its first); pass --overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    assert checkpoint.load(out).train_state["progress"]["step"] > 0
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_memory_limit_message_suggests_what_to_lower_for_words(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(resources, "available_memory", lambda: 2**20)  # a 1 MiB machine
    argv = ["train", *SMALL.split(), "--data", str(runs["corpus"]), "--out", str(tmp_path / "r"), "--level", "word"]
    assert main([*argv, "--hidden-size", "2000"]) == 2
    assert "parameters and their copies" in capsys.readouterr().err
    assert main([*argv, "--batch-size", "64", "--seq-length", "400"]) == 2
    err = capsys.readouterr().err
    assert "of 400 steps x 64 sequences" in err and "--batch-size" in err
    assert not (tmp_path / "r").exists()
    np.testing.assert_equal(resources.available_memory(), 2**20)
