"""Synchronous data parallelism over MPI: N ranks, one model, one Allreduce per update.

Every rank holds the same parameters theta. The global batch of B rows is cut
into N contiguous blocks; rank r computes the gradient g_r of the loss of its
rows, normalised as the one-process loss of the whole batch is, and

    g = sum_r s_r g_r,    s_r = (normaliser of rank r's loss) / (normaliser of the global loss)

(s_r = B_r / B for the default sum-over-time loss, n_r / n for "mean", 1 for
"sum"), so g is the one-process gradient up to round-off. The N gradients
travel in one flat buffer of the model's dtype, one Allreduce(SUM) per update;
the same buffer carries the rank's summed loss and loss-term count, a "stop"
flag (a rank got SIGINT/SIGTERM) and the rank's elapsed time, so every rank
sees the same loss, stops after the same update and agrees on --max-time.
Clipping, the non-finite check and the optimizer step then run on the reduced
g, identically on every rank.

`communicator()` returns `Single` (size 1, every operation trivial) unless the
process was started by an MPI launcher (mpirun / mpiexec / srun: the variables
in `LAUNCHER_VARS`); only then is mpi4py imported.
Evaluation is split too: a language model's validation streams by `rows`, a
dataset task's evaluation batches (or rows) by `shard` (rank r takes items r,
r + N, r + 2N, ...), and the sufficient statistics (loss sums and counts,
correct predictions, squared and absolute errors, or the scores themselves)
are summed with one `sum`, so every rank ends with the one-process numbers.
Every `CHECK_EVERY` updates (and before every checkpoint) the ranks compare a
checksum of each parameter tensor (`check_same`); the first that differs stops
the run on every rank with one line naming it.
"""

from __future__ import annotations

import os
import zlib

import numpy as np

from bptt.errors import BpttError, UsageError

# set by Open MPI (OMPI_*), MPICH / Intel MPI / Hydra (PMI_*), PMIx launchers and Slurm's srun (PMIX_*)
LAUNCHER_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK", "MPI_LOCALNRANKS")
CHECK_EVERY = 100  # updates between parameter checksums
N_EXTRAS = 4  # summed loss, loss terms, stop flag, elapsed seconds


class RanksDisagree(BpttError):
    """The ranks' parameters are no longer the same (a bug or a faulty machine): the run must stop."""


class Single:
    """One process: the trivial communicator. `rows(B)` is every row; reductions return their input."""

    size, rank, is_root = 1, 0, True

    def rows(self, n: int) -> slice:
        """This rank's rows of a global batch of n: a contiguous block (all of them here)."""
        return slice(0, n)

    def allreduce(self, grads: dict[str, np.ndarray], share: float, extras: np.ndarray) -> np.ndarray:
        """Sum share * grads over the ranks in place (grads are replaced by the sums) and
        return the summed extras (float64)."""
        return np.asarray(extras, np.float64)

    def shard(self, items):
        """This rank's part of a sequence of evaluation work (batches, rows): items rank, rank + size,
        rank + 2 size, ... (every item here). Each item belongs to exactly one rank; round robin
        spreads length-sorted batches evenly."""
        return items

    def sum(self, values) -> np.ndarray:
        """Sum float64 numbers over the ranks (metrics, evaluation statistics), elementwise."""
        return np.asarray(values, np.float64)

    def gather_rows(self, a: np.ndarray, axis: int) -> np.ndarray:
        """The global array whose `axis` holds every rank's rows, in rank order, on every rank."""
        return a

    def check_same(self, params: dict[str, np.ndarray]) -> None:
        """RanksDisagree naming the first tensor whose checksum differs between ranks."""

    def barrier(self) -> None:
        """Wait until every rank is here (after rank 0 has written a checkpoint)."""

    def dropout_rng(self, rng: np.random.Generator, n: int, rows: slice):
        """The Generator the forward pass of `rows` of a global batch of n draws dropout masks from."""
        return rng


