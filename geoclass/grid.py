"""The tile grid: one value (CRS, transform, shape, chunking) that every stage passes around.

A thin value over odc-geo: its `GeoBox` does the footprint and resolution arithmetic and its
`GeoboxTiles` the chunking, so a dask block, a raster window and a sub-grid are the same thing
everywhere (`block_windows`, `block_grid`)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from affine import Affine
from odc.geo.geobox import GeoBox, GeoboxTiles
from pyproj import CRS as ProjCRS
from rasterio.crs import CRS
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from geoclass import fs
from geoclass.errors import InputError


@dataclass(frozen=True)
class TileGrid:
    """Where the pixels of one tile are: `height` x `width` north-up square pixels of
    `transform` in `crs`, chunked in `chunk` x `chunk` blocks."""

    name: str
    crs: CRS
    transform: Affine
    width: int
    height: int
    chunk: int = 1024

    @cached_property
    def geobox(self) -> GeoBox:
        return GeoBox((self.height, self.width), self.transform, self.crs.to_wkt())

    @cached_property
    def tiles(self) -> GeoboxTiles:
        return GeoboxTiles(self.geobox, (self.chunk, self.chunk))

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def resolution(self) -> float:
        return abs(self.transform.a)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the grid's CRS."""
        return tuple(self.geobox.boundingbox)

    @property
    def chunks(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Dask chunks of the (y, x) plane."""
        return tuple(tuple(c) for c in self.tiles.chunks)

    def coords(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates (y, x)."""
        coords = self.geobox.coords
        return coords["y"].values, coords["x"].values

    def windows(self) -> Iterator[Window]:
        """The chunk windows, row by row."""
        for _, window in self.block_windows():
            yield window

    def block_windows(self) -> Iterator[tuple[tuple[int, int], Window]]:
        """((row, column) index of each chunk, its window), row by row: the same blocks as a
        dask array chunked with `chunks`."""
        return block_windows(self.chunks)

    def block_grid(self, window: Window, name: str = "block") -> TileGrid:
        """The sub-grid of a window (a block) of this grid."""
        return TileGrid(name, self.crs, self.window_transform(window), int(window.width),
                        int(window.height), max(int(window.width), int(window.height), 1))

    def window_transform(self, window: Window) -> Affine:
        return self.transform @ Affine.translation(window.col_off, window.row_off)

    def with_resolution(self, resolution: float) -> TileGrid:
        """The same footprint at another pixel size (the shape is rounded up)."""
        left, bottom, right, top = self.bounds
        width = int(np.ceil(round((right - left) / resolution, 6)))
        height = int(np.ceil(round((top - bottom) / resolution, 6)))
        transform = Affine(resolution, 0, left, 0, -resolution, top)
        return TileGrid(self.name, self.crs, transform, width, height, self.chunk)

    def with_chunk(self, chunk: int) -> TileGrid:
        return TileGrid(self.name, self.crs, self.transform, self.width, self.height, chunk)


def pixel_of(x: np.ndarray, y: np.ndarray, transform) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of the pixel that holds each point (a point on a pixel edge belongs to
    the pixel on its right and below, as GDAL burns points)."""
    cols, rows = ~transform * (np.asarray(x, float), np.asarray(y, float))
    return np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)


def union_grid(tiles: list[TileGrid], crs: CRS | None = None, resolution: float | None = None,
               chunk: int = 1024, name: str = "mosaic") -> TileGrid:
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
    return TileGrid(name, crs, Affine(res, 0, left, 0, -res, top), width, height, chunk)


def block_windows(chunks) -> Iterator[tuple[tuple[int, int], Window]]:
    """((row, column) block index, window) of every block of a (y, x) chunking, row by row."""
    rows = np.concatenate([[0], np.cumsum(chunks[0])])
    cols = np.concatenate([[0], np.cumsum(chunks[1])])
    for r, h in enumerate(chunks[0]):
        for c, w in enumerate(chunks[1]):
            yield (r, c), Window(int(cols[c]), int(rows[r]), int(w), int(h))


def crs_label(crs: CRS) -> str:
    """A short name of a CRS for messages: its EPSG code, else its projection's name."""
    epsg = crs.to_epsg()
    if epsg:
        return f"EPSG:{epsg}"
    proj = ProjCRS.from_user_input(crs.to_wkt())
    method = proj.coordinate_operation.method_name if proj.coordinate_operation else proj.name
    return f"{method} (no EPSG code)"


def north_up_problem(transform: Affine, source: str) -> str | None:
    """Why a raster's geotransform cannot define a tile grid (rotated, south-up, or
    non-square pixels), with the fix; None when it can."""
    if transform.b != 0 or transform.d != 0:
        return (f"{source}: rotated geotransform {tuple(transform)[:6]}; geoclass needs "
                "north-up rasters: warp it first (gdalwarp in.tif out.tif)")
    if transform.e > 0 or transform.a < 0:
        return (f"{source}: south-up or east-to-west geotransform (pixel size "
                f"{transform.a}, {transform.e}); geoclass needs north-up rasters: warp it "
                "first (gdalwarp in.tif out.tif)")
    if not np.isclose(transform.a, -transform.e, rtol=1e-9, atol=0):
        return (f"{source}: non-square pixels ({transform.a} x {-transform.e}); set "
                "chain.spatial_resolution so that the tile grid has square pixels")
    return None


def grid_of_raster(path, name: str, chunk: int = 1024) -> TileGrid:
    """The grid of a raster file (InputError naming the file if it is not north-up with
    square pixels)."""
    with fs.open_raster(path) as src:
        problem = north_up_problem(src.transform, str(path))
        if problem:
            raise InputError([problem])
        return TileGrid(name, src.crs, src.transform, src.width, src.height, chunk)
