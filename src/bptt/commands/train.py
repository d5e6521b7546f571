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
import importlib
from pathlib import Path

from bptt.errors import CheckpointError, UsageError
from bptt.tasks.lm import _sha, build_model, check_vocab, finish
from bptt.training.config import parse_with_config
from bptt.training.options import (
    add_model_options,
    fraction,
    non_negative_int,
    options_from_args,
    positive_float,
    positive_int,
    resumed_options,
)
from bptt.training.rundir import check_writable, choose_run_dir


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
        f"model: {model.num_layers} x {model.hidden_size} {model.nonlinearity} RNN, "
        f"{sum(p.size for p in model.params.values()):,} parameters, {model.dtype}"
    )
    return finish(trainer, vocab)


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
