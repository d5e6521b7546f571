"""char-rnn style batching for truncated BPTT: B parallel streams read in chunks.

The corpus of N tokens is cut into B contiguous streams of n = (N - 1) // B
tokens each (stream b starts at b * n), so that each row of a batch continues
where the same row of the previous batch stopped and the hidden state can be
carried from chunk to chunk. Chunk k holds the inputs X = stream[:, kT : kT+T]
and the targets Y = the same positions shifted by one. The last chunk may be
shorter than T: no data is dropped but the fewer than B tail tokens.
"""

from __future__ import annotations

import numpy as np

from bptt.errors import DataError


class Streams:
    """B parallel streams of a 1-D id array, read T steps at a time."""

    def __init__(self, ids: np.ndarray, batch_size: int, seq_length: int):
        ids = np.asarray(ids)
        n = (len(ids) - 1) // batch_size
        if n < 1:
            raise DataError(f"corpus: {len(ids)} tokens, but {batch_size} streams need at least {batch_size + 1}; "
                            "use a smaller --batch-size or a longer text")  # fmt: skip
        self.batch_size, self.seq_length, self.length = batch_size, seq_length, n
        starts = np.arange(batch_size)[:, None] * n
        self.inputs = ids[starts + np.arange(n)]  # (B, n)
        self.targets = ids[starts + np.arange(n) + 1]

    @property
    def n_chunks(self) -> int:
        return -(-self.length // self.seq_length)

    def chunk(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(X, Y), each (B, T) (T shorter for the last chunk)."""
        if not 0 <= k < self.n_chunks:
            raise IndexError(f"chunk {k} of {self.n_chunks}")
        s = slice(k * self.seq_length, (k + 1) * self.seq_length)
        return self.inputs[:, s], self.targets[:, s]

    def __iter__(self):
        return (self.chunk(k) for k in range(self.n_chunks))
