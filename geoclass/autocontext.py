"""Auto-context (iota2's autoContext; Derksen et al. 2020): each pixel also sees what the
previous model predicted around it.

Iteration 0 fits the usual per-pixel models. Each later iteration classifies the tiles with the
previous models, computes for every SLIC superpixel the share of each predicted class, appends
the shares of the pixel's superpixel (`context_<code>` features) to its features, and refits.
`chain.autocontext_iterations` counts all the iterations; the final map uses the last models,
fed with the context of the map of the iteration before. Superpixels are computed once per tile
(`superpixels.py`) on a few informative features standardized with the learning samples'
statistics. Works with any classifier: the context is ordinary features.

Outputs under `autocontext/`: `segments/<TILE>.zarr` (superpixel ids) and, per iteration k
before the last, `iter_<k>/` with its models and its tile maps.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from geoclass.atomic import atomic_output
from geoclass.config import Config
from geoclass.superpixels import context_features, halo, segment_tile, values_at_pixels

log = logging.getLogger(__name__)

PREFIX = "context_"


def enabled(config: Config) -> bool:
    """Whether the models use context features (auto-context with 2 iterations or more)."""
    return config.chain.enable_autocontext and config.chain.autocontext_iterations > 1


def folder(config: Config) -> Path:
    return Path(config.chain.output_path) / "autocontext"


def segments_path(config: Config, tile: str) -> Path:
    return folder(config) / "segments" / f"{tile}.zarr"


def iteration_map_path(config: Config, tile: str, run: int, iteration: int) -> Path:
    return folder(config) / f"iter_{iteration}" / f"{tile}_seed_{run}.zarr"


def iteration_model_path(config: Config, region: int, run: int, iteration: int) -> Path:
    return folder(config) / f"iter_{iteration}" / f"model_{region}_seed_{run}.joblib"


def context_names(codes) -> list[str]:
    return [f"{PREFIX}{int(c)}" for c in sorted(int(c) for c in codes)]


def segmentation_features(config: Config, names: list[str]) -> list[str]:
    """The features SLIC reads: `chain.autocontext_features`, else every NDVI feature (the
    series that best separates vegetation), else all of them."""
    wanted = config.chain.autocontext_features
    if wanted:
        missing = [n for n in wanted if n not in names]
        if missing:
            from geoclass.errors import ConfigError

            raise ConfigError(
                f"chain.autocontext_features: {missing[:5]} are not features of the cube "
                f"(it has {len(names)}, e.g. {names[:3]}); list some of them or leave the key "
                "out to segment on the NDVI series")
        return list(wanted)
    ndvi = [n for n in names if "ndvi" in n.lower()]
    return ndvi or list(names)


def build_segments(config: Config, learn: pd.DataFrame) -> dict[str, Path]:
    """Superpixels of every tile into `autocontext/segments/<TILE>.zarr`; the features are
    standardized with the mean and std of the learning samples `learn` (the same for every
    chunk and tile)."""
    from geoclass.cluster import compute
    from geoclass.cube import cube_path, open_cube

    paths = {}
    size, compactness = config.chain.autocontext_superpixel_size, \
        config.chain.autocontext_compactness
    for tile in config.chain.list_tile:
        cube = open_cube(cube_path(config, tile))
        names = segmentation_features(config, list(cube.features["feature"].values))
        values = learn[names].to_numpy(np.float64)
        mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
        std = np.where(std > 0, std, 1.0)
        features = cube.features.sel(feature=names).data.rechunk({0: -1})
        scaled = ((features - mean[:, None, None].astype(np.float32))
                  / std[:, None, None].astype(np.float32)).astype(np.float32)
        path = segments_path(config, tile)
        path.parent.mkdir(parents=True, exist_ok=True)
        windows = path.parent / f".{tile}_windows.zarr"
        with atomic_output(path) as tmp:
            stitched = segment_tile(scaled, windows, size, compactness)
            compute(stitched.to_zarr(str(tmp), overwrite=True, compute=False),
                    label=f"stitching the superpixels of {tile}")
        shutil.rmtree(windows, ignore_errors=True)
        log.info("%s: superpixels of ~%d px on %d features", tile, size * size, len(names))
        paths[tile] = path
    return paths


def tile_features(config: Config, tile: str, cube: xr.Dataset, run: int, iteration: int,
                  codes: list[int]) -> xr.DataArray:
    """The features of iteration `iteration` (lazy): the cube's, then for iteration >= 1 the
    class shares of each pixel's superpixel in the map of iteration - 1."""
    if iteration == 0:
        return cube.features
    segments = da.from_zarr(str(segments_path(config, tile)))
    classes = da.from_zarr(str(iteration_map_path(config, tile, run, iteration - 1)),
                           component="classification")
    shares = context_features(segments.rechunk(cube.features.data.chunks[1:]), classes, codes,
                              halo(config.chain.autocontext_superpixel_size))
    context = xr.DataArray(shares, dims=("feature", "y", "x"),
                           coords={"feature": context_names(codes), "y": cube["y"].values,
                                   "x": cube["x"].values})
    return xr.concat([cube.features, context], dim="feature")


