"""`bptt export RUN_DIR --format onnx [--out model.onnx]`: a trained model as an ONNX file.

The file runs in onnxruntime (or any ONNX runtime) without bptt or NumPy; it
carries the run's vocabulary, labels and feature vocabularies as metadata
(JSON strings under the keys vocab, labels, ...) so that outputs can be decoded.
See docs/deployment.md for its inputs and outputs. Default --out: RUN_DIR/model.onnx.
The file is written atomically (the old file or the whole new one).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bptt.training.options import add_weights_option

FORMATS = ("onnx",)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="write a trained model as an ONNX file, to run without bptt",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    add_weights_option(p)
    p.add_argument("--format", choices=FORMATS, default="onnx", help="the file format (default: onnx)")
    p.add_argument("--out", type=Path, default=None, help="the file to write (default: RUN_DIR/model.onnx)")
    p.add_argument(
        "--recurrence",
        choices=("op", "scan"),
        default=None,
        help="recurrent layers as ONNX's RNN operator (op, the default for float32) or a Scan over one step "
        "(scan, the default and only choice for float64)",
    )
    p.set_defaults(run=run)


def run_metadata(extra: dict) -> dict:
    """What a user needs to encode inputs and decode outputs, from a run's task data:
    the token of each id, the name of each output, the feature columns' and the characters' vocabularies."""
    meta = {"task": extra.get("task", "lm")}
    vocab = extra.get("vocab")
    if isinstance(vocab, dict):  # a bptt.data.text.Vocab
        meta["vocab"] = vocab.get("itos")
        meta["tokenizer"] = {k: vocab[k] for k in ("level", "lowercase", "sentence_ends") if k in vocab}
    elif isinstance(vocab, list):
        meta["vocab"] = vocab
    if extra.get("labels") is not None:
        meta["labels"] = extra["labels"]
    if extra.get("features"):
        meta["features"] = extra["features"]
        meta["feature_vocabs"] = [v.get("itos") for v in extra.get("feature_vocabs", [])]
        meta["affix_length"] = extra.get("affix_length")
    if extra.get("chars"):
        meta["chars"] = extra["chars"]
    return meta


def run(args: argparse.Namespace) -> int:
    from bptt import export
    from bptt.training.rundir import check_output_file
    from bptt.training.runs import load_weights, task_extra

    out = args.out if args.out is not None else args.run_dir / "model.onnx"
    model, ckpt, note = load_weights(args.run_dir, args.last)
    export.check_exportable(model, args.recurrence)  # refuse before anything else
    check_output_file(out, args)
    export.to_onnx(model, out, recurrence=args.recurrence, metadata=run_metadata(task_extra(ckpt)))
    print(note, file=sys.stderr)
    print(f"wrote {out}", file=sys.stderr)
    return 0
