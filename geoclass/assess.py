"""Accuracy of the maps: every validation pixel of every tile against the final mosaic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import zarr
from rasterio.crs import CRS
from rasterio.warp import transform

from geoclass.grid import TileGrid


def values_at(mosaic_path, grid: TileGrid, samples: pd.DataFrame,
              crs_of_tile: dict[str, CRS]) -> np.ndarray:
    """The mosaic's class at each sample (its `x`, `y` are in its tile's CRS); 0 where the
    sample falls outside the mosaic. Reads only the zarr chunks that hold samples."""
    samples = samples.reset_index(drop=True)
    rows = np.full(len(samples), -1, np.int64)
    cols = np.full(len(samples), -1, np.int64)
    for tile, part in samples.groupby("tile", sort=False):
        where = part.index.to_numpy()
        xs, ys = part["x"].to_numpy(), part["y"].to_numpy()
        if crs_of_tile[tile] != grid.crs:
            xs, ys = map(np.asarray, transform(crs_of_tile[tile], grid.crs, xs, ys))
        c, r = ~grid.transform * (xs, ys)
        rows[where], cols[where] = np.floor(r).astype(np.int64), np.floor(c).astype(np.int64)
    inside = (rows >= 0) & (rows < grid.height) & (cols >= 0) & (cols < grid.width)
    out = np.zeros(len(samples), np.int64)
    if inside.any():
        store = zarr.open_group(str(mosaic_path), mode="r")["classification"]
        out[inside] = store.get_coordinate_selection((rows[inside], cols[inside]))
    return out
