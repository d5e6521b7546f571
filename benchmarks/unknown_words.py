"""What each unknown-word option of `bptt train --task tag` adds: token accuracy and accuracy on
words the vocabulary lacks, on the dev file, median over seeds.

    python benchmarks/unknown_words.py TRAIN.conllu DEV.conllu [--column xpos] [--epochs 10] [--seeds 0 1 2]

Each configuration is one `bptt train` followed by `bptt evaluate --json`, run in
this process through bptt.cli.main, in a temporary directory.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
from pathlib import Path

from bptt.cli import main

# the tagger as it was when these tables were measured (before the character encoder and
# today's defaults, docs/recipes.md): every configuration adds its flags to this
BASE = [
    "--hidden-size",
    "64",
    "--embedding-size",
    "64",
    "--char-hidden-size",
    "0",
    "--word-dropout",
    "0",
    "--features",
    "none",
]
CONFIGS = {
    "words only": [],
    "--lowercase": ["--lowercase"],
    "--min-freq 2": ["--min-freq", "2"],
    "--word-dropout 0.1": ["--word-dropout", "0.1"],
    "--features suffix": ["--features", "suffix"],
    "--features prefix,suffix,shape": ["--features", "prefix,suffix,shape"],
    "all of the above": [
        "--lowercase",
        "--min-freq",
        "2",
        "--word-dropout",
        "0.1",
        "--features",
        "prefix,suffix,shape",
    ],
}


def run(argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([str(a) for a in argv])
    if code != 0:
        raise SystemExit(f"bptt {' '.join(map(str, argv))} exited {code}")
    return out.getvalue()


def main_(args) -> None:
    print("| configuration | accuracy | unknown-word accuracy | unknown words |")
    print("|---|---|---|---|")
    for name, flags in CONFIGS.items():
        acc, unk, n_unk = [], [], []
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                run(
                    [
                        "train",
                        "--task",
                        "tag",
                        "--data",
                        args.train,
                        "--valid",
                        args.dev,
                        "--column",
                        args.column,
                        "--max-epochs",
                        args.epochs,
                        "--seed",
                        seed,
                        "--out",
                        Path(tmp) / "r",
                        *BASE,
                        *flags,
                    ]
                )
                r = json.loads(run(["evaluate", Path(tmp) / "r", "--json"]))
                acc.append(r["accuracy"])
                unk.append(r.get("unknown_word_accuracy", float("nan")))
                n_unk.append(r.get("unknown_words", 0))
        med = statistics.median
        print(f"| {name} | {med(acc):.4f} | {med(unk):.4f} | {med(n_unk):,} |", flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("train", type=Path)
    ap.add_argument("dev", type=Path)
    ap.add_argument("--column", default="upos")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    main_(ap.parse_args())
