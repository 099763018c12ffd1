"""kernels.flags.flag_values: the pixels numpy's comparisons flag, for integer and float
blocks, bounds that are not integers or lie outside the type, NaN and None."""

import numpy as np
import pytest

from geoclass.kernels.flags import flag_values


def _numpy(values, equal, low, high):
    bad = np.zeros(values.shape[1:], bool)
    for e in equal:
        if e is not None:
            bad |= (values == e).any(axis=0)
    if low is not None:
        bad |= (values < low).any(axis=0)
    if high is not None:
        bad |= (values > high).any(axis=0)
    return bad


@pytest.mark.parametrize("dtype", ["int16", "uint16", "uint8", "int32", "float32", "float64"])
@pytest.mark.parametrize("equal, low, high", [
    ((-10000,), None, None),
    ((0, None), 1.5, 9000.5),
    ((None,), -0.5, None),
    ((3.5,), None, 250),
    ((-40000, 70000), -40000, 70000),
    ((), 100, 99),
    ((0, 7), None, None),
])
def test_the_pixels_numpy_flags(dtype, equal, low, high):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    lo, hi = (max(info.min, -12000), min(info.max, 12000)) if info else (-12000, 12000)
    values = rng.integers(lo, hi, (3, 40, 50)).astype(dtype)
    if info is None:
        values[0, :5] = np.nan
        values[1, 5:8] += 0.5
    invalid = np.zeros((40, 50), bool)
    invalid[0, 0] = True  # kept: the flags are added
    expected = _numpy(values, equal, low, high) | invalid
    flag_values(values, invalid, equal, low, high)
    np.testing.assert_array_equal(invalid, expected)


def test_nan_flags_nothing():
    values = np.full((2, 4, 4), np.nan, np.float32)
    invalid = np.zeros((4, 4), bool)
    flag_values(values, invalid, (np.nan,))
    assert not invalid.any()
