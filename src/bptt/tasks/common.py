"""What every dataset task shares: options -> TrainOptions, data fingerprints, vocabularies,
batches of padded sequences, the memory estimate, and the train / resume / report sequence.

A task module provides `load(extra, fresh)` -> a `Data` (train source, evaluation
function, summary line) built from the JSON `extra` saved in the run, so that a
resumed run rebuilds exactly the same batches from the same files (their
sha256 is checked).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bptt.errors import DataError, UsageError
from bptt.training.loop import TrainOptions


@dataclass
class Data:
    source: object  # bptt.data.batching.SequenceSource
    evaluate: Callable | None  # model -> {"valid_loss": ..., ...}
    summary: str  # printed before training


def file_sha(path: str | Path) -> str:
    from bptt.data.text import read_bytes

    return hashlib.sha256(read_bytes(Path(path))).hexdigest()


def check_unchanged(extra: dict, run_dir) -> None:
    """On resume: every data file the run was trained on is still what it was."""
    for key in ("data", "valid"):
        path, sha = extra.get(key), extra.get(f"{key}_sha256")
        if path is not None and file_sha(path) != sha:
            raise UsageError(f"--resume {run_dir}: {path} changed since the run started")


def data_extra(args, task: str) -> dict:
    """The data part of a run's saved options: task, files and their fingerprints."""
    if args.data is None and task != "spell":
        raise UsageError(f"--task {task}: --data FILE is required")
    extra = {"task": task, "encoding": args.encoding}
    for key in ("data", "valid"):
        path = getattr(args, key)
        extra[key] = None if path is None else str(path)
        extra[f"{key}_sha256"] = None if path is None else file_sha(path)
    return extra


def train_options(args, extra: dict, monitor: str, monitor_mode: str) -> TrainOptions:
    from bptt.training.options import options_from_args

    opts = options_from_args(args)
    opts.extra, opts.monitor, opts.monitor_mode = extra, monitor, monitor_mode
    if opts.keep_best is None:  # the best evaluation's checkpoint in RUN_DIR/best whenever there is validation
        opts.keep_best = bool(extra.get("valid")) or extra["task"] == "spell"
    return opts


def vocab_json(counts: Counter, min_freq: int = 1, max_size: int | None = None, source=None) -> dict:
    """A word-level `bptt.data.text.Vocab` JSON: "<unk>" (id 0) then tokens seen >= min_freq times,
    most frequent first (ties alphabetically), at most max_size entries. With `source` (the
    training file), DataError when the limits leave only "<unk>": every input would look the same."""
    from bptt.data.text import UNK, Vocab

    ranked = sorted((w for w, c in counts.items() if c >= min_freq and w != UNK), key=lambda w: (-counts[w], w))
    if max_size is not None:
        ranked = ranked[: max(max_size - 1, 0)]
    if source is not None and not ranked:
        limits = " and ".join(
            f
            for f, on in ((f"--min-freq {min_freq}", min_freq > 1), (f"--vocab-size {max_size}", max_size is not None))
            if on
        )
        raise DataError(
            f"{source}: a vocabulary of only <unk>{' with ' + limits if limits else ''}, expected at least one token "
            "besides it; lower --min-freq or raise --vocab-size"
        )
    return Vocab(level="word", sentence_ends=False, itos=[UNK, *ranked]).to_json()


def lookup(vocab: dict) -> dict[str, int]:
    from bptt.data.text import Vocab

    return Vocab.from_json(vocab).stoi


def check_labels(labels: list[str], known: dict[str, int], path, lines: list[int], what: str = "label") -> None:
    """DataError at the first label that the training data never had."""
    for label, line in zip(labels, lines):
        if label not in known:
            shown = ", ".join(list(known)[:12]) + (", ..." if len(known) > 12 else "")
            raise DataError(
                f"{path}:{line}: {what} {label!r} does not occur in the training data, expected one of: {shown}"
            )


def check_memory(model_kw: dict, steps: int, batch_size: int, optimizer: str) -> None:
    """Refuse, before the model is built, one that would not fit in memory (`bptt.training.resources`).
    model_kw: the RNNModel keyword arguments; steps: the longest training sequence."""
    from bptt.training import resources

    est = resources.estimate_model(model_kw, steps=steps, batch_size=batch_size, optimizer=optimizer)
    resources.check_memory(
        est,
        {
            "parameters": "a higher --min-freq, a smaller --vocab-size, --hidden-size or --embedding-size",
            "states": "a smaller --batch-size or --hidden-size",
        },
    )


def n_params(model) -> int:
    return sum(p.size for p in model.params.values())


def eval_batches(lengths: np.ndarray, batch_size: int, make: Callable) -> list:
    """The evaluation batches, built once: examples sorted by length."""
    from bptt.data.batching import sorted_batches

    return [make(idx) for idx in sorted_batches(np.asarray(lengths), max(batch_size, 64))]


def fit_and_report(model, data: Data, run_dir, opts: TrainOptions, ckpt=None) -> int:
    """Train (or continue from ckpt), print how it stopped and the best validation metric."""
    from bptt.training.batches import BatchTrainer
    from bptt.training.loop import default_progress

    trainer = BatchTrainer(model, data.source, data.evaluate, run_dir, opts, progress=default_progress())
    if ckpt is not None:
        trainer.resume_from(ckpt)
        print(f"resuming {run_dir} at step {trainer.state['step']} (epoch {trainer.state['epoch']})")
    else:
        print(data.summary)
        print(
            f"model: {'bidirectional ' if model.bidirectional else ''}{model.num_layers} x {model.hidden_size} "
            f"{model.kind}, {model.mode}, {model.head} head, {n_params(model):,} parameters; "
            + (
                f"character encoder 2 x {model.char_hidden_size} {model.char_rnn.name}; "
                if model.char_hidden_size is not None
                else ""
            )
            + f"run directory {run_dir}"
        )
    state = trainer.fit()
    print(
        f"stopped after {state['step']} updates ({state['stop_reason']}), {state['elapsed']:.1f} s; "
        f"checkpoint in {run_dir}"
    )
    if state.get("best_valid") is not None:
        print(f"best {opts.monitor.replace('_', ' ')}: {state['best_valid']:.4f}")
    if opts.keep_best and (Path(run_dir) / "best").is_dir():
        print(f"the best evaluation's weights are in {Path(run_dir) / 'best'}: what evaluate and predict use")
    return 0


def build_and_fit(
    args,
    extra: dict,
    data: Data,
    model_kw: dict,
    run_name: str,
    monitor: str,
    monitor_mode: str,
    epochs_per_eval: int = 1,
) -> int:
    """The end of every dataset task's `run`: evaluate every `epochs_per_eval` epochs unless
    --eval-every is given, refuse a model too big for memory, and only then take the run
    directory (which --overwrite empties), build the model and train."""
    from bptt import RNNModel
    from bptt.training.rundir import choose_run_dir

    if "eval_every" not in args.given:
        args.eval_every = epochs_per_eval * data.source.n_batches
    check_memory(model_kw, int(data.source.lengths.max()), args.batch_size, args.optimizer)
    out = choose_run_dir(args, run_name)
    model = RNNModel(**model_kw)
    return fit_and_report(model, data, out, train_options(args, extra, monitor, monitor_mode))


def resume_task(args, model, ckpt, opts: TrainOptions, load: Callable) -> int:
    """A dataset task's `resume`: the same files (their sha256 checked), the same batches."""
    check_unchanged(opts.extra, args.resume)
    return fit_and_report(model, load(opts.extra, fresh=False), args.resume, opts, ckpt)
