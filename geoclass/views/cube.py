"""The time-series cube of a tile: its observations, as read from its sensors' files (masked,
in each sensor's own encoding: e.g. int16 reflectance x 10000), lazily; and the views of a
cube (stored or not): the gap-filled series and the features, computed block by block in the
task that consumes them (sampling, classification), never stored.

A cube (`cubes/<TILE>.zarr`) holds, per sensor, `obs_<sensor>` (time, band, y, x) with its
`scale_<sensor>` and `offset_<sensor>` (time, band), the user rasters `user` (feature, y, x)
if any, and `validity` (y, x: clear observations per pixel); its attributes say how features
are made (`sensors`: one recipe per sensor, `user_functions`)."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine
from rasterio.crs import CRS

from geoclass import fs, lazy
from geoclass.config import Config
from geoclass.errors import InputError
from geoclass.grid import TileGrid
from geoclass.io.sensors import (
    Encoding,
    SensorSeries,
    StacSeries,
    encoding_of,
    open_stac_observations,
    read_observations,
    read_user_block,
)
from geoclass.kernels.timeseries import (
    SensorRecipe,
    clear_count,
    decode_block,
    features_from_observations,
    usable_indices,
)
from geoclass.store import fingerprint
from geoclass.views.sources import TileSources, sensor_dates, tile_sources

log = logging.getLogger(__name__)

CUBE_FORMAT = 2  # bump when the stored layout changes: older cubes are then rebuilt


# --- what a tile's cube holds ---------------------------------------------------------------


def observations(series: SensorSeries, grid: TileGrid) -> tuple[object, Encoding]:
    """The lazy (time, band, y, x) stored observations of a series on `grid` (one task reads
    one chunk of every date), and their encoding."""
    if isinstance(series, StacSeries):
        return open_stac_observations(series, grid)
    encoding = encoding_of(series)
    data = lazy.from_windows(
        read_observations, grid, (len(series.dates), len(series.band_names)), encoding.dtype,
        series, grid, encoding, name=_read_key(series, grid))
    return data, encoding


def _read_key(series: SensorSeries, grid: TileGrid) -> str:
    settings = [grid.chunk, list(grid.transform)[:6], grid.shape, grid.crs.to_wkt(),
                series.scale, series.offset, series.nodata, series.valid_range,
                series.resampling, series.db_input]
    return f"read-{series.sensor}-{series.tile}-{fingerprint(series.files(), settings)}"


def recipe_settings(series: SensorSeries, grid_dates: list[dt.date], indices,
                    keep_reflectances: bool, encoding: Encoding) -> dict:
    """A sensor's recipe as JSON (a cube attribute): how its features are made."""
    usable = usable_indices(series.index_bands, indices)
    return {"sensor": series.sensor, "prefix": series.prefix,
            "band_names": list(series.band_names),
            "obs_dates": [d.isoformat() for d in series.dates],
            "grid_dates": [d.isoformat() for d in grid_dates],
            "index_bands": dict(series.index_bands), "indices": list(usable),
            "keep_reflectances": keep_reflectances or not usable,
            "db_input": series.db_input, "db_features": series.db_features,
            "dtype": encoding.dtype,
            "sentinel": None if np.isnan(encoding.sentinel) else encoding.sentinel}


