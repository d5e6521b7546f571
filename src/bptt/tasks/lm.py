"""The language model, `bptt train`'s default task: predict the next character or word of a text.

char-rnn style: one long text cut into --batch-size parallel streams and
trained with truncated BPTT (`bptt.training.tbptt.Trainer`), evaluated in
bits per character (perplexity for words) on a held-out tail or --valid,
and sampled from at the end.
"""

from __future__ import annotations

import hashlib
from functools import partial
from pathlib import Path

import numpy as np

from bptt.errors import CheckpointError, DataError, UsageError
from bptt.tasks.common import averaged_note
from bptt.training.options import model_kwargs

# the defaults `bptt train` shows are the character Elman model's; a gated cell's and the word level's
# own, for the options the user did not give (measured: docs/language-models.md, docs/recipes.md):
CELL_DEFAULTS = {
    # LSTM: the best of 2 x 128 (the Elman default's 247k parameters), 1 x 192, 1 x 256 and 1 x 320 at
    # Adam 2e-3 to 8e-3 in the Elman default's wall time: one layer of 256 at 4e-3 (one time loop
    # instead of two, and its GEMMs wider), with the forget-gate bias of 1 (Jozefowicz et al. 2015);
    # GRU: the Elman default's parameter budget (2 x 148)
    "lstm": dict(hidden_size=256, num_layers=1, lr=4e-3, forget_bias=1.0),
    "gru": dict(hidden_size=148),
}
LEVEL_DEFAULTS = {
    # 70k words of the built-in corpus make 44 updates an epoch at 32 x 50: too few, and Adam at 2e-3
    # saturated the tanh units; 8 streams of 35 words (whose gradient norms, median 1.2, spike to 20: the
    # default clipping at 2 catches them), Adam at 5e-4 (at 1e-3 one run of three had its validation
    # perplexity jump 35-fold for an evaluation), dropout for a 3M-parameter model of 70k words
    "word": dict(batch_size=8, seq_length=35, lr=5e-4, dropout=0.2, lr_decay_after=3),
}


def run(args) -> int:
    """Read the text, build its vocabulary and the model, take the run directory, train."""
    from bptt.data.text import BUILTIN_NAME, Vocab, builtin_corpus, read_text, split
    from bptt.training.options import options_from_args, task_defaults
    from bptt.training.rundir import choose_run_dir
    from bptt.training.tbptt import Trainer, default_progress

    task_defaults(args, **CELL_DEFAULTS.get(args.cell, {}))
    task_defaults(args, **LEVEL_DEFAULTS.get(args.level, {}))
    check_tying(args)
    text = builtin_corpus() if args.data is None else read_text(args.data, args.encoding)
    name = BUILTIN_NAME if args.data is None else args.data.stem
    vocab_kw = {}
    if args.level == "word":
        vocab_kw = dict(
            lowercase=args.lowercase,
            min_freq=args.min_freq,
            max_size=args.vocab_size,
            sentence_ends=not args.no_sentence_ends,
        )
    vocab = Vocab(text, level=args.level, **vocab_kw)
    check_vocab(vocab, args)
    ids = vocab.encode(text)
    if args.valid is not None:
        train_ids, valid_ids = ids, vocab.encode(read_text(args.valid, args.encoding), source=str(args.valid))
    else:
        train_ids, valid_ids = split(ids, args.valid_fraction) if args.valid_fraction > 0 else (ids, None)
    model = build_model(args, len(vocab))  # refuses what does not fit in memory, before --overwrite deletes anything
    out = choose_run_dir(args, f"{name}-{args.level}")
    opts = options_from_args(args)
    if opts.keep_best is None:  # RUN_DIR/best, the weights evaluate and generate use, whenever there is validation
        opts.keep_best = valid_ids is not None
    opts.extra = {
        "task": "lm",
        "level": args.level,
        "vocab": vocab.to_json(),
        "data": None if args.data is None else str(args.data),
        "valid": None if args.valid is None else str(args.valid),
        "encoding": args.encoding,
        "valid_fraction": args.valid_fraction,
        "corpus_sha256": _sha(text),
        "samples": args.samples,
        "sample_length": args.sample_length,
        "temperature": args.temperature,
    }
    trainer = Trainer(model, train_ids, valid_ids, out, opts, progress=default_progress())
    print(
        f"corpus {name}: {len(ids):,} {args.level}s, vocabulary {len(vocab)}; train {len(train_ids):,}, "
        f"valid {0 if valid_ids is None else len(valid_ids):,}; run directory {out}"
    )
    print(
        f"model: {model.num_layers} x {model.hidden_size} {model.kind}, "
        f"{sum(p.size for p in model.params.values()):,} parameters, {model.dtype}"
        + (", embedding tied to the output layer" if model.tie_weights else "")
        + averaged_note(opts, before=", ")
    )
    return finish(trainer, vocab)


