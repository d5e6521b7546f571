"""`bptt evaluate RUN_DIR --data FILE`: how well a trained model does on labelled data.

Language models: loss, bits per character or perplexity on a text. Taggers
and classifiers: accuracy, precision/recall/F1 per tag or label and macro, a
confusion matrix (text; a PNG with --plot), ROC AUC for two labels, and for
taggers the accuracy on words the vocabulary lacks. Regressors: MSE and MAE.
The speller: exact match and character accuracy of its generated words.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from bptt.errors import DataError, UsageError
from bptt.training.options import add_weights_option


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a trained model on labelled data",
        description=__doc__,
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    add_weights_option(p)
    p.add_argument("--data", type=Path, default=None, help="data file (default: the run's validation data)")
    p.add_argument("--encoding", default="utf-8", help="of --data")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", type=Path, default=None, metavar="PNG", help="tag/classify: the confusion matrix as a PNG")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bptt.tasks import task_of
    from bptt.training.runs import lm_text_ids, weights_note
    from bptt.training.tbptt import evaluate_stream

    model, ckpt, extra, module = task_of(args.run_dir, args.last)  # loaded and checked once, for either kind of run
    if module is not None:
        code = run_task(args, model, extra, module)
        print(weights_note(ckpt.path, ckpt), file=sys.stderr)  # once it has worked: an error stays one line
        return code
    ids, name = lm_text_ids(ckpt, args.run_dir, args.data, args.encoding)
    if len(ids) < 2:
        raise DataError(f"{name}: {len(ids)} tokens, expected at least 2 to evaluate")
    nats = evaluate_stream(model, ids)
    result = {"data": name, "tokens": int(len(ids)), "loss_nats": nats}
    if extra.get("level", "char") == "char":
        result["bits_per_char"] = nats / math.log(2)
    else:
        result["perplexity"] = math.exp(min(nats, 700))
    if args.json:
        print(json.dumps(result))
    else:
        print(" | ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()))
    print(weights_note(ckpt.path, ckpt), file=sys.stderr)
    return 0


def run_task(args, model, extra: dict, module) -> int:
    from bptt.training import metrics

    if not hasattr(module, "evaluate"):
        raise UsageError(
            f"{args.run_dir}: a --task {extra['task']} run is tested when training ends; its result is in result.json"
        )
    path = args.data
    if path is None and extra["task"] != "spell":
        if extra.get("valid_fraction") and not extra.get("valid"):
            raise UsageError(
                f"{args.run_dir}: the run validated on a share of its training file, not a file of its own; "
                "pass --data FILE"
            )
        if not extra.get("valid"):
            raise UsageError(f"{args.run_dir}: the run had no validation data; pass --data FILE")
        path = Path(extra["valid"])
    report = module.evaluate(model, extra, path, args)
    if args.plot is not None:
        if "confusion" not in report:
            raise UsageError(f"--plot: a confusion matrix is for tag and classify runs, not {extra['task']}")
        metrics.plot_confusion(report["confusion"], extra["labels"], args.plot)
    if args.json:
        print(json.dumps({"data": None if path is None else str(path), **report}))
        return 0
    if "confusion" in report:
        print(metrics.format_report(report))
        if "unknown_word_accuracy" in report:
            print(
                f"words not in the vocabulary: {report['unknown_words']:,}, accuracy {report['unknown_word_accuracy']:.4f}"
            )
        print("confusion matrix (rows: true, columns: predicted):")
        print(metrics.format_confusion(report["confusion"], extra["labels"]))
    else:
        print(
            " | ".join(
                f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in report.items() if k != "examples"
            )
        )
        for line in report.get("examples", []):
            print(line)
    if args.plot is not None:
        print(f"wrote {args.plot}")
    return 0
