"""`bptt evaluate RUN_DIR --data FILE`: loss, bits per character or perplexity on a text."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from bptt.errors import DataError


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a language model on a text", description=__doc__)
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--data", type=Path, default=None, help="text file (default: the run's validation data)")
    p.add_argument("--encoding", default="utf-8")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bptt.runs import lm_text_ids, load_run, vocab_of
    from bptt.train import evaluate_stream

    model, ckpt = load_run(args.run_dir)
    vocab = vocab_of(ckpt, args.run_dir)
    ids, name = lm_text_ids(ckpt, args.run_dir, args.data, args.encoding)
    if len(ids) < 2:
        raise DataError(f"{name}: {len(ids)} tokens, expected at least 2 to evaluate")
    nats = evaluate_stream(model, ids)
    result = {"data": name, "tokens": int(len(ids)), "loss_nats": nats}
    if vocab.level == "char":
        result["bits_per_char"] = nats / math.log(2)
    else:
        result["perplexity"] = math.exp(min(nats, 700))
    if args.json:
        print(json.dumps(result))
    else:
        print(" | ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()))
    return 0
