"""The lazy layer: the only module that builds dask graphs block by block (map_blocks,
map_overlap, zarr reads and writes) and that turns a dask block into a raster window.

Kernels stay pure numpy functions of arrays and plain values; the steps describe what to
compute with the functions below; `cluster.compute` runs it."""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import xarray as xr
import zarr
from rasterio.windows import Window

from geoclass import directio, fs, storedchunks
from geoclass.atomic import atomic_output
from geoclass.cluster import compute, run_everywhere
from geoclass.errors import ClusterError
from geoclass.grid import TileGrid
from geoclass.kernels.rasterize import rasterize_block, shapes_by_window


def window_of(block_info) -> Window:
    """The raster window of a dask block (its last two axes are y, x)."""
    (r0, r1), (c0, c1) = block_info[None]["array-location"][-2:]
    return Window(c0, r0, c1 - c0, r1 - r0)


def _call(*blocks, kernel, window, index=False, keep=0, block_info=None, **kwargs):
    if window:
        kwargs["window"] = window_of(block_info)
    if index:
        kwargs["block"] = tuple(block_info[None]["chunk-location"][-2:])
    if keep:  # the kernel sees the blocks as they are; its result gets `keep` new axes
        return kernel(*blocks, **kwargs)[(None,) * keep]
    return kernel(*blocks, **kwargs)


def from_windows(func: Callable, grid: TileGrid, lead: tuple[int, ...], dtype, *args,
                 name: str | None = None) -> da.Array:
    """A (*lead, y, x) array on `grid` whose blocks are `func(*args, window=...)`: one task
    per chunk, reading only its window (sensor files, vectors to burn)."""
    chunks = tuple((n,) for n in lead) + grid.chunks
    meta = np.empty((0,) * (len(lead) + 2), dtype)

    def source(block_info=None):
        return func(*args, window=window_of(block_info))

    return da.map_blocks(source, chunks=chunks, dtype=dtype, meta=meta, name=name)


def map_yx(func: Callable, *arrays, lead: tuple[int, ...], dtype, window: bool = False,
           index: bool = False, chunks=None, name: str | None = None, **kwargs) -> da.Array:
    """A (*lead, y, x) array whose block (i, j) is `func(*blocks, **kwargs)`, the blocks
    (i, j) of `arrays` ((..., y, x), chunked alike in y and x, every leading axis whole);
    `window=True` also passes the block's raster window, `index=True` its (row, column)
    index as `block`; `chunks`: other (y, x) chunks of the result (blocks of another size).
    Blocks are computed where they are consumed: a chain of map_yx calls is one task per
    block."""
    first = arrays[0]
    chunks = tuple((n,) for n in lead) + tuple(chunks or first.chunks[-2:])
    return _per_block(arrays, chunks, dtype, name, kernel=func, window=window, index=index,
                      **kwargs)


def _per_block(arrays, chunks: tuple, dtype, name: str | None = None, **kwargs) -> da.Array:
    """`_call` on the blocks (i, j) of `arrays`, giving blocks of `chunks`. Leading axes of
    the first array that the result drops (each one block) are kept as length-1 axes and
    indexed away afterwards: dask's drop_axis would concatenate (copy) the blocks it drops,
    even a single one (120 MB per block of a 24-date cube)."""
    first, out_ndim = arrays[0], len(chunks)
    extra = first.ndim - out_ndim
    if extra > 0 and all(n == 1 for n in first.numblocks[:extra]):
        kept = da.map_blocks(_call, *arrays, keep=extra, chunks=((1,),) * extra + chunks,
                             dtype=dtype, name=name, meta=np.empty((0,) * first.ndim, dtype),
                             **kwargs)
        return kept[(0,) * extra]
    drop = list(range(extra)) if extra > 0 else None
    new = list(range(-extra)) if extra < 0 else None
    return da.map_blocks(_call, *arrays, drop_axis=drop, new_axis=new, chunks=chunks,
                         dtype=dtype, name=name, meta=np.empty((0,) * out_ndim, dtype),
                         **kwargs)


def map_overlap(func: Callable, *arrays, depth: int, boundary, lead: tuple[int, ...] | None,
                dtype, **kwargs) -> da.Array:
    """`func(*padded_blocks, **kwargs)` where each (y, x) block comes with `depth` pixels of
    its neighbours on every side (`boundary` beyond the array's edge: a value, "nearest",
    "reflect"); `func` returns the block's core, so results do not depend on the chunking."""
    padded = [overlap(a, depth, boundary) for a in arrays]
    first = arrays[0]
    lead = lead if lead is not None else first.shape[:-2]
    return _per_block(padded, tuple((n,) for n in lead) + first.chunks[-2:], dtype,
                      kernel=func, window=False, **kwargs)


