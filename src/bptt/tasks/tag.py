"""`bptt train --task tag`: a part-of-speech tagger (many-to-many) on CoNLL-U.

For a sentence w_1..w_n, x_t = [E[w_t]; E_1[f1(w_t)]; ...] (the word's embedding
and, if switched on, embeddings of its prefix, suffix and shape), a
bidirectional Elman RNN reads the sentence both ways and

    y^_t = softmax(V [h->_t; h<-_t] + c),   L = mean over words of -log y^_t[tag_t]

Unknown and rare words: --lowercase folds case; words seen fewer than
--min-freq times become <unk>; --word-dropout p replaces each training word by
<unk> with probability p (so that <unk> gets an embedding that works in
context), and --rare-word-dropout alpha a word seen c times in training with
probability alpha / (alpha + c) (`common.word_drop_probabilities`); --features prefix,suffix,shape add columns that stay informative
when the word itself is unknown ("-ing", "Xxxx", "dd.d"); --char-hidden-size H_c
adds a character-level encoder (`bptt.layers.char_encoder`): a bidirectional
cell over the word's characters, whose two final states [h->_n; h<-_1] are
concatenated to x_t, so that an unknown word is still read letter by letter.
Characters seen fewer than common.CHAR_MIN_FREQ times in training become the
unknown character (id 1), so that its embedding is trained too (the character
vocabulary and ids are `bptt.tasks.common`'s, shared with --task classify).
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

from bptt.errors import DataError, UsageError
from bptt.tasks import common
from bptt.training.options import positive_int

FEATURES = ("prefix", "suffix", "shape")
_SHAPE_RUNS = re.compile(r"(.)\1{2,}")


def add_options(p) -> None:
    g = p.add_argument_group("tagging (--task tag)")
    g.add_argument("--column", choices=["upos", "xpos"], default="upos", help="the CoNLL-U tag column to learn")
    g.add_argument(
        "--features",
        default="suffix,shape",
        help="comma list of prefix, suffix, shape: extra embedded columns (none: no column)",
    )
    g.add_argument("--affix-length", type=positive_int, default=3, help="characters of --features prefix/suffix")
    g.add_argument(
        "--feature-embedding-size", type=positive_int, default=16, help="embedding size of each --features column"
    )


# ---- words and features ----------------------------------------------------


def _char_class(c: str) -> str:
    if c.isupper():
        return "X"
    if c.islower():
        return "x"
    if c.isdigit():
        return "d"
    if c.isalpha():  # caseless scripts: the first word of the Unicode name (CJK, HIRAGANA, ARABIC, ...)
        script = unicodedata.name(c, "LETTER").split()[0]
        return chr(0xE000 + zlib.crc32(script.encode()) % 4096)  # one private-use character per script
    return c


def shape(word: str) -> str:
    """Xxx for "Paris", dd.d for "12.5", x-x for "well-known": character classes (a symbol per script
    for caseless letters, e.g. kanji vs katakana), runs longer than 2 cut to 2."""
    return _SHAPE_RUNS.sub(r"\1\1", "".join(map(_char_class, word)))


def feature(name: str, word: str, n: int) -> str:
    w = word.lower()
    if name == "prefix":
        return w[:n]
    if name == "suffix":
        return w[-n:]
    return shape(word)


def parse_features(text: str) -> list[str]:
    """The feature names of a comma list; "none" (or "") for none."""
    names = [f.strip() for f in text.split(",") if f.strip()]
    if names == ["none"]:
        return []
    for f in names:
        if f not in FEATURES:
            raise UsageError(f"--features: got {f!r}, expected a comma list of {', '.join(FEATURES)}, or none")
    return sorted(set(names), key=FEATURES.index)


class Encoder:
    """Sentences -> id arrays (n,) or (n, 1 + F), with the vocabularies saved in a run's extra."""

    def __init__(self, extra: dict):
        self.extra = extra
        self.words = common.lookup(extra["vocab"])
        self.feats = [common.lookup(v) for v in extra["feature_vocabs"]]
        self.tags = {t: i for i, t in enumerate(extra["labels"])}

    def word(self, w: str) -> str:
        return w.lower() if self.extra["lowercase"] else w

    def ids(self, words: list[str]) -> np.ndarray:
        w = np.array([self.words.get(self.word(x), 0) for x in words], dtype=np.int64)
        if not self.feats:
            return w
        cols = [w] + [
            np.array([fv.get(feature(name, x, self.extra["affix_length"]), 0) for x in words], dtype=np.int64)
            for name, fv in zip(self.extra["features"], self.feats)
        ]
        return np.stack(cols, axis=1)

    def targets(self, tags: list[str]) -> np.ndarray:
        return np.array([self.tags[t] for t in tags], dtype=np.int64)


