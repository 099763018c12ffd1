"""One mosaic from the tile maps: a grid in the output CRS covering every tile, filled block by
block (each block reads only the tiles that touch it, warped when the tile is in another CRS).

Overlap rule: where several tiles cover a mosaic pixel, the tile whose classification has the
higher confidence wins (on equal confidence, the tile listed first in `chain.list_tile`); its
confidence and probabilities come along. Classes and confidence are resampled with nearest
neighbour, probabilities bilinearly."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np
import zarr
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import Resampling, reproject, transform_bounds
from rasterio.windows import Window, from_bounds

from geoclass.grid import TileGrid

PROBA_NODATA = 65535
VALIDITY_NODATA = 65535


def mosaic_grid(tiles: list[TileGrid], crs: CRS | None = None, resolution: float | None = None,
                chunk: int = 1024) -> TileGrid:
    """The grid covering every tile in `crs` (default: the first tile's) at `resolution`
    (default: the first tile's), aligned on the first tile's pixels when it is in `crs`."""
    first = tiles[0]
    crs = crs or first.crs
    res = resolution or first.resolution
    boxes = np.array([transform_bounds(t.crs, crs, *t.bounds) for t in tiles])
    left, bottom = boxes[:, 0].min(), boxes[:, 1].min()
    right, top = boxes[:, 2].max(), boxes[:, 3].max()
    x0, y0 = (first.transform.c, first.transform.f) if first.crs == crs else (0.0, 0.0)
    left = x0 + math.floor(round((left - x0) / res, 6)) * res
    top = y0 + math.ceil(round((top - y0) / res, 6)) * res
    width = int(math.ceil(round((right - left) / res, 6)))
    height = int(math.ceil(round((top - bottom) / res, 6)))
    return TileGrid("mosaic", crs, Affine(res, 0, left, 0, -res, top), width, height, chunk)


@dataclass(frozen=True)
class TileMap:
    """A per-tile map stored in zarr (`path`) on `grid`."""

    path: str
    grid: TileGrid


def _aligned_window(tile: TileGrid, block: TileGrid) -> Window | None:
    """The block's window in the tile when both grids share CRS, pixel size and pixel
    edges (then pixels are copied, not resampled); None otherwise."""
    if tile.crs != block.crs or not np.isclose(tile.resolution, block.resolution):
        return None
    col = (block.transform.c - tile.transform.c) / tile.resolution
    row = (tile.transform.f - block.transform.f) / tile.resolution
    if not (np.isclose(col, round(col)) and np.isclose(row, round(row))):
        return None
    return Window(int(round(col)), int(round(row)), block.width, block.height)


def read_onto(tile: TileMap, name: str, block: TileGrid, resampling: Resampling,
              nodata: float) -> np.ndarray | None:
    """Variable `name` of a tile map, on the block's grid ((bands, h, w) or (h, w)); None when
    the tile does not touch the block. Pixels the tile does not cover are `nodata`."""
    store = zarr.open_group(tile.path, mode="r")[name]
    bands = store.shape[:-2]
    out = np.full((*bands, block.height, block.width), nodata, store.dtype)
    window = _aligned_window(tile.grid, block)
    if window is not None:
        rows = (max(window.row_off, 0), min(window.row_off + window.height, tile.grid.height))
        cols = (max(window.col_off, 0), min(window.col_off + window.width, tile.grid.width))
        if rows[0] >= rows[1] or cols[0] >= cols[1]:
            return None
        target = (..., slice(rows[0] - window.row_off, rows[1] - window.row_off),
                  slice(cols[0] - window.col_off, cols[1] - window.col_off))
        out[target] = store[..., rows[0]:rows[1], cols[0]:cols[1]]
        return out
    return _warp(store, tile.grid, block, resampling, nodata, out)


def _warp(store, grid: TileGrid, block: TileGrid, resampling, nodata, out):
    box = transform_bounds(block.crs, grid.crs, *block.bounds)
    window = from_bounds(*box, grid.transform)
    col0, row0 = math.floor(window.col_off) - 2, math.floor(window.row_off) - 2
    col1 = math.ceil(window.col_off + window.width) + 2
    row1 = math.ceil(window.row_off + window.height) + 2
    col0, row0 = max(col0, 0), max(row0, 0)
    col1, row1 = min(col1, grid.width), min(row1, grid.height)
    if col0 >= col1 or row0 >= row1:
        return None
    window = Window(col0, row0, col1 - col0, row1 - row0)
    r0, c0 = int(window.row_off), int(window.col_off)
    source = store[..., r0:r0 + int(window.height), c0:c0 + int(window.width)]
    reproject(source, out, src_transform=grid.window_transform(window), src_crs=grid.crs,
              src_nodata=nodata, dst_transform=block.transform, dst_crs=block.crs,
              dst_nodata=nodata, resampling=resampling)
    return out


def _block_grid(grid: TileGrid, block_info) -> TileGrid:
    (r0, r1), (c0, c1) = block_info[None]["array-location"][-2:]
    window = Window(c0, r0, c1 - c0, r1 - r0)
    return TileGrid("block", grid.crs, grid.window_transform(window), c1 - c0, r1 - r0)


def merge_block(tiles: list[TileMap], block: TileGrid, n_classes: int,
                probabilities: bool) -> np.ndarray:
    """One mosaic block, uint16 (2 [+ C], h, w): class, confidence [, probabilities x 1000,
    65535 where no class]. Overlaps go to the higher confidence, then to the earlier tile."""
    bands = 2 + (n_classes if probabilities else 0)
    out = np.zeros((bands, block.height, block.width), np.uint16)
    if probabilities:
        out[2:] = PROBA_NODATA
    for tile in tiles:
        label = read_onto(tile, "classification", block, Resampling.nearest, 0)
        if label is None:
            continue
        confidence = read_onto(tile, "confidence", block, Resampling.nearest, 0)
        wins = (label > 0) & ((out[0] == 0) | (confidence > out[1]))
        if not wins.any():
            continue
        out[0][wins], out[1][wins] = label[wins], confidence[wins]
        if probabilities:
            proba = read_onto(tile, "probabilities", block, Resampling.bilinear, PROBA_NODATA)
            out[2:, wins] = proba[:, wins]
    return out


def validity_block(tiles: list[TileMap], block: TileGrid) -> np.ndarray:
    """The number of clear dates of each mosaic pixel (the largest over overlapping tiles;
    65535 outside every tile)."""
    out = np.full((block.height, block.width), VALIDITY_NODATA, np.uint16)
    for tile in tiles:
        count = read_onto(tile, "validity", block, Resampling.nearest, VALIDITY_NODATA)
        if count is None:
            continue
        covered = count != VALIDITY_NODATA
        current = np.where(out == VALIDITY_NODATA, 0, out)
        out[covered] = np.maximum(current[covered], count[covered])
    return out


def lazy_mosaic(tiles: list[TileMap], grid: TileGrid, n_classes: int,
                probabilities: bool) -> da.Array:
    """The (2 [+ C], y, x) uint16 mosaic of tile maps, one task per mosaic chunk."""
    bands = 2 + (n_classes if probabilities else 0)
    template = da.empty((1, *grid.shape), chunks=((1,), *grid.chunks), dtype=np.uint8)
    return da.map_blocks(_on_block, template, merge_block, tiles, grid, n_classes,
                         probabilities, chunks=((bands,), *grid.chunks), dtype=np.uint16)


def lazy_validity(tiles: list[TileMap], grid: TileGrid) -> da.Array:
    template = da.empty(grid.shape, chunks=grid.chunks, dtype=np.uint8)
    return da.map_blocks(_on_block, template, validity_block, tiles, grid, dtype=np.uint16)


def _on_block(_template, kernel, tiles, grid, *args, block_info=None):
    return kernel(tiles, _block_grid(grid, block_info), *args)


def open_tile_maps(paths: dict[str, Path], grids: dict[str, TileGrid]) -> list[TileMap]:
    return [TileMap(str(paths[t]), grids[t]) for t in paths]
