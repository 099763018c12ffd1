"""The sources of every tile: each configured sensor's dated series, the user rasters, the
tile grid they share, and each sensor's regular date grid (common to all tiles). Read by the
input checks and by the cube step; nothing heavy is read here (file names, headers)."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, replace

from rasterio.warp import transform_bounds

from geoclass.config import Config, SensorOptions
from geoclass.errors import InputError
from geoclass.grid import TileGrid, crs_label
from geoclass.io.sensors import (
    SensorSeries,
    StacSeries,
    UserFeatures,
    read_landsat8,
    read_landsat8_old,
    read_sen2cor,
    read_sentinel1,
    read_series,
    read_stac,
    read_theia_s2,
    read_user_features,
)
from geoclass.io.sensors.footprint import overlaps

log = logging.getLogger(__name__)


@dataclass
class TileSources:
    """What a tile's cube is made of: sensor series, user rasters, and the grid they share."""

    tile: str
    series: list[SensorSeries]
    user: UserFeatures | None
    grid: TileGrid

    def files(self) -> list[str]:
        files = [f for s in self.series for f in s.files()]
        return files + (self.user.files() if self.user else [])


def _read(problems: list[str], func, *args, **kwargs):
    try:
        return func(*args, **kwargs)
    except InputError as err:
        problems += err.problems
        return None


def _sensor_series(config: Config, tile: str) -> list[SensorSeries]:
    """Every configured sensor's series of `tile`, in the order that picks the tile grid:
    Sentinel-2 (THEIA, Sen2Cor, STAC), Landsat-8 (current, old), the dated series, Sentinel-1.
    Every reader's problems are reported together."""
    chain, chunk, problems = config.chain, config.dask.chunk_size, []
    first = [
        _read(problems, read_theia_s2, chain.s2_path, tile, chunk) if chain.s2_path else None,
        _read(problems, read_sen2cor, chain.s2_s2c_path, tile, chunk)
        if chain.s2_s2c_path else None,
    ]
    rest = [
        _read(problems, read_landsat8, chain.l8_path, tile, chunk) if chain.l8_path else None,
        _read(problems, read_landsat8_old, chain.l8_path_old, tile, chunk)
        if chain.l8_path_old else None,
        _read(problems, read_series, chain.series_path, tile, config.series, chain.proj,
              chain.spatial_resolution, chunk) if chain.series_path else None,
    ]
    if chain.s1_path:
        rest += _read(problems, read_sentinel1, chain.s1_path, tile, config.sensors.sentinel_1,
                      chunk) or []
    stac = None
    if chain.stac_path:
        known = [s for s in first + rest if s is not None]
        hint = known[0].grid if known else None
        stac = _read(problems, read_stac, chain.stac_path, tile, config.stac, hint, chunk)
    if problems:
        raise InputError(problems)
    return [s for s in [*first, stac, *rest] if s is not None]


def _overlapping(series: SensorSeries, grid: TileGrid) -> SensorSeries:
    """The series without the acquisitions whose footprint misses the tile; an InputError
    naming the sensor and tile when none is left."""
    try:
        kept = tuple(a for a in series.acquisitions if overlaps(a.bands[0].path, grid))
    except ValueError as err:  # a raster without a CRS
        raise InputError([f"{series.sensor}, tile {series.tile}: {err}"]) from None
    if not kept:
        left, bottom, right, top = grid.bounds
        raise InputError([f"{series.sensor}: no file of tile {series.tile} overlaps the tile "
                          f"grid ({left:.0f}, {bottom:.0f}, {right:.0f}, {top:.0f} in "
                          f"{crs_label(grid.crs)}), e.g. "
                          f"{series.acquisitions[0].bands[0].path}"])
    if len(kept) == len(series.acquisitions):
        return series
    log.warning("%s: %d file(s) of tile %s do not overlap the tile and are left out",
                series.sensor, len(series.acquisitions) - len(kept), series.tile)
    if isinstance(series, StacSeries):
        ids = {a.product for a in kept}
        return replace(series, acquisitions=kept,
                       items=tuple(i for i in series.items if i["id"] in ids))
    return replace(series, acquisitions=kept)


