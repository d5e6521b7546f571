"""Which `bptt train` flags a `--resume` may give, and what the others must agree with.

A resumed run continues exactly: its architecture, data, task, optimizer,
truncation and seed are those saved in its checkpoint. On `--resume` a flag
(on the command line or in `--config`) is therefore either

  - one that can honestly change between two sessions of the same run
    (RESUMABLE: the budget, the evaluation cadence, and what is written or
    printed), and is applied; or
  - any other, accepted only when its value is the run's own (so that the
    original command line with `--resume RUN` appended still works), and
    otherwise refused in one line that names it and the run's value.
"""

from __future__ import annotations

from pathlib import Path

from bptt.errors import UsageError

# dest -> where the value lives: "options" (TrainOptions) or "extra" (TrainOptions.extra, the task's own)
RESUMABLE = {
    "max_epochs": "options",
    "max_time": "options",
    "early_stopping": "options",
    "keep_training": "extra",
    "eval_every": "options",
    "keep": "options",
    "keep_best": "options",
    "diagnostics": "options",
    "tensorboard": "options",
    "samples": "extra",
    "sample_length": "extra",
    "temperature": "extra",
}
NOT_OPTIONS = {"resume", "config"}  # the flags that say what to do, not how to train


def flags(dests) -> str:
    return ", ".join(f"--{d.replace('_', '-')}" for d in dests)


def apply(args, opts, model_config: dict) -> None:
    """Apply the resumable flags in args.given to `opts` (TrainOptions, with the run's `extra`);
    UsageError for the first other flag whose value is not the run's."""
    for dest in sorted(args.given - NOT_OPTIONS, key=_order(args)):
        value = getattr(args, dest)
        where = RESUMABLE.get(dest)
        if where == "options":
            setattr(opts, dest, value)
            continue
        if where == "extra" and dest in opts.extra:
            opts.extra[dest] = value
            continue
        known, saved = run_value(dest, opts, model_config)
        flag = f"--{dest.replace('_', '-')}"
        if not known:
            raise UsageError(
                f"{flag}: not with --resume (a resumed run keeps its own settings); "
                f"only {flags(RESUMABLE)} may be given"
            )
        if not _same(value, saved):
            if isinstance(value, bool):
                said = f"{flag}: the run {args.resume} was trained without it"
            else:
                said = f"{flag} {_show(value)}: the run {args.resume} has {flag} {_show(saved)}"
            raise UsageError(
                f"{said}; a resumed run keeps its architecture, data, task and optimizer, "
                f"only {flags(RESUMABLE)} may change"
            )


def run_value(dest: str, opts, model_config: dict) -> tuple[bool, object]:
    """(found, value) of option `dest` in the saved run: its model, its TrainOptions or its task data."""
    if dest == "task":
        return True, opts.extra.get("task", "lm")
    if dest == "no_bias":
        return "bias" in model_config, not model_config.get("bias", True)
    if dest == "no_clip_norm":
        return True, opts.clip_norm is None
    if dest in model_config:
        return True, model_config[dest]
    if dest in opts.extra:
        return True, opts.extra[dest]
    if hasattr(opts, dest) and dest not in ("extra", "monitor", "monitor_mode"):
        return True, getattr(opts, dest)
    return False, None


def _same(given, saved) -> bool:
    if isinstance(given, Path) or isinstance(saved, Path):
        return saved is not None and str(given) == str(saved)
    if isinstance(given, float) and isinstance(saved, (int, float)) and not isinstance(saved, bool):
        return abs(given - saved) <= 1e-12 * max(abs(given), abs(saved), 1.0)
    return given == saved


def _show(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _order(args):
    """The flags in the order the user gave them, so the first wrong one is the one named."""
    argv = [a.split("=", 1)[0] for a in getattr(args, "argv", [])]

    def key(dest: str):
        flag = f"--{dest.replace('_', '-')}"
        return (argv.index(flag) if flag in argv else len(argv), dest)

    return key
