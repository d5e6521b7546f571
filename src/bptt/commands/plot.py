"""`bptt plot RUN_DIR`: draw the training and validation loss curves to a PNG.

Reads RUN_DIR/metrics.jsonl (one JSON line per evaluation) and writes
RUN_DIR/loss.png (or --out): the loss in bits per character for character
models, nats per token otherwise, against the update step. Needs matplotlib
(pip install 'bptt[plot]').
"""

from __future__ import annotations

import argparse
import io
import math
from pathlib import Path

from bptt.errors import BpttError, DataError


def add_parser(sub) -> None:
    p = sub.add_parser("plot", help="draw the loss curves of a run to PNG", description=__doc__)
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--out", type=Path, default=None, help="PNG file (default: RUN_DIR/loss.png)")
    p.set_defaults(run=run)


def read_metrics(path: Path) -> list[dict]:
    if not path.is_file():
        raise DataError(f"{path}: missing (no evaluation was logged in this run yet)")
    from bptt.training.checkpoint import read_jsonl

    records = read_jsonl(path, ("step", "train_loss"))
    if not records:
        raise DataError(f"{path}: empty (no evaluation was logged in this run yet)")
    return records


def run(args: argparse.Namespace) -> int:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BpttError("matplotlib is needed for bptt plot: pip install 'bptt[plot]'") from None
    from bptt.training import lock
    from bptt.training.checkpoint import atomic_write_bytes

    if args.out is None:  # it writes into the run: not while a trainer does
        lock.hold(args.run_dir, args, create=False)
    records = read_metrics(args.run_dir / "metrics.jsonl")
    char = "train_bpc" in records[0]
    scale = 1 / math.log(2) if char else 1.0
    steps = [r["step"] for r in records]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, [r["train_loss"] * scale for r in records], label="train")
    if any("valid_loss" in r for r in records):
        ax.plot(
            [r["step"] for r in records if "valid_loss" in r],
            [r["valid_loss"] * scale for r in records if "valid_loss" in r],
            label="validation",
        )
    ax.set_xlabel("update")
    ax.set_ylabel("bits per character" if char else "nats per token")
    ax.set_title(str(args.run_dir))
    ax.grid(alpha=0.3)
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    out = args.out or args.run_dir / "loss.png"
    atomic_write_bytes(out, buf.getvalue())
    print(f"wrote {out}")
    return 0
