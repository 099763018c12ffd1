"""The time-series cube: lazy series per tile, gap-filling, spectral indices, user features,
and persistence of the feature cube to zarr."""

from __future__ import annotations

import datetime as dt
import importlib
import logging
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import dask.array as da
import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from geoclass.atomic import atomic_output, fingerprint
from geoclass.cluster import compute
from geoclass.config import Config, SensorOptions
from geoclass.errors import InputError
from geoclass.grid import TileGrid, crs_label
from geoclass.sensors import (
    SensorSeries,
    StacSeries,
    UserFeatures,
    open_stac_series,
    read_landsat8,
    read_landsat8_old,
    read_sen2cor,
    read_sentinel1,
    read_series,
    read_series_block,
    read_stac,
    read_theia_s2,
    read_user_block,
    read_user_features,
)
from geoclass.sensors.footprint import overlaps

log = logging.getLogger(__name__)

INDICES = ("NDVI", "NDWI", "Brightness")
CUBE_FORMAT = 1  # bump when the stored layout changes: older cubes are then rebuilt


# --- kernels (pure numpy) -------------------------------------------------------------------


def gapfill_block(values: np.ndarray, obs_days: np.ndarray, out_days: np.ndarray) -> np.ndarray:
    """Gap-fill one block in time.

    values: float32 (T, B, Y, X), NaN where the observation is masked (all bands together);
    obs_days: (T,) increasing acquisition days; out_days: (G,) days to produce.
    Returns float32 (G, B, Y, X): linear interpolation between the nearest clear observations
    before and after each output day, the nearest clear one beyond the ends, NaN for pixels
    with no clear observation at all."""
    n_obs = values.shape[0]
    clear = ~np.isnan(values[:, 0])
    order = np.arange(n_obs)[:, None, None]
    last_clear = np.maximum.accumulate(np.where(clear, order, -1), axis=0)
    next_clear = np.minimum.accumulate(np.where(clear, order, n_obs)[::-1], axis=0)[::-1]
    obs_days = np.asarray(obs_days, np.float64)
    out = np.empty((len(out_days), *values.shape[1:]), np.float32)
    for g, day in enumerate(np.asarray(out_days, np.float64)):
        before = np.searchsorted(obs_days, day, side="right") - 1
        after = np.searchsorted(obs_days, day, side="left")
        left = last_clear[before] if before >= 0 else np.full(clear.shape[1:], -1)
        right = next_clear[after] if after < n_obs else np.full(clear.shape[1:], n_obs)
        has_left, has_right = left >= 0, right < n_obs
        left_i, right_i = np.clip(left, 0, n_obs - 1), np.clip(right, 0, n_obs - 1)
        v_left = np.take_along_axis(values, left_i[None, None], axis=0)[0]
        v_right = np.take_along_axis(values, right_i[None, None], axis=0)[0]
        span = obs_days[right_i] - obs_days[left_i]
        weight = np.where(span > 0, (day - obs_days[left_i]) / np.where(span > 0, span, 1), 0.0)
        both = has_left & has_right
        filled = np.where(both, v_left + (v_right - v_left) * weight.astype(np.float32), np.nan)
        filled = np.where(has_left & ~has_right, v_left, filled)
        filled = np.where(~has_left & has_right, v_right, filled)
        out[g] = filled
    return out


def _normalized_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        total = a + b
        return np.where(total != 0, (a - b) / total, 0).astype(np.float32)


def indices_block(
    filled: np.ndarray, band_names: tuple[str, ...], index_bands: dict[str, str], names: tuple
) -> np.ndarray:
    """Spectral indices of a (G, B, Y, X) reflectance block -> float32 (G, len(names), Y, X).

    NDVI = (nir - red) / (nir + red); NDWI = (nir - swir) / (nir + swir) (Gao's, as iota2);
    Brightness = sqrt(sum of the squared reflectances of all bands)."""
    band = {name: filled[:, band_names.index(b)] for name, b in index_bands.items()}
    formulas = {
        "NDVI": lambda: _normalized_difference(band["nir"], band["red"]),
        "NDWI": lambda: _normalized_difference(band["nir"], band["swir"]),
        "Brightness": lambda: np.sqrt((filled.astype(np.float32) ** 2).sum(axis=1)),
    }
    out = np.empty((filled.shape[0], len(names), *filled.shape[2:]), np.float32)
    for i, name in enumerate(names):
        out[:, i] = formulas[name]()
    return out


