"""`bptt predict RUN_DIR --data FILE`: a trained task model's outputs for every input.

    tag       CoNLL-U (or plain text, one sentence per line) in, CoNLL-U out with the
              predicted tags in the run's column (UPOS or XPOS)
    classify  TSV/CSV or one text per line in; per line the predicted label and the
              probability of every label, tab-separated, under a header line
    regress   CSV in; per row the predicted value(s), steps by spaces, features by ':'
    spell     one number per line in; per line the number and its generated words

Output goes to stdout, or with --out to a file written atomically (all or nothing).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bptt.errors import UsageError
from bptt.training.options import add_weights_option


def add_parser(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="outputs of a trained tagger, classifier, regressor or speller",
        description=__doc__,
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    add_weights_option(p)
    p.add_argument("--data", type=Path, required=True, help="the inputs")
    p.add_argument("--out", type=Path, default=None, help="write here instead of stdout")
    p.add_argument("--encoding", default="utf-8", help="of --data")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bptt.tasks import task_of
    from bptt.training.checkpoint import atomic_write_text
    from bptt.training.rundir import check_output_file
    from bptt.training.runs import weights_note

    model, ckpt, extra, module = task_of(args.run_dir, args.last)
    if module is None:
        raise UsageError(f"{args.run_dir}: a language-model run; use bptt generate or bptt evaluate for it")
    if not hasattr(module, "predict"):
        raise UsageError(f"{args.run_dir}: a --task {extra['task']} run predicts nothing; its result is in result.json")
    if args.out is not None:  # before the work, and so that a failed write names --out, not its temporary file
        check_output_file(args.out, args)
    text = module.predict(model, extra, args.data, args)
    if args.out is None:
        sys.stdout.write(text)
    else:
        atomic_write_text(args.out, text)
        print(f"wrote {args.out}", file=sys.stderr)
    print(weights_note(ckpt.path, ckpt), file=sys.stderr)  # once it has worked: an error stays one line
    return 0
