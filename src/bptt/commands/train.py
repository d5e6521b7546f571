"""`bptt train`: train a model; by default a character- or word-level language model, char-rnn style.

With no arguments it trains a character model on a corpus that ships with
Python (the standard library's help topics), evaluates on a held-out tail,
and prints bits per character and samples. `--task NAME` trains one of the
other tasks (`bptt.tasks`). Options may also come from a TOML or JSON file
(`--config`), whose keys are the option names; flags given on the command
line win.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import io
import json
import os
import shutil
from dataclasses import fields
from pathlib import Path

import numpy as np

from bptt.errors import CheckpointError, DataError, UsageError
from bptt.training.options import (
    add_model_options,
    fraction,
    model_kwargs,
    non_negative_int,
    positive_float,
    positive_int,
)

RUN_FILES = (
    "checkpoint",
    "weights-",
    "optimizer-",
    "metrics.jsonl",
    "samples.txt",
    "best",
    "grad-norms.jsonl",
    "result.json",
    "diagnose.",
    "grad-norms.png",
)


def add_parser(sub) -> None:
    from bptt import tasks

    p = sub.add_parser(
        "train",
        help="train a model (default: a character language model on Python's help text)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", choices=tasks.names(), default="lm", help="what to train (default: lm, a language model)")
    d = p.add_argument_group("data")
    d.add_argument("--data", type=Path, help="a UTF-8 text file (default: the built-in corpus)")
    d.add_argument("--valid", type=Path, help="validation text (default: the last --valid-fraction of --data)")
    d.add_argument("--valid-fraction", type=fraction, default=0.05)
    d.add_argument("--level", choices=["char", "word"], default="char")
    d.add_argument("--encoding", default="utf-8")
    d.add_argument("--lowercase", action="store_true", help="word level: fold case")
    d.add_argument("--min-freq", type=positive_int, default=1, help="word level: rarer words become <unk>")
    d.add_argument("--vocab-size", type=positive_int, default=None, help="word level: keep the most frequent words")
    d.add_argument("--no-sentence-ends", action="store_true", help="word level: no <eos> token at line ends")
    add_model_options(p, {"hidden_size": 256, "num_layers": 2, "embedding_size": 64})
    t = p.add_argument_group("truncated BPTT")
    t.add_argument("--seq-length", type=positive_int, default=50, help="k1: new steps per update")
    t.add_argument("--backprop-steps", type=positive_int, default=None, help="k2 >= k1: TBPTT(k1, k2) window")
    t.add_argument("--horizon", type=positive_int, default=None, help="tau: each loss backpropagates tau steps")
    t.add_argument("--batch-size", type=positive_int, default=32, help="parallel streams")
    o = p.add_argument_group("optimization")
    o.add_argument("--optimizer", choices=["sgd", "momentum", "adagrad", "rmsprop", "adam"], default="adam")
    o.add_argument("--lr", type=positive_float, default=2e-3)
    o.add_argument("--momentum", type=fraction, default=0.9, help="for --optimizer momentum")
    o.add_argument("--nesterov", action="store_true", help="Nesterov momentum, for --optimizer momentum")
    o.add_argument(
        "--lr-decay", type=positive_float, default=1.0, help="multiply lr by this every --lr-decay-every epochs"
    )
    o.add_argument(
        "--lr-decay-every", type=positive_int, default=1, help="epochs between decays (1: exponential decay)"
    )
    o.add_argument("--lr-decay-after", type=non_negative_int, default=0, help="epochs before --lr-decay starts")
    o.add_argument("--lr-plateau", action="store_true", help="halve lr when validation loss stops improving")
    o.add_argument("--clip-norm", type=positive_float, default=5.0, help="global gradient norm (Pascanu et al.)")
    o.add_argument("--no-clip-norm", action="store_true")
    o.add_argument("--clip-value", type=positive_float, default=None, help="element-wise clip (char-rnn)")
    o.add_argument("--clip-per-tensor", action="store_true", help="clip each tensor's norm separately")
    o.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    o.add_argument("--max-rollbacks", type=non_negative_int, default=5)
    o.add_argument("--rollback-factor", type=fraction, default=0.5)
    b = p.add_argument_group("budget and output")
    b.add_argument("--max-epochs", type=positive_float, default=10.0)
    b.add_argument("--max-time", type=positive_float, default=None, help="seconds")
    b.add_argument("--eval-every", type=positive_int, default=200, help="updates between evaluations")
    b.add_argument("--early-stopping", type=positive_int, default=None, help="evaluations without improvement")
    b.add_argument("--out", type=Path, default=None, help="run directory (default: runs/<corpus>-<level>[-N])")
    b.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR", help="continue a run exactly")
    b.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    b.add_argument("--keep", type=positive_int, default=1, help="checkpoints kept")
    b.add_argument(
        "--keep-best",
        action="store_true",
        help="also keep the best evaluation's checkpoint in RUN_DIR/best (on by default for --task runs)",
    )
    b.add_argument("--samples", type=non_negative_int, default=3, help="samples printed at the end")
    b.add_argument("--sample-length", type=positive_int, default=200)
    b.add_argument("--temperature", type=positive_float, default=0.8)
    b.add_argument("--config", type=Path, default=None, help="TOML or JSON file of options")
    b.add_argument(
        "--diagnostics",
        action="store_true",
        help="record every update's gradient norm per tensor and clipping to RUN_DIR/grad-norms.jsonl",
    )
    for module in dict.fromkeys(tasks.TASKS.values()):  # a module may serve several tasks
        importlib.import_module(module).add_options(p)
    p.set_defaults(run=run, parser=p)


# ---- config files ----------------------------------------------------------


def config_argv(path: Path, parser: argparse.ArgumentParser) -> list[str]:
    """A config file's keys as command-line flags, so argparse validates them the same way."""
    from bptt.data.text import read_text

    text = read_text(path)
    try:
        if path.suffix.lower() == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                raise UsageError(f"{path}: TOML needs Python 3.11 (or use a .json config)") from None
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except (ValueError, TypeError) as e:
        raise UsageError(f"{path}: not valid {'TOML' if path.suffix.lower() == '.toml' else 'JSON'}: {e}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a table of option = value")
    known = {a.dest: a for a in parser._actions}
    argv: list[str] = []
    for key, value in data.items():
        dest = str(key).replace("-", "_")
        if dest not in known or dest in ("config", "help"):
            raise UsageError(f"{path}: unknown option {key!r}")
        flag = known[dest].option_strings[0]
        if isinstance(known[dest], argparse._StoreTrueAction):
            if not isinstance(value, bool):
                raise UsageError(f"{path}: {key} expects true or false, got {value!r}")
            argv += [flag] if value else []
        elif isinstance(value, (dict, list)) or value is None:
            raise UsageError(f"{path}: {key} expects a single value, got {value!r}")
        else:
            argv += [flag, str(value)]
    return argv


