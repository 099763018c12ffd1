"""Whole stored chunks of a zarr (format 2) array, read and decoded, or encoded and written,
in the calling thread.

Written by hand because zarr-python 3 copies every chunk it reads into the output array on
its single event-loop thread per process: the chunk reads of a worker's tasks take turns
there. Measured on a 156 x 512 x 512 float32 chunk (lz4, 2 cores): one read 0.35 s; two
side by side 0.29 s and 0.77 s, while the file reads and the blosc decodes alone run side by
side. A task that needs one whole chunk reads its file and decodes it here (the format-2
layout: one file per chunk named by its indices, compressor and filters from numcodecs),
into the array it returns. Writes took turns there the same way (zarr encodes every chunk
on that thread too): a task that made one whole chunk encodes and writes it here (a big
local one with direct I/O: `directio`)."""

from __future__ import annotations

import mmap
from dataclasses import dataclass

import numcodecs
import numpy as np
from numcodecs.compat import ensure_bytes

from geoclass import directio, fs


@dataclass(frozen=True)
class ChunkSpec:
    """How the chunks of one stored array are laid out and encoded."""

    dtype: np.dtype
    chunks: tuple[int, ...]
    fill_value: object
    separator: str
    compressor: dict | None
    filters: tuple[dict, ...]


def chunk_spec(meta: dict) -> ChunkSpec | None:
    """The chunk layout of a format-2 `.zarray` document, or None when this reader does not
    handle it (Fortran order, object, structured or non-native byte order dtypes: zarr's own
    reader does)."""
    if meta.get("zarr_format") != 2 or meta.get("order", "C") != "C":
        return None
    if not isinstance(meta.get("dtype"), str):
        return None
    dtype = np.dtype(meta["dtype"])
    if dtype.kind not in "biuf" or not dtype.isnative:
        return None
    fill = meta.get("fill_value")
    if isinstance(fill, str):  # "NaN", "Infinity", "-Infinity"
        fill = float(fill)
    return ChunkSpec(dtype, tuple(meta["chunks"]), 0 if fill is None else fill,
                     meta.get("dimension_separator", "."), meta.get("compressor"),
                     tuple(meta.get("filters") or ()))


def read_chunk(array_path, spec: ChunkSpec, index: tuple[int, ...],
               shape: tuple[int, ...]) -> np.ndarray:
    """The stored chunk `index` of the array at `array_path` (local or remote), cut to
    `shape` (edge chunks are stored whole); the fill value where the chunk was not written."""
    key = spec.separator.join(map(str, index))
    path = fs.as_path(array_path) / key
    try:
        if fs.is_url(path):
            with fs.open(path) as f:
                values = _decode(f.read(), spec)
        else:
            values = _decode_local(path, spec)
    except FileNotFoundError:
        return np.full(shape, spec.fill_value, spec.dtype)
    if values.shape != shape:  # an edge chunk: contiguous, as the kernels expect
        values = np.ascontiguousarray(values[tuple(slice(0, n) for n in shape)])
    return values


def _decode_local(path, spec: ChunkSpec) -> np.ndarray:
    """The chunk file `path` decoded from its pages in the page cache (memory-mapped): no
    copy of the encoded bytes into a fresh buffer first (on a 156 x 512 x 512 float32 chunk,
    ~130 MB, that copy and its new pages took about as long as the decode)."""
    with open(path, "rb") as f:
        try:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file
            return _decode(f.read(), spec)
    with mapped:
        view = memoryview(mapped)
        try:
            return _decode(view, spec)  # never a view of `data`: the mapping closes here
        finally:
            view.release()


def _decode(data, spec: ChunkSpec) -> np.ndarray:
    if spec.compressor is not None and not spec.filters:  # decoded straight into the array
        out = np.empty(spec.chunks, spec.dtype)
        numcodecs.get_codec(spec.compressor).decode(data, out=out)
        return out
    chunk = data if spec.compressor is None else \
        numcodecs.get_codec(spec.compressor).decode(data)
    for codec in reversed(spec.filters):
        chunk = numcodecs.get_codec(codec).decode(chunk)
    return np.frombuffer(chunk, spec.dtype).reshape(spec.chunks).copy()


def write_chunk(array_path, spec: ChunkSpec, index: tuple[int, ...], values: np.ndarray) -> int:
    """Encode `values`, the chunk `index` (cut at the array's edge), and write it as the
    stored chunk of the array at `array_path` (local or remote), as zarr would: an edge chunk
    stored whole, padded with the fill value. Returns the bytes written."""
    if values.shape != spec.chunks:
        whole = np.full(spec.chunks, spec.fill_value, spec.dtype)
        whole[tuple(slice(0, n) for n in values.shape)] = values
        values = whole
    data = _encode(np.ascontiguousarray(values, spec.dtype), spec)
    target = fs.as_path(array_path) / spec.separator.join(map(str, index))
    if spec.separator == "/" and not fs.is_url(target):
        target.parent.mkdir(parents=True, exist_ok=True)
    if fs.is_url(target):
        with fs.open(target, "wb") as f:
            f.write(data)
    else:  # big chunks of a local cube past the page cache
        directio.write_file(target, data)
    return len(data)


def may_write_direct(array_path, spec: ChunkSpec) -> bool:
    """Whether `write_chunk` may write a chunk of this array through `directio` (a local
    array whose chunk, encoded, may reach its size: a codec adds at most a few hundred bytes
    to what it cannot compress), leaving the writing thread an aligned buffer."""
    if fs.is_url(array_path):
        return False
    encoded = int(np.prod(spec.chunks)) * spec.dtype.itemsize + directio.ALIGN
    return directio.takes_direct_path(fs.as_path(array_path) / "0", encoded)


def _encode(values: np.ndarray, spec: ChunkSpec) -> bytes:
    chunk = values
    for codec in spec.filters:
        chunk = numcodecs.get_codec(codec).encode(chunk)
    if spec.compressor is not None:
        chunk = numcodecs.get_codec(spec.compressor).encode(chunk)
    return ensure_bytes(chunk)
