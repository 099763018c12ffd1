"""User feature rasters (iota2's `userFeat`): `DIR/<TILE>/*.tif` selected by name patterns;
every band of every matched raster becomes one feature on the tile grid."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.enums import Resampling
from rasterio.windows import Window

from geoclass import fs
from geoclass.errors import InputError
from geoclass.grid import TileGrid, grid_of_raster
from geoclass.io.sensors.base import BandRef, read_window
from geoclass.io.sensors.footprint import grid_of_footprint


@dataclass(frozen=True)
class UserFeatures:
    tile: str
    names: tuple[str, ...]
    bands: tuple[BandRef, ...]
    nodata: tuple[float | None, ...]
    grid: TileGrid

    def files(self) -> list[str]:
        return sorted({b.path for b in self.bands})


def _matches(name: str, pattern: str) -> bool:
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatch(name, pattern)
    return pattern in name


def read_user_features(root: Path, tile: str, patterns: list[str], chunk: int = 1024,
                       crs=None, resolution: float | None = None):
    """Describe the user rasters of `tile`. Their grid is the first matched raster's, or,
    with `crs` or `resolution`, its footprint in `crs` (default: the raster's CRS) at
    `resolution` (default: the raster's), onto which the rasters are warped."""
    tile_dir = fs.as_path(root) / tile
    if not tile_dir.is_dir():
        raise InputError([f"no folder for tile {tile} in chain.user_feat_path: {tile_dir}"])
    rasters = sorted(p for p in tile_dir.iterdir() if p.suffix.lower() in (".tif", ".tiff"))
    names, bands, nodata, problems = [], [], [], []
    for pattern in patterns or ["*"]:
        matched = [p for p in rasters if _matches(p.name, pattern)]
        if not matched:
            problems.append(f"{tile_dir}: no raster matches user_feat pattern '{pattern}'")
        for path in matched:
            with fs.open_raster(path) as src:
                for k in range(1, src.count + 1):
                    label = src.descriptions[k - 1] or f"{pattern.strip('*?[]')}_b{k}"
                    names.append(label)
                    bands.append(BandRef(str(path), k))
                    nodata.append(src.nodata)
    if problems:
        raise InputError(problems)
    names = _unique(names)
    if crs is None and resolution is None:
        grid = grid_of_raster(bands[0].path, tile, chunk)
    else:
        grid = grid_of_footprint(bands[0].path, tile, crs, resolution, chunk)
    return UserFeatures(tile, tuple(names), tuple(bands), tuple(nodata), grid)


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        out.append(name if count == 0 else f"{name}_{count}")
    return out


def read_user_block(source: UserFeatures, grid: TileGrid, window: Window) -> np.ndarray:
    """The user features over `window`: float32 (feature, h, w), NaN at nodata."""
    out = np.empty((len(source.bands), int(window.height), int(window.width)), np.float32)
    for i, (ref, nodata) in enumerate(zip(source.bands, source.nodata)):
        values = read_window(ref.path, [ref.index], grid, window, Resampling.bilinear)[0]
        out[i] = values
        if nodata is not None:
            out[i][values == nodata] = np.nan
    return out
