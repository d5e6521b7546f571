"""The tasks `bptt train --task NAME` trains; the registry below names each one's module.

    lm        a character- or word-level language model, trained with truncated BPTT (the default)
    tag       a part-of-speech tagger on CoNLL-U (many-to-many)
    classify  text -> label (many-to-one), e.g. sentiment, from TSV/CSV
    regress   float sequences -> numbers, with the identity head and mean squared error
    spell     one-to-many: a number -> its English words, char by char (generated data)
    longmem   the long-memory benchmarks adding, copy and temporal-order (generated data)
    common    what the dataset tasks share: options, vocabularies, splits, the train / resume / report sequence
    crossval  --folds K: K-fold cross-validation of a classify run, one run directory per fold

A task module is imported only when used and has two functions (and, for `bptt
predict` / `bptt evaluate`, `predict(model, extra, path, args) -> str` and
`evaluate(model, extra, path, args) -> dict`):

    run(args) -> int             read or generate the data, build the model, train
                                 (`bptt.training.tbptt.Trainer` for the language model,
                                 `bptt.training.batches.BatchTrainer` for the others), print the results
    resume(args, model, ckpt, opts) -> int
                                 continue a run of this task from its checkpoint

and, unless the shared model, optimization and budget flags of `bptt train` are
all it reads, `add_options(parser)`: its own flags, as an argument group.

A task that wants other defaults for shared flags than the language model's
(a bidirectional tagger, a smaller hidden size) sets them with
`bptt.training.options.task_defaults`, which leaves flags the user gave alone.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from bptt.errors import UsageError

# name -> module
TASKS: dict[str, str] = {
    "lm": "bptt.tasks.lm",  # the default
    "tag": "bptt.tasks.tag",
    "classify": "bptt.tasks.classify",
    "regress": "bptt.tasks.regress",
    "spell": "bptt.tasks.spell",
    "adding": "bptt.tasks.longmem",  # the three long-memory benchmarks share one module
    "copy": "bptt.tasks.longmem",
    "temporal-order": "bptt.tasks.longmem",
}


GENERATED = ("spell", "adding", "copy", "temporal-order")  # tasks that make their own data


# shared `bptt train` flags that only some tasks read: flag -> the tasks (besides lm) that read it
READ_BY = {
    "seq_length": (),
    "backprop_steps": (),
    "horizon": (),
    "valid_fraction": ("tag", "classify", "regress"),
    "samples": (),
    "sample_length": (),
    "temperature": (),
    "tie_weights": (),
    "no_sentence_ends": (),
    "level": ("classify",),
    "lowercase": ("tag", "classify"),
    "min_freq": ("tag", "classify"),
    "vocab_size": ("tag", "classify"),
    "data": ("tag", "classify", "regress"),
    "valid": ("tag", "classify", "regress"),
}


# `bptt train`'s defaults are the character language model's (`bptt.tasks.lm`); these of them were
# chosen for it alone (docs/language-models.md), and every other task starts from the values it had
# before them, then sets its own
NOT_LM_DEFAULTS = dict(clip_norm=5.0, lr_decay=1.0, lr_decay_after=0)


def apply_defaults(args) -> None:
    """The defaults of `NOT_LM_DEFAULTS` for a task other than the language model (flags given win)."""
    from bptt.training.options import task_defaults

    if args.task != "lm":
        task_defaults(args, **NOT_LM_DEFAULTS)


def check_options(args) -> None:
    """UsageError for a flag the user gave that --task args.task would silently ignore."""
    if args.task == "lm":
        return  # the language model reads every shared flag
    full_bptt = "backpropagates through each whole sequence (full BPTT)"
    why = {
        "seq_length": full_bptt,
        "backprop_steps": full_bptt,
        "horizon": full_bptt,
        "valid_fraction": "generates its validation data",
        "data": "generates its data",
        "valid": "generates its validation data",
    }
    for dest, readers in READ_BY.items():
        if dest in args.given and args.task not in readers:
            flag = f"--{dest.replace('_', '-')}"
            users = "language models" + (f" and --task {', '.join(readers)}" if readers else "")
            raise UsageError(f"{flag}: only for {users}; --task {args.task} {why.get(dest, 'does not use it')}")


def names() -> list[str]:
    return list(TASKS)


def module(name: str):
    """The module of task `name`."""
    return importlib.import_module(TASKS[name])


def task_of(run_dir: Path, last: bool = False):
    """(model, checkpoint, extra, task module) of a run, with the weights it is used with
    (`bptt.training.runs.weights_dir`); the module is None for a language model."""
    from bptt.training.runs import load_run, task_extra, weights_dir

    model, ckpt = load_run(weights_dir(run_dir, last))
    extra = task_extra(ckpt)
    task = extra.get("task", "lm")
    return model, ckpt, extra, module(task) if task in TASKS and task != "lm" else None
