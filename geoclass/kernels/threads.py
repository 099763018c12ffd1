"""Threads of the compiled kernels: how many one dask task may use, and numba's setting for one
call (numba's thread count is per calling thread; its default workqueue layer is not
thread-safe, so parallel loops of concurrent tasks take turns on it)."""

from __future__ import annotations

import contextlib
import os
import threading

import numba
from distributed import get_worker

_LOCK = threading.Lock()


def task_threads() -> int:
    """Cores one task may use: the machine's cores shared among the dask worker's threads
    (running tasks), so that numba/BLAS threads do not oversubscribe the cores."""
    cores = os.cpu_count() or 1
    try:
        return max(1, cores // max(1, get_worker().state.nthreads))
    except ValueError:  # not in a dask worker
        return cores


@contextlib.contextmanager
def numba_threads(n_threads: int | None):
    """Run this thread's numba parallel loops on `n_threads` threads (None: unchanged)."""
    previous = numba.get_num_threads()
    if n_threads is not None:
        numba.set_num_threads(max(1, min(int(n_threads), numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def layer_guard():
    """A lock on numba's workqueue threading layer, which is not thread-safe (tbb, omp are)."""
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel loop has run yet
        layer = "workqueue"
    return _LOCK if layer == "workqueue" else contextlib.nullcontext()