class MPI(Single):
    """COMM_WORLD through mpi4py (imported here only)."""

    def __init__(self, comm):
        from mpi4py import MPI as mpi

        self._mpi, self.comm = mpi, comm
        self.size, self.rank = comm.Get_size(), comm.Get_rank()
        self.is_root = self.rank == 0
        self._buffer: np.ndarray | None = None

    def rows(self, n: int) -> slice:
        return slice(n * self.rank // self.size, n * (self.rank + 1) // self.size)

    def allreduce(self, grads, share, extras) -> np.ndarray:
        names = list(grads)
        sizes = [grads[k].size for k in names]
        dtype = grads[names[0]].dtype
        total = sum(sizes) + len(extras)
        if self._buffer is None or self._buffer.size != total or self._buffer.dtype != dtype:
            self._buffer = np.empty(total, dtype)
        buf, start = self._buffer, 0
        for k, n in zip(names, sizes):
            np.multiply(grads[k].reshape(-1), share, out=buf[start : start + n])
            start += n
        buf[start:] = extras
        self.comm.Allreduce(self._mpi.IN_PLACE, buf, op=self._mpi.SUM)
        start = 0
        for k, n in zip(names, sizes):
            grads[k] = buf[start : start + n].reshape(grads[k].shape)
            start += n
        return buf[start:].astype(np.float64)

    def shard(self, items):
        return items[self.rank :: self.size]

    def sum(self, values) -> np.ndarray:
        a = np.array(values, np.float64)
        self.comm.Allreduce(self._mpi.IN_PLACE, a, op=self._mpi.SUM)
        return a

    def gather_rows(self, a, axis):
        front = np.ascontiguousarray(np.moveaxis(a, axis, 0))
        out = np.empty((front.shape[0] * self.size, *front.shape[1:]), a.dtype)
        self.comm.Allgather(front, out)
        return np.moveaxis(out, 0, axis)

    def check_same(self, params):
        names = list(params)
        sums = np.array([zlib.crc32(np.ascontiguousarray(params[k]).view(np.uint8)) for k in names], np.int64)
        both = np.concatenate([sums, -sums])
        self.comm.Allreduce(self._mpi.IN_PLACE, both, op=self._mpi.MAX)
        differ = np.flatnonzero(both[: len(names)] != -both[len(names) :])
        if differ.size:
            raise RanksDisagree(
                f"the {self.size} MPI ranks no longer hold the same parameters: {names[differ[0]]} differs "
                f"(checksum on rank {self.rank}: {sums[differ[0]]:08x}); stopping"
            )

    def barrier(self):
        self.comm.Barrier()

    def dropout_rng(self, rng, n, rows):
        return _Rows(rng, n, rows)


class _Rows:
    """A Generator stand-in for dropout masks: draws the mask of all n rows (batch axis 1 of a
    time-major (T, B, H) shape) from `rng` and keeps this rank's rows, so N ranks draw what one
    process draws and the model's rng advances the same on every rank. A mask the whole batch
    shares (weight dropout's, of W's shape) is drawn from `shared`, the generator itself: every
    rank draws the same one."""

    def __init__(self, rng: np.random.Generator, n: int, rows: slice):
        self.rng, self.n, self.rows = rng, n, rows
        self.shared = rng

    def random(self, shape):
        full = self.rng.random((shape[0], self.n, *shape[2:]))
        return full[:, self.rows]


_COMM: Single | None = None


def launched_by_mpi() -> bool:
    """True when an MPI launcher started this process (its environment says so)."""
    return any(v in os.environ for v in LAUNCHER_VARS)


def communicator() -> Single:
    """The communicator of this process: `MPI` under an MPI launcher with more than one rank, else
    `Single`. Under a launcher without mpi4py: UsageError saying how to install it."""
    global _COMM
    if _COMM is None:
        _COMM = Single()
        if launched_by_mpi() and os.environ.get("OMPI_COMM_WORLD_SIZE", os.environ.get("PMI_SIZE")) != "1":
            try:
                from mpi4py import MPI as mpi
            except ImportError:
                raise UsageError(
                    "started by an MPI launcher, but mpi4py is not installed: pip install 'bptt[mpi]'"
                ) from None
            if mpi.COMM_WORLD.Get_size() > 1:
                _COMM = MPI(mpi.COMM_WORLD)
    return _COMM


def check_batch(batch_size: int, comm: Single) -> None:
    """UsageError unless the global --batch-size divides by the number of ranks."""
    if batch_size % comm.size:
        lower = batch_size - batch_size % comm.size
        options = " or ".join(str(b) for b in (lower, lower + comm.size) if b > 0)
        raise UsageError(
            f"--batch-size {batch_size}: the global batch is split over {comm.size} MPI ranks, "
            f"so it must divide by {comm.size}; use {options}"
        )


def loss_normaliser(reduction: str, n_terms: int, n_sequences: int) -> int:
    """What the model's loss divides its sum by (`bptt.layers.losses.row_weights`), up to the
    per-row factor that cancels in a ratio: B for sum-over-time, the loss terms for mean, 1 for sum."""
    if reduction == "sum-over-time":
        return n_sequences
    if reduction == "mean":
        return n_terms
    return 1


def share(reduction: str, local: tuple[int, int], whole: tuple[int, int]) -> float:
    """s_r, the factor of this rank's gradient in the sum: its normaliser over the global one;
    local and whole are (loss terms, sequences)."""
    den = loss_normaliser(reduction, *whole)
    return loss_normaliser(reduction, *local) / den if den else 0.0