def check_tying(args) -> None:
    """--tie-weights: the embedding is as wide as the hidden layer unless --embedding-size is given, and
    then it must be (the table E (V, E) is also the head's V (V, H)); UsageError naming both flags."""
    if not args.tie_weights:
        return
    from bptt.training.options import task_defaults

    task_defaults(args, embedding_size=args.hidden_size)
    if args.embedding_size != args.hidden_size:
        raise UsageError(
            f"--tie-weights: --embedding-size {args.embedding_size} must equal --hidden-size {args.hidden_size}, "
            f"the table is also the output layer's V; drop --embedding-size or set it to {args.hidden_size}"
        )


def check_vocab(vocab, args) -> None:
    """A language model predicts one of at least two tokens: DataError naming what left fewer."""
    if len(vocab) >= 2:
        return
    source = "the built-in corpus" if args.data is None else args.data
    if args.level == "char":
        raise DataError(
            f"{source}: only the character {vocab.itos[0]!r}, a language model needs at least 2 distinct characters"
        )
    limits = [
        f for f, given in (("--vocab-size", args.vocab_size is not None), ("--min-freq", args.min_freq > 1)) if given
    ]
    why = f" with {' and '.join(limits)}" if limits else ""
    raise DataError(
        f"{source}: a vocabulary of only <unk>{why}, a language model needs at least 2 tokens; "
        "raise --vocab-size or lower --min-freq"
    )


def check_memory(args, model_kw: dict) -> None:
    """Refuse, before allocating anything, a language model that would not fit in memory (`bptt.training.resources`)."""
    from bptt.training import resources

    steps = (args.backprop_steps or args.seq_length) + (args.horizon or 1) - 1
    est = resources.estimate_model(model_kw, steps=steps, batch_size=args.batch_size, optimizer=args.optimizer)
    fewer = "a smaller --vocab-size or a higher --min-freq, or " if args.level == "word" else ""
    resources.check_memory(
        est,
        {
            "parameters": f"{fewer}a smaller --hidden-size or --embedding-size",
            "outputs": f"{fewer}a smaller --batch-size or --seq-length",
        },
    )


def build_model(args, vocab_size: int):
    from bptt import RNNModel

    kw = dict(vocab_size=vocab_size, **model_kwargs(args), output_size=vocab_size, reduction="mean", dtype=args.dtype)
    check_memory(args, kw)
    return RNNModel(**kw)


