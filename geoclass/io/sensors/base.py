"""What every sensor reader returns: dated acquisitions of band files and mask files on a tile,
and the window reader that turns them into reflectance (or backscatter) blocks."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from rasterio._err import CPLE_BaseError
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from geoclass import fs
from geoclass.errors import InputError
from geoclass.grid import TileGrid
from geoclass.io.handles import open_raster
from geoclass.kernels.flags import flag_values
from geoclass.kernels.select import copy_where, fill_where
from geoclass.kernels.timeseries import decode_block

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
    folder = fs.as_path(tile_dir)
    return tuple(f"{p.name}: left out, not a {kind} product name of this tile with a date"
                 for p in sorted(folder.iterdir()) if p.is_dir() and p.name not in read)


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
    with open_raster(path) as src:
        if _on_grid(src, grid):
            return src.read(indexes, window=window)
        nodata = src.nodata
        with _warped(src, grid, resampling, src_nodata=nodata,
                     nodata=nodata if nodata is not None else fill) as vrt:
            return vrt.read(indexes, window=window)


def _warped(src, grid: TileGrid, resampling: Resampling, **options) -> WarpedVRT:
    """`src` warped on the fly onto `grid` (GDAL reads and resamples only the windows asked
    for); `options`: WarpedVRT's nodata and alpha settings."""
    return WarpedVRT(src, crs=grid.crs, transform=grid.transform, width=grid.width,
                     height=grid.height, resampling=resampling, **options)


