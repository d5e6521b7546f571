"""What every dataset task shares: options -> TrainOptions, data fingerprints, vocabularies,
batches of padded sequences, the memory estimate, and the train / resume / report sequence.

A task module provides `load(extra, fresh)` -> a `Data` (train source, evaluation
function, summary line) built from the JSON `extra` saved in the run, so that a
resumed run rebuilds exactly the same batches from the same files (their
sha256 is checked).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bptt.errors import DataError, UsageError
from bptt.training.loop import TrainOptions


def add_options(p) -> None:
    """The flags the word-level dataset tasks (tag, classify) share."""
    from bptt.training.options import fraction, non_negative_float, non_negative_int, positive_int

    g = p.add_argument_group("word-level tasks (--task tag, classify)")
    g.add_argument("--unidirectional", action="store_true", help="left to right only (default: bidirectional)")
    g.add_argument("--word-dropout", type=fraction, default=0.0, help="training words -> <unk> with this probability")
    g.add_argument(
        "--rare-word-dropout",
        type=non_negative_float,
        default=0.0,
        metavar="ALPHA",
        help="a training word w seen count(w) times -> <unk> with probability ALPHA / (ALPHA + count(w)), "
        "independently of --word-dropout (Kiperwasser and Goldberg 2016; 0: off)",
    )
    g.add_argument(
        "--embeddings",
        type=Path,
        default=None,
        metavar="FILE",
        help="initialise the embedding rows of vocabulary words from word2vec / GloVe text vectors "
        "(their size is --embedding-size unless given)",
    )
    g.add_argument(
        "--char-hidden-size",
        type=non_negative_int,
        default=None,
        help="H_c of the character-level word encoder, a bidirectional cell over each word's characters "
        "(0: none; default: 100 for tag, 0 for classify; classify: --level word only)",
    )
    g.add_argument(
        "--char-embedding-size",
        type=positive_int,
        default=32,
        help="embedding size of a character (with --char-hidden-size)",
    )
    g.add_argument(
        "--char-cell",
        choices=["elman", "lstm", "gru"],
        default=None,
        help="the character encoder's cell (default: --cell)",
    )


@dataclass
class Data:
    source: object  # bptt.data.batching.SequenceSource
    evaluate: Callable | None  # model -> {"valid_loss": ..., ...}
    summary: str  # printed before training


def file_sha(path: str | Path) -> str:
    from bptt.data.text import read_bytes

    return hashlib.sha256(read_bytes(Path(path))).hexdigest()


def check_unchanged(extra: dict, run_dir) -> None:
    """On resume: every data file the run was trained on is still what it was."""
    for key in ("data", "valid"):
        path, sha = extra.get(key), extra.get(f"{key}_sha256")
        if path is not None and file_sha(path) != sha:
            raise UsageError(f"--resume {run_dir}: {path} changed since the run started")


def data_extra(args, task: str, valid_fraction: float = 0.0) -> dict:
    """The data part of a run's saved options: task, files and their fingerprints, and how the
    training file is split (`split`): the validation fraction without --valid (the task's default
    `valid_fraction` unless --valid-fraction is given), the seed, and the cross-validation fold."""
    if args.data is None and task != "spell":
        raise UsageError(f"--task {task}: --data FILE is required")
    extra = {"task": task, "encoding": args.encoding}
    for key in ("data", "valid"):
        path = getattr(args, key)
        extra[key] = None if path is None else str(path)
        extra[f"{key}_sha256"] = None if path is None else file_sha(path)
    given = "valid_fraction" in getattr(args, "given", ())
    if args.valid is not None and given:
        raise UsageError(f"--valid-fraction: --valid {args.valid} is the validation set; give one of the two, not both")
    fraction = None if args.valid is not None else args.valid_fraction if given else valid_fraction
    extra["valid_fraction"] = fraction or None
    extra["valid_fraction_given"] = given
    extra["split_seed"] = args.seed
    extra["folds"], extra["fold"] = getattr(args, "folds", None), getattr(args, "fold", None)
    return extra


def has_valid(extra: dict) -> bool:
    """A validation set: --valid FILE or a --valid-fraction of the training file."""
    return bool(extra.get("valid") or extra.get("valid_fraction"))


def folds_of(y: np.ndarray, K: int, seed: int) -> np.ndarray:
    """Fold 0..K-1 of each example, stratified: the examples are shuffled (seeded), grouped by
    label, and dealt to the folds in turn, so every fold has each label's share to within one."""
    order = np.random.default_rng([seed, K, 17]).permutation(len(y))
    order = order[np.argsort(np.asarray(y)[order], kind="stable")]
    fold = np.empty(len(y), dtype=np.int64)
    fold[order] = np.arange(len(y)) % K
    return fold