def to_db(linear: np.ndarray) -> np.ndarray:
    """10 log10 of linear backscatter (values <= 0 give the floor of -100 dB)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.float32(10) * np.log10(np.maximum(linear, np.float32(1e-10)))).astype(
            np.float32)


def features_block(
    filled: np.ndarray,
    band_names: tuple[str, ...],
    index_bands: dict[str, str],
    indices: tuple[str, ...],
    keep_reflectances: bool,
    db: bool = False,
) -> np.ndarray:
    """(G, B, Y, X) gap-filled block -> float32 (F, Y, X): every band over the dates (in dB
    with `db`), then every index over the dates (the order of `feature_names`)."""
    parts = []
    n_dates, _, height, width = filled.shape
    if keep_reflectances:
        bands = to_db(filled) if db else filled
        parts.append(bands.transpose(1, 0, 2, 3).reshape(-1, height, width))
    if indices:
        idx = indices_block(filled, band_names, index_bands, indices)
        parts.append(idx.transpose(1, 0, 2, 3).reshape(-1, height, width))
    return np.concatenate(parts, axis=0).astype(np.float32, copy=False)


def feature_names(
    prefix: str, band_names, dates: list[dt.date], indices, keep_reflectances: bool
) -> list[str]:
    channels = (list(band_names) if keep_reflectances else []) + list(indices)
    return [f"{prefix}{c}_{d:%Y%m%d}" for c in channels for d in dates]


# --- lazy wrapping --------------------------------------------------------------------------


def _days(dates) -> np.ndarray:
    return np.array([d.toordinal() for d in dates], np.int64)


def _window(block_info) -> Window:
    loc = block_info[None]["array-location"]
    (r0, r1), (c0, c1) = loc[-2], loc[-1]
    return Window(c0, r0, c1 - c0, r1 - r0)


def _read_series_chunk(series, grid, block_info=None):
    return read_series_block(series, grid, _window(block_info))


def _read_user_chunk(source, grid, block_info=None):
    return read_user_block(source, grid, _window(block_info))


def _spatial_coords(grid: TileGrid) -> dict:
    y, x = grid.coords()
    return {"y": y, "x": x}


def _read_key(series: SensorSeries, grid: TileGrid) -> str:
    settings = [grid.chunk, list(grid.transform)[:6], grid.shape, grid.crs.to_wkt(),
                series.scale, series.offset, series.nodata, series.valid_range,
                series.resampling, series.db_input]
    return f"read-{series.sensor}-{series.tile}-{fingerprint(series.files(), settings)}"


def open_series(series: SensorSeries, grid: TileGrid) -> xr.DataArray:
    """The lazy reflectance series of a tile, (time, band, y, x) float32 on `grid`, NaN where
    clouds, edges or nodata mask the observation; one dask task reads one chunk (for STAC
    sources, odc-stac reads one chunk of one asset and date per task)."""
    if isinstance(series, StacSeries):
        data = open_stac_series(series, grid)
    else:
        shape = (len(series.dates), len(series.band_names))
        data = da.map_blocks(
            _read_series_chunk,
            series,
            grid,
            chunks=tuple((n,) for n in shape) + grid.chunks,
            dtype=np.float32,
            meta=np.empty((0, 0, 0, 0), np.float32),
            name=_read_key(series, grid),
        )
    coords = {"time": [np.datetime64(d, "ns") for d in series.dates],
              "band": list(series.band_names), **_spatial_coords(grid)}
    return xr.DataArray(data, dims=("time", "band", "y", "x"), coords=coords, name="reflectance")


def clear_mask(reflectance: xr.DataArray) -> xr.DataArray:
    """True where an observation is clear (not masked)."""
    return reflectance.isel(band=0, drop=True).notnull().rename("clear")


def validity(reflectance: xr.DataArray) -> xr.DataArray:
    """iota2's PixelsValidity: the number of clear observations of each pixel (uint16)."""
    return clear_mask(reflectance).sum("time").astype(np.uint16).rename("validity")


def gapfill(reflectance: xr.DataArray, dates: list[dt.date]) -> xr.DataArray:
    """Lazily gap-fill and resample a series onto `dates` (see `gapfill_block`)."""
    obs_days = _days(reflectance["time"].dt.date.values)
    out_days = _days(dates)
    data = reflectance.data.map_blocks(
        gapfill_block,
        obs_days,
        out_days,
        chunks=((len(dates),), reflectance.data.chunks[1], *reflectance.data.chunks[2:]),
        dtype=np.float32,
    )
    coords = {"time": [np.datetime64(d, "ns") for d in dates], "band": reflectance["band"].values,
              "y": reflectance["y"].values, "x": reflectance["x"].values}
    return xr.DataArray(data, dims=reflectance.dims, coords=coords, name="gapfilled")


