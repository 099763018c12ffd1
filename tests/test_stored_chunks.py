"""Stored chunks read in the task's thread (storedchunks through lazy.open_zarr): the same
values as zarr's own reader, for edge chunks, chunks never written, filters, no compressor;
variables xarray masks or zarr lays out otherwise are left to zarr. Chunks written in the
task's thread (lazy.write_dataset): the very files zarr writes."""

from pathlib import Path

import dask.array as da
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


def _files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


CODECS = [
    {"compressors": [numcodecs.Blosc("lz4", 5, numcodecs.Blosc.BITSHUFFLE)]},
    {"compressors": [numcodecs.Zstd(1)], "filters": [numcodecs.Delta("<i2")]},
    {"compressors": None},
]


@pytest.mark.parametrize("codecs", CODECS)
def test_chunks_written_in_the_task_are_zarrs_own_files(tmp_path, codecs):
    """Same bytes as xarray and zarr write, edge chunks (padded with the fill value) and
    metadata included, for int16 observations, a float variable with NaN and a boolean."""
    rng = np.random.default_rng(1)
    obs = rng.integers(-3000, 9000, (3, 70, 45)).astype(np.int16)
    mean = rng.normal(size=(70, 45)).astype(np.float32)
    mean[5:40, 3:9] = np.nan
    dataset = xr.Dataset({"obs": (("b", "y", "x"), da.from_array(obs, chunks=(3, 32, 20))),
                          "mean": (("y", "x"), da.from_array(mean, chunks=(32, 20))),
                          "clear": (("y", "x"), da.from_array(mean > 0, chunks=(32, 20)))},
                         coords={"b": ["B2", "B3", "B4"]}, attrs={"tile": "T31TCJ"})
    codecs = {"filters": None, **codecs} if "filters" not in codecs else codecs
    encoding = {"obs": codecs}
    ours, theirs = tmp_path / "ours.zarr", tmp_path / "theirs.zarr"
    lazy.write_dataset(dataset, ours, "writing", encoding)
    dataset.to_zarr(theirs, mode="w", consolidated=True, zarr_format=2, encoding=encoding,
                    write_empty_chunks=True)
    assert (ours / "obs" / "2.2").exists() or (ours / "obs" / "0.2.2").exists()
    assert _files(ours) == _files(theirs)
    np.testing.assert_array_equal(xr.open_zarr(ours)["obs"].values, obs)
    np.testing.assert_array_equal(xr.open_zarr(ours)["mean"].values, mean)


def test_chunks_are_written_by_the_tasks_that_make_them(tmp_path, monkeypatch):
    calls = []
    write = storedchunks.write_chunk
    monkeypatch.setattr(storedchunks, "write_chunk",
                        lambda *args: calls.append(args[2]) or write(*args))
    """Georeferenced (rioxarray's grid_mapping), as the cubes and maps are."""
    import rioxarray  # noqa: F401

    values = da.arange(60 * 50, dtype=np.int32).reshape(60, 50).rechunk((32, 32))
    dataset = xr.Dataset({"v": (("y", "x"), values)}).rio.write_crs("EPSG:32631")
    assert dataset["v"].encoding["grid_mapping"] == "spatial_ref"
    lazy.write_dataset(dataset, tmp_path / "w.zarr", "w")
    assert sorted(calls) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    np.testing.assert_array_equal(xr.open_zarr(tmp_path / "w.zarr")["v"].values,
                                  values.compute())


@pytest.mark.parametrize("variable, encoding", [
    (np.arange(16, dtype=np.float64).reshape(4, 4),  # scaled to int16
     {"dtype": "int16", "scale_factor": 0.5, "_FillValue": -1}),
    (np.where(np.eye(4) > 0, np.nan, 1.0).astype(np.float32),  # NaN stored as 3.0
     {"_FillValue": 3.0}),
])
def test_variables_stored_otherwise_are_left_to_xarray(tmp_path, monkeypatch, variable,
                                                       encoding):
    monkeypatch.setattr(storedchunks, "write_chunk", None)  # must not be called
    dataset = xr.Dataset({"v": (("y", "x"), da.from_array(variable, chunks=2))})
    lazy.write_dataset(dataset, tmp_path / "w.zarr", "w", {"v": {"chunks": (2, 2),
                                                                  **encoding}})
    np.testing.assert_array_equal(xr.open_zarr(tmp_path / "w.zarr")["v"].values, variable)


def test_local_chunks_are_decoded_from_their_mapped_pages(tmp_path):
    # the encoded bytes are read through a memory map (no copy into a fresh buffer); the
    # array returned owns its memory, and an empty chunk file is read without a map
    spec = storedchunks.ChunkSpec(np.dtype("<f4"), (3, 4), 0.0, ".", None, ())
    values = np.arange(12, dtype="<f4").reshape(3, 4)
    (tmp_path / "0.0").write_bytes(values.tobytes())
    back = storedchunks.read_chunk(tmp_path, spec, (0, 0), (3, 4))
    np.testing.assert_array_equal(back, values)
    assert back.flags.owndata and back.flags.writeable
    (tmp_path / "0.0").unlink()  # nothing of the file is held
    empty = storedchunks.ChunkSpec(np.dtype("<f4"), (0, 4), 0.0, ".", None, ())
    (tmp_path / "1.0").write_bytes(b"")
    assert storedchunks.read_chunk(tmp_path, empty, (1, 0), (0, 4)).shape == (0, 4)


@pytest.mark.parametrize("codec", [
    numcodecs.Blosc("lz4", 5, numcodecs.Blosc.BITSHUFFLE),
    numcodecs.Blosc("zstd", 3, numcodecs.Blosc.AUTOSHUFFLE),
    numcodecs.Blosc("blosclz", 1, numcodecs.Blosc.NOSHUFFLE, blocksize=4096),
    numcodecs.Zstd(1),
])
@pytest.mark.parametrize("dtype", ["<i2", "|u1", "<f4"])
@pytest.mark.parametrize("behind", [False, True])
def test_a_chunk_is_the_bytes_its_codec_makes(tmp_path, monkeypatch, codec, dtype, behind):
    """Blosc chunks are compressed by numcodecs' own c-blosc into a reused aligned buffer
    (written from it, past the page cache where allowed): the bytes numcodecs makes."""
    from geoclass import directio

    monkeypatch.setattr(directio, "DIRECT_MIN", 1)  # the direct path too, where allowed
    rng = np.random.default_rng(3)
    values = (rng.integers(0, 3000, (5, 40, 33)) // 7).astype(dtype)
    spec = storedchunks.ChunkSpec(np.dtype(dtype), (5, 40, 33), 0, ".", codec.get_config(), ())
    for index in [(0, 0, 0), (0, 0, 1)]:  # the second reuses the first's buffer
        written = storedchunks.write_chunk(tmp_path, spec, index, values, behind)
        directio.settle(tmp_path)
        stored = (tmp_path / ".".join(map(str, index))).read_bytes()
        assert stored == codec.encode(values)
        assert written == len(stored)
    np.testing.assert_array_equal(
        storedchunks.read_chunk(tmp_path, spec, (0, 0, 1), values.shape), values)
