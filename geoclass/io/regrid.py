"""A stored per-tile map read onto another grid (a block of the mosaic): pixels are copied
when both grids are pixel-aligned, warped otherwise (odc-geo decides which and over which
region of the source, from the two GeoBoxes).

Each mosaic block reads a window of a few tiles' zarr stores inside its own task: zarr is
opened directly (not through a dask graph) because those windows do not follow the tiles'
chunks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import zarr
from affine import Affine
from odc.geo.overlap import compute_reproject_roi
from rasterio.warp import Resampling, reproject

from geoclass import fs
from geoclass.grid import TileGrid


@dataclass(frozen=True)
class TileMap:
    """A per-tile map stored in zarr (`path`) on `grid`."""

    path: str
    grid: TileGrid


def read_onto(tile: TileMap, name: str, block: TileGrid, resampling: Resampling,
              nodata: float) -> np.ndarray | None:
    """Variable `name` of a tile map on the block's grid ((bands, h, w) or (h, w)); None
    when the tile does not touch the block. Pixels the tile does not cover are `nodata`."""
    roi = compute_reproject_roi(tile.grid.geobox, block.geobox, padding=2)
    src_rows, src_cols = roi.roi_src
    if src_rows.stop <= src_rows.start or src_cols.stop <= src_cols.start:
        return None
    where, options = fs.zarr_location(tile.path)
    store = zarr.open_group(where, mode="r", storage_options=options)[name]
    bands = store.shape[:-2]
    out = np.full((*bands, block.height, block.width), nodata, store.dtype)
    source = store[..., src_rows, src_cols]
    if roi.paste_ok:
        out[(..., *roi.roi_dst)] = source
        return out
    transform = tile.grid.transform * Affine.translation(src_cols.start, src_rows.start)
    reproject(source, out, src_transform=transform, src_crs=tile.grid.crs, src_nodata=nodata,
              dst_transform=block.transform, dst_crs=block.crs, dst_nodata=nodata,
              resampling=resampling)
    return out
