"""Invalid pixels of a (B, h, w) block flagged from its values, in one pass.

Written by hand because numpy needs one pass and one temporary per test (equal to the
file's nodata, to the sensor's, below or above the valid range), then one more per band to
reduce over the bands; the cube build tests every band of every window of every date. The
bounds are turned into the values' own type first (integers compared as integers), so that
the compiler vectorises the tests; the results are those of numpy's comparisons."""

from __future__ import annotations

import math

import numba
import numpy as np


def flag_values(values: np.ndarray, invalid: np.ndarray, equal=(), low=None, high=None) -> None:
    """invalid[y, x] |= some band b has values[b, y, x] equal to one of `equal` (at most two;
    None and NaN match nothing), below `low` or above `high` (in place; `values` (B, h, w),
    `invalid` (h, w) bool, C-contiguous)."""
    equal = [e for e in equal if e is not None and not math.isnan(e)]
    if len(equal) > 2:
        raise ValueError("flag_values takes at most two values to flag")
    values = np.ascontiguousarray(values)
    dtype = values.dtype
    if dtype.kind == "f":  # the bounds in the values' type, as numpy compares them
        low = -np.inf if low is None else low
        high = np.inf if high is None else high
        with np.errstate(over="ignore"):
            _flag(values, invalid, np.array(equal, dtype), dtype.type(low), dtype.type(high))
        return
    info = np.iinfo(dtype)
    low = info.min if low is None else max(math.ceil(low), info.min)  # x < low: x < ceil(low)
    high = info.max if high is None else min(math.floor(high), info.max)
    if low > info.max or high < info.min:  # no value is in the valid range
        invalid[...] = True
        return
    exact = [int(e) for e in equal if float(e).is_integer() and info.min <= e <= info.max]
    _flag(values, invalid, np.array(exact, dtype), dtype.type(low), dtype.type(high))


@numba.njit(nogil=True, cache=True)
def _flag(values, invalid, equal, low, high):
    first = equal[0] if len(equal) > 0 else low  # `low` itself: x == low never flags alone
    second = equal[1] if len(equal) > 1 else first
    use = len(equal) > 0
    for b in range(values.shape[0]):
        for i in range(values.shape[1]):
            v, bad = values[b, i], invalid[i]
            for j in range(values.shape[2]):
                x = v[j]
                bad[j] |= (use & ((x == first) | (x == second))) | (x < low) | (x > high)