def parse_with_config(args: argparse.Namespace) -> argparse.Namespace:
    """Re-parse the command line on top of the config file's options (flags win).

    Sets args.given: the destinations of every option given explicitly, on the
    command line or in the config file (see `task_defaults`).
    """
    from_file: list[str] = []
    if args.config is not None:
        parser = args.parser
        from_file = config_argv(args.config, parser)
        said = io.StringIO()
        try:
            with contextlib.redirect_stderr(said):  # argparse's one line, to name the config file in it
                parser.parse_args(from_file)
        except SystemExit:
            why = said.getvalue().strip().removeprefix("bptt: error: ").split(" (see: ")[0]
            raise UsageError(f"{args.config}: {why or 'an option value is out of range'}") from None
        merged = parser.parse_args(from_file + list(args.argv))
        merged.argv = args.argv
        args = merged
    args.given = _given(args.parser, from_file + list(args.argv))
    return args


def _given(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    flags = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    return {a.dest for a in parser._actions if flags & set(a.option_strings)}


def task_defaults(args: argparse.Namespace, **defaults) -> None:
    """A task's own defaults for shared options, for every option the user did not give."""
    for dest, value in defaults.items():
        if dest not in args.given:
            setattr(args, dest, value)


# ---- run directories -------------------------------------------------------


def choose_run_dir(args, name: str) -> Path:
    """--out, refused if it already holds something (unless --overwrite: then its run
    files are deleted, so call this only once everything else has been checked);
    else runs/<name>[-N]."""
    if args.out is None:
        base = Path("runs") / name
        out, n = base, 2
        while out.exists():
            out, n = Path(f"{base}-{n}"), n + 1
        check_writable(out, f"run directory {out}")
        return out
    out = args.out
    check_writable(out, f"--out {out}")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file, expected a directory")
    if out.exists() and any(out.iterdir()):
        from bptt.training import checkpoint

        started = checkpoint.is_run_dir(out)
        if not started and not all(_run_file(f) for f in out.iterdir()):
            raise UsageError(
                f"--out {out}: is not a bptt run directory, refusing to {'overwrite' if args.overwrite else 'use'} it"
            )
        if not args.overwrite:
            if not started:
                raise UsageError(
                    f"--out {out}: holds no checkpoint yet (a run stopped before its first); "
                    "pass --overwrite to start it over"
                )
            raise UsageError(
                f"--out {out}: already exists; pass --resume {out} to continue it or --overwrite to replace it"
            )
        for f in out.iterdir():
            if _run_file(f):
                shutil.rmtree(f) if f.is_dir() else f.unlink()
    return out


def check_writable(out: Path, what: str) -> None:
    """UsageError, before training starts, when `out` (or its nearest existing parent) cannot be written."""
    d = out
    while not d.exists() and d != d.parent:
        d = d.parent
    if d != out and not d.is_dir():
        raise UsageError(f"{what}: {d} is a file, expected a directory")
    if d.is_dir() and not os.access(d, os.W_OK | os.X_OK):
        raise UsageError(f"{what}: no permission to write in {d}")


def _run_file(path: Path) -> bool:
    """A file a run writes, the temporary file of one (a killed write leaves it behind),
    or the run's best/ directory (TrainOptions.keep_best)."""
    name = path.name
    if path.is_dir():
        return name == "best"
    if name.startswith(".") and name.endswith(".tmp"):
        name = name[1:]
    return path.is_file() and name.startswith(RUN_FILES + ("loss.png",))


# ---- the command -----------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    from bptt.data.text import BUILTIN_NAME, Vocab, builtin_corpus, read_text, split
    from bptt.training.tbptt import Trainer, default_progress

    args = parse_with_config(args)
    if args.resume is not None:
        return resume(args)
    if args.task != "lm":
        from bptt import tasks

        tasks.check_options(args)
        return tasks.module(args.task).run(args)
    # a gated cell's own language-model defaults: the Elman default's parameter budget
    # (2 x 256 tanh RNN, 247k parameters at 103 characters: LSTM 2 x 128, GRU 2 x 148) and,
    # for the LSTM, the forget-gate bias of 1 (Jozefowicz et al. 2015)
    if args.cell == "lstm":
        task_defaults(args, hidden_size=128, forget_bias=1.0)
    elif args.cell == "gru":
        task_defaults(args, hidden_size=148)
    text = builtin_corpus() if args.data is None else read_text(args.data, args.encoding)
    name = BUILTIN_NAME if args.data is None else args.data.stem
    vocab_kw = {}
    if args.level == "word":
        vocab_kw = dict(
            lowercase=args.lowercase,
            min_freq=args.min_freq,
            max_size=args.vocab_size,
            sentence_ends=not args.no_sentence_ends,
        )
    vocab = Vocab(text, level=args.level, **vocab_kw)
    check_vocab(vocab, args)
    ids = vocab.encode(text)
    if args.valid is not None:
        train_ids, valid_ids = ids, vocab.encode(read_text(args.valid, args.encoding), source=str(args.valid))
    else:
        train_ids, valid_ids = split(ids, args.valid_fraction) if args.valid_fraction > 0 else (ids, None)
    model = build_model(args, len(vocab))  # refuses what does not fit in memory, before --overwrite deletes anything
    out = choose_run_dir(args, f"{name}-{args.level}")
    opts = options_from_args(args)
    opts.extra = {
        "task": "lm",
        "level": args.level,
        "vocab": vocab.to_json(),
        "data": None if args.data is None else str(args.data),
        "valid": None if args.valid is None else str(args.valid),
        "encoding": args.encoding,
        "valid_fraction": args.valid_fraction,
        "corpus_sha256": _sha(text),
        "samples": args.samples,
        "sample_length": args.sample_length,
        "temperature": args.temperature,
    }
    trainer = Trainer(model, train_ids, valid_ids, out, opts, progress=default_progress())
    print(
        f"corpus {name}: {len(ids):,} {args.level}s, vocabulary {len(vocab)}; train {len(train_ids):,}, "
        f"valid {0 if valid_ids is None else len(valid_ids):,}; run directory {out}"
    )
    print(
        f"model: {model.num_layers} x {model.hidden_size} {model.kind}, "
        f"{sum(p.size for p in model.params.values()):,} parameters, {model.dtype}"
    )
    return finish(trainer, vocab)


def check_vocab(vocab, args) -> None:
    """A language model predicts one of at least two tokens: DataError naming what left fewer."""
    if len(vocab) >= 2:
        return
    source = "the built-in corpus" if args.data is None else args.data
    if args.level == "char":
        raise DataError(
            f"{source}: only the character {vocab.itos[0]!r}, a language model needs at least 2 distinct characters"
        )
    limits = [
        f for f, given in (("--vocab-size", args.vocab_size is not None), ("--min-freq", args.min_freq > 1)) if given
    ]
    why = f" with {' and '.join(limits)}" if limits else ""
    raise DataError(
        f"{source}: a vocabulary of only <unk>{why}, a language model needs at least 2 tokens; "
        "raise --vocab-size or lower --min-freq"
    )


def check_memory(args, model_kw: dict) -> None:
    """Refuse, before allocating anything, a language model that would not fit in memory (`bptt.training.resources`)."""
    from bptt.training import resources

    steps = (args.backprop_steps or args.seq_length) + (args.horizon or 1) - 1
    est = resources.estimate_model(model_kw, steps=steps, batch_size=args.batch_size, optimizer=args.optimizer)
    fewer = "a smaller --vocab-size or a higher --min-freq, or " if args.level == "word" else ""
    resources.check_memory(
        est,
        {
            "parameters": f"{fewer}a smaller --hidden-size or --embedding-size",
            "outputs": f"{fewer}a smaller --batch-size or --seq-length",
        },
    )


def options_from_args(args):
    """The TrainOptions of parsed `bptt train` options (every field that has a flag)."""
    from bptt.training.loop import TrainOptions

    opts = TrainOptions(**{f.name: getattr(args, f.name) for f in fields(TrainOptions) if hasattr(args, f.name)})
    if args.no_clip_norm:
        opts.clip_norm = None
    return opts


def build_model(args, vocab_size: int):
    from bptt import RNNModel

    kw = dict(vocab_size=vocab_size, **model_kwargs(args), output_size=vocab_size, reduction="mean", dtype=args.dtype)
    check_memory(args, kw)
    return RNNModel(**kw)


def resume(args) -> int:
    """Continue the run in args.resume exactly where its last checkpoint left it."""
    from bptt.data.text import builtin_corpus, read_text, split
    from bptt.training.runs import load_run, vocab_of
    from bptt.training.tbptt import Trainer, default_progress

    run_dir = args.resume
    model, ckpt = load_run(run_dir)
    check_writable(run_dir, f"--resume {run_dir}")
    opts = resumed_options(args, ckpt)
    task = opts.extra.get("task", "lm")
    if task != "lm":
        from bptt import tasks

        if task not in tasks.TASKS:
            raise UsageError(f"--resume {run_dir}: the run is of task {task!r}, which this bptt does not know")
        return tasks.module(task).resume(args, model, ckpt, opts)
    extra = opts.extra
    vocab = vocab_of(ckpt, run_dir)
    missing = [k for k in ("data", "encoding", "corpus_sha256", "valid", "valid_fraction", "level") if k not in extra]
    if missing:
        raise CheckpointError(f"{run_dir}: checkpoint.json: training options without {', '.join(missing)}")
    data = extra["data"]
    text = builtin_corpus() if data is None else read_text(Path(data), extra["encoding"])
    if _sha(text) != extra["corpus_sha256"]:
        raise UsageError(
            f"--resume {run_dir}: the training data {data or 'built-in corpus'} changed since the run started"
        )
    ids = vocab.encode(text)
    if extra["valid"] is not None:
        train_ids, valid_ids = (
            ids,
            vocab.encode(read_text(Path(extra["valid"]), extra["encoding"]), source=extra["valid"]),
        )
    else:
        frac = extra["valid_fraction"]
        train_ids, valid_ids = split(ids, frac) if frac > 0 else (ids, None)
    trainer = Trainer(model, train_ids, valid_ids, run_dir, opts, progress=default_progress())
    trainer.resume_from(ckpt)
    print(f"resuming {run_dir} at step {trainer.state['step']} (epoch {trainer.state['epoch']})")
    return finish(trainer, vocab)


def resumed_options(args, ckpt):
    """The saved TrainOptions of a run, with the one change a resume may make: a longer budget."""
    from bptt.training.tbptt import TrainOptions

    try:
        opts = TrainOptions(**ckpt.train_state["options"])
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{args.resume}: checkpoint.json has no usable training options ({e})") from None
    if not isinstance(opts.extra, dict):
        raise CheckpointError(f"{args.resume}: checkpoint.json: training options 'extra' is not a JSON object")
    for flag, name in (("--max-epochs", "max_epochs"), ("--max-time", "max_time")):
        if flag in args.argv:
            setattr(opts, name, getattr(args, name))
    return opts


def finish(trainer, vocab) -> int:
    """Train, then print the final numbers and a few samples."""
    from bptt.generate import sample
    from bptt.training import checkpoint

    state = trainer.fit()
    extra = trainer.opts.extra
    print(
        f"stopped after {state['step']} updates ({state['stop_reason']}), {state['elapsed']:.1f} s; "
        f"checkpoint in {trainer.run_dir}"
    )
    if trainer.valid_ids is not None and state.get("best_valid") is not None:
        unit = "bits per character" if extra["level"] == "char" else "perplexity"
        best = state["best_valid"]
        value = best / np.log(2) if extra["level"] == "char" else float(np.exp(min(best, 700)))
        print(f"best validation {unit}: {value:.3f}")
    rng = np.random.default_rng(trainer.model.seed)
    texts = []
    for _ in range(extra.get("samples", 0)):
        start = np.array([int(trainer.valid_ids[0] if trainer.valid_ids is not None else 0)])
        ids = sample(trainer.model, start, extra["sample_length"], temperature=extra["temperature"], rng=rng)
        texts.append(vocab.decode(np.concatenate([start, ids])))
    if texts:
        print(f"samples (temperature {extra['temperature']}):")
        for t in texts:
            print("---\n" + t)
        checkpoint.atomic_write_text(trainer.run_dir / "samples.txt", "\n---\n".join(texts) + "\n")
    return 0


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
