"""Masked copies of a block (kernels.select): the same values as numpy's masked copy, for
every dtype the sensors store, NaN and the sentinels included."""

import numpy as np
import pytest

from geoclass.kernels.select import copy_where, fill_where


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.uint8, np.int32, np.float32,
                                   np.float64, np.int64])
def test_copy_and_fill_as_numpy(dtype):
    rng = np.random.default_rng(1)
    values = (rng.random((3, 17, 29)) * 1000 - 200).astype(dtype)
    out = (rng.random((3, 17, 29)) * 1000).astype(dtype)
    mask = rng.random((17, 29)) > 0.4
    expected = out.copy()
    np.copyto(expected, values, where=mask)
    copy_where(out, values, mask)
    np.testing.assert_array_equal(out, expected)

    kind = np.dtype(dtype).kind
    sentinel = np.nan if kind == "f" else np.iinfo(dtype).min
    np.copyto(expected, np.asarray(sentinel, dtype), where=~mask)
    fill_where(out, sentinel, ~mask)
    np.testing.assert_array_equal(out, expected)  # NaN == NaN for this assertion
    if kind == "f":
        assert np.isnan(out[:, ~mask]).all() and not np.isnan(out[:, mask]).any()


def test_nan_values_are_copied_as_bits():
    values = np.full((2, 2, 3), np.nan, np.float32)
    out = np.zeros((2, 2, 3), np.float32)
    mask = np.array([[True, False, True], [False, False, True]])
    copy_where(out, values, mask)
    assert np.isnan(out[:, mask]).all() and (out[:, ~mask] == 0).all()


def test_refuses_mixed_types_and_strided_blocks():
    with pytest.raises(TypeError, match="int16"):
        copy_where(np.zeros((1, 2, 2), np.float32), np.zeros((1, 2, 2), np.int16),
                   np.ones((2, 2), bool))
    with pytest.raises(ValueError, match="C-contiguous"):
        fill_where(np.zeros((1, 4, 4), np.int16)[:, ::2], 0, np.ones((2, 4), bool))
