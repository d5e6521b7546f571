"""`bptt train --task classify`: text -> label (many-to-one), e.g. sentiment.

The RNN reads the tokens (words or characters) of a text, pools its states over
time (the last valid state by default, or the mean or max over valid steps)
and

    two labels:   y^ = sigmoid(v . pool(h) + c),   L = binary cross-entropy
    K > 2 labels: y^ = softmax(V pool(h) + c),     L = cross-entropy

as in the lecture notes' sentiment example. Labels are the distinct strings of
the training file, sorted; with two, the second is the positive class (1).

At word level, --char-hidden-size H_c (default 50) adds the character-level word encoder
(`bptt.layers.char_encoder`, as --task tag has it): x_t = [E[w_t]; enc(w_t)],
enc(w_t) the two final states of a bidirectional cell over the word's
characters as written (before --lowercase), so that a rare word mapped to
<unk>, or a word dropped by --word-dropout, is still read letter by letter.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from bptt.errors import DataError, UsageError
from bptt.tasks import common
from bptt.training.options import pooling_list


def add_options(p) -> None:
    from bptt.training.options import positive_int

    g = p.add_argument_group("classification (--task classify)")
    g.add_argument("--text-column", default=None, help="CSV/TSV with a header: the text column (default: text)")
    g.add_argument("--label-column", default=None, help="CSV/TSV with a header: the label column (default: label)")
    g.add_argument(
        "--pooling",
        type=pooling_list,
        default=None,
        help="over time: last, mean, max, or a comma list whose pooled vectors are concatenated "
        "(default: mean,max for classify, last for regress)",
    )
    g.add_argument(
        "--folds",
        type=positive_int,
        default=None,
        help="K-fold cross-validation (stratified, seeded by --seed): K runs in RUN_DIR/fold-1..K, "
        "their held-out accuracy in RUN_DIR/cv.json",
    )


def tokens(text: str, extra: dict) -> list[str]:
    if extra["lowercase"]:
        text = text.lower()
    return list(text.strip()) if extra["level"] == "char" else text.split()


def encode(text: str, stoi: dict) -> np.ndarray:
    return np.array([stoi.get(t, 0) for t in text], dtype=np.int64)


def make_batch(X, y, idx, binary: bool, rng=None, word_dropout: float | np.ndarray = 0.0, chars=None):
    """Padded ids (B, T), targets (B,) and lengths; with rng, each word -> <unk> with probability
    word_dropout (`common.drop_words`: one probability, or (V,) per word id; a dropped word keeps
    its characters); chars: per text (n, C) ids -> (B, T, C)."""
    from bptt.data.batching import Batch, pad

    inputs, lengths = pad([X[i] for i in idx])
    if rng is not None and np.any(word_dropout):
        common.drop_words(inputs, word_dropout, rng)
    if y is None:
        targets = np.zeros(len(idx))
    else:
        targets = y[idx].astype(np.float64) if binary else y[idx]
    C = None if chars is None else common.pad_chars(chars, idx, inputs.shape[1])
    return Batch(inputs, targets, mask=lengths, chars=C)


def char_ids(texts: list[str], extra: dict) -> list[np.ndarray] | None:
    """(n, C) character ids of each text's n words as written; None without a character encoder."""
    return common.chars_of([t.split() for t in texts], extra)


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
    """The training batches and the evaluation: on --valid FILE, or on the held-out part of the
    training file (`common.split`: --valid-fraction, and the cross-validation fold)."""
    from bptt.data.batching import SequenceSource

    examples = read(extra["data"], extra)
    if fresh:
        extra["labels"] = sorted({e.label for e in examples})
        if len(extra["labels"]) < 2:
            raise DataError(
                f"{extra['data']}: every example has label {extra['labels'][0]!r}, expected at least two labels"
            )
    labels = {l: i for i, l in enumerate(extra["labels"])}
    common.check_labels([e.label for e in examples], labels, extra["data"], [e.line for e in examples])
    y_all = np.array([labels[e.label] for e in examples])
    part, held_out, _ = common.split(len(examples), extra, y_all)
    train = [examples[i] for i in part]
    toks = [tokens(e.text, extra) for e in train]
    if fresh:
        extra["vocab"] = common.vocab_json(
            Counter(t for ts in toks for t in ts), extra["min_freq"], extra["vocab_size"], extra["data"]
        )
        if extra.get("char_hidden_size"):
            extra["chars"] = common.char_vocab(w for e in train for w in e.text.split())
    stoi = common.lookup(extra["vocab"])
    binary = len(labels) == 2
    X = [encode(t, stoi) for t in toks]
    _check_nonempty(X, train, extra["data"])
    C = char_ids([e.text for e in train], extra)
    y = y_all[part]
    lengths = np.array([len(x) for x in X])
    p = common.training_word_dropout(extra, X, fresh)
    source = SequenceSource(
        lengths, extra["batch_size"], lambda idx, rng: make_batch(X, y, idx, binary, rng, p, C), seed=extra["seed"]
    )
    evaluate, n_valid = None, 0
    if extra["valid"] is not None:
        valid = read(extra["valid"], extra)
        common.check_labels([e.label for e in valid], labels, extra["valid"], [e.line for e in valid])
        VX = [encode(tokens(e.text, extra), stoi) for e in valid]
        _check_nonempty(VX, valid, extra["valid"])
        VC = char_ids([e.text for e in valid], extra)
        evaluate = evaluator(VX, np.array([labels[e.label] for e in valid]), extra, VC)
        n_valid = len(VX)
    elif held_out is not None:
        VX = [encode(tokens(examples[i].text, extra), stoi) for i in held_out]
        _check_nonempty(VX, [examples[i] for i in held_out], extra["data"])
        VC = char_ids([examples[i].text for i in held_out], extra)
        evaluate, n_valid = evaluator(VX, y_all[held_out], extra, VC), len(VX)
    fold = f" (fold {extra['fold']} of {extra['folds']}: {len(part) + n_valid:,} of them)" if extra.get("folds") else ""
    summary = (
        f"{extra['data']}: {len(examples):,} examples{fold}, {len(labels)} labels ({', '.join(extra['labels'][:8])}"
        f"{', ...' if len(labels) > 8 else ''}), {extra['level']} level, vocabulary {len(stoi):,}"
        + ("" if not n_valid else f"; valid {common.valid_name(extra)}: {n_valid:,} examples")
        + common.word_dropout_note(extra, p)
        + (f"; {len(extra['chars']):,} characters" if C is not None else "")
    )
    return common.Data(source, evaluate, summary)


