"""`bptt train --task spell`: one-to-many generation, a number -> its English words, char by char.

The built-in demo of the one-to-many mode. The conditioning input is the
number's digits, one-hot (cond, 10 per digit); it sets the initial state

    h_0 = tanh(Q cond + q)

and the RNN then writes the words one character at a time: trained with
teacher forcing (the input at step t is the true character t - 1, starting
from <s>), it generates by feeding back its own most probable character
until it writes <s> again:

    42 -> "forty-two",   907 -> "nine hundred seven"

A seeded tenth of the numbers is held out; the exact-match rate of greedy
generation on them shows whether the model spells numbers it never saw.
`bptt generate RUN_DIR --cond 42` spells one number.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bptt.errors import UsageError
from bptt.tasks import common
from bptt.training.options import positive_int

START = "<s>"  # the first input and the last target
ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen"
).split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def add_options(p) -> None:
    g = p.add_argument_group("one-to-many demo (--task spell)")
    g.add_argument("--max-number", type=positive_int, default=999, help="spell the numbers 0..N (N < 1,000,000)")


def words(n: int) -> str:
    """English words for 0 <= n < 1,000,000 (US style, no "and")."""
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else "-" + ONES[n % 10])
    if n < 1000:
        return ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + words(n % 100))
    return words(n // 1000) + " thousand" + ("" if n % 1000 == 0 else " " + words(n % 1000))


def digits(numbers, n_digits: int) -> np.ndarray:
    """cond: the one-hot of each decimal digit, most significant first, (B, 10 * n_digits)."""
    numbers = np.asarray(numbers)
    out = np.zeros((len(numbers), n_digits, 10))
    for d in range(n_digits):
        out[np.arange(len(numbers)), n_digits - 1 - d, (numbers // 10**d) % 10] = 1
    return out.reshape(len(numbers), -1)


def make_batch(numbers, idx, stoi: dict, n_digits: int):
    from bptt.data.batching import Batch, pad

    seqs = [np.array([stoi[c] for c in words(int(numbers[i]))] + [0], dtype=np.int64) for i in idx]
    targets, lengths = pad(seqs)
    inputs = np.zeros_like(targets)
    inputs[:, 1:] = targets[:, :-1]  # teacher forcing: <s>, then the true previous character
    return Batch(inputs, targets, mask=lengths, cond=digits(numbers[idx], n_digits))


def split_numbers(extra: dict) -> tuple[np.ndarray, np.ndarray]:
    numbers = np.random.default_rng([extra["seed"], 7]).permutation(extra["max_number"] + 1)
    n_valid = max(1, (extra["max_number"] + 1) // 10)
    return np.sort(numbers[n_valid:]), np.sort(numbers[:n_valid])


def generate(model, extra: dict, numbers, max_length: int = 120) -> list[str]:
    """Greedy decoding from h_0 = tanh(Q cond + q): the most probable character until <s>."""
    itos = extra["vocab"]
    cond = digits(numbers, extra["n_digits"]).astype(model.dtype)
    B = len(numbers)
    h = model.initial_state(cond)
    x = np.zeros(B, dtype=np.int64)
    out = [[] for _ in range(B)]
    done = np.zeros(B, bool)
    for _ in range(max_length):
        logits, h = model.step(x, h)
        x = logits.argmax(axis=1)
        for b in np.flatnonzero(~done):
            if x[b] == 0:
                done[b] = True
            else:
                out[b].append(itos[x[b]])
        if done.all():
            break
    return ["".join(o) for o in out]


def load(extra: dict, fresh: bool) -> common.Data:
    from bptt.data.batching import SequenceSource
    from bptt.training import distributed
    from bptt.training.batches import loss_sum

    if fresh:
        extra["n_digits"] = len(str(extra["max_number"]))
        extra["vocab"] = [START, *sorted({c for n in range(extra["max_number"] + 1) for c in words(n)})]
    stoi = {c: i for i, c in enumerate(extra["vocab"])}
    train, valid = split_numbers(extra)
    lengths = np.array([len(words(int(n))) + 1 for n in train])
    source = SequenceSource(
        lengths,
        extra["batch_size"],
        lambda idx, rng: make_batch(train, idx, stoi, extra["n_digits"]),
        seed=extra["seed"],
    )
    batches = common.eval_batches(
        [len(words(int(n))) + 1 for n in valid],
        extra["batch_size"],
        lambda idx: make_batch(valid, idx, stoi, extra["n_digits"]),
    )
    truth = [words(int(n)) for n in valid]

    def evaluate(model):  # under MPI: each rank its shard of the batches and of the numbers, the counts summed
        comm = distributed.communicator()
        numbers, spelled = comm.shard(valid), comm.shard(truth)
        said = generate(model, extra, numbers) if len(numbers) else []
        exact = sum(a == b for a, b in zip(said, spelled))
        total, count, exact = comm.sum([*loss_sum(model, comm.shard(batches)), exact])
        return {"valid_loss": float(total / max(count, 1)), "valid_exact": float(exact / len(valid))}

    summary = (
        f"spelling numbers 0..{extra['max_number']:,} in English: {len(train):,} for training, {len(valid):,} "
        f"held out; {len(extra['vocab'])} symbols"
    )
    return common.Data(source, evaluate, summary)


def run(args) -> int:
    from bptt.training.options import model_kwargs, task_defaults

    if args.max_number >= 1_000_000:
        raise UsageError(f"--max-number: got {args.max_number}, expected less than 1,000,000")
    if args.bidirectional:
        raise UsageError("--bidirectional: a one-to-many model generates left to right; drop the flag")
    # relu with identity-initialised W (Le et al. 2015's IRNN) carries the digits through the ~25 steps
    # of "seven hundred seventy-seven" far better than tanh (measured: README); an Elman cell's
    # defaults only: the gated cells are tanh cells with their own gates for that
    irnn = dict(nonlinearity="relu", init="identity") if args.cell == "elman" else {}
    task_defaults(args, hidden_size=128, num_layers=1, embedding_size=16, max_epochs=150.0, lr=1e-3, **irnn)
    extra = common.data_extra(args, "spell")
    extra.update(max_number=args.max_number, batch_size=args.batch_size, seed=args.seed)
    data = load(extra, fresh=True)
    V = len(extra["vocab"])
    kw = dict(
        model_kwargs(args),
        vocab_size=V,
        output_size=V,
        mode="one-to-many",
        cond_size=10 * extra["n_digits"],
        head="softmax",
        reduction="mean",
        dtype=args.dtype,
    )
    return common.build_and_fit(args, extra, data, kw, "spell", "valid_exact", "max", epochs_per_eval=10)


def resume(args, model, ckpt, opts) -> int:
    return common.resume_task(args, model, ckpt, opts, load)


def parse_numbers(text: str, extra: dict, source: str = "--cond") -> list[int]:
    """The numbers of --cond (or of a file, `source` its name: errors then name the line too)."""
    numbers = []
    for n, line in enumerate(text.split("\n"), 1):
        where = source if source == "--cond" else f"{source}:{n}"
        for t in line.replace(",", " ").split():
            if not t.isdecimal() and not (t[0] == "-" and t[1:].isdecimal()):
                raise UsageError(
                    f"{where}: got {t[:40]!r}, expected whole numbers (e.g. --cond 42 or --cond '7 42 615')"
                )
            if not 0 <= int(t) <= extra["max_number"]:
                raise UsageError(
                    f"{where}: got {t[:40]}, expected a number in 0..{extra['max_number']} (the run's --max-number)"
                )
            numbers.append(int(t))
    if not numbers:
        raise UsageError(f"{source}: expected at least one number")
    return numbers


def predict(model, extra: dict, path: Path, args) -> str:
    """One number per line in, its words out: `N<TAB>words`."""
    from bptt.data.text import read_text

    numbers = parse_numbers(read_text(path, args.encoding), extra, str(path))
    return "".join(f"{n}\t{w}\n" for n, w in zip(numbers, generate(model, extra, numbers)))


def evaluate(model, extra: dict, path: Path | None, args) -> dict:
    """Exact match and character accuracy of greedy generation, on the held-out numbers or on a file's."""
    from bptt.data.text import read_text

    numbers = (
        split_numbers(extra)[1]
        if path is None
        else np.array(parse_numbers(read_text(path, args.encoding), extra, str(path)))
    )
    said = generate(model, extra, numbers)
    truth = [words(int(n)) for n in numbers]
    chars = sum(sum(a == b for a, b in zip(s, t)) for s, t in zip(said, truth))
    return {
        "exact_match": float(np.mean([s == t for s, t in zip(said, truth)])),
        "n": len(numbers),
        "char_accuracy": chars / sum(len(t) for t in truth),
        "examples": [f"{n} -> {s}" for n, s in list(zip(numbers, said))[:5]],
    }
