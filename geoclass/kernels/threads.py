"""Threads of the compiled kernels: how many one dask task may use, and numba's setting for one
call (numba's thread count is per calling thread; its default workqueue layer is not
thread-safe, so parallel loops of concurrent tasks take turns on it). A call on one thread
runs the kernel's serial twin instead, outside numba's threading layer and its lock: the
usual case on a dask worker with a thread per core, whose tasks then run their kernels side
by side."""

from __future__ import annotations

import contextlib
import os
import threading
import types

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


def serial_twin(kernel):
    """`kernel` (a numba `parallel=True` function) compiled without parallel loops (its
    `prange` runs as `range`) and without the GIL. It is cached under a name of its own:
    numba's cache key does not tell a parallel build from a serial one."""
    func = kernel.py_func
    twin = types.FunctionType(func.__code__, func.__globals__, f"{func.__name__}_serial",
                              func.__defaults__, func.__closure__)
    twin.__qualname__ = f"{func.__qualname__}_serial"
    twin.__module__ = func.__module__
    return numba.njit(nogil=True, cache=True)(twin)


class ByThreads:
    """A numba `parallel=True` kernel called by this thread's numba thread count: on one
    thread its serial twin, without lock; else the parallel kernel under `layer_guard`."""

    def __init__(self, kernel):
        self.parallel = kernel
        self.serial = serial_twin(kernel)

    def choose(self):
        """(kernel, lock) for the calling thread."""
        if numba.get_num_threads() == 1:
            return self.serial, contextlib.nullcontext()
        return self.parallel, layer_guard()

    def __call__(self, *args):
        kernel, lock = self.choose()
        with lock:
            return kernel(*args)