def resume(args, model, ckpt, opts) -> int:
    """Continue a language-model run from its checkpoint, on the same text (its sha256 checked)."""
    from bptt.data.text import builtin_corpus, read_text, split
    from bptt.training.runs import vocab_of
    from bptt.training.tbptt import Trainer, default_progress

    run_dir = args.resume
    extra = opts.extra
    vocab = vocab_of(ckpt, run_dir)
    missing = [k for k in ("data", "encoding", "corpus_sha256", "valid", "valid_fraction", "level") if k not in extra]
    if missing:
        raise CheckpointError(f"{run_dir}: checkpoint.json: training options without {', '.join(missing)}")
    data = extra["data"]
    text = builtin_corpus() if data is None else read_text(Path(data), extra["encoding"])
    if _sha(text) != extra["corpus_sha256"]:
        raise UsageError(
            f"--resume {run_dir}: the training data {data or 'built-in corpus'} changed since the run started"
        )
    ids = vocab.encode(text)
    if extra["valid"] is not None:
        train_ids, valid_ids = (
            ids,
            vocab.encode(read_text(Path(extra["valid"]), extra["encoding"]), source=extra["valid"]),
        )
    else:
        frac = extra["valid_fraction"]
        train_ids, valid_ids = split(ids, frac) if frac > 0 else (ids, None)
    trainer = Trainer(model, train_ids, valid_ids, run_dir, opts, progress=default_progress())
    trainer.resume_from(ckpt)
    print(f"resuming {run_dir} at step {trainer.state['step']} (epoch {trainer.state['epoch']})")
    return finish(trainer, vocab)


def finish(trainer, vocab) -> int:
    """Train, then print the final numbers and a few samples."""
    from bptt.generate import sample
    from bptt.training import checkpoint

    trainer.text_sample = partial(sample_text, vocab=vocab, extra=trainer.opts.extra)  # for --tensorboard
    state = trainer.fit()
    extra = trainer.opts.extra
    print(
        f"stopped after {state['step']} updates ({state['stop_reason']}), {state['elapsed']:.1f} s; "
        f"checkpoint in {trainer.run_dir}"
    )
    if trainer.valid_ids is not None and state.get("best_valid") is not None:
        unit = "bits per character" if extra["level"] == "char" else "perplexity"
        best = state["best_valid"]
        value = best / np.log(2) if extra["level"] == "char" else float(np.exp(min(best, 700)))
        print(f"best validation {unit}: {value:.3f}")
    use_best_weights(trainer)
    rng = np.random.default_rng(trainer.model.seed)
    texts = []
    for _ in range(extra.get("samples", 0)):
        start = np.array([int(trainer.valid_ids[0] if trainer.valid_ids is not None else 0)])
        ids = sample(trainer.model, start, extra["sample_length"], temperature=extra["temperature"], rng=rng)
        texts.append(vocab.decode(np.concatenate([start, ids])))
    if texts and trainer.comm.is_root:  # under mpirun: rank 0 alone prints and writes
        print(f"samples (temperature {extra['temperature']}):")
        for t in texts:
            print("---\n" + t)
        checkpoint.atomic_write_text(trainer.run_dir / "samples.txt", "\n---\n".join(texts) + "\n")
    return 0


def use_best_weights(trainer) -> None:
    """End the run with the best evaluation's weights when it kept them (RUN_DIR/best): the samples
    printed now come from the model that evaluate and generate will use."""
    from bptt.training.runs import load_run, weights_dir, weights_note

    where = weights_dir(trainer.run_dir)
    if where == trainer.run_dir:
        return
    best, ckpt = load_run(where)
    for k, v in best.params.items():
        trainer.model.params[k][...] = v
    if trainer.comm.is_root:
        print(weights_note(where, ckpt, hint=" (what evaluate and generate use)"))


def sample_text(model, vocab, extra: dict) -> str:
    """A sample as `finish` prints them (--sample-length, --temperature), primed with a newline when
    the vocabulary has one, from its own generator (the run's random state is left alone)."""
    from bptt.generate import sample

    start = np.array([vocab.stoi.get("\n", 0) if vocab.level == "char" else 0])
    rng = np.random.default_rng(0)
    ids = sample(model, start, extra.get("sample_length", 200), temperature=extra.get("temperature", 1.0), rng=rng)
    return vocab.decode(np.concatenate([start, ids]))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