def build_vocabularies(extra: dict, sentences) -> None:
    """Word, feature and tag vocabularies from the training sentences, into extra."""
    words = Counter(w.lower() if extra["lowercase"] else w for s in sentences for w in s.words)
    extra["vocab"] = common.vocab_json(words, extra["min_freq"], extra["vocab_size"], extra["data"])
    extra["feature_vocabs"] = [
        common.vocab_json(Counter(feature(f, w, extra["affix_length"]) for s in sentences for w in s.words))
        for f in extra["features"]
    ]
    extra["labels"] = sorted({t for s in sentences for t in s.tags})
    if extra.get("char_hidden_size"):
        extra["chars"] = common.char_vocab(w for s in sentences for w in s.words)
    if len(extra["labels"]) < 2:
        raise DataError(
            f"{extra['data']}: every word has {extra['column'].upper()} tag {extra['labels'][0]!r}, "
            "expected at least two tags"
        )


# ---- data --------------------------------------------------------------------


def read_tagged(path, extra: dict):
    from bptt.data import conllu

    sentences = conllu.read(path, extra["column"], extra["encoding"])
    conllu.require_tags(path, sentences, extra["column"])
    return sentences


def make_batch(
    X: list[np.ndarray],
    Y: list[np.ndarray] | None,
    idx,
    rng=None,
    word_dropout: float | np.ndarray = 0.0,
    chars=None,
):
    """Padded inputs (B, T[, 1 + F]), targets (B, T) and lengths; word dropout on column 0 with rng
    (`common.drop_words`: one probability, or (V,) per word id; a dropped word keeps its
    characters); chars: per sentence (n, C) ids -> padded (B, T, C)."""
    from bptt.data.batching import Batch, pad

    inputs, lengths = pad([X[i] for i in idx])
    if rng is not None and np.any(word_dropout):
        common.drop_words(inputs if inputs.ndim == 2 else inputs[..., 0], word_dropout, rng)
    targets = pad([Y[i] for i in idx])[0] if Y is not None else np.zeros(inputs.shape[:2], np.int64)
    C = None if chars is None else common.pad_chars(chars, idx, inputs.shape[1])
    return Batch(inputs, targets, mask=lengths, chars=C)


def load(extra: dict, fresh: bool) -> common.Data:
    from bptt.data.batching import SequenceSource
    from bptt.training import distributed
    from bptt.training.batches import loss_sum

    sentences = read_tagged(extra["data"], extra)
    part, held_out, _ = common.split(len(sentences), extra)
    train = [sentences[i] for i in part]
    if fresh:
        build_vocabularies(extra, train)
        extra["labels"] = sorted({t for s in sentences for t in s.tags})  # the held-out part's too
    enc = Encoder(extra)
    X = [enc.ids(s.words) for s in train]
    Y = [enc.targets(s.tags) for s in train]
    C = common.chars_of([s.words for s in train], extra)
    lengths = np.array([len(x) for x in X])
    p = common.training_word_dropout(extra, [x if x.ndim == 1 else x[:, 0] for x in X], fresh)
    source = SequenceSource(
        lengths,
        extra["batch_size"],
        lambda idx, rng: make_batch(X, Y, idx, rng, p, C),
        seed=extra["seed"],
    )
    evaluate, n_valid = None, 0
    if extra["valid"] is not None or held_out is not None:
        valid = read_tagged(extra["valid"], extra) if extra["valid"] else [sentences[i] for i in held_out]
        for s in valid:
            common.check_labels(s.tags, enc.tags, extra["valid"], s.lines, f"{extra['column'].upper()} tag")
        VX = [enc.ids(s.words) for s in valid]
        VY = [enc.targets(s.tags) for s in valid]
        VC = common.chars_of([s.words for s in valid], extra)
        batches = common.eval_batches(
            [len(x) for x in VX], extra["batch_size"], lambda idx: make_batch(VX, VY, idx, chars=VC)
        )
        n_valid = int(sum(len(x) for x in VX))

        def evaluate(model):  # under MPI: each rank its shard of the batches, the counts summed
            comm = distributed.communicator()
            mine, correct = comm.shard(batches), 0
            for b in mine:
                pred = model.predict(b.inputs, b.mask, chars=b.chars).argmax(axis=2)
                valid_steps = np.arange(b.targets.shape[1])[None, :] < b.mask[:, None]
                correct += int(((pred == b.targets) & valid_steps).sum())
            total, count, correct = comm.sum([*loss_sum(model, mine), correct])
            return {"valid_loss": float(total / max(count, 1)), "valid_accuracy": float(correct / n_valid)}

    oov = sum(w not in enc.words for s in train for w in map(enc.word, s.words))
    summary = (
        f"{extra['data']}: {len(train):,} sentences, {int(lengths.sum()):,} words, {len(extra['labels'])} "
        f"{extra['column'].upper()} tags, vocabulary {len(enc.words):,} ({oov:,} training words -> <unk>)"
        + ("" if not n_valid else f"; valid {common.valid_name(extra)}: {n_valid:,} words")
        + common.word_dropout_note(extra, p)
        + (f"; features {', '.join(extra['features'])}" if extra["features"] else "")
        + (f"; {len(extra['chars']):,} characters" if C is not None else "")
    )
    return common.Data(source, evaluate, summary)


