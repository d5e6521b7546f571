"""The language model, `bptt train`'s default task: predict the next character or word of a text.

char-rnn style: one long text cut into --batch-size parallel streams and
trained with truncated BPTT (`bptt.training.tbptt.Trainer`), evaluated in
bits per character (perplexity for words) on a held-out tail or --valid,
and sampled from at the end.
"""

from __future__ import annotations

import hashlib

import numpy as np

from bptt.errors import DataError
from bptt.training.options import model_kwargs


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


def finish(trainer, vocab) -> int:
    """Train, then print the final numbers and a few samples."""
    from bptt.generate import sample
    from bptt.training import checkpoint

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
    rng = np.random.default_rng(trainer.model.seed)
    texts = []
    for _ in range(extra.get("samples", 0)):
        start = np.array([int(trainer.valid_ids[0] if trainer.valid_ids is not None else 0)])
        ids = sample(trainer.model, start, extra["sample_length"], temperature=extra["temperature"], rng=rng)
        texts.append(vocab.decode(np.concatenate([start, ids])))
    if texts:
        print(f"samples (temperature {extra['temperature']}):")
        for t in texts:
            print("---\n" + t)
        checkpoint.atomic_write_text(trainer.run_dir / "samples.txt", "\n---\n".join(texts) + "\n")
    return 0


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
