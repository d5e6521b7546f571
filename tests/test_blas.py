"""bptt.blas: a one-thread limit inside another is free and leaves the outer one in force; the overlap
worker is one thread, made once."""

from __future__ import annotations

import contextlib

from threadpoolctl import threadpool_info

from bptt import blas


def blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_a_one_thread_limit_inside_another_costs_nothing_and_both_restore():
    before = blas_threads()
    with blas.threads_for(blas.SMALL):
        assert set(blas_threads()) == {1}
        inner = blas.threads_for(blas.SMALL)
        assert isinstance(inner, contextlib.nullcontext)  # no second threadpoolctl limit
        with inner:
            assert set(blas_threads()) == {1}
        assert set(blas_threads()) == {1}
    assert blas_threads() == before
    with blas.threads_for(blas.SMALL):  # the depth went back to 0: a new outer limit is a real one
        assert set(blas_threads()) == {1}
    assert blas_threads() == before


def test_the_overlap_worker_is_one_thread_made_once():
    w = blas.worker()
    if blas.pool() is None:  # fewer than 2 usable cores: nothing to overlap with
        assert w is None
        return
    assert w is blas.worker() and w._max_workers == 1