_INDEX_ROLES = {"NDVI": ("red", "nir"), "NDWI": ("nir", "swir"), "Brightness": ()}


def usable_indices(series: SensorSeries, indices) -> tuple[str, ...]:
    """The indices a sensor's bands allow: none without index bands (radar, plain series)."""
    if not series.index_bands:
        return ()
    return tuple(i for i in indices if all(r in series.index_bands for r in _INDEX_ROLES[i]))


def spectral_features(
    filled: xr.DataArray, series: SensorSeries, indices, keep_reflectances: bool = True
) -> xr.DataArray:
    """The gap-filled reflectances (backscatter in dB) and indices as a lazy (feature, y, x)
    array; a sensor without usable indices always keeps its bands."""
    indices = usable_indices(series, indices)
    keep_reflectances = keep_reflectances or not indices
    dates = list(filled["time"].dt.date.values)
    names = feature_names(series.prefix, series.band_names, dates, indices, keep_reflectances)
    data = filled.data.map_blocks(
        features_block,
        series.band_names,
        series.index_bands,
        tuple(indices),
        keep_reflectances,
        series.db_features,
        drop_axis=0,
        chunks=((len(names),), *filled.data.chunks[2:]),
        dtype=np.float32,
    )
    coords = {"feature": names, "y": filled["y"].values, "x": filled["x"].values}
    return xr.DataArray(data, dims=("feature", "y", "x"), coords=coords, name="features")


def user_raster_features(source: UserFeatures, grid: TileGrid) -> xr.DataArray:
    """The user feature rasters of a tile as a lazy (feature, y, x) array on `grid`."""
    data = da.map_blocks(
        _read_user_chunk,
        source,
        grid,
        chunks=((len(source.names),), *grid.chunks),
        dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32),
        name=f"userfeat-{source.tile}-{fingerprint(source.files(), grid.chunk)}",
    )
    coords = {"feature": list(source.names), **_spatial_coords(grid)}
    return xr.DataArray(data, dims=("feature", "y", "x"), coords=coords, name="features")


def load_user_function(spec: str):
    """Import `package.module:function` (or `package.module.function`)."""
    module_name, _, attr = spec.partition(":") if ":" in spec else spec.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise InputError([f"features.user_functions: cannot import '{spec}': {err}"]) from None


def apply_user_function(spec: str, filled: xr.DataArray) -> xr.DataArray:
    """Call a user feature function `f(cube) -> DataArray` on the lazy gap-filled cube
    (time, band, y, x) and shape its result as (feature, y, x).

    The result may be (y, x): one feature, named after the array or the function;
    (time, y, x): one feature per date, `<name>_<YYYYMMDD>`; or (feature, y, x) as is."""
    func = load_user_function(spec)
    result = func(filled)
    if not isinstance(result, xr.DataArray):
        raise InputError([f"user function '{spec}' must return an xarray.DataArray"])
    name = result.name or func.__name__
    dims = set(result.dims)
    if dims == {"y", "x"}:
        result = result.expand_dims(feature=[str(name)])
    elif dims == {"time", "y", "x"}:
        labels = [f"{name}_{d:%Y%m%d}" for d in result["time"].dt.date.values]
        result = result.rename(time="feature").assign_coords(feature=labels)
    elif dims != {"feature", "y", "x"}:
        raise InputError(
            [f"user function '{spec}' returned dims {result.dims}; expected (y, x), "
             "(time, y, x) or (feature, y, x)"]
        )
    return result.transpose("feature", "y", "x").astype(np.float32)


