"""`bptt generate RUN_DIR`: sample text from a trained language model.

Each step feeds the sampled token back in as the next input. --greedy takes
the most probable token every time, as in the lecture notes (it tends to loop).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from bptt.errors import UsageError
from bptt.training.options import add_weights_option, non_negative_int, positive_float, positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("generate", help="sample text from a trained language model", description=__doc__)
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    add_weights_option(p)
    p.add_argument("--prime", default=None, help="start text (default: a newline, or <eos> for words)")
    p.add_argument("--length", type=positive_int, default=500, help="tokens to generate")
    p.add_argument("--temperature", type=positive_float, default=1.0, help="below 1: more likely text")
    p.add_argument("--top-k", type=positive_int, default=None, help="sample among the k most probable tokens only")
    p.add_argument("--greedy", action="store_true", help="always the most probable token")
    p.add_argument("--seed", type=non_negative_int, default=None, help="fixes the sample")
    p.add_argument(
        "--cond", default=None, help="one-to-many runs (--task spell): the number(s) to spell, e.g. 42 or '7 42'"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bptt.generate import sample
    from bptt.training.runs import load_weights, task_extra, vocab_of

    model, ckpt, note = load_weights(args.run_dir, args.last)
    extra = task_extra(ckpt)
    if extra.get("task") == "spell":
        from bptt.tasks import spell

        if args.cond is None:
            raise UsageError(f"{args.run_dir}: a one-to-many run generates from a condition; pass --cond NUMBER")
        numbers = spell.parse_numbers(args.cond, extra)
        check_length(args, len(numbers), max(map(len, extra["vocab"]), default=1))
        for n, words in zip(numbers, spell.generate(model, extra, numbers, args.length)):
            print(f"{n}\t{words}")
        print(note, file=sys.stderr)  # once it has worked: an error stays one line
        return 0
    if args.cond is not None:
        raise UsageError("--cond: only for one-to-many runs (--task spell)")
    if extra.get("task", "lm") != "lm":
        from bptt import tasks

        judged = extra["task"] in tasks.TASKS and not hasattr(
            tasks.module(extra["task"]), "predict"
        )  # long-memory tasks
        use = "its result is in result.json" if judged else "use bptt predict or bptt evaluate"
        raise UsageError(f"{args.run_dir}: a --task {extra['task']} run generates nothing; {use}")
    vocab = vocab_of(ckpt, args.run_dir)
    check_length(args, 1, max(map(len, vocab.itos)))
    prime = args.prime
    if prime is None:
        prime = "\n" if vocab.level == "char" and "\n" in vocab.stoi else vocab.itos[0]
    if prime == "":
        raise UsageError("--prime: expected at least one character")
    try:
        ids = vocab.encode(prime, source="--prime")
    except ValueError as e:
        raise UsageError(str(e)) from None
    if len(ids) == 0:
        raise UsageError("--prime: no token of the vocabulary in it")
    if args.greedy:
        print("warning: --greedy always picks the most probable token; small models fall into loops", file=sys.stderr)
    out = sample(
        model,
        ids,
        args.length,
        temperature=args.temperature,
        top_k=args.top_k,
        greedy=args.greedy,
        rng=np.random.default_rng(args.seed),
    )
    sep = "" if vocab.level == "char" else " "
    print(prime + sep + vocab.decode(out))
    print(note, file=sys.stderr)
    return 0


def check_length(args, sequences: int, token_chars: int) -> None:
    """Refuse a --length whose text would not fit in memory, before generating any of it."""
    from bptt.training import resources

    need = resources.generation_bytes(args.length, sequences, token_chars)
    resources.check_bytes(need, f"--length {args.length}", "a smaller --length")
