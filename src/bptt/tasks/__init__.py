"""The tasks `bptt train --task NAME` trains, beyond the default language model.

Each task is a module that the registry below names, imported only when used,
with three functions (and, for `bptt predict` / `bptt evaluate`, `predict(model,
extra, path, args) -> str` and `evaluate(model, extra, path, args) -> dict`):

    add_options(parser)          its own flags, as an argument group of `bptt train`
                                 (the shared model, optimization and budget flags
                                 are already there)
    run(args) -> int             read or generate the data, build the model, train
                                 with `bptt.fit.BatchTrainer`, print the results
    resume(args, model, ckpt, opts) -> int
                                 continue a run of this task from its checkpoint

A task that wants other defaults for shared flags than the language model's
(a bidirectional tagger, a smaller hidden size) sets them with
`bptt.commands.train.task_defaults`, which leaves flags the user gave alone.
"""

from __future__ import annotations

import importlib

from bptt.errors import UsageError

# name -> module; "lm" (language modelling, the default) lives in bptt.commands.train itself.
TASKS: dict[str, str] = {
    "tag": "bptt.tasks.tag",
    "classify": "bptt.tasks.classify",
    "regress": "bptt.tasks.regress",
    "spell": "bptt.tasks.spell",
    "adding": "bptt.tasks.longmem",  # the three long-memory benchmarks share one module
    "copy": "bptt.tasks.longmem",
    "temporal-order": "bptt.tasks.longmem",
}


GENERATED = ("spell", "adding", "copy", "temporal-order")  # tasks that make their own data


def check_options(args) -> None:
    """UsageError for a flag the user gave that --task args.task would silently ignore."""
    why = {"seq_length": "backpropagates through each whole sequence (full BPTT)",
           "backprop_steps": "backpropagates through each whole sequence (full BPTT)",
           "horizon": "backpropagates through each whole sequence (full BPTT)",
           "valid_fraction": "validates on --valid FILE" if args.task not in GENERATED else "generates its validation data"}  # fmt: skip
    if args.task in GENERATED:
        why.update(data="generates its data", valid="generates its validation data")
    for dest, reason in why.items():
        if dest in args.given:
            raise UsageError(f"--{dest.replace('_', '-')}: only for language models; --task {args.task} {reason}")


def names() -> list[str]:
    return ["lm", *TASKS]


def module(name: str):
    """The module of task `name` (not "lm")."""
    return importlib.import_module(TASKS[name])
