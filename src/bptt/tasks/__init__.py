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


def names() -> list[str]:
    return ["lm", *TASKS]


def module(name: str):
    """The module of task `name` (not "lm")."""
    return importlib.import_module(TASKS[name])