def find_sources(config: Config, tile: str) -> TileSources:
    """Read the products of `tile` for every configured sensor and fix the tile grid: the
    first sensor's (see `_sensor_series`) at `chain.spatial_resolution`. A dated series
    alone, or user rasters alone, give the first file's footprint in `chain.proj` (or the
    file's CRS) at `chain.spatial_resolution` (or the file's resolution)."""
    chain, chunk = config.chain, config.dask.chunk_size
    series = _sensor_series(config, tile)
    user = None
    if chain.user_feat_path:
        user = read_user_features(chain.user_feat_path, tile, config.user_feat.patterns, chunk,
                                  chain.proj, chain.spatial_resolution)
    if not series and user is None:
        raise InputError(["no input data: set chain.s2_path, s2_s2c_path, l8_path, l8_path_old, "
                          "s1_path, series_path, stac_path or user_feat_path"])
    grid = series[0].grid if series else user.grid
    if grid.crs is not None and grid.crs.is_geographic:
        raise InputError([geographic_grid_problem(grid)])
    if series and chain.spatial_resolution and chain.spatial_resolution != grid.resolution:
        grid = grid.with_resolution(chain.spatial_resolution)
    problems = []
    series = [s for s in (_read(problems, _overlapping, s, grid) for s in series) if s]
    if problems:
        raise InputError(problems)
    return TileSources(tile, series, user, grid)


def geographic_grid_problem(grid: TileGrid) -> str:
    """A tile grid in degrees: distances (boundary fusion) and areas need metres; name the
    UTM zone of the tile to map in instead."""
    west, south, east, north = transform_bounds(grid.crs, "EPSG:4326", *grid.bounds)
    lon, lat = (west + east) / 2, (south + north) / 2
    zone = int((lon + 180) // 6) % 60 + 1
    epsg = (32600 if lat >= 0 else 32700) + zone
    return (f"tile {grid.name}: its files are in a geographic CRS ({crs_label(grid.crs)}, "
            "degrees); geoclass maps on a projected grid in metres: set chain.proj, e.g. "
            f"EPSG:{epsg} (UTM zone {zone}{'N' if lat >= 0 else 'S'}), and "
            "chain.spatial_resolution in metres")


def sensor_options(config: Config, sensor: str) -> SensorOptions:
    """The date-grid options of a sensor of the cube."""
    if sensor.startswith("sentinel_1_"):
        return config.sensors.sentinel_1
    if sensor in ("series", "stac"):
        return getattr(config, sensor)
    return getattr(config.sensors, sensor)


def date_grid(series_of_tiles: list[SensorSeries], options: SensorOptions) -> list[dt.date]:
    """The regular date grid of one sensor: every `temporal_resolution` days from the start
    to the end date (from the config, else the dates common to all tiles). A null
    `temporal_resolution` keeps the native dates, which must then be the same on every tile."""
    if options.temporal_resolution is None:
        dates = {tuple(s.dates) for s in series_of_tiles}
        if len(dates) > 1:
            raise InputError(["temporal_resolution: null keeps native dates, but the tiles have "
                              "different dates; set a temporal_resolution"])
        return list(dates.pop())
    start = options.start_date or max(s.dates[0] for s in series_of_tiles)
    end = options.end_date or min(s.dates[-1] for s in series_of_tiles)
    if end < start:
        raise InputError([f"{series_of_tiles[0].sensor}: the tiles have no common date range "
                          f"(latest start {start}, earliest end {end}); set start_date/end_date"])
    step = dt.timedelta(days=options.temporal_resolution)
    count = (end - start).days // options.temporal_resolution + 1
    return [start + k * step for k in range(count)]


def tile_sources(config: Config) -> dict[str, TileSources]:
    return {tile: find_sources(config, tile) for tile in config.chain.list_tile}


def sensor_dates(config: Config, sources: dict[str, TileSources]) -> dict[str, list[dt.date]]:
    """The output date grid of every sensor, shared by all tiles; a sensor must have dates on
    every tile (the tiles' cubes must hold the same features)."""
    by_sensor: dict[str, dict[str, SensorSeries]] = {}
    for tile, src in sources.items():
        for series in src.series:
            by_sensor.setdefault(series.sensor, {})[tile] = series
    problems = [
        f"{sensor} has no date for tile {tile} (it has for {', '.join(per_tile)})"
        for sensor, per_tile in by_sensor.items() for tile in sources if tile not in per_tile
    ]
    if problems:
        raise InputError(problems)
    return {s: date_grid(list(per_tile.values()), sensor_options(config, s))
            for s, per_tile in by_sensor.items()}


