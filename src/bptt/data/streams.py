"""char-rnn style batching for truncated BPTT: B parallel streams read in chunks.

The corpus of N tokens is cut into B contiguous streams of n = (N - 1) // B
positions each (stream b is the b-th 1/B of the corpus, starting at b * n), so
that each row of a batch continues where the same row of the previous batch
stopped and the hidden state can be carried from chunk to chunk. Chunk k holds
the inputs X = stream[:, kT : kT+T] and the targets Y = the same positions
shifted by one token. The last chunk is kept even when shorter than T, so no
data is lost but the (N - 1) mod B tokens at the very end.

A `cursor` {"epoch": e, "chunk": k} names the next chunk to read; it is plain
JSON, so a training run saves it in its checkpoint and resumes mid-epoch at
exactly the chunk it would have read next.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from bptt.errors import DataError, UsageError


class Streams:
    """B parallel streams of a 1-D id array, read T steps at a time.

    `inputs` and `targets` are read-only (B, n) views of the ids; `chunk(k)` returns
    (X, Y), each (B, T) (T shorter for the last chunk). Iterating yields the chunks
    of one epoch from the cursor on, advancing the cursor before each one."""

    def __init__(self, ids: np.ndarray, batch_size: int, seq_length: int):
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise UsageError(f"ids: expected a 1-D array, found shape {ids.shape}")
        if batch_size < 1 or seq_length < 1:
            raise UsageError(f"--batch-size {batch_size}, --seq-length {seq_length}: expected both at least 1")
        need = batch_size * seq_length + 1
        if len(ids) < need:
            raise DataError(
                f"corpus: {len(ids):,} tokens, but --batch-size {batch_size} x --seq-length {seq_length} "
                f"needs at least {need:,} (one chunk per stream); use a smaller --batch-size or "
                "--seq-length, or a longer text"
            )
        n = (len(ids) - 1) // batch_size
        self.batch_size, self.seq_length, self.length = batch_size, seq_length, n
        self.inputs = _read_only(ids[: batch_size * n].reshape(batch_size, n))
        self.targets = _read_only(ids[1 : batch_size * n + 1].reshape(batch_size, n))
        self.epoch, self.next_chunk = 0, 0

    @property
    def n_chunks(self) -> int:
        """Chunks per epoch: ceil(n / T)."""
        return -(-self.length // self.seq_length)

    def chunk(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(X, Y) of chunk k, each (B, T), Y[:, t] the token after X[:, t]."""
        if not 0 <= k < self.n_chunks:
            raise IndexError(f"chunk {k} of {self.n_chunks}")
        s = slice(k * self.seq_length, (k + 1) * self.seq_length)
        return self.inputs[:, s], self.targets[:, s]

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for k in range(self.next_chunk, self.n_chunks):
            self._advance()
            yield self.chunk(k)

    def _advance(self) -> None:
        self.next_chunk += 1
        if self.next_chunk == self.n_chunks:
            self.epoch, self.next_chunk = self.epoch + 1, 0

    @property
    def cursor(self) -> dict:
        """{"epoch": e, "chunk": k}: the next chunk to read is chunk k of epoch e."""
        return {"epoch": self.epoch, "chunk": self.next_chunk}

    @cursor.setter
    def cursor(self, cursor: dict) -> None:
        ok = isinstance(cursor, dict) and set(cursor) == {"epoch", "chunk"}
        ok = ok and all(type(v) is int for v in cursor.values())
        if not ok or cursor["epoch"] < 0 or not 0 <= cursor["chunk"] < self.n_chunks:
            raise DataError(f"cursor: found {cursor!r}, expected {{'epoch': e >= 0, 'chunk': 0..{self.n_chunks - 1}}}")
        self.epoch, self.next_chunk = cursor["epoch"], cursor["chunk"]


def _read_only(a: np.ndarray) -> np.ndarray:
    a = a.view()
    a.flags.writeable = False
    return a
