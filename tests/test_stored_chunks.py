"""Stored chunks read in the task's thread (storedchunks through lazy.open_zarr): the same
values as zarr's own reader, for edge chunks, chunks never written, filters, no compressor;
variables xarray masks or zarr lays out otherwise are left to zarr."""

import numcodecs
import numpy as np
import pytest
import xarray as xr

from geoclass import lazy, storedchunks


def _write(path, variables: dict, encoding: dict) -> None:
    xr.Dataset(variables).to_zarr(path, mode="w", consolidated=True, zarr_format=2,
                                  encoding=encoding)


@pytest.mark.parametrize("codecs", [
    {"compressors": [numcodecs.Blosc("lz4", 5, numcodecs.Blosc.BITSHUFFLE)]},
    {"compressors": [numcodecs.Zstd(1)], "filters": [numcodecs.Delta("<i2")]},
    {"compressors": None},
])
def test_chunks_read_as_zarr_reads_them(tmp_path, codecs):
    rng = np.random.default_rng(0)
    values = rng.integers(-3000, 9000, (3, 70, 45)).astype(np.int16)
    path = tmp_path / "c.zarr"
    _write(path, {"obs": (("b", "y", "x"), values)},
           {"obs": {"chunks": (3, 32, 20), **codecs}})
    ours, theirs = lazy.open_zarr(path)["obs"], xr.open_zarr(path)["obs"]
    assert ours.data.name.startswith("stored-obs-")  # read by storedchunks
    assert ours.chunks == theirs.chunks == ((3,), (32, 32, 6), (20, 20, 5))
    assert ours.dtype == np.int16
    np.testing.assert_array_equal(ours.values, values)
    edge = ours.data.blocks[0, 2, 2].compute()
    assert edge.shape == (3, 6, 5) and edge.flags.c_contiguous and edge.flags.writeable


def test_chunk_never_written_is_the_fill_value(tmp_path):
    values = np.full((40, 40), np.nan, np.float32)
    values[:20, :20] = 1.5
    path = tmp_path / "c.zarr"
    _write(path, {"f": (("y", "x"), values)}, {"f": {"chunks": (20, 20)}})
    assert not (path / "f" / "1.1").exists()  # zarr writes no chunk that is only fill
    ours = lazy.open_zarr(path)["f"]
    assert ours.data.name.startswith("stored-f-")
    np.testing.assert_array_equal(ours.values, values)


def test_masked_or_scaled_variables_are_left_to_zarr(tmp_path):
    path = tmp_path / "c.zarr"
    _write(path, {"masked": (("y", "x"), np.arange(16, dtype=np.float32).reshape(4, 4)),
                  "scaled": (("y", "x"), np.arange(16, dtype=np.float64).reshape(4, 4))},
           {"masked": {"_FillValue": 3.0, "chunks": (2, 2)},
            "scaled": {"dtype": "int16", "scale_factor": 0.5, "_FillValue": -1,
                       "chunks": (2, 2)}})
    ds = lazy.open_zarr(path)
    assert not ds["masked"].data.name.startswith("stored-")
    assert not ds["scaled"].data.name.startswith("stored-")
    assert np.isnan(ds["masked"].values[0, 3])
    np.testing.assert_array_equal(ds["scaled"].values, np.arange(16).reshape(4, 4))


def test_layouts_zarr_reads_itself():
    base = {"zarr_format": 2, "chunks": [4], "compressor": None, "filters": None,
            "fill_value": 0, "order": "C"}
    assert storedchunks.chunk_spec({**base, "dtype": "<f4"}).fill_value == 0
    assert np.isnan(storedchunks.chunk_spec({**base, "dtype": "<f4",
                                              "fill_value": "NaN"}).fill_value)
    assert storedchunks.chunk_spec({**base, "dtype": "<f4", "order": "F"}) is None
    assert storedchunks.chunk_spec({**base, "dtype": ">f4"}) is None
    assert storedchunks.chunk_spec({**base, "dtype": "|O"}) is None
    assert storedchunks.chunk_spec({**base, "dtype": [["a", "<i2"]]}) is None