# ---- the command -------------------------------------------------------------


def run(args) -> int:
    from bptt.training.options import model_kwargs, task_defaults

    # the recipe measured on UD English GUM and UD French Sequoia (docs/recipes.md)
    task_defaults(
        args,
        cell="lstm",
        hidden_size=128,
        num_layers=1,
        embedding_size=100,
        max_epochs=20.0,  # dev accuracy of the averaged weights still rose at epoch 10 (docs/recipes.md)
        word_dropout=0.25,
        char_hidden_size=100,
        ema=0.998,  # evaluate and keep the weights' moving average (bptt.training.averaging)
    )
    args.bidirectional = not args.unidirectional
    extra = common.data_extra(args, "tag")
    extra.update(
        column=args.column,
        lowercase=args.lowercase,
        min_freq=args.min_freq,
        vocab_size=args.vocab_size,
        word_dropout=args.word_dropout,
        rare_word_dropout=args.rare_word_dropout,
        features=parse_features(args.features),
        affix_length=args.affix_length,
        batch_size=args.batch_size,
        seed=args.seed,
        char_hidden_size=args.char_hidden_size,
    )
    data = load(extra, fresh=True)
    vectors = common.read_embeddings(args, extra)
    kw = model_kwargs(args)
    if extra["features"]:
        kw.update(
            feature_vocab_sizes=[len(v["itos"]) for v in extra["feature_vocabs"]],
            feature_embedding_size=args.feature_embedding_size,
        )
    kw.update(common.char_encoder_kwargs(args, extra))
    kw.update(
        vocab_size=len(extra["vocab"]["itos"]),
        output_size=len(extra["labels"]),
        mode="many-to-many",
        head="softmax",
        reduction="mean",
        dtype=args.dtype,
    )
    monitor = ("valid_accuracy", "max") if common.has_valid(extra) else ("valid_loss", "min")
    return common.build_and_fit(args, extra, data, kw, f"{Path(args.data).stem}-tag", *monitor, embeddings=vectors)


def resume(args, model, ckpt, opts) -> int:
    return common.resume_task(args, model, ckpt, opts, load)


# ---- predict and evaluate ------------------------------------------------------


def predict_tags(model, extra: dict, sentences) -> list[list[str]]:
    from bptt.data.batching import sorted_batches

    enc = Encoder(extra)
    X = [enc.ids(s.words) for s in sentences]
    C = common.chars_of([s.words for s in sentences], extra)
    out: list = [None] * len(X)
    for idx in sorted_batches(np.array([len(x) for x in X]), 64):
        b = make_batch(X, None, idx, chars=C)
        pred = model.predict(b.inputs, b.mask, chars=b.chars).argmax(axis=2)
        for row, i in enumerate(idx):
            out[i] = [extra["labels"][k] for k in pred[row, : len(X[i])]]
    return out


def predict(model, extra: dict, path: Path, args) -> str:
    from bptt.data import conllu

    if Path(path).suffix.lower() in (".csv", ".tsv"):
        raise DataError(
            f"{path}: a {Path(path).suffix[1:].upper()} file, expected CoNLL-U or plain text (one sentence per line) for a tag run"
        )
    sentences, _ = conllu.read_any(path, extra["column"], args.encoding)
    return conllu.write(sentences, predict_tags(model, extra, sentences), extra["column"])


def evaluate(model, extra: dict, path: Path, args) -> dict:
    from bptt.training import metrics

    sentences = read_tagged(path, dict(extra, encoding=args.encoding))
    labels = extra["labels"]
    index = {t: i for i, t in enumerate(labels)}
    for s in sentences:
        common.check_labels(s.tags, index, path, s.lines, f"{extra['column'].upper()} tag")
    pred = predict_tags(model, extra, sentences)
    y_true = np.array([index[t] for s in sentences for t in s.tags])
    y_pred = np.array([index[t] for p in pred for t in p])
    report = metrics.classification_report(y_true, y_pred, labels)
    enc = Encoder(extra)
    unknown = np.array([enc.word(w) not in enc.words for s in sentences for w in s.words])
    if unknown.any():
        report["unknown_word_accuracy"] = metrics.accuracy(y_true[unknown], y_pred[unknown])
        report["unknown_words"] = int(unknown.sum())
    return report