def fit_iterations(config: Config, jobs: list, fit_all, save_model) -> tuple[list, list]:
    """Run the auto-context iterations from the per-pixel `jobs` ((region, run, samples,
    features) as train builds them); returns the last iteration's jobs and fitted estimators.
    `fit_all(config, jobs)` fits a list of jobs; `save_model(config, job, fitted, path)` saves
    one."""
    from geoclass.classify import load_class_table

    codes = load_class_table(config).codes
    runs = sorted({run for _, run, _, _ in jobs})
    first_run = pd.concat([part for _, run, part, _ in jobs if run == runs[0]])
    build_segments(config, first_run)
    fitted = fit_all(config, jobs)
    for iteration in range(1, config.chain.autocontext_iterations):
        previous = iteration - 1
        for job, result in zip(jobs, fitted):
            save_model(config, job, result,
                       iteration_model_path(config, job[0], job[1], previous))
        for run in runs:
            _classify_iteration(config, run, previous, codes)
        jobs = _with_context(config, jobs, iteration, codes)
        log.info("auto-context iteration %d: refitting %d models with %d context features",
                 iteration, len(jobs), len(codes))
        fitted = fit_all(config, jobs)
    return jobs, fitted


def _classify_iteration(config: Config, run: int, iteration: int, codes: list[int]) -> None:
    """The tile maps of `iteration` for one run (class only) into `autocontext/iter_<k>/`."""
    from geoclass.classify import tile_regions
    from geoclass.cluster import compute
    from geoclass.cube import cube_path, grid_of_cube, open_cube
    from geoclass.predict import classify_tile

    models = {}
    for path in (folder(config) / f"iter_{iteration}").glob(f"model_*_seed_{run}.joblib"):
        models[int(path.name.split("_")[1])] = path
    for tile in config.chain.list_tile:
        cube = open_cube(cube_path(config, tile))
        features = tile_features(config, tile, cube, run, iteration, codes)
        result = classify_tile(features, tile_regions(config, grid_of_cube(cube)), models, codes,
                               config.classification.boundary_fusion)
        with atomic_output(iteration_map_path(config, tile, run, iteration)) as tmp:
            write = result[["classification"]].to_zarr(tmp, mode="w", zarr_format=2,
                                                       compute=False)
            compute(write, label=f"auto-context iteration {iteration}: classifying {tile} "
                                 f"(run {run})")


def _with_context(config: Config, jobs: list, iteration: int, codes: list[int]) -> list:
    """The jobs with the context features of `iteration` read at each sample's pixel."""
    from geoclass.cube import cube_path, open_cube

    names = context_names(codes)
    out = []
    for run in sorted({run for _, run, _, _ in jobs}):
        mine = [job for job in jobs if job[1] == run]
        base = [job[3][:len(job[3]) - len(names)] if iteration > 1 else job[3] for job in mine]
        table = pd.concat([job[2] for job in mine])
        context = np.zeros((len(table), len(names)), np.float32)
        for tile in table["tile"].unique():
            where = np.nonzero((table["tile"] == tile).to_numpy())[0]
            cube = open_cube(cube_path(config, tile))
            shares = tile_features(config, tile, cube, run, iteration, codes)
            shares = shares.sel(feature=names).data
            context[where] = values_at_pixels(shares, table["row"].to_numpy()[where],
                                              table["col"].to_numpy()[where])
        start = 0
        for (region, _, part, _), features in zip(mine, base):
            part = part.drop(columns=names, errors="ignore").copy()
            part[names] = context[start:start + len(part)]
            start += len(part)
            out.append((region, run, part, features + names))
    return out
