"""Kernels on one thread run their serial twin, outside numba's threading layer and its lock,
so that a dask worker's tasks run their kernels side by side; the twin gives the same values."""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from geoclass.kernels import fastboost, fastforest, threads, timeseries


def test_one_thread_takes_the_serial_twin_without_the_lock():
    for kernels in [timeseries._gapfill_rows, fastforest._simd_kernel,
                    fastforest._scalar_kernel, fastboost._exit_kernel, fastboost._simd_kernel,
                    fastboost._scalar_kernel]:
        parallel, serial = kernels.parallel, kernels.serial
        # cached under a name of its own (numba's cache key ignores `parallel`)
        assert serial.py_func.__qualname__ == parallel.py_func.__qualname__ + "_serial"
        assert serial.targetoptions.get("nogil") and not serial.targetoptions.get("parallel")
        with threads.numba_threads(1):
            kernel, lock = kernels.choose()
            assert kernel is serial and isinstance(lock, contextlib.nullcontext)
        with threads.numba_threads(2):
            kernel, _ = kernels.choose()  # under layer_guard
            assert kernel is parallel


def test_gapfilling_is_the_same_on_one_thread_two_threads_and_concurrent_calls():
    rng = np.random.default_rng(3)
    values = rng.random((9, 3, 40, 37), dtype=np.float32)
    values[rng.random(values.shape) < 0.4] = np.nan
    values[:, :, 0, 0] = np.nan  # never clear
    obs_days = np.sort(rng.choice(300, 9, replace=False)).astype(np.float64)
    out_days = np.arange(-10, 320, 10, dtype=np.float64)
    reference = timeseries.gapfill_reference(values, obs_days, out_days)
    one = timeseries.gapfill_block(values, obs_days, out_days, n_threads=1)
    np.testing.assert_array_equal(one, reference)
    np.testing.assert_array_equal(
        timeseries.gapfill_block(values, obs_days, out_days, n_threads=2), reference)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(
            lambda _: timeseries.gapfill_block(values, obs_days, out_days, n_threads=1),
            range(8)))
    for result in results:
        np.testing.assert_array_equal(result, reference)