def split(n: int, extra: dict, y: np.ndarray | None = None, source=None):
    """(train, valid, test) indices into the training file's n examples, each sorted, the same on
    every run with the same extra: with extra["folds"] = K, fold extra["fold"] (1..K) of
    `folds_of(y)` is the test part (else None); then, with extra["valid_fraction"] = F, a seeded
    random F of the rest is the validation part (else None). A task's default F that would leave
    no example for validation (a tiny file) is dropped (extra["valid_fraction"] = None)."""
    idx, test, valid = np.arange(n), None, None
    if extra.get("folds"):
        if n < extra["folds"]:
            raise DataError(
                f"{source or extra['data']}: {n:,} examples, --folds {extra['folds']} needs at least one per fold"
            )
        fold = folds_of(np.zeros(n, np.int64) if y is None else y, extra["folds"], extra["split_seed"])
        test, idx = idx[fold == extra["fold"] - 1], idx[fold != extra["fold"] - 1]
    F = extra.get("valid_fraction")
    if F:
        n_valid = int(round(len(idx) * F))
        if n_valid == 0 and not extra.get("valid_fraction_given", True):
            extra["valid_fraction"] = None
            return idx, None, test
        if not 0 < n_valid < len(idx):
            raise DataError(
                f"{source or extra['data']}: --valid-fraction {F:g} of {len(idx):,} examples leaves "
                f"{n_valid:,} for validation and {len(idx) - n_valid:,} for training, expected at least one each"
            )
        perm = np.random.default_rng([extra["split_seed"], 23]).permutation(idx)
        valid, idx = np.sort(perm[:n_valid]), np.sort(perm[n_valid:])
    return idx, valid, test


def valid_name(extra: dict) -> str:
    """How the summary line names the validation set."""
    if extra.get("valid"):
        return str(extra["valid"])
    return f"{extra['valid_fraction']:g} of {extra['data']} (seed {extra['split_seed']})"


def train_options(args, extra: dict, monitor: str, monitor_mode: str) -> TrainOptions:
    from bptt.training.options import options_from_args

    opts = options_from_args(args)
    opts.extra, opts.monitor, opts.monitor_mode = extra, monitor, monitor_mode
    if opts.keep_best is None:  # the best evaluation's checkpoint in RUN_DIR/best whenever there is validation
        opts.keep_best = has_valid(extra) or extra["task"] == "spell"
    return opts


def vocab_json(counts: Counter, min_freq: int = 1, max_size: int | None = None, source=None) -> dict:
    """A word-level `bptt.data.text.Vocab` JSON: "<unk>" (id 0) then tokens seen >= min_freq times,
    most frequent first (ties alphabetically), at most max_size entries. With `source` (the
    training file), DataError when the limits leave only "<unk>": every input would look the same."""
    from bptt.data.text import UNK, Vocab

    ranked = sorted((w for w, c in counts.items() if c >= min_freq and w != UNK), key=lambda w: (-counts[w], w))
    if max_size is not None:
        ranked = ranked[: max(max_size - 1, 0)]
    if source is not None and not ranked:
        limits = " and ".join(
            f
            for f, on in ((f"--min-freq {min_freq}", min_freq > 1), (f"--vocab-size {max_size}", max_size is not None))
            if on
        )
        raise DataError(
            f"{source}: a vocabulary of only <unk>{' with ' + limits if limits else ''}, expected at least one token "
            "besides it; lower --min-freq or raise --vocab-size"
        )
    return Vocab(level="word", sentence_ends=False, itos=[UNK, *ranked]).to_json()


