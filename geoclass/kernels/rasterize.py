"""Rasterization of polygons block by block: the geometries that the spatial index says touch
each block (clipped to it), and their burning into one block."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely
from rasterio.features import rasterize
from rasterio.windows import Window, bounds

from geoclass.grid import TileGrid


def rasterize_block(
    shapes: list[tuple[object, int]], window: Window, grid: TileGrid, dtype, fill: int = 0
) -> np.ndarray:
    """Burn (geometry, value) pairs into the (h, w) window of `grid` (pixel centres inside)."""
    shape = (int(window.height), int(window.width))
    if not shapes:
        return np.full(shape, fill, dtype)
    return rasterize(shapes, out_shape=shape, transform=grid.window_transform(window),
                     fill=fill, dtype=dtype)


def shapes_by_window(
    gdf: gpd.GeoDataFrame, column: str, grid: TileGrid
) -> dict[tuple[int, int], list[tuple[object, int]]]:
    """For each chunk (by its (row, col) index) that polygons touch, the (geometry clipped to
    the chunk, value) pairs to burn; chunks with no polygon are absent."""
    out: dict[tuple[int, int], list] = {}
    if gdf.empty:
        return out
    tree = gdf.sindex
    geoms, values = gdf.geometry.values, gdf[column].to_numpy()
    for index, window in grid.block_windows():
        box = bounds(window, grid.transform)
        hits = tree.query(shapely.box(*box), predicate="intersects")
        if len(hits):
            clipped = shapely.clip_by_rect(geoms[hits], *box)
            out[index] = [(g, int(v)) for g, v in zip(clipped, values[hits]) if not g.is_empty]
    return out
