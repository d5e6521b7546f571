"""Bad input through the CLI, one row each: one line naming the problem, the exit status,
no traceback, and nothing written or changed.

A row is (id, argv, files, exit status, a substring of the one-line message):

    argv    the command line; {tmp} is the test's directory, {run} / {wrun} copies of
            a trained character / word language-model run inside it, {tag}, {cls},
            {reg}, {spell}, {add} copies of tiny trained task runs (a tagger, a binary
            classifier, a many-to-one regressor, the speller, the adding problem)
    files   what to create first, {path: content}: bytes or str are written, None
            deletes, READONLY makes a directory nobody may write in, a function
            is called with the path (to damage a file of a run); "@weights" and
            "@optimizer" name a run's current tensor files

Every file under {tmp} (the run copies included) must be byte for byte the same
afterwards. The tasks' rows cover the CoNLL-U, TSV and CSV readers (malformed files,
tags and labels that do not fit), `bptt predict`, `bptt evaluate` and `bptt generate
--cond` on task runs, the long-memory tasks, `bptt diagnose` and `gradcheck --method rtrl`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from bptt.cli import main
from bptt.training import checkpoint, resources

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


def edit_tensors(path, name, value):
    """Set every element of tensor `name` in the tensor file `path` to `value`, and seal the run's
    checkpoint.json with the file's new size and sha256, as a deliberate edit would."""
    import hashlib

    import safetensors.numpy as st

    tensors = st.load(path.read_bytes())
    tensors[name] = np.full_like(tensors[name], value)
    data = st.save(tensors)
    path.write_bytes(data)
    index_path = path.parent / "checkpoint.json"
    index = json.loads(index_path.read_text())
    index["files"][path.name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    index["sha256"] = checkpoint.index_sha256(index)
    index_path.write_text(json.dumps(index))


TASK = "--hidden-size 4 --embedding-size 4 --max-epochs 1 --batch-size 8"
TG = f"train --task tag {TASK} --out {{tmp}}/out --data {{tmp}}/a.conllu"  # + a file a.conllu in the row
CL = f"train --task classify {TASK} --out {{tmp}}/out --data"  # + the file
RG = "train --task regress --hidden-size 4 --max-epochs 1 --out {tmp}/out --data {tmp}/a.csv"
LM = "train --task adding --length 20 --hidden-size 4 --max-epochs 1 --batches-per-epoch 2 --out {tmp}/out"


def word(i, form: str, tag: str = "NOUN") -> str:
    """One CoNLL-U word line: ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC."""
    return f"{i}\t{form}\t{form.lower()}\t{tag}\t_\t_\t0\troot\t_\t_"


def conllu(*lines: str) -> str:
    return "\n".join(lines) + "\n\n"


GOOD = conllu("# text = dogs bark", word(1, "dogs"), word(2, "bark", "VERB"))
TSV = "great film\tpos\nawful film\tneg\n"
REG = "input,target\n0.1 0.2,0.3\n0.4 0.5 0.6,0.1\n"


ROWS = [
    # ---- train: the text ----
    ("missing", f"{T} --data {{tmp}}/missing.txt", {}, 2, "missing.txt: no such file"),
    ("empty", f"{T} --data {{tmp}}/e.txt", {"e.txt": b""}, 2, "e.txt: is empty (0 bytes)"),
    ("whitespace", f"{T} --data {{tmp}}/w.txt", {"w.txt": " \n\t\n"}, 2, "w.txt: is empty (only whitespace)"),
    (
        "binary",
        f"{T} --data {{tmp}}/b.bin",
        {"b.bin": bytes(range(256)) * 4},
        2,
        "b.bin: looks like a binary file (a NUL byte at offset 0)",
    ),
    (
        "late NUL",
        f"{T} --data {{tmp}}/n.txt",
        {"n.txt": TEXT.encode() * 50 + b"\0"},
        2,
        f"a NUL byte at offset {len(TEXT) * 50}",
    ),
    (
        "latin-1",
        f"{T} --data {{tmp}}/l.txt",
        {"l.txt": "caf\xe9\n".encode("latin-1")},
        2,
        "l.txt: is not utf-8 text (invalid byte 0xe9 at offset 3)",
    ),
    (
        "cut UTF-8",
        f"{T} --data {{tmp}}/u.txt",
        {"u.txt": TEXT.encode() + "é".encode()[:1]},
        2,
        "u.txt: is not utf-8 text",
    ),
    (
        "wrong encoding",
        f"{T} --data {{tmp}}/c.txt --encoding utf-16",
        {"c.txt": TEXT[:-1]},
        2,
        "c.txt: is not utf-16 text",
    ),
    (
        "unknown encoding",
        f"{T} --data {{tmp}}/c.txt --encoding klingon",
        {"c.txt": TEXT},
        2,
        "--encoding klingon: unknown encoding name",
    ),
    ("directory", f"{T} --data {{tmp}}", {}, 2, "is a directory, expected a text file"),
    (
        "huge line",
        f"{T} --data {{tmp}}/h.txt",
        {"h.txt": HUGE_LINE},
        2,
        "h.txt: only the character 'a', a language model needs at least 2",
    ),
    (
        "huge line, words",
        f"{T} --data {{tmp}}/h.txt --level word --min-freq 2",
        {"h.txt": " ".join(f"w{i}" for i in range(100_000))},
        2,
        "h.txt: a vocabulary of only <unk> with --min-freq",
    ),
    (
        "too short",
        f"{T} --data {{tmp}}/s.txt --valid-fraction 0.1",
        {"s.txt": "abcdefghij" * 3},
        2,
        "training tokens, but --batch-size 4 x --seq-length 10",
    ),
    ("valid missing", f"{T} --data {{tmp}}/c.txt --valid {{tmp}}/v.txt", {"c.txt": TEXT}, 2, "v.txt: no such file"),
    (
        "valid unknown char",
        f"{T} --data {{tmp}}/c.txt --valid {{tmp}}/v.txt",
        {"c.txt": TEXT, "v.txt": "the Zebra\n"},
        2,
        "v.txt:1:5: character 'Z' is not in the model's vocabulary",
    ),
    (
        "word vocab of 1",
        f"{T} --data {{tmp}}/c.txt --level word --vocab-size 1",
        {"c.txt": TEXT},
        2,
        "a vocabulary of only <unk> with --vocab-size",
    ),
    (
        "task lm by name",
        f"train --task lm {SMALL} --out {{tmp}}/out --data {{tmp}}/o.txt",
        {"o.txt": "aaaa"},
        2,
        "o.txt: only the character 'a', a language model needs at least 2",
    ),
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
    ("input-dropout 1", f"{T} --input-dropout 1", {}, 2, "argument --input-dropout: got 1, expected a number in"),
    ("output-dropout -1", f"{T} --output-dropout -1", {}, 2, "argument --output-dropout: got -1, expected a"),
    (
        "weight-decay -1",
        f"{T} --weight-decay -1",
        {},
        2,
        "argument --weight-decay: got -1, expected a finite number >= 0",
    ),
    ("weight-decay nan", f"{T} --weight-decay nan", {}, 2, "argument --weight-decay: got nan"),
    ("optimizer adamx", f"{T} --optimizer adamx", {}, 2, "argument --optimizer: invalid choice: 'adamx'"),
    ("valid-fraction", f"{T} --valid-fraction 1.5", {}, 2, "argument --valid-fraction: got 1.5"),
    ("max-epochs zero", f"{T} --max-epochs 0", {}, 2, "argument --max-epochs: got 0"),
    ("seed negative", f"{T} --seed -1", {}, 2, "argument --seed: got -1, expected an integer >= 0"),
    ("max-rollbacks", f"{T} --max-rollbacks -1", {}, 2, "argument --max-rollbacks: got -1"),
    ("samples", f"{T} --samples -2", {}, 2, "argument --samples: got -2"),
    (
        "k2 < k1",
        f"{T} --data {{tmp}}/c.txt --backprop-steps 5",
        {"c.txt": TEXT},
        2,
        "--backprop-steps: got 5, expected at least --seq-length (10)",
    ),
    (
        "horizon, 2 layers",
        f"{T} --data {{tmp}}/c.txt --horizon 3 --num-layers 2",
        {"c.txt": TEXT},
        2,
        "--horizon: the per-output horizon is defined for --num-layers 1",
    ),
    (
        "bidirectional LM",
        f"{T} --data {{tmp}}/c.txt --bidirectional",
        {"c.txt": TEXT},
        2,
        "a language model reads left to right",
    ),
    ("level choice", f"{T} --level sentence", {}, 2, "argument --level: invalid choice: 'sentence'"),
    ("unknown flag", f"{T} --bogus 3", {}, 2, "unrecognized arguments: --bogus 3"),
    (
        "too big for memory",
        f"{T} --data {{tmp}}/c.txt --hidden-size {GIANT}",
        {"c.txt": TEXT},
        2,
        "GiB is available; use a smaller --hidden-size",
    ),
    (
        "overwrite too big",
        f"train {SMALL} --data {{tmp}}/c.txt --out {{run}} --overwrite --hidden-size {GIANT}",
        {"c.txt": TEXT},
        2,
        "GiB is available; use a smaller --hidden-size",
    ),  # the run it would replace stays as it was
    # ---- train: the run directory ----
    (
        "out is a file",
        f"{T} --data {{tmp}}/c.txt --out {{tmp}}/c.txt",
        {"c.txt": TEXT},
        2,
        "c.txt: is a file, expected a directory",
    ),
    (
        "out under a file",
        f"{T} --data {{tmp}}/c.txt --out {{tmp}}/c.txt/run",
        {"c.txt": TEXT},
        2,
        "c.txt is a file, expected a directory",
    ),
    (
        "out not a run",
        f"{T} --data {{tmp}}/c.txt --out {{tmp}}/d --overwrite",
        {"c.txt": TEXT, "d/notes.txt": "mine"},
        2,
        "d: is not a bptt run directory, refusing to overwrite it",
    ),
    ("out is a run", f"{T} --data {{tmp}}/c.txt --out {{run}}", {"c.txt": TEXT}, 2, "already exists; pass --resume"),
    (
        "out read-only",
        f"{T} --data {{tmp}}/c.txt --out {{tmp}}/ro/run",
        {"c.txt": TEXT, "ro": READONLY},
        2,
        "ro/run: no permission to write in",
    ),
    (
        "unwritable run dir",
        f"{T} --data {{tmp}}/c.txt --out {{tmp}}/ro",
        {"c.txt": TEXT, "ro": READONLY},
        2,
        "ro: no permission to write in",
    ),
    # ---- train --config ----
    (
        "config unknown key",
        f"{T} --config {{tmp}}/c.json",
        {"c.json": '{"hiden_size": 3}'},
        2,
        "c.json: unknown option 'hiden_size'",
    ),
    ("config bad JSON", f"{T} --config {{tmp}}/c.json", {"c.json": '{"hidden_size": '}, 2, "c.json: not valid JSON"),
    ("config bad TOML", f"{T} --config {{tmp}}/c.toml", {"c.toml": "hidden_size = = 3"}, 2, TOML_ERROR),
    (
        "config out of range",
        f"{T} --config {{tmp}}/c.json",
        {"c.json": '{"hidden-size": -3}'},
        2,
        "c.json: argument --hidden-size: got -3",
    ),
    (
        "config not a table",
        f"{T} --config {{tmp}}/c.json",
        {"c.json": "[1, 2]"},
        2,
        "c.json: expected a table of option = value",
    ),
    (
        "config list value",
        f"{T} --config {{tmp}}/c.json",
        {"c.json": '{"lr": [1, 2]}'},
        2,
        "c.json: lr expects a single value",
    ),
    (
        "config flag not bool",
        f"{T} --config {{tmp}}/c.json",
        {"c.json": '{"lowercase": "yes"}'},
        2,
        "c.json: lowercase expects true or false",
    ),
    ("config missing", f"{T} --config {{tmp}}/none.toml", {}, 2, "none.toml: no such file"),
    ("config binary", f"{T} --config {{tmp}}/c.json", {"c.json": b"\x00\xff"}, 2, "c.json: looks like a binary file"),
    # ---- train --resume ----
    ("resume missing", "train --resume {tmp}/nowhere", {}, 2, "nowhere: no such run directory"),
    ("resume a file", "train --resume {tmp}/c.txt", {"c.txt": TEXT}, 2, "c.txt: is a file, expected a run directory"),
    ("resume no checkpoint", "train --resume {tmp}/d", {"d/metrics.jsonl": ""}, 2, "checkpoint.json: missing"),
    ("resume truncated", "train --resume {run}", {"{run}/@weights": cut(10)}, 2, "bytes, expected"),
    (
        "resume tampered",
        "train --resume {run}",
        {"{run}/@weights": flip},
        2,
        "sha256 mismatch (the file was modified or corrupted)",
    ),
    ("resume no optimizer", "train --resume {run}", {"{run}/@optimizer": None}, 2, "safetensors: missing"),
    (
        "resume bad JSON",
        "train --resume {run}",
        {"{run}/checkpoint.json": '{"format": "bptt-'},
        2,
        "checkpoint.json: not valid JSON",
    ),
    (
        "resume edited JSON",
        "train --resume {run}",
        {"{run}/checkpoint.json": edit_index(False, **{"train.lr": 0.5})},
        2,
        "checkpoint.json: sha256 mismatch (the file was modified or corrupted)",
    ),
    (
        "resume new version",
        "train --resume {run}",
        {"{run}/checkpoint.json": edit_index(version=99)},
        2,
        "checkpoint format version 99",
    ),
    (
        "resume other shape",
        "train --resume {run}",
        {"{run}/checkpoint.json": edit_index(**{"model.hidden_size": 9})},
        2,
        "run: tensor 'rnn0.U' has shape (8, 4), expected (9, 4)",
    ),
    (
        "resume bad model",
        "train --resume {run}",
        {"{run}/checkpoint.json": edit_index(**{"model.nonlinearity": "gelu"})},
        2,
        "the model configuration in checkpoint.json is not usable",
    ),
    (
        "resume bad step",
        "train --resume {run}",
        {"{run}/checkpoint.json": edit_index(**{"train.progress.step": "7"})},
        2,
        "progress 'step' is '7', expected an integer",
    ),
    (
        "resume cursor",
        "train --resume {run}",
        {"{run}/checkpoint.json": edit_index(**{"train.progress.chunk": 10**6})},
        2,
        "an epoch of this run has",
    ),
    (
        "resume lr",
        "train --resume {run}",
        {"{run}/checkpoint.json": edit_index(**{"train.lr": -1})},
        2,
        "learning rate -1, expected a positive number",
    ),
    (
        "resume rng",
        "train --resume {run}",
        {"{run}/checkpoint.json": edit_index(**{"train.rng": {}})},
        2,
        "checkpoint.json: 'rng' is for bit generator None, expected 'PCG64'",
    ),
    (
        "resume rng float",
        "train --resume {run}",
        {"{run}/checkpoint.json": edit_index(**{"train.rng.state.state": 1.5})},
        2,
        "checkpoint.json: rng 'state.state' is 1.5, expected an integer in [0, ",
    ),
    (
        "resume rng even",
        "train --resume {run}",
        {"{run}/checkpoint.json": edit_index(**{"train.rng.state.inc": 2})},
        2,
        "rng 'state.inc' is even",
    ),
    (
        "resume step counter",
        "train --resume {run}",
        {"{run}/checkpoint.json": edit_index(**{"train.progress.step": 999})},
        2,
        "progress 'step' is 999, but epoch",
    ),
    (
        "resume optimizer betas",
        "train --resume {run}",
        {"{run}/checkpoint.json": edit_index(**{"train.optimizer.betas": [0.9, 1.5]})},
        2,
        "checkpoint.json: optimizer 'betas' is [0.9, 1.5], expected two numbers in [0, 1)",
    ),
    (
        "resume optimizer eps",
        "train --resume {run}",
        {"{run}/checkpoint.json": edit_index(**{"train.optimizer.eps": -1e-8})},
        2,
        "optimizer 'eps' is -1e-08, expected a number in [0, 1]",
    ),
    (
        "resume optimizer eps NaN",
        "train --resume {run}",
        {"{run}/checkpoint.json": edit_index(**{"train.optimizer.eps": float("nan")})},
        2,
        "optimizer 'eps' is nan, expected a number in [0, 1]",
    ),
    (
        "resume optimizer lr",
        "train --resume {run}",
        {"{run}/checkpoint.json": edit_index(**{"train.optimizer.lr": "0.002"})},
        2,
        "optimizer 'lr' is '0.002', expected a positive finite number",
    ),
    (
        "resume optimizer weight decay",
        "train --resume {run}",
        {"{run}/checkpoint.json": edit_index(**{"train.optimizer.weight_decay": float("inf")})},
        2,
        "optimizer 'weight_decay' is inf, expected a finite number >= 0",
    ),
    (
        "resume optimizer steps",
        "train --resume {run}",
        {"{run}/checkpoint.json": edit_index(**{"train.optimizer.t": -3})},
        2,
        "optimizer 't' is -3, expected an integer >= 0",
    ),
    (
        "resume optimizer amsgrad",
        "train --resume {run}",
        {"{run}/checkpoint.json": edit_index(**{"train.optimizer.amsgrad": 1})},
        2,
        "optimizer 'amsgrad' is 1, expected true or false",
    ),
    (
        "resume optimizer buffer NaN",
        "train --resume {run}",
        {"{run}/@optimizer": lambda p: edit_tensors(p, "opt.exp_avg.rnn0.W", np.nan)},
        2,
        "optimizer state 'exp_avg.rnn0.W': float32 values, expected finite floats",
    ),
    (
        "resume schedule where none",
        "train --resume {run}",
        {"{run}/checkpoint.json": edit_index(**{"train.options.lr_decay": 1.0, "train.schedule": {"factor": 0.5}})},
        2,
        "'schedule' is dict, but the run's options ask for none",
    ),
    (
        "resume schedule every",
        "train --resume {run}",
        {
            "{run}/checkpoint.json": edit_index(
                **{
                    "train.options.lr_decay": 0.5,
                    "train.schedule": {"factor": 0.5, "every": 0, "start": 0, "last_epoch": 0},
                }
            )
        },
        2,
        "schedule 'every' is 0, expected a positive integer",
    ),
    (
        "resume schedule factor",
        "train --resume {run}",
        {
            "{run}/checkpoint.json": edit_index(
                **{
                    "train.options.lr_decay": 0.5,
                    "train.schedule": {"factor": -2.0, "every": 1, "start": 0, "last_epoch": 0},
                }
            )
        },
        2,
        "schedule 'factor' is -2.0, expected a positive finite number",
    ),
    (
        "resume batch size",
        "train --resume {run}",
        {"{run}/checkpoint.json": edit_index(**{"train.options.batch_size": 3})},
        2,
        "state.h has shape (1, 4, 8), expected (1, 3, 8)",
    ),
    (
        "resume vocabulary",
        "train --resume {run}",
        {"{run}/checkpoint.json": edit_index(**{"train.options.extra.vocab.itos": ["a", "b"]})},
        2,
        "a vocabulary of 2 tokens for a model of 29",
    ),
    ("resume data changed", "train --resume {run}", {"corpus.txt": TEXT + "more\n"}, 2, "the training data"),
    ("resume data gone", "train --resume {run}", {"corpus.txt": None}, 2, "corpus.txt: no such file"),
    ("resume read-only", "train --resume {run}", {"{run}": READONLY}, 2, "run: no permission to write in"),
    # ---- generate ----
    ("generate no run", "generate {tmp}/nowhere", {}, 2, "nowhere: no such run directory"),
    (
        "generate unknown char",
        "generate {run} --prime Zebra",
        {},
        2,
        "--prime:1:1: character 'Z' is not in the model's vocabulary",
    ),
    ("generate empty prime", "generate {run} --prime=", {}, 2, "--prime: expected at least one character"),
    ("generate length 0", "generate {run} --length 0", {}, 2, "argument --length: got 0"),
    (
        "generate huge length",
        f"generate {{run}} --length {10**15}",
        {},
        2,
        f"--length {10**15} needs about ",
    ),
    (
        "generate huge length spell",
        f"generate {{spell}} --cond 7 --length {10**15}",
        {},
        2,
        "is available; use a smaller --length",
    ),
    (
        "diagnose huge batch",
        f"diagnose {{run}} --batch-size {10**12} --no-plot",
        {},
        2,
        f"--batch-size {10**12} x --steps 100 needs about ",
    ),
    ("generate temperature nan", "generate {run} --temperature nan", {}, 2, "argument --temperature: got nan"),
    ("generate top-k", "generate {run} --top-k -1", {}, 2, "argument --top-k: got -1"),
    ("generate seed", "generate {run} --seed -5", {}, 2, "argument --seed: got -5"),
    ("generate truncated", "generate {run} --last", {"{run}/@weights": cut(1)}, 2, "bytes, expected"),
    ("generate truncated best", "generate {run}", {"{run}/best/@weights": cut(1)}, 2, "bytes, expected"),
    (
        "generate no vocabulary",
        "generate {run} --last",
        {"{run}/checkpoint.json": edit_index(**{"train.options.extra.vocab": [1]})},
        2,
        "run: checkpoint.json: vocabulary: found list",
    ),
    ("generate word prime", "generate {wrun} --prime=' '", {}, 2, "--prime: no token of the vocabulary in it"),
    # ---- evaluate ----
    ("evaluate empty", "evaluate {run} --data {tmp}/e.txt", {"e.txt": ""}, 2, "e.txt: is empty"),
    (
        "evaluate unknown char",
        "evaluate {run} --data {tmp}/t.txt",
        {"t.txt": "the fox\nthe Zebra"},
        2,
        "t.txt:2:5: character 'Z'",
    ),
    (
        "evaluate one token",
        "evaluate {run} --data {tmp}/t.txt",
        {"t.txt": "a"},
        2,
        "t.txt: 1 tokens, expected at least 2",
    ),
    ("evaluate tampered", "evaluate {run} --last", {"{run}/@optimizer": flip}, 2, "sha256 mismatch"),
    ("evaluate tampered best", "evaluate {run}", {"{run}/best/@optimizer": flip}, 2, "sha256 mismatch"),
    ("evaluate not a run", "evaluate {tmp}", {}, 2, "checkpoint.json: missing"),
    # ---- plot ----
    ("plot no metrics", "plot {run}", {"{run}/metrics.jsonl": None}, 2, "metrics.jsonl: missing"),
    ("plot empty metrics", "plot {run}", {"{run}/metrics.jsonl": "\n"}, 2, "metrics.jsonl: empty"),
    (
        "plot bad line",
        "plot {run}",
        {"{run}/metrics.jsonl": '{"step": 1, "train_loss": 2}\n{oops\n'},
        2,
        "metrics.jsonl:2: not a JSON line",
    ),
    ("plot huge line", "plot {run}", {"{run}/metrics.jsonl": "x" * 3_000_000}, 2, "metrics.jsonl:1: not a JSON line"),
    (
        "plot binary metrics",
        "plot {run}",
        {"{run}/metrics.jsonl": b"\xff\xfe\x00garbage"},
        2,
        "metrics.jsonl:1: not a JSON line",
    ),
    (
        "plot wrong record",
        "plot {run}",
        {"{run}/metrics.jsonl": '{"step": 1}\n'},
        2,
        "metrics.jsonl:1: expected an object with step and train_loss",
    ),
    ("plot out nowhere", "plot {run} --out {tmp}/no/such/dir/x.png", {}, 2, "x.png: No such file or directory"),
    # ---- gradcheck ----
    ("gradcheck hidden 0", "gradcheck --hidden-size 0", {}, 2, "argument --hidden-size: got 0"),
    ("gradcheck eps nan", "gradcheck --eps nan", {}, 2, "argument --eps: got nan"),
    (
        "gradcheck k2 < k1",
        "gradcheck --seq-length 5 --backprop-steps 2",
        {},
        2,
        "--backprop-steps: got 2, expected k2 >= --seq-length",
    ),
    (
        "gradcheck TBPTT bidir",
        "gradcheck --backprop-steps 8 --bidirectional",
        {},
        2,
        "TBPTT windows need a unidirectional many-to-many model",
    ),
    (
        "gradcheck bidir 1-to-many",
        "gradcheck --mode one-to-many --bidirectional",
        {},
        2,
        "bidirectional: a one-to-many model generates left to right",
    ),
    ("gradcheck huge", f"gradcheck --hidden-size {GIANT}", {}, 2, "the gradient check needs about"),
    ("gradcheck mode", "gradcheck --mode some-to-some", {}, 2, "argument --mode: invalid choice"),
    # ---- train --task tag: CoNLL-U ----
    (
        "conllu 4 columns",
        TG,
        {"a.conllu": "# c\n1\tdogs\tdog\tNOUN\n\n"},
        2,
        "a.conllu:2: found 4 tab-separated columns, expected 10 (ID FORM",
    ),
    (
        "conllu 11 columns",
        TG,
        {"a.conllu": conllu(word(1, "dogs") + "\t_")},
        2,
        "a.conllu:1: found 11 tab-separated columns",
    ),
    (
        "conllu non-integer ID",
        TG,
        {"a.conllu": conllu(word(1, "dogs"), word("x", "bark"))},
        2,
        "a.conllu:2: ID 'x', expected an integer, a range like 1-2",
    ),
    ("conllu ID 0", TG, {"a.conllu": conllu(word(0, "dogs"))}, 2, "a.conllu:1: ID '0', expected an integer"),
    (
        "conllu IDs out of order",
        TG,
        {"a.conllu": conllu(word(1, "dogs"), word(3, "bark"))},
        2,
        "a.conllu:2: word ID 3, expected 2",
    ),
    (
        "conllu tag missing",
        TG,
        {"a.conllu": GOOD + conllu(word(1, "dogs"), word(2, "bark", "_"))},
        2,
        "a.conllu:6: word 'bark' has no UPOS (found '_'), expected a tag",
    ),
    (
        "conllu empty field",
        TG,
        {"a.conllu": conllu(word(1, "dogs"), word(2, "bark", ""))},
        2,
        "a.conllu:2: empty UPOS, expected a value or '_'",
    ),
    ("conllu blank FORM", TG, {"a.conllu": conllu(word(1, " "))}, 2, "a.conllu:1: empty FORM"),
    (
        "conllu bad HEAD",
        TG,
        {"a.conllu": GOOD + conllu(word(1, "x").replace("\t0\t", "\tX\t"))},
        2,
        "a.conllu:5: not valid CoNLL-U (Failed parsing field 'head'",
    ),
    ("conllu empty", TG, {"a.conllu": "\n\n"}, 2, "a.conllu: is empty"),
    (
        "conllu only comments",
        TG,
        {"a.conllu": "# sent_id = 1\n# text = nothing\n\n"},
        2,
        "a.conllu:1: a sentence without words",
    ),
    (
        "conllu only a range",
        TG,
        {"a.conllu": conllu("1-2\tdon't" + "\t_" * 8)},
        2,
        "a.conllu:1: a sentence without words",
    ),
    (
        "conllu range backwards",
        TG,
        {"a.conllu": conllu("2-1\tdon't" + "\t_" * 8, word(1, "do"), word(2, "n't"))},
        2,
        "a.conllu:1: range 2-1, expected 1-N with N > 1",
    ),
    (
        "conllu range not next",
        TG,
        {"a.conllu": conllu(word(1, "I"), "3-4\tdon't" + "\t_" * 8, word(2, "do"), word(3, "n't"))},
        2,
        "a.conllu:2: range 3-4, expected 2-N",
    ),
    (
        "conllu range too long",
        TG,
        {"a.conllu": conllu("1-3\tdon't" + "\t_" * 8, word(1, "do"), word(2, "n't"))},
        2,
        "a.conllu:1: range 1-3, but the sentence has 2 words",
    ),
    ("conllu binary", TG, {"a.conllu": b"\x00\x01\x02" * 20}, 2, "a.conllu: looks like a binary file"),
    (
        "conllu latin-1",
        TG,
        {"a.conllu": conllu(word(1, "caf\xe9")).encode("latin-1")},
        2,
        "a.conllu: is not utf-8 text (invalid byte 0xe9",
    ),
    ("conllu huge line", TG, {"a.conllu": GOOD + HUGE_LINE}, 2, "a.conllu:5: found 1 tab-separated columns"),
    (
        "conllu one tag",
        TG,
        {"a.conllu": conllu(word(1, "dogs"), word(2, "cats"))},
        2,
        "a.conllu: every word has UPOS tag 'NOUN', expected at least two tags",
    ),
    ("conllu no XPOS", f"{TG} --column xpos", {"a.conllu": GOOD}, 2, "a.conllu:2: word 'dogs' has no XPOS (found '_')"),
    ("conllu plain text", TG, {"a.conllu": "dogs bark\n"}, 2, "a.conllu:1: found 1 tab-separated columns, expected 10"),
    (
        "tag only in valid",
        f"{TG} --valid {{tmp}}/v.conllu",
        {"a.conllu": GOOD, "v.conllu": GOOD + conllu(word(1, "now", "ADV"))},
        2,
        "v.conllu:5: UPOS tag 'ADV' does not occur in the training data, expected one of: NOUN, VERB",
    ),
    ("tag valid missing", f"{TG} --valid {{tmp}}/v.conllu", {"a.conllu": GOOD}, 2, "v.conllu: no such file"),
    ("tag data missing", TG, {}, 2, "a.conllu: no such file"),
    ("tag data a directory", f"{TG} --data {{tmp}}", {}, 2, "is a directory, expected a text file"),
    (
        "tag vocabulary of 1",
        f"{TG} --vocab-size 1",
        {"a.conllu": GOOD},
        2,
        "a.conllu: a vocabulary of only <unk> with --vocab-size 1",
    ),
    (
        "tag features",
        f"{TG} --features suffix,stem",
        {"a.conllu": GOOD},
        2,
        "--features: got 'stem', expected a comma list of prefix, suffix, shape",
    ),
    ("tag column", f"{TG} --column feats", {"a.conllu": GOOD}, 2, "argument --column: invalid choice: 'feats'"),
    ("tag word dropout 1", f"{TG} --word-dropout 1", {"a.conllu": GOOD}, 2, "argument --word-dropout: got 1"),
    (
        "tag rare word dropout negative",
        f"{TG} --rare-word-dropout -0.5",
        {"a.conllu": GOOD},
        2,
        "argument --rare-word-dropout: got -0.5, expected a finite number >= 0",
    ),
    (
        "classify rare word dropout at the character level",
        f"{CL} {{tmp}}/a.tsv --level char --rare-word-dropout 0.25",
        {"a.tsv": TSV},
        2,
        "--rare-word-dropout 0.25: counts words, expected --level word (got --level char)",
    ),
    (
        "tag seq-length",
        f"{TG} --seq-length 5",
        {"a.conllu": GOOD},
        2,
        "--seq-length: only for language models; --task tag backpropagates",
    ),
    (
        "tag valid-fraction and valid",
        f"{TG} --valid-fraction 0.2 --valid {{tmp}}/a.conllu",
        {"a.conllu": GOOD},
        2,
        "a.conllu is the validation set; give one of the two, not both",
    ),
    (
        "tag out is a file",
        f"{TG} --out {{tmp}}/a.conllu",
        {"a.conllu": GOOD},
        2,
        "a.conllu: is a file, expected a directory",
    ),
    (
        "tag out read-only",
        f"{TG} --out {{tmp}}/ro/run",
        {"a.conllu": GOOD, "ro": READONLY},
        2,
        "ro/run: no permission to write in",
    ),
    # ---- train --task classify: TSV and CSV ----
    (
        "tsv no tab",
        f"{CL} {{tmp}}/a.tsv",
        {"a.tsv": "great film\t1\nawful film\n"},
        2,
        "a.tsv:2: no tab, expected TEXT<TAB>LABEL",
    ),
    (
        "tsv empty line",
        f"{CL} {{tmp}}/a.tsv",
        {"a.tsv": "great film\t1\n\nawful\t0\n"},
        2,
        "a.tsv:2: empty line, expected TEXT<TAB>LABEL",
    ),
    (
        "tsv empty label",
        f"{CL} {{tmp}}/a.tsv",
        {"a.tsv": "great film\t1\nawful film\t \n"},
        2,
        "a.tsv:2: empty label, expected a label after the text",
    ),
    ("tsv empty text", f"{CL} {{tmp}}/a.tsv", {"a.tsv": "great film\t1\n\t0\n"}, 2, "a.tsv:2: empty text"),
    (
        "tsv one label",
        f"{CL} {{tmp}}/a.tsv",
        {"a.tsv": "great film\t1\ngood\t1\n"},
        2,
        "every example has label '1', expected at least two labels",
    ),
    (
        "tsv header only",
        f"{CL} {{tmp}}/a.tsv",
        {"a.tsv": "sentence\tlabel\n"},
        2,
        "a.tsv: no examples, expected lines of TEXT<TAB>LABEL",
    ),
    ("tsv huge line", f"{CL} {{tmp}}/a.tsv", {"a.tsv": TSV + HUGE_LINE}, 2, "a.tsv:3: no tab"),
    ("tsv binary", f"{CL} {{tmp}}/a.tsv", {"a.tsv": b"\xff\xfe\x00a\tb"}, 2, "a.tsv: looks like a binary file"),
    (
        "tsv latin-1",
        f"{CL} {{tmp}}/a.tsv",
        {"a.tsv": "caf\xe9\tpos\nbad\tneg\n".encode("latin-1")},
        2,
        "a.tsv: is not utf-8 text",
    ),
    (
        "label only in valid",
        f"{CL} {{tmp}}/a.tsv --valid {{tmp}}/v.tsv",
        {"a.tsv": TSV, "v.tsv": "fine\tpos\nso so\tmeh\n"},
        2,
        "v.tsv:2: label 'meh' does not occur in the training data, expected one of: neg, pos",
    ),
    (
        "classify a conllu",
        f"{CL} {{tmp}}/a.conllu",
        {"a.conllu": GOOD},
        2,
        "a.conllu: a CoNLL-U file (for taggers), expected texts",
    ),
    ("classify no data", "train --task classify --out {tmp}/out", {}, 2, "--task classify: --data FILE is required"),
    (
        "csv no such column",
        f"{CL} {{tmp}}/a.csv --label-column sentiment",
        {"a.csv": "id,text,label\n1,good,pos\n"},
        2,
        "a.csv:1: no column 'sentiment' in the header (found: id, text, label)",
    ),
    (
        "csv short row",
        f"{CL} {{tmp}}/a.csv",
        {"a.csv": "text,label\ngood film,1\nbad film\n"},
        2,
        "a.csv:3: found 1 fields, expected 2",
    ),
    (
        "csv long row",
        f"{CL} {{tmp}}/a.csv",
        {"a.csv": "text,label\ngood,1,2\n"},
        2,
        "a.csv:2: found 3 fields, expected 2",
    ),
    (
        "csv empty line",
        f"{CL} {{tmp}}/a.csv",
        {"a.csv": "text,label\ngood,1\n\nbad,0\n"},
        2,
        "a.csv:3: empty line, expected a row with 2 fields",
    ),
    (
        "csv empty label",
        f"{CL} {{tmp}}/a.csv",
        {"a.csv": "text,label\ngood,1\nbad,\n"},
        2,
        "a.csv:3: empty 'label', expected a value",
    ),
    (
        "csv open quote",
        f"{CL} {{tmp}}/a.csv",
        {"a.csv": 'text,label\n"good,1\nbad,0\n'},
        2,
        "a.csv:3: unexpected end of data, expected CSV fields",
    ),
    (
        "csv stray quote",
        f"{CL} {{tmp}}/a.csv",
        {"a.csv": 'text,label\n"go"od,1\n'},
        2,
        "a.csv:2: ',' expected after '\"', expected CSV fields",
    ),
    (
        "csv huge field",
        f"{CL} {{tmp}}/a.csv",
        {"a.csv": "text,label\n" + HUGE_LINE + ",1\n"},
        2,
        "a.csv:2: field larger than field limit",
    ),
    ("csv header only", f"{CL} {{tmp}}/a.csv", {"a.csv": "text,label\n"}, 2, "a.csv: a header and no rows"),
    (
        "csv column twice",
        f"{CL} {{tmp}}/a.csv",
        {"a.csv": "text,text,label\ngood,x,1\nbad,y,0\n"},
        2,
        "a.csv:1: column 'text' appears 2 times in the header",
    ),
    (
        "csv same column",
        f"{CL} {{tmp}}/a.csv --label-column text",
        {"a.csv": "text,label\ngood,1\nbad,0\n"},
        2,
        "a.csv: column 'text' asked for twice",
    ),
    (
        "classify rare words",
        f"{CL} {{tmp}}/a.tsv --min-freq 5",
        {"a.tsv": TSV},
        2,
        "a.tsv: a vocabulary of only <unk> with --min-freq 5",
    ),
    (
        "classify horizon",
        f"{CL} {{tmp}}/a.tsv --horizon 3",
        {"a.tsv": TSV},
        2,
        "--horizon: only for language models; --task classify",
    ),
    (
        "classify pooling",
        f"{CL} {{tmp}}/a.tsv --pooling median",
        {"a.tsv": TSV},
        2,
        "argument --pooling: got median, expected one or more of last, mean, max, comma-separated, without repeats",
    ),
    (
        "classify pooling repeated",
        f"{CL} {{tmp}}/a.tsv --pooling mean,max,mean",
        {"a.tsv": TSV},
        2,
        "argument --pooling: got mean,max,mean, expected one or more of last, mean, max",
    ),
    (
        "classify valid fraction too small",
        f"{CL} {{tmp}}/a.tsv --valid-fraction 0.01",
        {"a.tsv": TSV},
        2,
        "a.tsv: --valid-fraction 0.01 of ",
    ),
    (
        "classify folds with valid",
        f"{CL} {{tmp}}/a.tsv --folds 3 --valid {{tmp}}/a.tsv",
        {"a.tsv": TSV},
        2,
        "--folds: each fold is held out of --data in turn; drop --valid (use --valid-fraction)",
    ),
    ("classify one fold", f"{CL} {{tmp}}/a.tsv --folds 1", {"a.tsv": TSV}, 2, "--folds: got 1, expected at least 2"),
    (
        "classify char encoder at char level",
        f"{CL} {{tmp}}/a.tsv --level char --char-hidden-size 4",
        {"a.tsv": TSV},
        2,
        "--char-hidden-size 4: the character encoder reads the characters of each word, for --level word",
    ),
    (
        "classify char encoder at char level, folds",
        f"{CL} {{tmp}}/a.tsv --level char --char-hidden-size 4 --folds 2",
        {"a.tsv": TSV},
        2,
        "--char-hidden-size 4: the character encoder reads the characters of each word, for --level word",
    ),
    (
        "classify more folds than examples",
        f"{CL} {{tmp}}/a.tsv --folds 3",
        {"a.tsv": TSV},
        2,
        "a.tsv: 2 examples, --folds 3 needs at least one per fold",
    ),
    (
        "classify embeddings bad line",
        f"{CL} {{tmp}}/a.tsv --embeddings {{tmp}}/v.txt",
        {"a.tsv": TSV, "v.txt": "2 4\ngreat 0.1 0.2 0.3 0.4\nfilm 0.1 0.2\n"},
        2,
        "v.txt:3: 2 numbers after the word 'film', expected 4",
    ),
    (
        "classify embeddings not a number",
        f"{CL} {{tmp}}/a.tsv --embeddings {{tmp}}/v.txt",
        {"a.tsv": TSV, "v.txt": "the 0.1 0.2 0.3 0.4\nfilm 0.1 x 0.3 0.4\n"},
        2,
        "v.txt:2: 'x' in the vector of 'film', expected a number",
    ),
    (
        "classify embeddings size",
        f"{CL} {{tmp}}/a.tsv --embeddings {{tmp}}/v.txt",
        {"a.tsv": TSV, "v.txt": "great 0.1 0.2 0.3\n"},
        2,
        "v.txt: vectors of size 3, but --embedding-size is 4; drop --embedding-size or give the file's size",
    ),
    (
        "classify embeddings empty",
        f"{CL} {{tmp}}/a.tsv --embeddings {{tmp}}/v.txt",
        {"a.tsv": TSV, "v.txt": "\n"},
        2,
        "v.txt: no vectors, expected lines 'word v1 ... vD'",
    ),
    # ---- train --task regress: CSV of numbers ----
    ("regress not a number", RG, {"a.csv": REG + "0.1 x,0.2\n"}, 2, "a.csv:4: input '0.1 x', expected numbers"),
    ("regress target text", RG, {"a.csv": REG + "0.1,high\n"}, 2, "a.csv:4: target 'high', expected numbers"),
    ("regress NaN", RG, {"a.csv": REG + "0.1 nan,0.2\n"}, 2, "a.csv:4: input holds NaN or infinity"),
    (
        "regress ragged steps",
        RG,
        {"a.csv": "input,target\n0.1 0.2,0.3 0.1\n0.1 0.2 0.3,0.1 0.2\n"},
        2,
        "a.csv:3: 2 target steps for 3 input steps",
    ),
    ("regress ragged features", RG, {"a.csv": REG + "0.1:1 0.2,0.2\n"}, 2, "a.csv:4: input steps with [1, 2] features"),
    (
        "regress features differ",
        RG,
        {"a.csv": REG + "0.1:1 0.2:1,0.2\n"},
        2,
        "a.csv:4: 2 input features per step, expected 1",
    ),
    (
        "regress no input column",
        RG,
        {"a.csv": "x,target\n0.1,0.3\n"},
        2,
        "a.csv:1: no column 'input' in the header (found: x, target)",
    ),
    ("regress target column", f"{RG} --target-column y", {"a.csv": REG}, 2, "a.csv:1: no column 'y'"),
    ("regress binary", RG, {"a.csv": b"input,target\n\x00"}, 2, "a.csv: looks like a binary file"),
    # ---- train --task spell and the long-memory tasks: generated data ----
    (
        "spell bidirectional",
        "train --task spell --bidirectional --out {tmp}/out",
        {},
        2,
        "--bidirectional: a one-to-many model generates left to right",
    ),
    (
        "spell max-number",
        "train --task spell --max-number 1000000 --out {tmp}/out",
        {},
        2,
        "--max-number: got 1000000, expected less than 1,000,000",
    ),
    (
        "spell data",
        "train --task spell --data {tmp}/c.txt --out {tmp}/out",
        {"c.txt": TEXT},
        2,
        "--data: only for language models and --task tag, classify, regress; --task spell generates its data",
    ),
    ("length 0", f"{LM} --length 0", {}, 2, "argument --length: got 0, expected a positive integer"),
    ("length negative", f"{LM} --length -3", {}, 2, "argument --length: got -3"),
    ("variant unknown", f"{LM} --variant product", {}, 2, "argument --variant: invalid choice: 'product'"),
    (
        "variant for copy",
        f"{LM} --task copy --variant sum",
        {},
        2,
        "--variant: only for --task adding, got --task copy",
    ),
    ("order too short", f"{LM} --task temporal-order --length 5", {}, 2, "T >= 10"),
    ("longmem bidirectional", f"{LM} --bidirectional", {}, 2, "--bidirectional: the long-memory tasks are causal"),
    (
        "longmem horizon",
        f"{LM} --task copy --horizon 5",
        {},
        2,
        "--horizon: only for language models; --task copy backpropagates through each whole sequence",
    ),
    (
        "spell samples",
        "train --task spell --samples 2 --out {tmp}/out",
        {},
        2,
        "--samples: only for language models; --task spell does not use it",
    ),
    (
        "longmem temperature",
        f"{LM} --temperature 0.5",
        {},
        2,
        "--temperature: only for language models; --task adding does not use it",
    ),
    (
        "regress min-freq",
        f"{RG} --min-freq 2",
        {"a.csv": "x,y\n1 2,3\n"},
        2,
        "--min-freq: only for language models and --task tag, classify; --task regress",
    ),
    (
        "tag level",
        f"{TG} --level char",
        {"a.conllu": GOOD},
        2,
        "--level: only for language models and --task classify; --task tag does not use it",
    ),
    (
        "longmem data",
        f"{LM} --valid {{tmp}}/c.txt",
        {"c.txt": TEXT},
        2,
        "--valid: only for language models and --task tag, classify, regress; --task adding generates its validation data",
    ),
    ("longmem too long", f"{LM} --length {GIANT}", {}, 2, "use a smaller --length, --batch-size or --hidden-size"),
    ("longmem valid-size", f"{LM} --valid-size 0", {}, 2, "argument --valid-size: got 0"),
    # ---- predict ----
    ("predict no run", "predict {tmp}/nowhere --data {tmp}/a.tsv", {"a.tsv": TSV}, 2, "nowhere: no such run directory"),
    (
        "predict run is a file",
        "predict {tmp}/a.tsv --data {tmp}/a.tsv",
        {"a.tsv": TSV},
        2,
        "a.tsv: is a file, expected a run directory",
    ),
    ("predict no --data", "predict {cls}", {}, 2, "the following arguments are required: --data"),
    (
        "predict truncated",
        "predict {tag} --last --data {tmp}/a.conllu",
        {"a.conllu": GOOD, "{tag}/@weights": cut(3)},
        2,
        "bytes, expected",
    ),
    (
        "predict tampered",
        "predict {cls} --data {tmp}/a.tsv",
        {"a.tsv": TSV, "{cls}/@weights": flip},
        2,
        "sha256 mismatch",
    ),
    (
        "predict no checkpoint",
        "predict {cls} --data {tmp}/a.tsv",
        {"a.tsv": TSV, "{cls}/checkpoint.json": None},
        2,
        "checkpoint.json: missing",
    ),
    (
        "predict LM run",
        "predict {run} --data {tmp}/c.txt",
        {"c.txt": TEXT},
        2,
        "a language-model run; use bptt generate or bptt evaluate",
    ),
    (
        "predict adding run",
        "predict {add} --data {tmp}/c.txt",
        {"c.txt": TEXT},
        2,
        "a --task adding run predicts nothing; its result is in result.json",
    ),
    (
        "predict classify conllu",
        "predict {cls} --data {tmp}/a.conllu",
        {"a.conllu": GOOD},
        2,
        "a.conllu: a CoNLL-U file (for taggers), expected texts",
    ),
    (
        "predict classify column",
        "predict {cls} --data {tmp}/a.csv",
        {"a.csv": "txt,label\nx,1\n"},
        2,
        "a.csv:1: no column 'text' in the header",
    ),
    (
        "predict classify binary",
        "predict {cls} --data {tmp}/a.tsv",
        {"a.tsv": b"\x00"},
        2,
        "a.tsv: looks like a binary file",
    ),
    (
        "overwrite tag too big",
        f"train --task tag --data {{tmp}}/a.conllu --out {{tag}} --overwrite --hidden-size {GIANT}",
        {"a.conllu": GOOD},
        2,
        "GiB is available; use a higher --min-freq",
    ),  # the run it would replace stays as it was
    (
        "predict tag csv",
        "predict {tag} --data {tmp}/a.csv",
        {"a.csv": "text,label\ngood,1\n"},
        2,
        "a.csv: a CSV file, expected CoNLL-U or plain text",
    ),
    (
        "predict tag tsv",
        "predict {tag} --data {tmp}/a.txt",
        {"a.txt": "good\t1\n"},
        2,
        "a.txt:1: found 2 tab-separated columns, expected 10",
    ),
    (
        "predict tag empty",
        "predict {tag} --data {tmp}/a.txt",
        {"a.txt": "\n \n"},
        2,
        "a.txt: is empty (only whitespace)",
    ),
    (
        "predict regress wide",
        "predict {reg} --data {tmp}/a.csv",
        {"a.csv": "input\n0.1:2 0.3:1\n"},
        2,
        "a.csv:2: 2 input features per step, expected 1",
    ),
    (
        "predict regress text",
        "predict {reg} --data {tmp}/a.csv",
        {"a.csv": "input\n0.1 x\n"},
        2,
        "a.csv:2: input '0.1 x', expected numbers",
    ),
    (
        "predict spell word",
        "predict {spell} --data {tmp}/n.txt",
        {"n.txt": "7\nseven\n"},
        2,
        "n.txt:2: got 'seven', expected whole numbers",
    ),
    (
        "predict spell range",
        "predict {spell} --data {tmp}/n.txt",
        {"n.txt": "7\n\n99\n"},
        2,
        "n.txt:3: got 99, expected a number in 0..20",
    ),
    (
        "predict out is a dir",
        "predict {cls} --data {tmp}/a.tsv --out {tmp}",
        {"a.tsv": TSV},
        2,
        "is a directory, expected a file",
    ),
    (
        "predict out under a file",
        "predict {cls} --data {tmp}/a.tsv --out {tmp}/a.tsv/p.txt",
        {"a.tsv": TSV},
        2,
        "a.tsv is a file, expected a directory",
    ),
    (
        "predict out read-only",
        "predict {cls} --data {tmp}/a.tsv --out {tmp}/ro/p.txt",
        {"a.tsv": TSV, "ro": READONLY},
        2,
        "no permission to write in",
    ),
    # ---- evaluate, by task ----
    (
        "evaluate unknown label",
        "evaluate {cls} --data {tmp}/a.tsv",
        {"a.tsv": "good\tmeh\n"},
        2,
        "a.tsv:1: label 'meh' does not occur in the training data",
    ),
    (
        "evaluate no label",
        "evaluate {cls} --data {tmp}/a.tsv",
        {"a.tsv": "good\n"},
        2,
        "a.tsv:1: no tab, expected TEXT<TAB>LABEL",
    ),
    (
        "evaluate classify conllu",
        "evaluate {cls} --data {tmp}/a.conllu",
        {"a.conllu": GOOD},
        2,
        "a.conllu: a CoNLL-U file (for taggers)",
    ),
    (
        "evaluate unknown tag",
        "evaluate {tag} --data {tmp}/a.conllu",
        {"a.conllu": conllu(word(1, "x", "XX"))},
        2,
        "a.conllu:1: UPOS tag 'XX' does not occur",
    ),
    (
        "evaluate tag plain text",
        "evaluate {tag} --data {tmp}/a.txt",
        {"a.txt": "hello world\n"},
        2,
        "a.txt:1: found 1 tab-separated columns",
    ),
    (
        "evaluate regress steps",
        "evaluate {reg} --data {tmp}/a.csv",
        {"a.csv": "input,target\n0.1 0.2,0.3 0.4\n"},
        2,
        "a.csv:2: 2 target steps, expected 1 (many-to-one)",
    ),
    (
        "evaluate regress plot",
        "evaluate {reg} --data {tmp}/a.csv --plot {tmp}/x.png",
        {"a.csv": REG},
        2,
        "--plot: a confusion matrix is for tag and classify runs, not regress",
    ),
    (
        "evaluate spell range",
        "evaluate {spell} --data {tmp}/n.txt",
        {"n.txt": "500\n"},
        2,
        "n.txt:1: got 500, expected a number in 0..20",
    ),
    (
        "evaluate adding run",
        "evaluate {add}",
        {},
        2,
        "a --task adding run is tested when training ends; its result is in result.json",
    ),
    ("evaluate task truncated", "evaluate {reg}", {"{reg}/@weights": cut(5)}, 2, "bytes, expected"),
    ("evaluate task bad JSON", "evaluate {cls}", {"{cls}/checkpoint.json": "{"}, 2, "checkpoint.json: not valid JSON"),
    # ---- generate --cond ----
    (
        "cond out of range",
        "generate {spell} --cond 21",
        {},
        2,
        "--cond: got 21, expected a number in 0..20 (the run's --max-number)",
    ),
    ("cond negative", "generate {spell} --cond=-1", {}, 2, "--cond: got -1, expected a number in 0..20"),
    ("cond not a number", "generate {spell} --cond seven", {}, 2, "--cond: got 'seven', expected whole numbers"),
    ("cond fraction", "generate {spell} --cond 1.5", {}, 2, "--cond: got '1.5', expected whole numbers"),
    ("cond empty", "generate {spell} --cond=", {}, 2, "--cond: expected at least one number"),
    ("cond missing", "generate {spell}", {}, 2, "a one-to-many run generates from a condition; pass --cond NUMBER"),
    ("cond for a tagger", "generate {tag} --cond 3", {}, 2, "--cond: only for one-to-many runs (--task spell)"),
    (
        "generate classify",
        "generate {cls}",
        {},
        2,
        "a --task classify run generates nothing; use bptt predict or bptt evaluate",
    ),
    (
        "generate regress",
        "generate {reg}",
        {},
        2,
        "a --task regress run generates nothing; use bptt predict or bptt evaluate",
    ),
    ("generate adding", "generate {add}", {}, 2, "a --task adding run generates nothing; its result is in result.json"),
    # ---- diagnose ----
    ("diagnose no run", "diagnose {tmp}/nowhere", {}, 2, "nowhere: no such run directory"),
    ("diagnose a file", "diagnose {tmp}/c.txt", {"c.txt": TEXT}, 2, "c.txt: is a file, expected a run directory"),
    ("diagnose truncated", "diagnose {add}", {"{add}/@weights": cut(4)}, 2, "bytes, expected"),
    ("diagnose tampered", "diagnose {add}", {"{add}/@weights": flip}, 2, "sha256 mismatch"),
    (
        "diagnose edited",
        "diagnose {add}",
        {"{add}/checkpoint.json": edit_index(**{"model.hidden_size": 9})},
        2,
        "tensor 'rnn0.U' has shape",
    ),
    (
        "diagnose data for a task",
        "diagnose {add} --data {tmp}/c.txt",
        {"c.txt": TEXT},
        2,
        "--data: only for language-model runs",
    ),
    (
        "diagnose binary data",
        "diagnose {run} --data {tmp}/b.bin",
        {"b.bin": b"\x00" * 9},
        2,
        "b.bin: looks like a binary file",
    ),
    (
        "diagnose unknown char",
        "diagnose {run} --data {tmp}/t.txt",
        {"t.txt": "the Zebra"},
        2,
        "t.txt:1:5: character 'Z'",
    ),
    (
        "diagnose one token",
        "diagnose {run} --data {tmp}/t.txt",
        {"t.txt": "a"},
        2,
        "t.txt: 1 tokens, expected at least 2 to diagnose",
    ),
    ("diagnose steps", "diagnose {add} --steps 5000", {}, 2, "--steps: got 5000, at most 1000"),
    ("diagnose seed", "diagnose {add} --seed -1", {}, 2, "argument --seed: got -1"),
    (
        "diagnose out is a file",
        "diagnose {add} --out {tmp}/c.txt",
        {"c.txt": TEXT},
        2,
        "c.txt: is a file, expected a directory",
    ),
    ("diagnose read-only run", "diagnose {add} --no-plot", {"{add}": READONLY}, 2, "add: no permission to write in"),
    # ---- gradcheck: RTRL and feature columns ----
    (
        "rtrl two layers",
        "gradcheck --method rtrl --num-layers 2",
        {},
        2,
        "--method rtrl: one recurrent layer only, got num_layers=2",
    ),
    (
        "rtrl bidirectional",
        "gradcheck --method rtrl --bidirectional",
        {},
        2,
        "--method rtrl: forward mode runs left to right",
    ),
    ("rtrl horizon", "gradcheck --method rtrl --horizon 2", {}, 2, "--method rtrl: computes the full gradient"),
    ("gradcheck method", "gradcheck --method newton", {}, 2, "argument --method: invalid choice: 'newton'"),
    (
        "rtrl feature columns",
        "gradcheck --method rtrl --embedding-size 3 --feature-columns 2",
        {},
        2,
        "rtrl: token inputs with one embedding table only; feature id columns are not supported",
    ),
    (
        "feature columns negative",
        "gradcheck --feature-columns -1 --embedding-size 2",
        {},
        2,
        "argument --feature-columns: got -1",
    ),
    (
        "feature columns one-hot",
        "gradcheck --feature-columns 2",
        {},
        2,
        "--feature-columns: needs --input tokens and --embedding-size",
    ),
    # ---- export ----
    ("export no run", "export {tmp}/nowhere", {}, 2, "nowhere: no such run directory"),
    (
        "export read-only",
        "export {cls} --out {tmp}/ro/m.onnx",
        {"ro": READONLY},
        2,
        "m.onnx: no permission to write in",
    ),
    ("export --out a directory", "export {reg} --out {tmp}", {}, 2, "is a directory, expected a file"),
    ("export format", "export {run} --format tflite", {}, 2, "argument --format: invalid choice: 'tflite'"),
    # ---- the command itself ----
    ("unknown command", "trian", {}, 2, "argument COMMAND: invalid choice: 'trian'"),
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A trained character run and a word run (with their corpus), and tiny task runs, to copy into each test."""
    base = tmp_path_factory.mktemp("runs")
    (base / "corpus.txt").write_text(TEXT)
    for name, extra in (("run", []), ("wrun", ["--level", "word", "--seq-length", "3"])):
        argv = [
            "train",
            *SMALL.split(),
            "--data",
            str(base / "corpus.txt"),
            "--out",
            str(base / name),
            "--eval-every",
            "10",
            *extra,
        ]
        assert main(argv) == 0
    (base / "a.conllu").write_text(
        GOOD + conllu(word(1, "cats", "NOUN"), word(2, "sleep", "VERB"), word(3, ".", "PUNCT"))
    )
    (base / "a.tsv").write_text(TSV * 3)
    (base / "a.csv").write_text(REG + REG.split("\n", 1)[1] * 2)
    for name, task in (
        ("tag", f"tag {TASK} --data {{b}}/a.conllu --valid {{b}}/a.conllu"),
        ("cls", f"classify {TASK} --data {{b}}/a.tsv --valid-fraction 0"),  # no best/: the latest weights
        ("reg", f"regress {TASK} --data {{b}}/a.csv"),
        ("spell", f"spell {TASK} --max-number 20"),
        ("add", LM.replace("--out {tmp}/out", "--valid-size 20 --test-size 20").removeprefix("train --task ")),
    ):
        assert main(f"train --task {task} --out {base / name}".format(b=base).split()) == 0, name
    return {name: base / name for name in TASK_RUNS} | {"corpus": base / "corpus.txt"}


TASK_RUNS = ("run", "wrun", "tag", "cls", "reg", "spell", "add")


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under root with its content (None for directories)."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def make_files(tmp: Path, files: dict, places: dict, monkeypatch, deny_root: bool = True) -> None:
    """deny_root: as root, patch os.access to deny writing in READONLY directories (the
    in-process rows; test_no_write_permission_for_real drops root's override instead)."""
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
            if (
                deny_root and os.geteuid() == 0
            ):  # root writes anywhere whatever the mode: deny it as the kernel would a user
                real = os.access
                monkeypatch.setattr(
                    os,
                    "access",
                    lambda p, mode, path=path, real=real, **kw: False if Path(p) == path else real(p, mode, **kw),
                )
        elif callable(content):
            content(path)
        else:
            path.write_bytes(content if isinstance(content, bytes) else content.encode())


def run_cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's usage errors
        return e.code


def copy_runs(argv: str, files: dict, runs: dict, tmp_path: Path) -> dict:
    """The run fixtures a row names, copied into tmp_path; returns the row's places."""
    places = {"tmp": tmp_path} | {name: tmp_path / name for name in TASK_RUNS}
    for name in TASK_RUNS:
        if f"{{{name}}}" in argv or any(f"{{{name}}}" in k for k in files):
            shutil.copytree(runs[name], places[name])
            if name in ("run", "wrun"):  # the run remembers its corpus by path: point it at this test's copy
                edit_index(**{"train.options.extra.data": str(tmp_path / "corpus.txt")})(
                    places[name] / "checkpoint.json"
                )
                (tmp_path / "corpus.txt").write_text(TEXT)
    return places


@pytest.mark.parametrize("argv,files,code,message", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_bad_input(argv, files, code, message, runs, tmp_path, monkeypatch, capsys):
    places = copy_runs(argv, files, runs, tmp_path)
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


def unprivileged_prefix() -> list[str] | None:
    """A command prefix under which the kernel enforces file permissions: nothing for a
    user; for root, setpriv dropping CAP_DAC_OVERRIDE (as root in CI); None if neither works."""
    import subprocess

    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    drop = "-dac_override,-dac_read_search"
    prefix = [setpriv, f"--inh-caps={drop}", f"--bounding-set={drop}"]
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o555)
        probe = f"import os, sys; sys.exit(os.access({d!r}, os.W_OK))"  # 1 while root may write there anyway
        ok = subprocess.run([*prefix, sys.executable, "-c", probe], capture_output=True).returncode == 0
        os.chmod(d, 0o755)
    return prefix if ok else None


@pytest.mark.parametrize(
    "argv,files,code,message",
    [r[1:] for r in ROWS if READONLY in r[2].values()],
    ids=[r[0] for r in ROWS if READONLY in r[2].values()],
)
def test_no_write_permission_for_real(argv, files, code, message, runs, tmp_path, monkeypatch):
    """The READONLY rows again, with os.access left alone: the CLI runs in a process whose
    writes the kernel really refuses (a user, or root without CAP_DAC_OVERRIDE)."""
    import subprocess

    prefix = unprivileged_prefix()
    if prefix is None:
        pytest.skip("root, and setpriv cannot drop CAP_DAC_OVERRIDE here: only the patched rows ran")
    places = copy_runs(argv, files, runs, tmp_path)
    make_files(tmp_path, files, places, monkeypatch, deny_root=False)
    before = snapshot(tmp_path)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    argv = [a.format(**places) for a in shlex.split(argv)]
    try:
        r = subprocess.run([*prefix, sys.executable, "-m", "bptt.cli", *argv], capture_output=True, text=True, env=env)
    finally:
        for p in tmp_path.rglob("*"):
            if p.is_dir():
                p.chmod(0o755)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == code, r.stderr
    assert len(lines) == 1 and lines[0].startswith("bptt: error: ") and message in lines[0], r.stderr
    assert snapshot(tmp_path) == before, "files were written or changed"


def test_the_table_covers_every_command():
    assert len(ROWS) >= 40 and len({r[0] for r in ROWS}) == len(ROWS)
    commands = {shlex.split(r[1].replace(T, "train"))[0] for r in ROWS}
    assert {"train", "generate", "evaluate", "predict", "plot", "diagnose", "gradcheck"} <= commands
    from bptt import tasks

    assert all(any(f"--task {name} " in r[1] for r in ROWS) for name in tasks.TASKS), "a task without rows"
    assert all(any(f"{{{name}}}" in r[1] for r in ROWS) for name in TASK_RUNS), "a run fixture no row uses"
    assert any("--resume" in r[1] for r in ROWS) and any("--config" in r[1] for r in ROWS)
    assert any("--level word" in r[1] for r in ROWS)


# ---- errors that are not the user's ---------------------------------------------


@pytest.mark.parametrize(
    "error,code,line",
    [
        (
            RuntimeError("a bug\nover two lines"),
            1,
            "bptt: internal error: RuntimeError: a bug over two lines (re-run with --debug for the traceback)",
        ),
        (
            MemoryError("Unable to allocate 74.5 GiB for an array with shape (100000, 100000)"),
            2,
            "bptt: error: out of memory (Unable to allocate 74.5 GiB for an array with shape (100000, 100000)); use smaller sizes",
        ),
    ],
)
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


@pytest.fixture
def full_disk(tmp_path):
    """A directory on a filesystem with no space left: a 1 MiB tmpfs mounted there and filled
    (as CI runs, as root), or None where mounting is not permitted."""
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    mount = shutil.which("mount")
    if os.geteuid() != 0 or mount is None:
        yield None
        return
    if subprocess.run([mount, "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True).returncode:
        yield None  # a container without CAP_SYS_ADMIN
        return
    try:
        with open(disk / "filler", "wb", buffering=0) as f:
            try:
                while f.write(b"\0" * 4096):
                    pass
            except OSError:  # ENOSPC: the disk is full
                pass
        yield disk
    finally:
        subprocess.run([shutil.which("umount") or "umount", str(disk)], check=True)


def test_a_full_disk_while_saving_is_one_line_naming_the_file(
    runs, full_disk, tmp_path, monkeypatch, capsys, record_property
):
    """On a real full filesystem where the machine allows a mount (root, as CI runs); else
    os.fsync patched to fail as a full disk does (the test records which ran)."""
    import errno

    if full_disk is not None:
        record_property("full_disk", "a full 1 MiB tmpfs")
        out = full_disk / "run"
    else:
        record_property("full_disk", "os.fsync patched (mount not permitted)")

        def full(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "fsync", full)
        out = tmp_path / "run"
    argv = ["train", *SMALL.split(), "--data", str(runs["corpus"]), "--out", str(out), "--eval-every", "2"]
    assert main(argv) == 2
    monkeypatch.undo()
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"bptt: error: {out / 'metrics.jsonl'}: no space left on device (this write needs ")
    assert lines[0].endswith(
        "; free some space, keep fewer checkpoints (--keep 1) or write the run elsewhere (--out DIR)"
    )
    assert not out.exists()  # it failed before its first checkpoint: nothing left behind


def test_a_full_disk_at_the_commit_removes_the_files_of_that_save_at_once(runs, tmp_path, monkeypatch, capsys):
    import errno

    run = tmp_path / "run"
    shutil.copytree(runs["run"], run)
    edit_index(**{"train.options.extra.data": str(runs["corpus"])})(run / "checkpoint.json")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != "metrics.jsonl"}
    real = os.replace

    def full(src, dst):
        if Path(dst).name == "checkpoint.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(src, dst)

    monkeypatch.setattr(os, "replace", full)
    assert main(["train", "--resume", str(run), "--max-epochs", "2"]) == 2
    monkeypatch.setattr(os, "replace", real)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"bptt: error: {run / 'checkpoint.json'}: no space left on device")
    assert re.search(r"\(this write needs [1-9][0-9.]* KiB, [0-9.]+ [KMG]?i?B(ytes)? free\)", lines[0]), lines[0]
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != "metrics.jsonl"} == before
    assert main(["train", "--resume", str(run)]) == 0  # the previous checkpoint is intact


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


def test_generate_estimates_its_text_before_generating(runs, monkeypatch, capsys):
    from bptt import generate

    monkeypatch.setattr(resources, "available_memory", lambda: 2**20)  # a 1 MiB machine
    monkeypatch.setattr(generate, "sample", lambda *a, **k: pytest.fail("generated before the check"))
    assert main(["generate", str(runs["run"]), "--length", "100000"]) == 2
    err = capsys.readouterr().err
    assert "--length 100000 needs about 4.6 MiB of memory but 1.0 MiB is available; use a smaller --length" in err
    monkeypatch.undo()
    assert main(["generate", str(runs["run"]), "--length", "20"]) == 0
