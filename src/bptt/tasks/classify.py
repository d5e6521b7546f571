"""`bptt train --task classify`: text -> label (many-to-one), e.g. sentiment.

The RNN reads the tokens (words or characters) of a text, pools its states over
time (the last valid state by default, or the mean or max over valid steps)
and

    two labels:   y^ = sigmoid(v . pool(h) + c),   L = binary cross-entropy
    K > 2 labels: y^ = softmax(V pool(h) + c),     L = cross-entropy

as in the lecture notes' sentiment example. Labels are the distinct strings of
the training file, sorted; with two, the second is the positive class (1).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from bptt.errors import DataError
from bptt.tasks import common


def add_options(p) -> None:
    g = p.add_argument_group("classification (--task classify)")
    g.add_argument("--text-column", default=None, help="CSV/TSV with a header: the text column (default: text)")
    g.add_argument("--label-column", default=None, help="CSV/TSV with a header: the label column (default: label)")
    g.add_argument(
        "--pooling", choices=["last", "mean", "max"], default="last", help="over time, for --task classify/regress"
    )


def tokens(text: str, extra: dict) -> list[str]:
    if extra["lowercase"]:
        text = text.lower()
    return list(text.strip()) if extra["level"] == "char" else text.split()


def encode(text: str, stoi: dict) -> np.ndarray:
    return np.array([stoi.get(t, 0) for t in text], dtype=np.int64)


def make_batch(X, y, idx, binary: bool):
    from bptt.data.batching import Batch, pad

    inputs, lengths = pad([X[i] for i in idx])
    if y is None:
        targets = np.zeros(len(idx))
    else:
        targets = y[idx].astype(np.float64) if binary else y[idx]
    return Batch(inputs, targets, mask=lengths)


def not_conllu(path) -> None:
    if Path(path).suffix.lower() in (".conllu", ".conll"):
        raise DataError(
            f"{path}: a CoNLL-U file (for taggers), expected texts for a classify run: TSV, CSV or one text per line"
        )


def read(path, extra: dict):
    from bptt.data.tabular import read_labelled

    not_conllu(path)
    return read_labelled(path, extra["text_column"], extra["label_column"], extra["encoding"])


def load(extra: dict, fresh: bool) -> common.Data:
    from bptt.data.batching import SequenceSource
    from bptt.training import distributed, metrics
    from bptt.training.batches import loss_sum

    train = read(extra["data"], extra)
    toks = [tokens(e.text, extra) for e in train]
    if fresh:
        extra["vocab"] = common.vocab_json(
            Counter(t for ts in toks for t in ts), extra["min_freq"], extra["vocab_size"], extra["data"]
        )
        extra["labels"] = sorted({e.label for e in train})
        if len(extra["labels"]) < 2:
            raise DataError(
                f"{extra['data']}: every example has label {extra['labels'][0]!r}, expected at least two labels"
            )
    stoi, labels = common.lookup(extra["vocab"]), {l: i for i, l in enumerate(extra["labels"])}
    binary = len(labels) == 2
    X = [encode(t, stoi) for t in toks]
    _check_nonempty(X, train, extra["data"])
    y = np.array([labels[e.label] for e in train])
    lengths = np.array([len(x) for x in X])
    source = SequenceSource(
        lengths, extra["batch_size"], lambda idx, rng: make_batch(X, y, idx, binary), seed=extra["seed"]
    )
    evaluate, n_valid = None, 0
    if extra["valid"] is not None:
        valid = read(extra["valid"], extra)
        common.check_labels([e.label for e in valid], labels, extra["valid"], [e.line for e in valid])
        VX = [encode(tokens(e.text, extra), stoi) for e in valid]
        _check_nonempty(VX, valid, extra["valid"])
        Vy = np.array([labels[e.label] for e in valid])
        batches = common.eval_batches(
            [len(x) for x in VX], extra["batch_size"], lambda idx: (idx, make_batch(VX, Vy, idx, binary))
        )
        n_valid = len(VX)

        def evaluate(model):
            # under MPI: each rank scores its shard of the batches (zeros elsewhere) and one sum
            # gives every rank every score, so the metrics below are the one-process ones exactly
            comm = distributed.communicator()
            mine = comm.shard(batches)
            scores = scores_of(model, [b for _, b in mine], [i for i, _ in mine], n_valid, binary)
            reduced = comm.sum(np.concatenate([loss_sum(model, [b for _, b in mine]), scores.ravel()]))
            scores = reduced[2:].reshape(scores.shape)
            pred = decide(scores, binary)
            r = {"valid_loss": float(reduced[0] / max(reduced[1], 1)), "valid_accuracy": metrics.accuracy(Vy, pred)}
            r["valid_macro_f1"] = metrics.classification_report(Vy, pred, extra["labels"])["macro_f1"]
            if binary:
                r["valid_auc"] = metrics.roc_auc(Vy, scores[:, 0])
            return r

    summary = (
        f"{extra['data']}: {len(train):,} examples, {len(labels)} labels ({', '.join(extra['labels'][:8])}"
        f"{', ...' if len(labels) > 8 else ''}), {extra['level']} level, vocabulary {len(stoi):,}"
        + ("" if not n_valid else f"; valid {extra['valid']}: {n_valid:,} examples")
    )
    return common.Data(source, evaluate, summary)


def _check_nonempty(X, examples, path) -> None:
    for x, e in zip(X, examples):
        if len(x) == 0:
            raise DataError(f"{path}:{e.line}: no tokens in the text, expected at least one")


def scores_of(model, batches, indices, n: int, binary: bool) -> np.ndarray:
    """y^ of every example in input order: (n, 1) P(positive) or (n, K) class probabilities."""
    out = np.zeros((n, 1 if binary else model.output_size))
    for idx, b in zip(indices, batches):
        out[idx] = model.predict(b.inputs, b.mask)
    return out


def decide(scores: np.ndarray, binary: bool) -> np.ndarray:
    return (scores[:, 0] >= 0.5).astype(np.int64) if binary else scores.argmax(axis=1)


def run(args) -> int:
    from bptt.training.options import model_kwargs, task_defaults

    task_defaults(args, hidden_size=64, num_layers=1, embedding_size=64, level="word", max_epochs=5.0)
    extra = common.data_extra(args, "classify")
    extra.update(
        level=args.level,
        lowercase=args.lowercase,
        min_freq=args.min_freq,
        vocab_size=args.vocab_size,
        text_column=args.text_column,
        label_column=args.label_column,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    data = load(extra, fresh=True)
    K = len(extra["labels"])
    binary = K == 2
    kw = dict(
        model_kwargs(args),
        vocab_size=len(extra["vocab"]["itos"]),
        output_size=1 if binary else K,
        mode="many-to-one",
        head="sigmoid" if binary else "softmax",
        pooling=args.pooling,
        reduction="mean",
        dtype=args.dtype,
    )
    monitor = ("valid_accuracy", "max") if extra["valid"] else ("valid_loss", "min")
    return common.build_and_fit(args, extra, data, kw, f"{Path(args.data).stem}-classify", *monitor)


def resume(args, model, ckpt, opts) -> int:
    return common.resume_task(args, model, ckpt, opts, load)


def _score_texts(model, extra: dict, texts: list[str]) -> np.ndarray:
    from bptt.data.batching import sorted_batches

    stoi = common.lookup(extra["vocab"])
    X = [encode(tokens(t, extra), stoi) for t in texts]
    X = [x if len(x) else np.zeros(1, np.int64) for x in X]
    idxs = sorted_batches(np.array([len(x) for x in X]), 64)
    binary = len(extra["labels"]) == 2
    return scores_of(model, [make_batch(X, None, idx, binary) for idx in idxs], idxs, len(X), binary)


def predict(model, extra: dict, path: Path, args) -> str:
    """One line per input line: the predicted label, then P(label) for each label, tab-separated."""
    from bptt.data.tabular import read_texts

    not_conllu(path)
    texts = read_texts(path, extra["text_column"], args.encoding)
    scores = _score_texts(model, extra, texts)
    labels = extra["labels"]
    probs = np.concatenate([1 - scores, scores], axis=1) if len(labels) == 2 else scores
    lines = ["label\t" + "\t".join(f"p_{l}" for l in labels)]
    lines += [labels[int(p.argmax())] + "\t" + "\t".join(f"{v:.6f}" for v in p) for p in probs]
    return "\n".join(lines) + "\n"


def evaluate(model, extra: dict, path: Path, args) -> dict:
    from bptt.training import metrics

    examples = read(path, dict(extra, encoding=args.encoding))
    labels = {l: i for i, l in enumerate(extra["labels"])}
    common.check_labels([e.label for e in examples], labels, path, [e.line for e in examples])
    y = np.array([labels[e.label] for e in examples])
    binary = len(labels) == 2
    scores = _score_texts(model, extra, [e.text for e in examples])
    report = metrics.classification_report(y, decide(scores, binary), extra["labels"])
    if binary:
        report["roc_auc"] = metrics.roc_auc(y, scores[:, 0])
    return report