def word_drop_probabilities(counts: np.ndarray, alpha: float, p: float = 0.0) -> np.ndarray:
    """p (V,): the probability that a training occurrence of word id w becomes <unk>,

        p_w = 1 - (1 - p) (1 - alpha / (alpha + c_w)) = p + (1 - p) alpha / (alpha + c_w)

    for counts c (V,) of each vocabulary id in the training part: uniform word dropout p
    (--word-dropout) and frequency-aware word dropout alpha / (alpha + c_w) (--rare-word-dropout,
    Kiperwasser and Goldberg 2016) as independent events. A word seen once with alpha = 0.25 is
    dropped 20% of the time, one seen 100 times 0.25%: rare words, which look most like the
    unknown words of new text, teach <unk>'s embedding its context.

    <unk> (id 0, also the padding) gets p_0 = 0: its training occurrences are the words below
    --min-freq (or beyond --vocab-size), which are <unk> on every occurrence already -- dropped with
    probability 1, where alpha / (alpha + c) tends as c -> 0 -- so there is nothing
    left to drop, and its count, the sum over many different words, is no word's frequency. A
    word the training part never has (c_w = 0) gets alpha / alpha = 1 when alpha > 0."""
    c = np.asarray(counts, dtype=np.float64)
    q = alpha / (alpha + c) if alpha > 0 else np.zeros_like(c)
    out = p + (1.0 - p) * q  # exactly p where q = 0, as --word-dropout alone
    out[0] = 0.0
    return out


def drop_words(words: np.ndarray, p: float | np.ndarray, rng) -> None:
    """Word dropout, in place: words[i] -> 0 (<unk>) where u_i < p, u_i ~ U[0, 1) drawn from rng
    for every position (padding included, so the draws do not depend on the ids); p is one
    probability, or the (V,) `word_drop_probabilities` indexed by each position's word id."""
    u = rng.random(words.shape)
    words[u < (p[words] if np.ndim(p) else p)] = 0


def training_word_dropout(extra: dict, words: list[np.ndarray], fresh: bool) -> float | np.ndarray:
    """What make_batch drops with: extra["word_dropout"] (a probability) alone, or with
    extra["rare_word_dropout"] = alpha > 0 the (V,) `word_drop_probabilities` of the counts of
    each vocabulary id in the training part's ids `words` (after any --valid-fraction split or
    cross-validation fold), which a fresh run saves in extra["word_counts"] and a resumed one reads
    back, so that it draws the same drops."""
    P, alpha = extra.get("word_dropout", 0.0), extra.get("rare_word_dropout", 0.0)
    if not alpha:
        return P
    if fresh or "word_counts" not in extra:
        ids = np.concatenate(words) if words else np.zeros(0, np.int64)
        extra["word_counts"] = np.bincount(ids, minlength=len(extra["vocab"]["itos"])).tolist()
    return word_drop_probabilities(np.array(extra["word_counts"]), alpha, P)


def word_dropout_note(extra: dict, p: float | np.ndarray) -> str:
    """The summary line's part on word dropout: the share of training words dropped per epoch."""
    if not np.ndim(p):
        return f"; word dropout {p:g}" if p else ""
    c = np.array(extra["word_counts"], dtype=np.float64)
    share = float((c * p).sum() / max(c.sum(), 1))
    return (
        f"; word dropout {extra.get('word_dropout', 0.0):g}, rare-word dropout {extra['rare_word_dropout']:g}: "
        f"{share:.1%} of the training words -> <unk> on average"
    )


def lookup(vocab: dict) -> dict[str, int]:
    from bptt.data.text import Vocab

    return Vocab.from_json(vocab).stoi


# ---- characters (the character-level word encoder, `bptt.layers.char_encoder`) ----------------

CHAR_MIN_FREQ = 2  # rarer training characters -> the unknown character, which then gets trained


def char_vocab(words) -> list[str]:
    """The characters of the training words (an iterable of str), for the run's extra["chars"]:
    "<pad>" (id 0) and "<unk>" (id 1), as `bptt.layers.char_encoder` numbers them, then every
    character seen at least CHAR_MIN_FREQ times, most frequent first (ties by code point)."""
    counts = Counter(c for w in words for c in w)
    ranked = sorted((c for c, n in counts.items() if n >= CHAR_MIN_FREQ), key=lambda c: (-counts[c], c))
    return ["<pad>", "<unk>", *ranked]