def evaluator(VX: list[np.ndarray], Vy: np.ndarray, extra: dict, VC: list[np.ndarray] | None = None):
    """model -> {"valid_loss", "valid_accuracy", "valid_macro_f1"[, "valid_auc"]} on these examples
    (VC: their `char_ids`, for a model with a character encoder)."""
    from bptt.training import distributed, metrics
    from bptt.training.batches import loss_sum

    binary = len(extra["labels"]) == 2
    n_valid = len(VX)
    batches = common.eval_batches(
        [len(x) for x in VX], extra["batch_size"], lambda idx: (idx, make_batch(VX, Vy, idx, binary, chars=VC))
    )

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

    return evaluate


def _check_nonempty(X, examples, path) -> None:
    for x, e in zip(X, examples):
        if len(x) == 0:
            raise DataError(f"{path}:{e.line}: no tokens in the text, expected at least one")


def scores_of(model, batches, indices, n: int, binary: bool) -> np.ndarray:
    """y^ of every example in input order: (n, 1) P(positive) or (n, K) class probabilities."""
    out = np.zeros((n, 1 if binary else model.output_size))
    for idx, b in zip(indices, batches):
        out[idx] = model.predict(b.inputs, b.mask, chars=b.chars)
    return out


def decide(scores: np.ndarray, binary: bool) -> np.ndarray:
    return (scores[:, 0] >= 0.5).astype(np.int64) if binary else scores.argmax(axis=1)