def block_sums(func: Callable, array: da.Array, size: int, dtype=np.int64,
               depth: int = 0, boundary=0, **kwargs) -> da.Array:
    """(size,) sum over the blocks of a (y, x) array of `func(block, **kwargs)`, each a
    (size,) vector: a tree reduction of one small vector per block (counts over a whole map
    without holding it). With `depth`, each block comes with `depth` pixels of its
    neighbours (`boundary` past the edges), for functions that look around each pixel."""
    if array.ndim != 2:
        raise ValueError(f"block_sums takes a (y, x) array, got {array.ndim} dimensions")
    source = overlap(array, depth, boundary) if depth else array

    def one(block):
        return np.asarray(func(block, **kwargs), dtype).reshape((1, 1, size))

    chunks = tuple((1,) * len(c) for c in array.chunks) + ((size,),)
    per_block = da.map_blocks(one, source, new_axis=[2], chunks=chunks, dtype=dtype,
                              meta=np.empty((0, 0, 0), dtype))
    return per_block.sum(axis=(0, 1))


def lazy_rasterize(gdf, column: str, grid: TileGrid, dtype=np.int32, fill: int = 0) -> da.Array:
    """A (y, x) dask array of `column` burnt on `grid` (`gdf` in the grid's CRS): one task
    per block that geometries touch, holding only those geometries; a constant elsewhere."""
    per_window = shapes_by_window(gdf, column, grid)
    windows = dict(grid.block_windows())
    rows = []
    for r, h in enumerate(grid.chunks[0]):
        row = []
        for c, w in enumerate(grid.chunks[1]):
            shapes = per_window.get((r, c))
            if shapes:
                task = dask.delayed(rasterize_block, pure=True)(shapes, windows[r, c], grid,
                                                                dtype, fill)
                row.append(da.from_delayed(task, (h, w), dtype=dtype))
            else:
                row.append(da.full((h, w), fill, dtype=dtype))
        rows.append(row)
    return da.block(rows)


def overlap(array: da.Array, depth: int, boundary) -> da.Array:
    """`array` whose (y, x) blocks overlap their neighbours by `depth` pixels."""
    axes = {array.ndim - 2: depth, array.ndim - 1: depth}
    lead = {i: 0 for i in range(array.ndim - 2)}
    edges = {array.ndim - 2: boundary, array.ndim - 1: boundary}
    return da.overlap.overlap(array, depth={**lead, **axes},
                              boundary={**{i: "none" for i in lead}, **edges})


def rechunk_like(array: da.Array, chunks) -> da.Array:
    """`array` with the (y, x) chunks `chunks` and every leading axis in one block."""
    return array.rechunk({**{i: -1 for i in range(array.ndim - 2)},
                          array.ndim - 2: chunks[0], array.ndim - 1: chunks[1]})


def zeros(shape, chunks, dtype) -> da.Array:
    """A lazy array of zeros (a template whose blocks a map_yx function ignores)."""
    return da.zeros(shape, chunks=chunks, dtype=dtype)


def block(array: da.Array, row: int, col: int) -> da.Array:
    """The (row, col) block of a (..., y, x) array, every leading axis whole."""
    return array.blocks[(0,) * (array.ndim - 2) + (row, col)]


def delayed(func: Callable):
    """`func` as a dask task maker (a task per call, its arguments in that task only)."""
    return dask.delayed(func, pure=False)


def compute_all(tasks: list, label: str) -> tuple:
    return compute(*tasks, label=label)


def pick(array: da.Array, rows: np.ndarray, cols: np.ndarray, label: str) -> np.ndarray:
    """(n, *lead) values of a (*lead, y, x) array at pixels (rows, cols), computing only the
    blocks that hold them."""
    starts = [np.concatenate([[0], np.cumsum(c)]) for c in array.chunks[-2:]]
    bi = np.searchsorted(starts[0], rows, side="right") - 1
    bj = np.searchsorted(starts[1], cols, side="right") - 1
    lead = array.shape[:-2]
    out = np.zeros((len(rows), *lead), array.dtype)
    picks = []
    for a, b in sorted(set(zip(bi.tolist(), bj.tolist()))):
        where = np.nonzero((bi == a) & (bj == b))[0]
        task = dask.delayed(_pick)(block(array, a, b), rows[where] - starts[0][a],
                                   cols[where] - starts[1][b])
        picks.append((where, task))
    if picks:
        values = compute(*[t for _, t in picks], label=label)
        for (where, _), value in zip(picks, values):
            out[where] = value
    return out


