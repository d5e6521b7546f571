"""BLAS threads for the time loops: one thread for a small per-step GEMM.

Inside the forward and backward time loops every step is one small GEMM,
(B, H) x (H, H). Splitting that over BLAS threads buys little below a few
million multiply-adds and costs a hand-off per step; on a busy machine, where a
BLAS thread has to wait for a core, the hand-off costs far more than the GEMM.
Measured on this project's 2-core machine with other jobs running (OpenBLAS,
float32, one step): 32x128x128 took 10.5 us on one thread against 213 us to
24 ms on two; 20x256x256 40 us against 0.3 to 7 ms. So the loops run with one
BLAS thread when B*H*H is at most SMALL (and above OWN, below which OpenBLAS
already uses one thread and switching would only cost time); larger steps
(and the big GEMMs outside the loops) keep every thread.

The same holds for a whole step whose largest GEMM is small (batch 1: every
GEMM is a few hundred thousand multiply-adds, each a thread hand-off), so
`single_thread_when_small` runs RNNModel.forward and .backward on one thread
when (T*B) * H * max(H, K) is at most STEP_SMALL. Measured in interleaved A/B
rounds at load 7.8 on the 2 cores: char-small-B32 (dW 1600x128x128) ran 6.2x
faster on one thread; long-many-to-one (dW 16000x128x128, above the bound)
1.03x. (An idle machine was not available to measure the cost there.)

This needs threadpoolctl (the `fast` extra, also in `train` and `test`); without
it nothing changes.

`pool()` is the two-thread pool that large elementwise work (the softmax over a
big vocabulary, optimizer updates of millions of parameters) is split over:
NumPy's ufuncs release the GIL, so two halves of an array run on two cores.

`worker()` is one more thread, for work that overlaps a time loop running on
one BLAS thread (`loop_is_single`): the gated cells' backward loop hands each
finished block of steps to it for its weight-gradient GEMMs
(`bptt.layers.gated.overlapped`), so those run on the second core while the
loop goes on. One thread, so the loop always keeps a core.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading

import numpy as np

SMALL = 2**21  # multiply-adds per step (B*H*H) up to which the loop runs on one thread
STEP_SMALL = 2**25  # multiply-adds of a step's largest GEMM up to which the whole step runs on one thread
OWN = 2**18  # below this OpenBLAS already uses one thread (SMP_THRESHOLD_MIN * GEMM_MULTITHREAD_THRESHOLD)

_controller = None
_pool = None
_worker = None
_pool_lock = threading.Lock()
_one_thread = 0  # depth of the open one-thread limits (threads_for); inside one, another changes nothing


def pool():
    """A two-thread pool for elementwise work (made once), or None with fewer than 2 usable cores."""
    global _pool
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if cores < 2:
        return None
    with _pool_lock:
        if _pool is None:
            from concurrent.futures import ThreadPoolExecutor

            _pool = ThreadPoolExecutor(2, thread_name_prefix="bptt")
    return _pool


def worker():
    """A one-thread executor for work that overlaps a time loop on the second core (made once),
    or None with fewer than 2 usable cores. One thread, so the overlapped work never takes both
    cores from the loop."""
    global _worker
    if pool() is None:
        return None
    with _pool_lock:
        if _worker is None:
            from concurrent.futures import ThreadPoolExecutor

            _worker = ThreadPoolExecutor(1, thread_name_prefix="bptt-overlap")
    return _worker


def _forget_pool() -> None:
    """In a forked child the pool's threads do not exist: make a new pool when one is needed."""
    global _pool, _worker, _pool_lock
    _pool, _worker, _pool_lock = None, None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def halves(fn, n: int, step: int, parallel: bool) -> None:
    """fn(start, stop, worker) over [0, n): on two threads (workers 1 and 2, the split at a
    multiple of `step`) when `parallel` and a pool exists, else fn(0, n, 0) here."""
    p = pool() if parallel else None
    half = (n // 2 // step) * step
    if p is None or half == 0:
        fn(0, n, 0)
        return
    for f in [p.submit(fn, 0, half, 1), p.submit(fn, half, n, 2)]:
        f.result()


def _get_controller():
    global _controller
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _controller = False
        else:
            _controller = ThreadpoolController()
    return _controller


def threads_for(macs: int, small: int | None = None):
    """A context for GEMMs of at most `macs` multiply-adds: one BLAS thread if at most
    `small` (default SMALL). Inside another one-thread context it changes nothing and costs
    nothing (threadpoolctl's limit takes some 50 us: a step enters several of these)."""
    return one_thread() if OWN < macs <= (SMALL if small is None else small) else contextlib.nullcontext()


def one_thread():
    """A context in which BLAS runs on one thread (without threadpoolctl: nothing changes)."""
    controller = _get_controller()
    if not controller or _one_thread:
        return contextlib.nullcontext()
    return _one_blas_thread(controller)


@contextlib.contextmanager
def _one_blas_thread(controller):
    global _one_thread
    with controller.limit(limits=1, user_api="blas"):
        _one_thread += 1
        try:
            yield
        finally:
            _one_thread -= 1


def loop_is_single(B: int, H: int) -> bool:
    """Whether a time loop of (B, H) x (H, H) steps runs its GEMMs on one BLAS thread
    (`loop_threads`), leaving the second core free for work that overlaps the loop."""
    return B * H * H <= (SMALL if _get_controller() else OWN)


def loop_threads(B: int, H: int):
    """A context for a time loop of (B, H) x (H, H) steps."""
    return threads_for(B * H * H)


def single_thread_when_small(method):
    """Decorator for RNNModel.forward(inputs, ...) and .backward(fwd, ...): the whole
    call on one BLAS thread when its largest GEMM, (T*B) x H x max(H, K), is small."""

    @functools.wraps(method)
    def wrapper(self, first, *args, **kwargs):
        if hasattr(first, "X"):  # a Forward
            rows = first.X.shape[0] * first.X.shape[1]
        else:
            shape = np.shape(first)  # ids (B, T[, 1 + F]) or (B,); features (B, T, D) or (B, D)
            rows = int(np.prod(shape[:2] if self.uses_tokens else shape[:-1]))
        with threads_for(rows * self.hidden_size * max(self.hidden_size, self.output_size), STEP_SMALL):
            return method(self, first, *args, **kwargs)

    return wrapper