def char_ids(words: list[str], index: dict[str, int]) -> np.ndarray:
    """(n, C) character ids of n words as written (C: the longest word, at least 1): 0 after a
    word's last character, 1 for a character `index` does not have."""
    out = np.zeros((len(words), max([1, *map(len, words)])), dtype=np.int64)
    for i, w in enumerate(words):
        out[i, : len(w)] = [index.get(c, 1) for c in w]
    return out


def chars_of(sequences: list[list[str]], extra: dict) -> list[np.ndarray] | None:
    """The (n, C) `char_ids` of each sequence's n words, over the run's extra["chars"]; None for a
    run without a character encoder."""
    if not extra.get("chars"):
        return None
    index = {c: i for i, c in enumerate(extra["chars"])}
    return [char_ids(words, index) for words in sequences]


def char_encoder_kwargs(args, extra: dict) -> dict:
    """The RNNModel options of the character encoder (--char-hidden-size H_c and its companions)
    over the run's character vocabulary extra["chars"]; {} without one."""
    if not args.char_hidden_size:
        return {}
    return dict(
        char_vocab_size=len(extra["chars"]),
        char_embedding_size=args.char_embedding_size,
        char_hidden_size=args.char_hidden_size,
        char_cell=args.char_cell,
    )


def pad_chars(chars: list[np.ndarray], idx, T: int) -> np.ndarray:
    """(B, T, C) character ids of the batch of sequences idx, from each sequence's (n, C_i)
    `char_ids`: 0 after a word's characters and at the padded steps after its sequence."""
    out = np.zeros((len(idx), T, max(chars[i].shape[1] for i in idx)), np.int64)
    for b, i in enumerate(idx):
        n, c = chars[i].shape
        out[b, :n, :c] = chars[i]
    return out


def check_labels(labels: list[str], known: dict[str, int], path, lines: list[int], what: str = "label") -> None:
    """DataError at the first label that the training data never had."""
    for label, line in zip(labels, lines):
        if label not in known:
            shown = ", ".join(list(known)[:12]) + (", ..." if len(known) > 12 else "")
            raise DataError(
                f"{path}:{line}: {what} {label!r} does not occur in the training data, expected one of: {shown}"
            )


def check_memory(model_kw: dict, steps: int, batch_size: int, optimizer: str) -> None:
    """Refuse, before the model is built, one that would not fit in memory (`bptt.training.resources`).
    model_kw: the RNNModel keyword arguments; steps: the longest training sequence."""
    from bptt.training import resources

    est = resources.estimate_model(model_kw, steps=steps, batch_size=batch_size, optimizer=optimizer)
    resources.check_memory(
        est,
        {
            "parameters": "a higher --min-freq, a smaller --vocab-size, --hidden-size or --embedding-size",
            "states": "a smaller --batch-size or --hidden-size",
        },
    )


def n_params(model) -> int:
    return sum(p.size for p in model.params.values())


def eval_batches(lengths: np.ndarray, batch_size: int, make: Callable) -> list:
    """The evaluation batches, built once: examples sorted by length."""
    from bptt.data.batching import sorted_batches

    return [make(idx) for idx in sorted_batches(np.asarray(lengths), max(batch_size, 64))]


def averaged_note(opts: TrainOptions, before: str = "", after: str = "") -> str:
    """What every task's "model:" line adds, between `before` and `after`, when the weights are
    averaged (--ema): evaluation, the best weights and every later command then use the average,
    not the last step's weights. "" without --ema."""
    return f"{before}weights averaged (--ema {opts.ema:g}){after}" if opts.ema else ""