# The classify defaults, chosen on CR, MPQA and TREC (docs/recipes.md, "Sentence classification"):
# a bidirectional LSTM read through mean,max pooling, regularised by embedding, output and word
# dropout and by mapping words seen once to <unk>, with the best validation accuracy's weights
DEFAULTS = dict(
    cell="lstm",
    hidden_size=128,
    num_layers=1,
    embedding_size=128,
    level="word",
    max_epochs=20.0,  # the averaged weights' validation accuracy still rose at epoch 10 (docs/recipes.md)
    pooling="mean,max",
    input_dropout=0.3,
    output_dropout=0.5,
    variational_dropout=True,
    ema=0.998,  # evaluate and keep the weights' moving average (bptt.training.averaging)
)
WORD_DEFAULTS = dict(min_freq=2, word_dropout=0.2, char_hidden_size=50)  # --level word only
VALID_FRACTION = 0.1  # of the training file, for early stopping and the best weights, without --valid


def run(args) -> int:
    level = args.level if "level" in args.given else DEFAULTS["level"]
    if level == "char" and args.rare_word_dropout:
        raise UsageError(
            f"--rare-word-dropout {args.rare_word_dropout:g}: counts words, expected --level word (got --level char)"
        )
    if level == "char" and args.char_hidden_size:
        raise UsageError(
            f"--char-hidden-size {args.char_hidden_size}: the character encoder reads the characters of each "
            "word, for --level word; --level char already reads every character"
        )
    if getattr(args, "folds", None) is not None and getattr(args, "fold", None) is None:
        from bptt.tasks import crossval

        return crossval.run(args, run, heldout_report)
    from bptt.training.options import model_kwargs, task_defaults

    task_defaults(args, **DEFAULTS, char_hidden_size=0)
    if args.level == "word":
        task_defaults(args, **WORD_DEFAULTS)
    if args.cell == "lstm":
        task_defaults(args, forget_bias=1.0)  # Jozefowicz et al. 2015, as the language model's LSTM
    args.bidirectional = not args.unidirectional
    extra = common.data_extra(args, "classify", VALID_FRACTION)
    extra.update(
        level=args.level,
        lowercase=args.lowercase,
        min_freq=args.min_freq,
        vocab_size=args.vocab_size,
        text_column=args.text_column,
        label_column=args.label_column,
        batch_size=args.batch_size,
        seed=args.seed,
        word_dropout=args.word_dropout,
        rare_word_dropout=args.rare_word_dropout,
        char_hidden_size=args.char_hidden_size,
    )
    data = load(extra, fresh=True)
    vectors = common.read_embeddings(args, extra) if args.level == "word" else _no_char_embeddings(args)
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
    kw.update(common.char_encoder_kwargs(args, extra))
    monitor = ("valid_accuracy", "max") if common.has_valid(extra) else ("valid_loss", "min")
    name = f"{Path(args.data).stem}-classify"
    return common.build_and_fit(args, extra, data, kw, name, *monitor, embeddings=vectors)


def _no_char_embeddings(args) -> None:
    if args.embeddings is not None:
        raise UsageError("--embeddings: word vectors are for --level word, got --level char")
    return None


def resume(args, model, ckpt, opts) -> int:
    return common.resume_task(args, model, ckpt, opts, load)


def _score_texts(model, extra: dict, texts: list[str]) -> np.ndarray:
    from bptt.data.batching import sorted_batches

    stoi = common.lookup(extra["vocab"])
    X = [encode(tokens(t, extra), stoi) for t in texts]
    X = [x if len(x) else np.zeros(1, np.int64) for x in X]  # an empty text: one <unk> (without characters)
    C = char_ids(texts, extra)
    idxs = sorted_batches(np.array([len(x) for x in X]), 64)
    binary = len(extra["labels"]) == 2
    batches = [make_batch(X, None, idx, binary, chars=C) for idx in idxs]
    return scores_of(model, batches, idxs, len(X), binary)


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


def heldout_report(model, extra: dict) -> dict:
    """The classification report on the run's cross-validation fold (`common.split`'s test part)."""
    from bptt.training import metrics

    examples = read(extra["data"], extra)
    labels = {l: i for i, l in enumerate(extra["labels"])}
    y_all = np.array([labels[e.label] for e in examples])
    _, _, test = common.split(len(examples), extra, y_all)
    scores = _score_texts(model, extra, [examples[i].text for i in test])
    return metrics.classification_report(y_all[test], decide(scores, len(labels) == 2), extra["labels"])