def read_masked_window(
    path: str,
    indexes: list[int],
    grid: TileGrid,
    window: Window,
    resampling: Resampling = Resampling.nearest,
    src_nodata: float | None = None,
    out: np.ndarray | None = None,
    invalid: np.ndarray | None = None,
    also: float | None = None,
    valid_range: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Like `read_window`, and also where the values are valid: (values (n, h, w), valid (h, w)).

    Invalid: the file's own nodata value, `src_nodata` (for files that do not declare theirs),
    and, for a warped file, every pixel outside its footprint (the warp's alpha band), so that
    no fill value is ever taken for data. Resampling never mixes nodata into valid pixels.
    `out` (n, h, w): where a file on the grid with bands of the same dtype is read into
    (the values returned are then `out`). `invalid` (h, w) bool: the invalid pixels are
    added to it instead (valid is then None). `also` (another nodata value, the sensor's) and
    values outside `valid_range` are invalid too, tested while the window is fresh in cache."""
    h, w = int(window.height), int(window.width)
    flagged = np.zeros((h, w), bool) if invalid is None else invalid
    with open_raster(path) as src:
        nodata = src.nodata if src.nodata is not None else src_nodata
        if _on_grid(src, grid):
            into = out if out is not None and all(
                src.dtypes[i - 1] == out.dtype for i in indexes) else None
            values = src.read(indexes, window=window, out=into)
            values = out if into is not None else values
            flag_values(values, flagged, (nodata, also) if also != nodata else (nodata,),
                        *(valid_range or (None, None)))
        else:
            with _warped(src, grid, resampling, src_nodata=nodata, add_alpha=True) as vrt:
                data = vrt.read([*indexes, vrt.count], window=window)
            values = data[:-1]
            flagged |= data[-1] == 0
            flag_values(values, flagged, (also,), *(valid_range or (None, None)))
    return values, (~flagged if invalid is None else None)


def invalid_from_mask(values: np.ndarray, rule: MaskRule) -> np.ndarray:
    """Boolean invalid-pixel mask from a mask raster's values."""
    if isinstance(rule, (tuple, list)):
        return np.isin(values, np.asarray(rule, dtype=values.dtype))
    if rule == "nonzero":
        return values != 0
    return (values.astype(np.int64) & 1) == 1


def read_raw_acquisition(
    series: SensorSeries, acq: Acquisition, grid: TileGrid, window: Window, dtype,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One acquisition over `window` as stored: raw values (band, h, w) in `dtype`, and where
    they are invalid (h, w): a mask flags the pixel, a band holds nodata or a value outside
    the valid range, or the window leaves the data. `out`: the (band, h, w) array to fill
    (and return), read into directly where the files allow."""
    h, w = int(window.height), int(window.width)
    raw = np.empty((len(acq.bands), h, w), dtype) if out is None else out
    invalid = np.zeros((h, w), bool)
    by_file: dict[str, list[int]] = {}
    for b, ref in enumerate(acq.bands):
        by_file.setdefault(ref.path, []).append(b)
    for path, positions in by_file.items():
        indexes = [acq.bands[b].index for b in positions]
        target = raw[positions[0]:positions[-1] + 1] \
            if positions == list(range(positions[0], positions[-1] + 1)) else None
        values, _ = _read_named(path, series, acq, indexes, grid, window,
                                Resampling[series.resampling], series.nodata, target, invalid,
                                series.nodata, series.valid_range)
        if values is not target:
            raw[positions] = values
    for mask in acq.masks:
        values, _ = _read_named(mask.path, series, acq, [1], grid, window,
                                Resampling.nearest, None, None, invalid)
        invalid |= invalid_from_mask(values[0], mask.rule)
    return raw, invalid


@dataclass(frozen=True)
class Encoding:
    """How a sensor's observations are stored in a cube: the raw values read from its files
    in `dtype` (the files' own), `sentinel` where masked (all bands of a date and pixel), and
    the physical value raw * scale[t, b] + offset[t, b] (float32)."""

    dtype: str
    sentinel: float | int
    scale: np.ndarray = field(compare=False)
    offset: np.ndarray = field(compare=False)


def sentinel_of(dtype) -> float | int:
    """The value that marks a masked observation: NaN for floats, else the type's most
    negative value (signed) or largest value (unsigned), which no sensor uses for data."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return float("nan")
    info = np.iinfo(dtype)
    return int(info.min) if dtype.kind == "i" else int(info.max)


def _conversion(series: SensorSeries, acq: Acquisition) -> tuple[list[float], list[float]]:
    scale = [series.scale if r.scale is None else r.scale for r in acq.bands]
    offset = [series.offset if r.offset is None else r.offset for r in acq.bands]
    return scale, offset


def encoding_of(series: SensorSeries, dtype=None) -> Encoding:
    """The storage of a series' observations: the dtype of its first acquisition's files
    (or `dtype`), and each date's scale and offset (those of its first acquisition)."""
    if dtype is None:
        types = []
        for path in dict.fromkeys(ref.path for ref in series.acquisitions[0].bands):
            with fs.open_raster(path) as src:
                types += list(src.dtypes)
        dtype = np.result_type(*types)
    pairs = [_conversion(series, group[0]) for group in series.by_date()]
    scale = np.array([p[0] for p in pairs], np.float32).reshape(len(pairs), -1)
    offset = np.array([p[1] for p in pairs], np.float32).reshape(len(pairs), -1)
    return Encoding(np.dtype(dtype).name, sentinel_of(dtype), scale, offset)


def read_observations(series: SensorSeries, grid: TileGrid, encoding: Encoding,
                      window: Window) -> np.ndarray:
    """Every date of the series over `window` as stored: (time, band, h, w) raw values in
    the encoding's dtype, its sentinel where masked. Acquisitions of one date fill each
    other's gaps, in their order (a later one with another scale or offset is re-encoded in
    the date's)."""
    h, w = int(window.height), int(window.width)
    dtype = np.dtype(encoding.dtype)
    # every date is written below: filled where read, the sentinel where nothing was
    # (kernels.select: a masked copy without a branch, the date's mask for every band)
    out = np.empty((len(series.dates), len(series.band_names), h, w), dtype)
    groups = list(enumerate(series.by_date()))
    start = _first_date(grid, window, len(groups))
    for t, group in groups[start:] + groups[:start]:
        missing = np.ones((h, w), bool)
        for i, acq in enumerate(group):
            scale, offset = (np.asarray(v, np.float32) for v in _conversion(series, acq))
            same = np.array_equal(scale, encoding.scale[t]) and \
                np.array_equal(offset, encoding.offset[t])
            if i == 0 and same:  # read in place: no copy, no block-sized temporary
                _, missing = read_raw_acquisition(series, acq, grid, window, dtype, out[t])
                if not missing.any():
                    break
                continue
            raw, invalid = read_raw_acquisition(series, acq, grid, window, dtype)
            take = missing & ~invalid
            if not same:
                physical = raw * scale[:, None, None] + offset[:, None, None]
                stored = (physical - encoding.offset[t][:, None, None]) / \
                    encoding.scale[t][:, None, None]
                raw = (stored if dtype.kind == "f" else np.rint(stored)).astype(dtype)
            copy_where(out[t], raw, take)
            missing &= ~take
            if not missing.any():
                break
        if missing.any():
            fill_where(out[t], encoding.sentinel, missing)
    return out


def _first_date(grid: TileGrid, window: Window, dates: int) -> int:
    """The date a window's reading starts at: far from its neighbours' (the golden ratio of
    the dates apart), so that the threads of a worker, reading neighbouring windows at once,
    read different files and share one open dataset per file (handles) instead of opening
    each file once per thread. The values are the same in any order."""
    index = (int(window.row_off) // grid.chunk) * 7919 + int(window.col_off) // grid.chunk
    return int(index * 0.6180339887 * dates) % max(dates, 1)


def read_series_block(series: SensorSeries, grid: TileGrid, window: Window,
                      encoding: Encoding | None = None) -> np.ndarray:
    """Every date of the series over `window`: float32 (time, band, h, w) physical values,
    NaN where masked."""
    encoding = encoding or encoding_of(series)
    raw = read_observations(series, grid, encoding, window)
    return decode_block(raw, encoding.scale, encoding.offset, encoding.sentinel,
                        series.db_input)


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


