"""`bptt train --task classify --folds K`: K-fold cross-validation on a data set without a split.

The examples of --data are dealt to K folds, stratified by label and seeded by
--seed (`bptt.tasks.common.folds_of`). Run k = 1..K trains on the other K - 1
folds (less the --valid-fraction it validates on, for early stopping and the
best weights) in its own complete run directory RUN_DIR/fold-k, and is then
scored on fold k with the weights of its best evaluation (RUN_DIR/fold-k/best).
The summary,

    accuracy_k = correct_k / n_k,   mean = (1/K) sum_k accuracy_k,
    std = sqrt(sum_k (accuracy_k - mean)^2 / (K - 1)),

is printed and written to RUN_DIR/cv.json. A fold's run records its fold, so
`bptt train --resume RUN_DIR/fold-k` continues that run on the same split.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from pathlib import Path

from bptt.errors import UsageError

CV_FILE = "cv.json"


def check(args) -> None:
    """UsageError for what cross-validation cannot be combined with."""
    if args.folds < 2:
        raise UsageError(f"--folds: got {args.folds}, expected at least 2 (each fold is held out once)")
    if args.valid is not None:
        raise UsageError("--folds: each fold is held out of --data in turn; drop --valid (use --valid-fraction)")
    if getattr(args, "resume", None) is not None:
        raise UsageError("--folds: a cross-validation is K runs; continue one with --resume RUN_DIR/fold-k")


def run_dir(args) -> Path:
    """--out, or runs/<data>-classify-cv[-N]; refused if it holds anything but folds and cv.json
    (and, without --overwrite, if it holds anything)."""
    from bptt.training.rundir import check_writable

    if args.out is None:
        base = Path("runs") / f"{Path(args.data).stem}-classify-cv"
        out, n = base, 2
        while out.exists():
            out, n = Path(f"{base}-{n}"), n + 1
    else:
        out = args.out
    check_writable(out, f"--out {out}")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file, expected a directory")
    entries = list(out.iterdir()) if out.is_dir() else []
    if entries:
        ours = all(f.name == CV_FILE or (f.is_dir() and f.name.startswith("fold-")) for f in entries)
        if not ours:
            raise UsageError(f"--out {out}: is not a cross-validation directory, refusing to use it")
        if not args.overwrite:
            raise UsageError(f"--out {out}: already exists; pass --overwrite to replace it")
    return out


def run(args, train: Callable, score: Callable) -> int:
    """Train the K folds one after another, score each on its held-out fold, write the summary.

    train(args) -> exit code: one run (the task's `run`, args.fold set); score(model, extra) -> its
    classification report on the run's held-out fold."""
    from bptt import tasks
    from bptt.training.checkpoint import atomic_write_text
    from bptt.training.runs import weights_dir

    check(args)
    out = run_dir(args)  # made by the first fold's run, once its data is read
    folds = []
    for k in range(1, args.folds + 1):
        fold_args = copy.copy(args)
        fold_args.given = set(args.given) | {"out"}
        fold_args.fold, fold_args.out = k, out / f"fold-{k}"
        print(f"== fold {k} of {args.folds}: {fold_args.out}")
        code = train(fold_args)
        if code != 0:
            return code
        scored = weights_dir(fold_args.out)
        model, _, extra, _ = tasks.task_of(scored)
        report = score(model.eval(), extra)
        folds.append({"fold": k, "accuracy": report["accuracy"], "n": report["n"], "run_dir": str(fold_args.out)})
        weights = "last" if scored == fold_args.out else "best evaluation"
        print(f"fold {k}: held-out accuracy {report['accuracy']:.4f} on {report['n']:,} examples ({weights} weights)")
    acc = [f["accuracy"] for f in folds]
    mean = sum(acc) / len(acc)
    std = math.sqrt(sum((a - mean) ** 2 for a in acc) / (len(acc) - 1))
    summary = {
        "data": str(args.data),
        "folds": args.folds,
        "seed": args.seed,
        "stratified": True,
        "accuracy": acc,
        "mean": mean,
        "std": std,
        "per_fold": folds,
    }
    atomic_write_text(out / CV_FILE, json.dumps(summary, indent=2) + "\n")
    print(
        f"{args.folds}-fold cross-validation of {args.data}: accuracy {mean:.4f} +- {std:.4f} (mean +- sample std); "
        f"folds {' '.join(f'{a:.4f}' for a in acc)}; written to {out / CV_FILE}"
    )
    return 0
