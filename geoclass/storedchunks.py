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

import ctypes
import mmap
from dataclasses import dataclass

import numcodecs
import numcodecs.blosc
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
    path = chunk_path(array_path, spec, index)
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


def write_chunk(array_path, spec: ChunkSpec, index: tuple[int, ...], values: np.ndarray,
                behind: bool = False) -> int:
    """Encode `values`, the chunk `index` (cut at the array's edge), and write it as the
    stored chunk of the array at `array_path` (local or remote), as zarr would: an edge chunk
    stored whole, padded with the fill value. With `behind`, a local chunk is handed to this
    process's writer threads (`directio.write_behind`: `directio.settle` waits for it).
    Returns the bytes written."""
    if values.shape != spec.chunks:
        whole = np.full(spec.chunks, spec.fill_value, spec.dtype)
        whole[tuple(slice(0, n) for n in values.shape)] = values
        values = whole
    values = np.ascontiguousarray(values, spec.dtype)
    target = chunk_path(array_path, spec, index)
    if fs.is_url(target):
        with fs.open(target, "wb") as f:
            data = _encode(values, spec)
            f.write(data)
        return len(data)
    if spec.separator == "/":
        target.parent.mkdir(parents=True, exist_ok=True)
    # big chunks of a local cube past the page cache, from an aligned buffer (directio)
    buf, size = _blosc_into_buffer(values, spec) or directio.in_buffer(_encode(values, spec))
    if behind:
        directio.write_behind(target, buf, size)
        return size
    try:
        directio.write_buffer(target, buf, size)
    finally:
        directio.give_back(buf)
    return size


def chunk_path(array_path, spec: ChunkSpec, index: tuple[int, ...]):
    """Where the stored chunk `index` of the array at `array_path` is."""
    return fs.as_path(array_path) / spec.separator.join(map(str, index))


def short_chunks(array_path, spec: ChunkSpec, sizes: np.ndarray) -> list[str]:
    """The chunks of a local array whose file is missing or shorter than `sizes` (bytes
    written, by chunk index) says: what a worker lost before its writes were done leaves."""
    short = []
    for index in np.ndindex(sizes.shape):
        target = chunk_path(array_path, spec, index)
        try:
            size = target.stat().st_size
        except FileNotFoundError:
            size = -1
        if size != sizes[index]:
            short.append(str(target))
    return short


def _blosc_compress_ctx():
    """c-blosc's `blosc_compress_ctx`, as numcodecs' own extension holds it; None where that
    extension does not export it (numcodecs' Blosc codec is then used as it is)."""
    try:
        function = ctypes.CDLL(numcodecs.blosc.__file__).blosc_compress_ctx
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_size_t,
                         ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p,
                         ctypes.c_size_t, ctypes.c_int]
    function.restype = ctypes.c_int
    return function


# numcodecs' Blosc codec returns each chunk in a new bytes object: 17,000 fresh pages per
# 75 MiB cube chunk, whose faults cost the 2048 px cube build 2 s of CPU here (RESULTS.md,
# issue 13), and a copy into the aligned buffer of the direct write. The same c-blosc call
# (numcodecs' compress: one internal thread, the same parameters, so the same bytes) writes
# into a reused aligned buffer instead.
_BLOSC_COMPRESS = _blosc_compress_ctx()
_BLOSC_MAX_OVERHEAD = 16


def _blosc_into_buffer(values: np.ndarray, spec: ChunkSpec) -> tuple[mmap.mmap, int] | None:
    """`values` (C-contiguous) encoded as numcodecs' Blosc codec would, into an aligned
    buffer of `directio` (the caller gives it back): (buffer, size); None for other codecs
    or filters."""
    codec = spec.compressor
    if spec.filters or _BLOSC_COMPRESS is None or not codec or codec.get("id") != "blosc":
        return None
    itemsize, nbytes = values.dtype.itemsize, values.nbytes
    shuffle = codec.get("shuffle", numcodecs.blosc.SHUFFLE)
    if shuffle == numcodecs.blosc.AUTOSHUFFLE:  # numcodecs' rule
        shuffle = numcodecs.blosc.BITSHUFFLE if itemsize == 1 else numcodecs.blosc.SHUFFLE
    capacity = nbytes + _BLOSC_MAX_OVERHEAD
    buf = directio.take_buffer(capacity)
    try:
        dest = ctypes.c_char.from_buffer(buf)
        size = _BLOSC_COMPRESS(int(codec.get("clevel", 5)), int(shuffle), itemsize, nbytes,
                               values.ctypes.data, ctypes.addressof(dest), capacity,
                               codec.get("cname", "lz4").encode(),
                               int(codec.get("blocksize", 0)), 1)
        del dest  # no pointer into the buffer outlives the call
    except BaseException:
        directio.give_back(buf)
        raise
    if size <= 0:
        directio.give_back(buf)
        raise RuntimeError(f"error during blosc compression: {size}")
    return buf, size


def _encode(values: np.ndarray, spec: ChunkSpec) -> bytes:
    chunk = values
    for codec in spec.filters:
        chunk = numcodecs.get_codec(codec).encode(chunk)
    if spec.compressor is not None:
        chunk = numcodecs.get_codec(spec.compressor).encode(chunk)
    return ensure_bytes(chunk)