def fit_and_report(model, data: Data, run_dir, opts: TrainOptions, ckpt=None) -> int:
    """Train (or continue from ckpt), print how it stopped and the best validation metric."""
    from bptt.training.batches import BatchTrainer
    from bptt.training.loop import default_progress
    from bptt.training.runs import weights_dir

    trainer = BatchTrainer(model, data.source, data.evaluate, run_dir, opts, progress=default_progress())
    if ckpt is not None:
        trainer.resume_from(ckpt)
        print(f"resuming {run_dir} at step {trainer.state['step']} (epoch {trainer.state['epoch']})")
    else:
        print(data.summary)
        print(
            f"model: {'bidirectional ' if model.bidirectional else ''}{model.num_layers} x {model.hidden_size} "
            f"{model.kind}, {model.mode}, {model.head} head, {n_params(model):,} parameters; "
            + (
                f"character encoder 2 x {model.char_hidden_size} {model.char_rnn.name}; "
                if model.char_hidden_size is not None
                else ""
            )
            + averaged_note(opts, after="; ")
            + f"run directory {run_dir}"
        )
    state = trainer.fit()
    print(
        f"stopped after {state['step']} updates ({state['stop_reason']}), {state['elapsed']:.1f} s; "
        f"checkpoint in {run_dir}"
    )
    if state.get("best_valid") is not None:
        print(f"best {opts.monitor.replace('_', ' ')}: {state['best_valid']:.4f}")
    best = weights_dir(run_dir)
    if opts.keep_best and best != Path(run_dir):
        print(f"the best evaluation's weights are in {best}: what evaluate and predict use")
    return 0


def read_embeddings(args, extra: dict) -> dict | None:
    """--embeddings FILE: {vocabulary id: vector} for the vocabulary's words found in FILE (None
    without the flag). Sets args.embedding_size to the file's D unless --embedding-size was given,
    which must then equal D; prints the coverage."""
    from bptt.data.vectors import read_vectors

    if args.embeddings is None:
        return None
    stoi = lookup(extra["vocab"])
    key = str.lower if extra.get("lowercase") else str
    D, found, _ = read_vectors(args.embeddings, set(stoi) - {"<unk>"}, key)
    if "embedding_size" in args.given and args.embedding_size != D:
        raise UsageError(
            f"--embeddings {args.embeddings}: vectors of size {D}, but --embedding-size is {args.embedding_size}; "
            "drop --embedding-size or give the file's size"
        )
    args.embedding_size = D
    extra["embeddings"] = str(args.embeddings)
    print(f"embeddings: {len(found):,} of {len(stoi) - 1:,} vocabulary words found in {args.embeddings}")
    return {stoi[w]: v for w, v in found.items()}


def set_embeddings(model, rows: dict) -> None:
    """E[id] = v for each pretrained row; the other rows (random, N(0, 1)) are rescaled to the
    pretrained rows' standard deviation, so that known and unknown words start on one scale."""
    if not rows:
        return
    E = model.params["embed.E"]
    ids = np.fromiter(rows, dtype=np.int64, count=len(rows))
    V = np.stack([rows[i] for i in ids])
    other = np.setdiff1d(np.arange(E.shape[0]), ids)
    E[other] *= V.std()
    E[ids] = V.astype(E.dtype)


def build_and_fit(
    args,
    extra: dict,
    data: Data,
    model_kw: dict,
    run_name: str,
    monitor: str,
    monitor_mode: str,
    epochs_per_eval: int = 1,
    embeddings: dict | None = None,
) -> int:
    """The end of every dataset task's `run`: evaluate every `epochs_per_eval` epochs unless
    --eval-every is given, refuse a model too big for memory, and only then take the run
    directory (which --overwrite empties), build the model (with the pretrained embedding
    rows of `read_embeddings`) and train."""
    from bptt import RNNModel
    from bptt.training.rundir import choose_run_dir

    if "eval_every" not in args.given:
        args.eval_every = epochs_per_eval * data.source.n_batches
    check_memory(model_kw, int(data.source.lengths.max()), args.batch_size, args.optimizer)
    out = choose_run_dir(args, run_name)
    model = RNNModel(**model_kw)
    set_embeddings(model, embeddings or {})
    return fit_and_report(model, data, out, train_options(args, extra, monitor, monitor_mode))


def resume_task(args, model, ckpt, opts: TrainOptions, load: Callable) -> int:
    """A dataset task's `resume`: the same files (their sha256 checked), the same batches."""
    check_unchanged(opts.extra, args.resume)
    return fit_and_report(model, load(opts.extra, fresh=False), args.resume, opts, ckpt)
