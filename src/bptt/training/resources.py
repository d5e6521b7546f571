"""Memory a training run needs, estimated from its options before anything is allocated.

Every task calls `estimate_model` with the keyword arguments of the RNNModel it
is about to build (or `estimate_memory` with sizes) and `check_memory` with the
result before it builds the model, so a run that cannot fit is refused with a
message that says which options to lower, before training starts, not an hour in.

With V the vocabulary (or input features D), E the embedding, H the hidden
size, L layers, d directions, K outputs, T steps per backward window and B
sequences per batch, in items of the dtype:

    parameters   P = V E + sum_l d (H D_l + H H + H) + K (d H + 1)    (D_0 = E, V one-hot, or D; D_l = d H)
    resident     (2 (1 + m) + 1) P    weights and m optimizer buffers, the rollback
                                      snapshot of both, and the gradients
                                      (m = 2 for Adam: 7 P)
    states       3 T B (L d H + D_x)  states of every layer and the embedded inputs
                                      D_x (0 for one-hot ids)
    outputs      3 T B K              logits (B K when there is one output per sequence)

the last two x 3 for the forward buffers, their gradients and temporaries.

The estimate is deliberately simple and a little generous; it exists to catch
settings that are off by an order of magnitude (a 100,000-word softmax on a
small machine), not to budget the last megabyte.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bptt.errors import UsageError

# optimizer buffers per parameter (bptt.training.optim): what `m` above is for each
OPTIMIZER_BUFFERS = {"sgd": 0, "momentum": 1, "adagrad": 1, "rmsprop": 1, "adam": 2, "adamw": 2}
USABLE_FRACTION = 0.8  # of the available memory a run may plan to use
GIB = 2**30


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a run needs, in three parts: `parameter_bytes` (every resident copy of the
    `parameters`), `state_bytes` (hidden states and inputs of one window) and
    `output_bytes` (its K-wide logits), counted for `steps` x `batch` (T x B)."""

    parameters: int
    parameter_bytes: int
    state_bytes: int
    output_bytes: int
    steps: int
    batch: int

    @property
    def total(self) -> int:
        return self.parameter_bytes + self.state_bytes + self.output_bytes

    def largest(self) -> tuple[str, str]:
        """(part, description) of the largest of the three parts."""
        parts = {
            "parameters": (self.parameter_bytes, f"{self.parameters:,} parameters and their copies"),
            "states": (self.state_bytes, f"hidden states of {self.steps} steps x {self.batch} sequences"),
            "outputs": (self.output_bytes, f"outputs of {self.steps} steps x {self.batch} sequences"),
        }
        name = max(parts, key=lambda k: parts[k][0])
        size, what = parts[name]
        return name, f"{what}: {size / GIB:.1f} GiB"


def estimate_memory(
    *,
    input_size: int,
    hidden_size: int,
    output_size: int,
    steps: int,
    batch_size: int,
    num_layers: int = 1,
    num_directions: int = 1,
    embedding_size: int | None = None,
    tokens: bool = True,
    bias: bool = True,
    cond_size: int | None = None,
    sequence_outputs: bool = True,
    optimizer: str = "adam",
    dtype: str = "float32",
) -> MemoryEstimate:
    """The memory of training an RNNModel of these sizes on (steps T, batch_size B) windows.

    input_size: the vocabulary V for token inputs (tokens=True), else the
    features D per step. sequence_outputs: a K-wide output on every step
    (many-to-many, one-to-many) rather than one per sequence.
    """
    for name, value in (
        ("input_size", input_size),
        ("hidden_size", hidden_size),
        ("output_size", output_size),
        ("steps", steps),
        ("batch_size", batch_size),
        ("num_layers", num_layers),
    ):
        if int(value) < 1:
            raise UsageError(f"{name}: got {value}, expected a positive integer")
    if optimizer not in OPTIMIZER_BUFFERS:
        raise UsageError(f"optimizer: got {optimizer!r}, expected one of {sorted(OPTIMIZER_BUFFERS)}")
    # Python ints throughout: a 10^6-word vocabulary times 10^4 units must not overflow
    V, H, K, L, d = int(input_size), int(hidden_size), int(output_size), int(num_layers), int(num_directions)
    E = None if embedding_size is None else int(embedding_size)
    P = V * E if E else 0
    D = E or V
    for _ in range(L):
        P += d * (H * D + H * H + (H if bias else 0))
        D = d * H
    P += K * (d * H + 1)
    if cond_size:
        P += L * H * (int(cond_size) + 1)
    itemsize = np.dtype(dtype).itemsize
    m = OPTIMIZER_BUFFERS[optimizer]
    T, B = int(steps), int(batch_size)
    x_width = E if E else (0 if tokens else V)
    states = 3 * T * B * (L * d * H + x_width)
    outputs = 3 * (T if sequence_outputs else 1) * B * K
    return MemoryEstimate(P, (2 * (1 + m) + 1) * P * itemsize, states * itemsize, outputs * itemsize, T, B)