def tile_observations(config: Config, sources: TileSources,
                      dates: dict[str, list[dt.date]]) -> xr.Dataset:
    """The lazy cube of one tile, as it is stored (nothing is read yet)."""
    grid, variables, recipes, valid = sources.grid, {}, [], None
    for series in sources.series:
        data, encoding = observations(series, grid)
        name, time, band = (f"{k}_{series.sensor}" for k in ("obs", "time", "band"))
        coords = {time: [np.datetime64(d, "ns") for d in series.dates],
                  band: list(series.band_names)}
        variables[name] = xr.DataArray(data, dims=(time, band, "y", "x"), coords=coords)
        variables[f"scale_{series.sensor}"] = xr.DataArray(encoding.scale, dims=(time, band))
        variables[f"offset_{series.sensor}"] = xr.DataArray(encoding.offset, dims=(time, band))
        count = lazy.map_yx(clear_count, data, lead=(), dtype=np.uint16,
                            sentinel=encoding.sentinel)
        valid = count if valid is None else valid + count
        recipes.append(recipe_settings(series, dates[series.sensor], config.features.indices,
                                       config.features.keep_reflectances, encoding))
    if sources.user is not None:
        user = sources.user
        data = lazy.from_windows(read_user_block, grid, (len(user.names),), np.float32, user,
                                 grid, name=f"userfeat-{user.tile}-"
                                 f"{fingerprint(user.files(), grid.chunk)}")
        variables["user"] = xr.DataArray(data, dims=("user_feature", "y", "x"),
                                         coords={"user_feature": list(user.names)})
        if valid is None:
            valid = lazy.map_yx(_all_finite, data, lead=(), dtype=np.uint16)
    variables["validity"] = xr.DataArray(valid, dims=("y", "x"))
    y, x = grid.coords()
    ds = xr.Dataset(variables, coords={"y": y, "x": x})
    ds.attrs.update(
        tile=grid.name, crs_wkt=grid.crs.to_wkt(), grid_transform=list(grid.transform)[:6],
        chunk=grid.chunk, format=CUBE_FORMAT, sensors=json.dumps(recipes),
        user_functions=json.dumps(list(config.features.user_functions)),
        dates={s: [d.isoformat() for d in v] for s, v in dates.items()},
    )
    return ds.rio.write_crs(grid.crs).rio.write_transform(grid.transform)


def _all_finite(values: np.ndarray) -> np.ndarray:
    return np.isfinite(values).all(axis=0).astype(np.uint16)


# --- views of a cube: gap-filled series and features ---------------------------------------


def recipes_of(cube: xr.Dataset) -> tuple[SensorRecipe, ...]:
    """The recipe of each sensor of a cube (its small scale/offset arrays are read)."""
    out = []
    for entry in json.loads(cube.attrs["sensors"]):
        sensor = entry["sensor"]
        sentinel = float("nan") if entry["sentinel"] is None else entry["sentinel"]
        out.append(SensorRecipe(
            name=f"obs_{sensor}", prefix=entry["prefix"], band_names=tuple(entry["band_names"]),
            obs_dates=tuple(dt.date.fromisoformat(d) for d in entry["obs_dates"]),
            grid_dates=tuple(dt.date.fromisoformat(d) for d in entry["grid_dates"]),
            scale=np.asarray(cube[f"scale_{sensor}"].values, np.float32),
            offset=np.asarray(cube[f"offset_{sensor}"].values, np.float32),
            sentinel=sentinel, index_bands=entry["index_bands"],
            indices=tuple(entry["indices"]), keep_reflectances=entry["keep_reflectances"],
            db_input=entry["db_input"], db_features=entry["db_features"]))
    return tuple(out)


def _spatial(cube: xr.Dataset) -> dict:
    return {"y": cube["y"].values, "x": cube["x"].values}


def gapfilled_view(cube: xr.Dataset, recipe: SensorRecipe) -> xr.DataArray:
    """A sensor's observations decoded and gap-filled on its date grid, lazily:
    (time, band, y, x) float32."""
    data = lazy.map_yx(_gapfilled, cube[recipe.name].data, recipe=recipe,
                       lead=(len(recipe.grid_dates), len(recipe.band_names)),
                       dtype=np.float32)
    coords = {"time": [np.datetime64(d, "ns") for d in recipe.grid_dates],
              "band": list(recipe.band_names), **_spatial(cube)}
    return xr.DataArray(data, dims=("time", "band", "y", "x"), coords=coords,
                        name="gapfilled")


def _gapfilled(raw: np.ndarray, recipe: SensorRecipe) -> np.ndarray:
    return recipe.gapfilled(raw)


def feature_blocks(cube: xr.Dataset) -> tuple[tuple[SensorRecipe, ...], list, list]:
    """What the features of a block are computed from: the recipes, the observation arrays
    (one per recipe) and the extra (k, y, x) arrays (user rasters, user functions), so that
    a consuming task can call `features_from_observations` on its blocks."""
    recipes = recipes_of(cube)
    obs = [cube[r.name].data for r in recipes]
    extra = [cube["user"].data] if "user" in cube else []
    user = user_function_features(cube, recipes)
    if user is not None:
        extra.append(user.data)
    return recipes, obs, extra


