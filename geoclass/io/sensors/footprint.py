"""Footprints of rasters against a tile grid, and a tile grid made from a raster's footprint."""

from __future__ import annotations

import math

from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import calculate_default_transform, transform_bounds

from geoclass import fs
from geoclass.grid import TileGrid, north_up_problem


def bounds_in(path: str, crs: CRS) -> tuple[float, float, float, float]:
    """The raster's bounds (left, bottom, right, top) in `crs`."""
    with fs.open_raster(path) as src:
        if src.crs is None:
            raise ValueError(f"{path} has no CRS")
        if src.crs == crs:
            return tuple(src.bounds)
        return transform_bounds(src.crs, crs, *src.bounds, densify_pts=21)


def overlaps(path: str, grid: TileGrid) -> bool:
    """Whether the raster covers any part of the tile (bounding boxes, in the tile CRS)."""
    left, bottom, right, top = bounds_in(path, grid.crs)
    g_left, g_bottom, g_right, g_top = grid.bounds
    return left < g_right and right > g_left and bottom < g_top and top > g_bottom


def grid_of_footprint(
    path: str, name: str, crs: CRS | str | None, resolution: float | None, chunk: int
) -> TileGrid:
    """A tile grid over a raster's footprint: in `crs` (default: the raster's own CRS) at
    `resolution` (default: the raster's, or GDAL's estimate of it in another CRS), with pixel
    edges on multiples of the resolution, covering the whole footprint."""
    with fs.open_raster(path) as src:
        target = CRS.from_user_input(crs) if crs else src.crs
        if target == src.crs and resolution in (None, abs(src.transform.a)) \
                and north_up_problem(src.transform, path) is None:
            return TileGrid(name, src.crs, src.transform, src.width, src.height, chunk)
        # any other raster (rotated, south-up, non-square pixels, another CRS): a north-up
        # grid over its footprint, onto which it is warped
        if resolution is None:
            transform, _, _ = calculate_default_transform(
                src.crs, target, src.width, src.height, *src.bounds)
            resolution = abs(transform.a)
    left, bottom, right, top = bounds_in(path, target)
    left = math.floor(round(left / resolution, 6)) * resolution
    top = math.ceil(round(top / resolution, 6)) * resolution
    width = math.ceil(round((right - left) / resolution, 6))
    height = math.ceil(round((top - bottom) / resolution, 6))
    transform = Affine(resolution, 0, left, 0, -resolution, top)
    return TileGrid(name, target, transform, width, height, chunk)
