"""Any dated raster series (MODIS, Landsat Collection 2, PlanetScope, ...): files of
`<series_path>/<TILE>/` matched by the `series.pattern`, dated by its `{date:...}` field.

One file per date holding `band_names` in order, or one file per band and date when the
pattern has a `{band}` field. Any CRS GDAL reads (with or without an EPSG code). Raw values
equal to `nodata` (or the file's own nodata) or outside `valid_range` are masked (lossy
compression shifts fill values: a range catches them), then `value * scale + offset`. With
`mask_pattern`, each date also has a mask file (non-zero = invalid)."""

from __future__ import annotations

from pathlib import Path

from geoclass import fs
from geoclass.errors import InputError
from geoclass.io.sensors.base import Acquisition, BandRef, MaskRef, SensorSeries
from geoclass.io.sensors.footprint import grid_of_footprint
from geoclass.io.sensors.pattern import NamePattern


def _pattern(text: str | None, key: str, tile: str) -> NamePattern:
    if not text:
        raise InputError([f"series.{key} is required with chain.series_path"])
    try:
        return NamePattern(text, tile=tile)
    except ValueError as err:
        raise InputError([f"series.{key}: {err}"]) from None


def _masks(options, tile_dir: Path, tile: str) -> dict:
    if not options.mask_pattern:
        return {}
    return {m.date: m.path for m in _pattern(options.mask_pattern, "mask_pattern", tile)
            .find(tile_dir)}


def read_series(
    root: Path, tile: str, options, crs=None, resolution: float | None = None, chunk: int = 1024
) -> SensorSeries:
    """The dated files of `tile`; the series' own grid is the first file's footprint in `crs`
    (default: the file's CRS) at `resolution` (default: the file's)."""
    tile_dir = fs.as_path(root) / tile
    if not tile_dir.is_dir():
        raise InputError([f"no folder for tile {tile} in chain.series_path: {tile_dir}"])
    pattern = _pattern(options.pattern, "pattern", tile)
    names = list(options.band_names)
    per_band = "band" in pattern.fields
    by_date: dict = {}
    for m in pattern.find(tile_dir):
        if per_band:
            band = next((b for b in names if b.lower() == m.fields["band"].lower()), None)
            if band is not None:
                by_date.setdefault(m.date, {})[band] = BandRef(str(m.path))
        else:
            by_date.setdefault(m.date, {})[m.path.name] = m.path
    if not by_date:
        raise InputError([f"{tile_dir}: no file matches series.pattern '{options.pattern}'"])
    masks, problems, acquisitions = _masks(options, tile_dir, tile), [], []
    for date, found in sorted(by_date.items()):
        if options.mask_pattern and date not in masks:
            problems.append(f"{tile_dir}: no mask file (series.mask_pattern) for {date}")
        mask = (MaskRef(str(masks[date]), "nonzero"),) if date in masks else ()
        if per_band:
            missing = [b for b in names if b not in found]
            if missing:
                problems.append(f"{tile_dir}: no {', '.join(missing)} file for {date}")
                continue
            acquisitions.append(Acquisition(date.date(), date.isoformat(),
                                            tuple(found[b] for b in names), mask))
        else:
            for path in found.values():
                bands = tuple(BandRef(str(path), i + 1) for i in range(len(names)))
                acquisitions.append(Acquisition(date.date(), path.name, bands, mask))
    if problems:
        raise InputError(problems)
    _check_band_count(acquisitions[0], names)
    first = acquisitions[0].bands[0].path
    try:
        grid = grid_of_footprint(first, tile, crs, resolution, chunk)
    except ValueError as err:
        raise InputError([f"series: {err}"]) from None
    return SensorSeries(
        sensor="series",
        prefix=options.prefix,
        tile=tile,
        band_names=tuple(names),
        acquisitions=tuple(acquisitions),
        grid=grid,
        scale=options.scale,
        offset=options.offset,
        nodata=options.nodata,
        index_bands=dict(options.index_bands),
        valid_range=tuple(options.valid_range) if options.valid_range else None,
        resampling=options.resampling,
        ignored=tuple(f"{name}: left out, its date does not parse as "
                      f"'{pattern.date_format}'" for name in pattern.undated(tile_dir)),
    )


def _check_band_count(acq: Acquisition, names: list[str]) -> None:
    path = acq.bands[-1].path
    with fs.open_raster(path) as src:
        if src.count < acq.bands[-1].index:
            raise InputError([f"{path} has {src.count} band(s); series.band_names lists "
                              f"{len(names)}: {', '.join(names)}"])
