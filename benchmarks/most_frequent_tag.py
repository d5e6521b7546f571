"""The most-frequent-tag baseline of a tagging recipe: every test word gets the tag it had most
often in training; a word training never had gets the most frequent tag overall.

    python benchmarks/most_frequent_tag.py TRAIN.conllu TEST.conllu [--column upos]

Prints the accuracy over the test words (syntactic words, as `bptt evaluate` counts them: ranges
and empty nodes skipped) and on the test words not in training. Ties go to the tag seen first.
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from pathlib import Path

from bptt.data import conllu


def main(args) -> None:
    by_word: dict[str, Counter] = defaultdict(Counter)
    overall: Counter = Counter()
    for s in conllu.read(args.train, args.column):
        for w, t in zip(s.words, s.tags):
            by_word[w][t] += 1
            overall[t] += 1
    fallback = overall.most_common(1)[0][0]
    n = right = unknown = unknown_right = 0
    for s in conllu.read(args.test, args.column):
        for w, t in zip(s.words, s.tags):
            seen = w in by_word
            guess = by_word[w].most_common(1)[0][0] if seen else fallback
            n += 1
            right += guess == t
            if not seen:
                unknown += 1
                unknown_right += guess == t
    print(
        f"{args.test}: most frequent tag {100 * right / n:.2f}% of {n:,} words; "
        f"words not in training ({fallback}): {100 * unknown_right / max(unknown, 1):.2f}% of {unknown:,}"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("train", type=Path)
    ap.add_argument("test", type=Path)
    ap.add_argument("--column", default="upos", choices=["upos", "xpos"])
    main(ap.parse_args())