def _pick(values: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    return np.moveaxis(values[..., rows, cols], -1, 0)


# --- zarr -----------------------------------------------------------------------------------


def write_zarr(arrays: dict[str, da.Array], path: Path, label: str,
               attrs: dict | None = None, encoding: dict | None = None) -> Path:
    """Store named dask arrays in one zarr group at `path`, block by block on the cluster, in
    one computation, atomically."""
    variables = {}
    for name, array in arrays.items():
        if isinstance(array, xr.DataArray):
            variables[name] = array
        else:
            dims = tuple(f"{name}_{i}" for i in range(array.ndim - 2)) + ("y", "x")
            variables[name] = xr.DataArray(array, dims=dims)
    dataset = xr.Dataset(variables, attrs=attrs or {})
    return write_dataset(dataset, path, label, encoding)


def write_array(array: da.Array, path: Path, label: str) -> Path:
    """Store one dask array as a plain zarr array at `path`, block by block, atomically."""
    with atomic_output(path, shared=True) as tmp:
        where, options = fs.zarr_location(tmp)
        compute(array.to_zarr(where, overwrite=True, compute=False, storage_options=options),
                label=label)
    return path


def read_array(path: Path) -> da.Array:
    """A plain zarr array written by `write_array`, lazily."""
    where, options = fs.zarr_location(path)
    return da.from_zarr(where, storage_options=options)


def write_dataset(dataset: xr.Dataset, path: Path, label: str,
                  encoding: dict | None = None) -> Path:
    """Store a lazy dataset as zarr at `path`, block by block on the cluster, atomically.

    xarray writes the metadata (consolidated); each block of a chunked variable stored as it
    is (one block per stored chunk, nothing scaled or masked on the way) is then encoded and
    written by the task that made it (`storedchunks.write_chunk`): zarr would encode and
    write every chunk on its one event-loop thread per process, where the writes of a
    worker's tasks wait their turn. Otherwise xarray writes every variable, every chunk
    included, even one that holds only the fill value (zarr would compare each with it, on
    that same thread)."""
    encoding = encoding or {}
    with atomic_output(path, shared=True) as tmp:
        where, options = fs.zarr_location(tmp)
        write = dataset.to_zarr(where, mode="w", consolidated=True, zarr_format=2,
                                compute=False, encoding=encoding,
                                storage_options=options, write_empty_chunks=True)
        chunk_writes = _chunk_writes(dataset, fs.as_path(tmp), encoding)
        if chunk_writes is None:
            compute(write, label=label)
        else:
            _write_chunks(*chunk_writes, root=fs.as_path(tmp), label=label)
    return path


def _write_chunks(writes: list, arrays: list, root, label: str) -> None:
    """Compute the blocks that write themselves as stored chunks; a local dataset's chunks
    are written behind (`directio`): it is complete once every process's writes are, with
    every chunk file as long as its task wrote."""
    if fs.is_url(root):
        compute(*writes, label=label)
        return
    try:
        sizes = compute(*writes, label=label)
    except BaseException:
        # nothing is left writing into the folder that is about to be removed (the step's
        # own error is the one to report)
        with contextlib.suppress(Exception):
            run_everywhere(functools.partial(directio.settle, str(root), raise_errors=False))
        raise
    # every process's writes done, the first failure raised; the writers' aligned buffers
    # (directio) are not kept into the next steps
    run_everywhere(functools.partial(directio.settle, str(root)))
    short = [c for (where, spec), written in zip(arrays, sizes)
             for c in storedchunks.short_chunks(where, spec, written)]
    if short:
        raise ClusterError(f"{len(short)} stored chunks were not written whole (first: "
                           f"{short[0]}): a dask worker was lost while writing them; run "
                           "the step again")


# encoding keys that leave the stored values as the array holds them
_PLAIN_ENCODING = {"chunks", "preferred_chunks", "compressor", "compressors", "filters",
                   "_FillValue", "dtype", "write_empty_chunks", "coordinates", "grid_mapping",
                   "source", "original_shape"}


def _chunk_writes(dataset: xr.Dataset, path, encoding: dict) -> tuple[list, list] | None:
    """One small dask array per chunked variable whose blocks write themselves as stored
    chunks (each block: the bytes it wrote), and where and how each array is stored; or
    None when a variable is not stored as it is (xarray then writes them all)."""
    writes, arrays = [], []
    documents = _stored_metadata(path)
    behind = not fs.is_url(path)
    for name, var in dataset.variables.items():
        if not isinstance(var.data, da.Array):
            continue  # written by xarray with the metadata
        spec = storedchunks.chunk_spec(documents.get(f"{name}/.zarray", {}))
        settings = {**var.encoding, **encoding.get(name, {})}
        if set(settings) - _PLAIN_ENCODING or \
                np.dtype(settings.get("dtype", var.dtype)) != var.dtype or \
                not _as_stored(var, spec, settings.get("_FillValue")):
            return None
        where = str(path / str(name))
        arrays.append((where, spec))
        writes.append(da.map_blocks(_write_block, var.data, where=where, spec=spec,
                                    behind=behind,
                                    chunks=tuple((1,) * len(c) for c in var.chunks),
                                    dtype=np.int64, meta=np.empty((0,) * var.ndim, np.int64)))
    return writes, arrays


def _write_block(values: np.ndarray, where: str, spec, behind: bool,
                 block_info=None) -> np.ndarray:
    written = storedchunks.write_chunk(where, spec, tuple(block_info[None]["chunk-location"]),
                                       values, behind)
    return np.full((1,) * values.ndim, written, np.int64)


def open_zarr(path: Path) -> xr.Dataset:
    """A zarr store written by `write_zarr` / `write_dataset`, lazily (local or remote); each
    block of its chunked variables is one stored chunk, read in its task's own thread
    (`storedchunks`)."""
    where, options = fs.zarr_location(path)
    ds = xr.open_zarr(where, consolidated=True, storage_options=options)
    ds = _read_by_chunk(ds, fs.as_path(path))
    return ds.set_coords("spatial_ref") if "spatial_ref" in ds.data_vars else ds


def _read_by_chunk(ds: xr.Dataset, path) -> xr.Dataset:
    """`ds` with the dask arrays of its variables that xarray shows as stored (same dtype,
    nothing masked or scaled, blocks = stored chunks) read by `storedchunks.read_chunk`."""
    documents = _stored_metadata(path)
    replaced = {}
    for name, var in ds.data_vars.items():
        spec = storedchunks.chunk_spec(documents.get(f"{name}/.zarray", {}))
        if not _as_stored(var.variable, spec):
            continue
        chunks = da.core.normalize_chunks(spec.chunks, var.shape)
        data = da.map_blocks(_stored_chunk, chunks=chunks, dtype=spec.dtype,
                             meta=np.empty((0,) * var.ndim, spec.dtype),
                             name=f"stored-{name}-{dask.base.tokenize(str(path), spec)}",
                             where=str(path / name), spec=spec)
        replaced[name] = var.copy(data=data)
    return ds.assign(replaced) if replaced else ds


def _stored_metadata(path) -> dict:
    """The consolidated metadata of the zarr store at `path`: every array's documents."""
    with fs.open(path / ".zmetadata") as f:
        return json.load(f).get("metadata", {})


def _as_stored(var: xr.Variable, spec, fill=None) -> bool:
    """Whether each block of `var` is one stored chunk of `spec` (a ChunkSpec, or None when
    storedchunks does not handle the array), with the values as stored: same dtype,
    nothing scaled, nothing masked (`fill`: the fill value to store, else the encoding's)."""
    if spec is None or var.chunks is None or var.ndim == 0 or var.dtype != spec.dtype:
        return False
    if {"scale_factor", "add_offset"} & set(var.encoding) or not _unmasked(var, fill):
        return False
    return tuple(var.chunks) == da.core.normalize_chunks(spec.chunks, var.shape)


def _unmasked(var: xr.Variable, fill=None) -> bool:
    """Whether xarray shows the stored values as they are, or stores them so, with the fill
    value `fill` or that of the variable's encoding (a float fill value is masked as NaN:
    unchanged only when it is NaN itself)."""
    fill = var.encoding.get("_FillValue") if fill is None else fill
    return fill is None or (var.dtype.kind == "f" and np.isnan(fill))


def _stored_chunk(where: str, spec, block_info=None) -> np.ndarray:
    info = block_info[None]
    return storedchunks.read_chunk(where, spec, tuple(info["chunk-location"]),
                                   tuple(info["chunk-shape"]))


def stored_array(path: Path, name: str):
    """One array of a zarr store as stored (sliceable window by window, read on the spot):
    what a COG is streamed from."""
    return open_group(path)[name]


def open_group(path: Path):
    """A zarr group, read-only, local or remote."""
    where, options = fs.zarr_location(path)
    return zarr.open_group(where, mode="r", storage_options=options)


def stack(arrays: list[da.Array]) -> da.Array:
    """Arrays of the same (y, x) grid stacked on a new leading axis, in one block."""
    return da.stack(arrays).rechunk({0: -1})


def read_zarr(path: Path, name: str) -> da.Array:
    """One array of a zarr store, lazily, chunked as stored."""
    return open_zarr(path)[name].data
