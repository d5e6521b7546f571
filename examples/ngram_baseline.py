"""An n-gram reference for `bptt train`'s language model: interpolated Kneser-Ney on the same split.

The same tokens and the same train/valid split as `bptt train` (the built-in
corpus, or --data FILE; `bptt.data.text`), then for each order n = 1..N an
interpolated Kneser-Ney model (Chen & Goodman 1998, one discount D = 0.75 per
order; the lowest order is the uniform distribution over the vocabulary,
mixed in with the unigram continuation counts), evaluated on the validation
tokens: bits per character for --level char, perplexity for --level word.

    python examples/ngram_baseline.py --level char --orders 5
    python examples/ngram_baseline.py --level word --orders 3

Plain Python dictionaries: a few seconds for the built-in corpus.
"""

from __future__ import annotations

import argparse
import math
from collections import Counter, defaultdict
from pathlib import Path

from bptt.data.text import Vocab, builtin_corpus, read_text, split

D = 0.75


def kneser_ney(train: list[int], V: int, N: int):
    """A function prob(history tuple, token) of the interpolated Kneser-Ney model of order N."""
    counts = [Counter() for _ in range(N + 1)]  # counts[n][(h..., w)], n-gram counts (highest order)
    for n in range(1, N + 1):
        counts[n].update(tuple(train[i : i + n]) for i in range(len(train) - n + 1))
    # lower orders use continuation counts: the number of distinct left contexts of the n-gram
    cont = [Counter() for _ in range(N + 1)]
    for n in range(2, N + 1):
        for gram in counts[n]:
            cont[n - 1][gram[1:]] += 1
    tables = [None] + [cont[n] if n < N else counts[n] for n in range(1, N + 1)]
    totals, types = [None], [None]
    for n in range(1, N + 1):
        tot, typ = defaultdict(int), defaultdict(int)
        for gram, c in tables[n].items():
            tot[gram[:-1]] += c
            typ[gram[:-1]] += 1
        totals.append(tot)
        types.append(typ)

    def prob(history: tuple, w: int) -> float:
        p = 1.0 / V
        for n in range(1, N + 1):
            h = history[len(history) - (n - 1) :] if n > 1 else ()
            if n > 1 and len(history) < n - 1:
                break
            tot = totals[n].get(h, 0)
            if tot == 0:
                continue
            c = tables[n].get(h + (w,), 0)
            p = max(c - D, 0.0) / tot + D * types[n][h] / tot * p
        return p

    return prob


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help="a text file (default: the built-in corpus)")
    ap.add_argument("--level", choices=["char", "word"], default="char")
    ap.add_argument("--orders", type=int, default=5, help="the highest order N; every n = 1..N is evaluated")
    ap.add_argument("--valid-fraction", type=float, default=0.05)
    args = ap.parse_args(argv)
    text = builtin_corpus() if args.data is None else read_text(args.data, "utf-8")
    vocab = Vocab(text, level=args.level)
    train, valid = split(vocab.encode(text), args.valid_fraction)
    train, valid = [int(t) for t in train], [int(t) for t in valid]
    print(f"{args.level} level: vocabulary {len(vocab)}, train {len(train):,}, valid {len(valid):,} tokens")
    for n in range(1, args.orders + 1):
        prob = kneser_ney(train, len(vocab), n)
        nats = 0.0
        for i in range(1, len(valid)):  # predict valid[i] from the tokens before it, as bptt evaluates
            nats -= math.log(prob(tuple(valid[max(0, i - n + 1) : i]), valid[i]))
        nats /= len(valid) - 1
        unit = (
            f"{nats / math.log(2):.3f} bits per character"
            if args.level == "char"
            else f"perplexity {math.exp(nats):.1f}"
        )
        print(f"{n}-gram Kneser-Ney: {unit}")


if __name__ == "__main__":
    main()