def estimate_model(model_kw: dict, *, steps: int, batch_size: int, optimizer: str = "adam") -> MemoryEstimate:
    """`estimate_memory` for the model RNNModel(**model_kw) would build (same keywords and
    defaults), trained on windows of `steps` steps x `batch_size` sequences. Feature
    columns are counted as a wider embedding (generous: their tables are smaller)."""
    from bptt.model import SEQUENCE_MODES

    tokens = model_kw.get("vocab_size") is not None
    E = model_kw.get("embedding_size")
    if E is not None and model_kw.get("feature_vocab_sizes"):  # the feature columns widen x_t
        E += len(model_kw["feature_vocab_sizes"]) * model_kw.get("feature_embedding_size", 16)
    if E is not None and model_kw.get("char_hidden_size"):  # and so does the character encoding
        E += 2 * model_kw["char_hidden_size"]
    return estimate_memory(
        input_size=model_kw["vocab_size"] if tokens else model_kw["input_size"],
        tokens=tokens,
        embedding_size=E,
        hidden_size=model_kw.get("hidden_size", 64),
        num_layers=model_kw.get("num_layers", 1),
        num_directions=2 if model_kw.get("bidirectional") else 1,
        output_size=model_kw["output_size"],
        bias=model_kw.get("bias", True),
        cond_size=model_kw.get("cond_size"),
        steps=steps,
        batch_size=batch_size,
        sequence_outputs=model_kw.get("mode", "many-to-many") in SEQUENCE_MODES,
        optimizer=optimizer,
        dtype=model_kw.get("dtype", "float32"),
    )


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo in bytes, or None where there is no such file (not Linux)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


DEFAULT_HINTS = {
    "parameters": "a smaller --hidden-size or --num-layers",
    "states": "a smaller --batch-size, --seq-length or --hidden-size",
    "outputs": "a smaller --batch-size or --seq-length, or fewer outputs",
}


def check_memory(
    est: MemoryEstimate, hints: dict[str, str] | None = None, available: int | None = None, what: str = "training"
) -> None:
    """UsageError, before anything is allocated, when `est` exceeds USABLE_FRACTION of the
    available memory (default: `available_memory()`; no check where it is unknown).

    The message ("`what` needs about ...") names the largest part of the estimate and suggests
    what to lower: hints[part] for part in parameters, states, outputs (DEFAULT_HINTS for those
    not given).
    """
    have = available_memory() if available is None else available
    if have is None or est.total <= USABLE_FRACTION * have:
        return
    part, size = est.largest()
    hint = {**DEFAULT_HINTS, **(hints or {})}[part]
    raise UsageError(
        f"{what} needs about {est.total / GIB:.1f} GiB of memory ({size}) but {have / GIB:.1f} GiB "
        f"is available; use {hint}"
    )


def check_bytes(needed: int, what: str, hint: str, available: int | None = None) -> None:
    """UsageError, before anything is allocated, when `needed` bytes (a command's own estimate of
    what a user's number makes it allocate) exceed USABLE_FRACTION of the available memory:
    "`what` needs about N GiB (or MiB) of memory but M GiB is available; use `hint`"."""
    have = available_memory() if available is None else available
    if have is None or needed <= USABLE_FRACTION * have:
        return
    raise UsageError(f"{what} needs about {_size(needed)} of memory but {_size(have)} is available; use {hint}")


def _size(n: int) -> str:
    return f"{n / GIB:.1f} GiB" if n >= GIB else f"{n / 2**20:.1f} MiB"


def generation_bytes(length: int, sequences: int, token_chars: int) -> int:
    """What generating `length` tokens for each of `sequences` sequences holds at once: the ids
    (8 bytes each), a list of references to their strings (8 each) and the decoded text (up to 4
    bytes per character, `token_chars` characters and a separator per token), times 2 for the
    copies printing makes."""
    return 2 * int(length) * int(sequences) * (16 + 4 * (int(token_chars) + 1))
