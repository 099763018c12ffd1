"""What every sensor reader returns: dated acquisitions of band files and mask files on a tile."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from geoclass.grid import TileGrid

MaskRule = Literal["nonzero", "bit0"]


@dataclass(frozen=True)
class BandRef:
    """Band `index` (1-based) of raster `path`."""

    path: str
    index: int = 1


@dataclass(frozen=True)
class MaskRef:
    """A mask raster and which of its values flag an invalid pixel."""

    path: str
    rule: MaskRule = "nonzero"


@dataclass(frozen=True)
class Acquisition:
    date: dt.date
    product: str
    bands: tuple[BandRef, ...]
    masks: tuple[MaskRef, ...] = ()


@dataclass(frozen=True)
class SensorSeries:
    """The acquisitions of one sensor on one tile, with how to turn digital numbers into
    reflectance (`value * scale + offset`) and which bands the spectral indices use."""

    sensor: str
    prefix: str
    tile: str
    band_names: tuple[str, ...]
    acquisitions: tuple[Acquisition, ...]
    grid: TileGrid
    scale: float = 1.0
    offset: float = 0.0
    nodata: float | None = None
    index_bands: dict[str, str] = field(default_factory=dict)

    @property
    def dates(self) -> list[dt.date]:
        return [acq.date for acq in self.acquisitions]

    def files(self) -> list[str]:
        paths = {ref.path for acq in self.acquisitions for ref in acq.bands + acq.masks}
        return sorted(paths)


def read_window(
    path: str,
    indexes: list[int],
    grid: TileGrid,
    window: Window,
    resampling: Resampling = Resampling.nearest,
    fill: float = 0,
) -> np.ndarray:
    """Read `indexes` of `path` over `window` of `grid`, shape (len(indexes), h, w).

    A raster already on the grid is read directly; any other (another resolution, extent or
    CRS) is warped on the fly through a GDAL WarpedVRT, only over the window asked for."""
    with rasterio.open(path) as src:
        if src.crs == grid.crs and src.transform == grid.transform and src.shape == grid.shape:
            return src.read(indexes, window=window)
        nodata = src.nodata if src.nodata is not None else None
        with WarpedVRT(
            src,
            crs=grid.crs,
            transform=grid.transform,
            width=grid.width,
            height=grid.height,
            resampling=resampling,
            src_nodata=nodata,
            nodata=nodata if nodata is not None else fill,
        ) as vrt:
            return vrt.read(indexes, window=window)


def invalid_from_mask(values: np.ndarray, rule: MaskRule) -> np.ndarray:
    """Boolean invalid-pixel mask from a mask raster's values."""
    if rule == "nonzero":
        return values != 0
    return (values.astype(np.int64) & 1) == 1


def read_series_block(series: SensorSeries, grid: TileGrid, window: Window) -> np.ndarray:
    """Reflectance of every acquisition over `window`: float32 (time, band, h, w), NaN where a
    mask flags the pixel or any band holds the nodata value."""
    h, w = int(window.height), int(window.width)
    out = np.full((len(series.acquisitions), len(series.band_names), h, w), np.nan, np.float32)
    for t, acq in enumerate(series.acquisitions):
        raw = np.empty((len(acq.bands), h, w), np.float32)
        by_file: dict[str, list[int]] = {}
        for b, ref in enumerate(acq.bands):
            by_file.setdefault(ref.path, []).append(b)
        for path, positions in by_file.items():
            indexes = [acq.bands[b].index for b in positions]
            raw[positions] = read_window(
                path, indexes, grid, window, Resampling.bilinear,
                fill=series.nodata if series.nodata is not None else 0,
            )
        invalid = np.zeros((h, w), bool)
        if series.nodata is not None:
            invalid |= (raw == series.nodata).any(axis=0)
        for mask in acq.masks:
            values = read_window(mask.path, [1], grid, window, Resampling.nearest)[0]
            invalid |= invalid_from_mask(values, mask.rule)
        refl = raw * np.float32(series.scale) + np.float32(series.offset)
        refl[:, invalid] = np.nan
        out[t] = refl
    return out
