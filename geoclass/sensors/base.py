"""What every sensor reader returns: dated acquisitions of band files and mask files on a tile,
and the window reader that turns them into reflectance (or backscatter) blocks."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import rasterio
from rasterio._err import CPLE_BaseError
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from geoclass.errors import InputError
from geoclass.grid import TileGrid

# "nonzero": any non-zero value is invalid; "bit0": bit 0 set is invalid; a tuple of integers:
# those values are invalid (e.g. Sen2Cor's scene classes 0, 1, 3, 8, 9, 10).
MaskRule = Literal["nonzero", "bit0"] | tuple[int, ...]


@dataclass(frozen=True)
class BandRef:
    """Band `index` (1-based) of raster `path`; `scale`/`offset`, when given, override the
    series' conversion for this file (e.g. Sen2Cor's per-product BOA offset)."""

    path: str
    index: int = 1
    scale: float | None = None
    offset: float | None = None


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
    physical values (`value * scale + offset`, then from dB to linear with `db_input`), which
    raw values are invalid (`nodata`, outside `valid_range`), which bands the spectral indices
    use, and whether features are written in dB (`db_features`, for radar backscatter).

    Several acquisitions on one date are merged into one observation (first valid wins)."""

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
    valid_range: tuple[float, float] | None = None
    resampling: str = "bilinear"
    db_input: bool = False
    db_features: bool = False
    extra_files: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()  # what the reader found but could not date (user warnings)

    @property
    def dates(self) -> list[dt.date]:
        """The observation dates, increasing, each once."""
        return sorted({acq.date for acq in self.acquisitions})

    def by_date(self) -> list[list[Acquisition]]:
        """The acquisitions grouped by date, in the order of `dates`."""
        groups: dict[dt.date, list[Acquisition]] = {}
        for acq in self.acquisitions:
            groups.setdefault(acq.date, []).append(acq)
        return [groups[d] for d in self.dates]

    def files(self) -> list[str]:
        paths = {ref.path for acq in self.acquisitions for ref in acq.bands + acq.masks}
        return sorted(paths | set(self.extra_files))


def left_out(tile_dir, read: set[str], kind: str) -> tuple[str, ...]:
    """The folders of `tile_dir` a reader did not take (not named `read`): a note each, so
    that no product is dropped in silence (a name without a parseable date, another tile)."""
    from pathlib import Path

    return tuple(f"{p.name}: left out, not a {kind} product name of this tile with a date"
                 for p in sorted(Path(tile_dir).iterdir()) if p.is_dir() and p.name not in read)


def _on_grid(src, grid: TileGrid) -> bool:
    return src.crs == grid.crs and src.transform == grid.transform and src.shape == grid.shape


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
        if _on_grid(src, grid):
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


def read_masked_window(
    path: str,
    indexes: list[int],
    grid: TileGrid,
    window: Window,
    resampling: Resampling = Resampling.nearest,
    src_nodata: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Like `read_window`, and also where the values are valid: (values (n, h, w), valid (h, w)).

    Invalid: the file's own nodata value, `src_nodata` (for files that do not declare theirs),
    and, for a warped file, every pixel outside its footprint (the warp's alpha band), so that
    no fill value is ever taken for data. Resampling never mixes nodata into valid pixels."""
    with rasterio.open(path) as src:
        nodata = src.nodata if src.nodata is not None else src_nodata
        if _on_grid(src, grid):
            values = src.read(indexes, window=window)
            valid = np.ones(values.shape[1:], bool)
            if nodata is not None:
                valid &= ~(values == nodata).any(axis=0)
            return values, valid
        with WarpedVRT(
            src,
            crs=grid.crs,
            transform=grid.transform,
            width=grid.width,
            height=grid.height,
            resampling=resampling,
            src_nodata=nodata,
            add_alpha=True,
        ) as vrt:
            data = vrt.read([*indexes, vrt.count], window=window)
            return data[:-1], data[-1] > 0


def invalid_from_mask(values: np.ndarray, rule: MaskRule) -> np.ndarray:
    """Boolean invalid-pixel mask from a mask raster's values."""
    if isinstance(rule, (tuple, list)):
        return np.isin(values, np.asarray(rule, dtype=values.dtype))
    if rule == "nonzero":
        return values != 0
    return (values.astype(np.int64) & 1) == 1


def read_acquisition(
    series: SensorSeries, acq: Acquisition, grid: TileGrid, window: Window
) -> np.ndarray:
    """One acquisition over `window`: float32 (band, h, w), NaN where a mask flags the pixel,
    any band holds nodata or a value outside the valid range, or the window leaves the data."""
    h, w = int(window.height), int(window.width)
    raw = np.empty((len(acq.bands), h, w), np.float32)
    invalid = np.zeros((h, w), bool)
    by_file: dict[str, list[int]] = {}
    for b, ref in enumerate(acq.bands):
        by_file.setdefault(ref.path, []).append(b)
    for path, positions in by_file.items():
        indexes = [acq.bands[b].index for b in positions]
        values, valid = _read_named(path, series, acq, indexes, grid, window,
                                    Resampling[series.resampling], series.nodata)
        raw[positions] = values
        invalid |= ~valid
    if series.nodata is not None:
        invalid |= (raw == np.float32(series.nodata)).any(axis=0)
    if series.valid_range is not None:
        low, high = series.valid_range
        invalid |= ((raw < low) | (raw > high)).any(axis=0)
    for mask in acq.masks:
        values, inside = _read_named(mask.path, series, acq, [1], grid, window,
                                     Resampling.nearest)
        invalid |= invalid_from_mask(values[0], mask.rule) | ~inside
    scale = [series.scale if r.scale is None else r.scale for r in acq.bands]
    offset = [series.offset if r.offset is None else r.offset for r in acq.bands]
    out = raw * np.asarray(scale, np.float32)[:, None, None]
    out += np.asarray(offset, np.float32)[:, None, None]
    if series.db_input:
        out = np.power(np.float32(10), out / np.float32(10), dtype=np.float32)
    out[:, invalid] = np.nan
    return out


def _read_named(path: str, series: SensorSeries, acq: Acquisition, *args):
    """`read_masked_window(path, *args)`; a file that GDAL cannot read (truncated, corrupt)
    gives an InputError naming the file, the date and the tile."""
    try:
        return read_masked_window(path, *args)
    except (RasterioError, CPLE_BaseError) as err:
        problem = (f"tile {series.tile}, {series.sensor} acquisition of {acq.date} "
                   f"({acq.product}): cannot read {path}: {err}; replace the file or remove "
                   "that acquisition")
    # raised after the except clause: without the GDAL error as its context, which a dask
    # worker could not send back whole
    raise InputError([problem])


def read_series_block(series: SensorSeries, grid: TileGrid, window: Window) -> np.ndarray:
    """Every date of the series over `window`: float32 (time, band, h, w), NaN where masked;
    acquisitions of the same date fill each other's gaps, in their order."""
    h, w = int(window.height), int(window.width)
    groups = series.by_date()
    out = np.full((len(groups), len(series.band_names), h, w), np.nan, np.float32)
    for t, group in enumerate(groups):
        for acq in group:
            values = read_acquisition(series, acq, grid, window)
            if acq is group[0]:
                out[t] = values
            else:
                gap = np.isnan(out[t, 0]) & ~np.isnan(values[0])
                out[t][:, gap] = values[:, gap]
            if not np.isnan(out[t, 0]).any():
                break
    return out