# --- one tile -------------------------------------------------------------------------------


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
    first sensor's (see `_sensor_series`) at `chain.spatial_resolution`, else the user
    rasters' grid. A dated series alone gives its first file's footprint in `chain.proj` (or
    the file's CRS) at `chain.spatial_resolution` (or the file's resolution)."""
    chain, chunk = config.chain, config.dask.chunk_size
    series = _sensor_series(config, tile)
    user = None
    if chain.user_feat_path:
        user = read_user_features(chain.user_feat_path, tile, config.user_feat.patterns, chunk)
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
    from rasterio.warp import transform_bounds

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


def tile_cube(config: Config, sources: TileSources, dates: dict[str, list[dt.date]]) -> xr.Dataset:
    """The lazy feature cube of one tile: `features` (feature, y, x) and `validity` (y, x)."""
    grid, parts, valid = sources.grid, [], None
    for series in sources.series:
        reflectance = open_series(series, grid)
        filled = gapfill(reflectance, dates[series.sensor])
        parts.append(spectral_features(filled, series, config.features.indices,
                                       config.features.keep_reflectances))
        count = validity(reflectance)
        valid = count if valid is None else valid + count
        if series is sources.series[0]:
            parts += [apply_user_function(s, filled) for s in config.features.user_functions]
    if sources.user is not None:
        parts.append(user_raster_features(sources.user, grid))
    features = xr.concat(parts, dim="feature") if len(parts) > 1 else parts[0]
    twice = [n for n, c in Counter(features["feature"].values.tolist()).items() if c > 1]
    if twice:
        raise InputError([f"tile {grid.name}: several sources give the features "
                          f"{', '.join(twice[:5])}{' ...' if len(twice) > 5 else ''}; give the "
                          "series or STAC source a prefix (series.prefix, stac.prefix)"])
    features = features.chunk({"feature": -1, "y": grid.chunk, "x": grid.chunk})
    if valid is None:
        valid = features.notnull().all("feature").astype(np.uint16)
    ds = xr.Dataset({"features": features.rename("features"),
                     "validity": valid.astype(np.uint16).rename("validity")})
    ds.attrs.update(
        tile=grid.name,
        crs_wkt=grid.crs.to_wkt(),
        grid_transform=list(grid.transform)[:6],
        chunk=grid.chunk,
        dates={s: [d.isoformat() for d in v] for s, v in dates.items()},
    )
    return ds.rio.write_crs(grid.crs).rio.write_transform(grid.transform)


def grid_of_cube(ds: xr.Dataset, chunk: int | None = None) -> TileGrid:
    """The tile grid a cube was built on, chunked as the cube (its stored chunk size; for a
    tile smaller than a chunk in one direction the chunk is not its height, nor its width)."""
    if chunk is None:
        chunk = ds.attrs.get("chunk")
    if chunk is None:
        chunk = max(max(ds.chunks["y"]), max(ds.chunks["x"])) if ds.chunks else 1024
    return TileGrid(
        ds.attrs["tile"],
        CRS.from_wkt(ds.attrs["crs_wkt"]),
        Affine(*ds.attrs["grid_transform"]),
        ds.sizes["x"],
        ds.sizes["y"],
        int(chunk),
    )


# --- persistence ----------------------------------------------------------------------------


def cube_path(config: Config, tile: str) -> Path:
    return Path(config.chain.output_path) / "cubes" / f"{tile}.zarr"


def open_cube(path: str | Path) -> xr.Dataset:
    """Open a persisted feature cube lazily."""
    ds = xr.open_zarr(path, consolidated=True)
    return ds.set_coords("spatial_ref") if "spatial_ref" in ds.data_vars else ds


def _stored_fingerprint(path: Path) -> str | None:
    try:
        return open_cube(path).attrs.get("geoclass_fingerprint")
    except Exception:  # a folder that is not a readable zarr store is rebuilt
        return None


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


def open_cubes(config: Config) -> dict[str, xr.Dataset]:
    """The lazy feature cubes of every tile of the config (nothing is read yet)."""
    sources = tile_sources(config)
    dates = sensor_dates(config, sources)
    return {tile: tile_cube(config, src, dates) for tile, src in sources.items()}


def _cube_settings(config: Config, dates) -> dict:
    return {
        "format": CUBE_FORMAT,
        "sections": config.section_hash("sensors", "features", "user_feat", "series", "stac"),
        "proj": config.chain.proj,
        "chunk": config.dask.chunk_size,
        "resolution": config.chain.spatial_resolution,
        "dates": {s: [d.isoformat() for d in v] for s, v in dates.items()},
    }


def build_cubes(config: Config, force: bool = False) -> dict[str, Path]:
    """Persist the feature cube of every tile to `output_path/cubes/<TILE>.zarr`, block by
    block on the active dask client, atomically; a cube whose inputs and settings did not
    change is reused as it is."""
    sources = tile_sources(config)
    dates = sensor_dates(config, sources)
    paths = {}
    for tile, src in sources.items():
        path = cube_path(config, tile)
        stamp = fingerprint(src.files(), _cube_settings(config, dates))
        if not force and path.exists() and _stored_fingerprint(path) == stamp:
            log.info("cube of %s is up to date: %s", tile, path)
        else:
            log.info("building the cube of %s (%d x %d px)", tile, src.grid.width, src.grid.height)
            ds = tile_cube(config, src, dates)
            ds.attrs["geoclass_fingerprint"] = stamp
            with atomic_output(path) as tmp:
                write = ds.to_zarr(tmp, mode="w", consolidated=True, zarr_format=2,
                                   compute=False)
                compute(write, label=f"writing {path.name}")
        paths[tile] = path
    return paths