def feature_names(cube: xr.Dataset) -> list[str]:
    """The names of a cube's features, in their order (InputError if two sources give the
    same name)."""
    recipes = recipes_of(cube)
    names = [n for r in recipes for n in r.feature_names]
    if "user" in cube:
        names += [str(n) for n in cube["user_feature"].values]
    user = user_function_features(cube, recipes)
    names += [] if user is None else [str(n) for n in user["feature"].values]
    twice = [n for n, c in Counter(names).items() if c > 1]
    if twice:
        raise InputError([f"tile {cube.attrs['tile']}: several sources give the features "
                          f"{', '.join(twice[:5])}{' ...' if len(twice) > 5 else ''}; give the "
                          "series or STAC source a prefix (series.prefix, stac.prefix)"])
    return names


def features_view(cube: xr.Dataset) -> xr.DataArray:
    """The features of a cube, lazily: (feature, y, x) float32, each block computed from
    its observations where it is consumed (gap-filled reflectances, indices, user rasters
    and functions, in that order; names as `B4_20180511`, `NDVI_20180511`)."""
    recipes, obs, extra = feature_blocks(cube)
    names = feature_names(cube)
    data = lazy.map_yx(_features, *obs, *extra, recipes=recipes, n_obs=len(obs),
                       lead=(len(names),), dtype=np.float32)
    coords = {"feature": names, **_spatial(cube)}
    return xr.DataArray(data, dims=("feature", "y", "x"), coords=coords, name="features")


def _features(*blocks, recipes, n_obs):
    return features_from_observations(recipes, list(blocks[:n_obs]), list(blocks[n_obs:]))


def user_function_features(cube: xr.Dataset, recipes) -> xr.DataArray | None:
    """The user feature functions applied to the first sensor's lazy gap-filled series."""
    specs = json.loads(cube.attrs.get("user_functions", "[]"))
    if not specs or not recipes:
        return None
    filled = gapfilled_view(cube, recipes[0])
    parts = [apply_user_function(spec, filled) for spec in specs]
    return xr.concat(parts, dim="feature") if len(parts) > 1 else parts[0]


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
    result = result.transpose("feature", "y", "x").astype(np.float32)
    return result.chunk({"feature": -1})


def with_views(cube: xr.Dataset) -> xr.Dataset:
    """A cube with its lazy `features` (feature, y, x) added."""
    return cube.assign(features=features_view(cube))


def grid_of_cube(ds: xr.Dataset, chunk: int | None = None) -> TileGrid:
    """The tile grid a cube was built on, chunked as the cube (its stored chunk size; for a
    tile smaller than a chunk in one direction the chunk is not its height, nor its width)."""
    if chunk is None:
        chunk = ds.attrs.get("chunk")
    if chunk is None:
        chunk = max(max(ds.chunks["y"]), max(ds.chunks["x"])) if ds.chunks else 1024
    return TileGrid(ds.attrs["tile"], CRS.from_wkt(ds.attrs["crs_wkt"]),
                    Affine(*ds.attrs["grid_transform"]), ds.sizes["x"], ds.sizes["y"],
                    int(chunk))


def open_cube(path: str | Path) -> xr.Dataset:
    """A stored cube, lazily, with its `features` view."""
    return with_views(lazy.open_zarr(fs.as_path(path)))


def open_series(series: SensorSeries, grid: TileGrid) -> xr.DataArray:
    """The lazy physical values of a series on `grid`: (time, band, y, x) float32, NaN where
    clouds, edges or nodata mask the observation."""
    data, encoding = observations(series, grid)
    values = lazy.map_yx(_decode, data, encoding=encoding, db_input=series.db_input,
                         lead=data.shape[:2], dtype=np.float32)
    coords = {"time": [np.datetime64(d, "ns") for d in series.dates],
              "band": list(series.band_names), "y": grid.coords()[0], "x": grid.coords()[1]}
    return xr.DataArray(values, dims=("time", "band", "y", "x"), coords=coords,
                        name="reflectance")


def _decode(raw, encoding: Encoding, db_input: bool):
    return decode_block(raw, encoding.scale, encoding.offset, encoding.sentinel, db_input)


def open_cubes(config: Config) -> dict[str, xr.Dataset]:
    """The lazy cubes of every tile of the config, straight from the input files (nothing is
    read yet), with their `features` view."""
    sources = tile_sources(config)
    dates = sensor_dates(config, sources)
    return {tile: with_views(tile_observations(config, src, dates))
            for tile, src in sources.items()}
