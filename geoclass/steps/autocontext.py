"""Auto-context training (iota2's autoContext; Derksen et al. 2020), a part of the train
step: each pixel also sees what the previous model predicted around it.

Iteration 0 fits the usual per-pixel models. Each later iteration classifies the tiles with the
previous models, computes for every SLIC superpixel the share of each predicted class, appends
the shares of the pixel's superpixel (`context_<code>` features) to its features, and refits.
`chain.autocontext_iterations` counts all the iterations; the final map uses the last models,
fed with the context of the map of the iteration before. Superpixels are computed once per tile
on a few informative features standardized with the learning samples' statistics (views/
context.py). Works with any classifier: the context is ordinary features.

Outputs under `autocontext/`: `segments/<TILE>.zarr` (superpixel ids) and, per iteration k
before the last, `iter_<k>/` with its models and its tile maps."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from geoclass import fs, lazy
from geoclass.config import Config
from geoclass.store import RunStore
from geoclass.views.context import (
    context_of,
    enabled,
    segment_tile,
    segmentation_features,
)
from geoclass.views.cube import open_cube
from geoclass.views.maps import (
    classify_tile,
    fusion_options,
    region_polygons,
    tile_grids,
    tile_regions,
)

__all__ = ["enabled", "fit_iterations"]

log = logging.getLogger(__name__)


def build_segments(config: Config, store: RunStore, learn: pd.DataFrame) -> None:
    """Superpixels of every tile into `autocontext/segments/<TILE>.zarr`; the features are
    standardized with the mean and std of the learning samples `learn` (the same for every
    chunk and tile)."""
    size = config.chain.autocontext_superpixel_size
    for tile in config.chain.list_tile:
        cube = open_cube(store.cube(tile))
        names = segmentation_features(config.chain.autocontext_features,
                                      list(cube.features["feature"].values))
        values = learn[names].to_numpy(np.float64)
        mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
        std = np.where(std > 0, std, 1.0)
        features = cube.features.sel(feature=names).data
        scaled = ((features - mean[:, None, None].astype(np.float32))
                  / std[:, None, None].astype(np.float32)).astype(np.float32)
        windows_path = store.scratch(f"{tile}_windows")
        ids = segment_tile(scaled, windows_path, size, config.chain.autocontext_compactness)
        lazy.write_array(ids, store.segments(tile), f"stitching the superpixels of {tile}")
        fs.rm(windows_path)
        log.info("%s: superpixels of ~%d px on %d features", tile, size * size, len(names))


def fit_iterations(config: Config, store: RunStore, jobs: list, fit, save) -> tuple[list, list]:
    """Run the auto-context iterations from the per-pixel `jobs` ((region, run, samples,
    features) as train builds them); returns the last iteration's jobs and fitted estimators.
    `fit(jobs)` fits a list of jobs; `save(job, fitted, path)` saves one (returns its
    SHA-256)."""
    codes = store.class_table().codes
    runs = sorted({run for _, run, _, _ in jobs})
    first_run = pd.concat([part for _, run, part, _ in jobs if run == runs[0]])
    build_segments(config, store, first_run)
    fitted = fit(jobs)
    for iteration in range(1, config.chain.autocontext_iterations):
        previous = iteration - 1
        models = {}
        for job, result in zip(jobs, fitted):
            path = store.model(job[0], job[1], previous)
            models[(job[0], job[1])] = (path, save(job, result, path))
        for run in runs:
            _classify_iteration(config, store, run, previous, codes, models)
        jobs = _with_context(config, store, jobs, iteration, codes)
        log.info("auto-context iteration %d: refitting %d models with %d context features",
                 iteration, len(jobs), len(codes))
        fitted = fit(jobs)
    return jobs, fitted


def tile_context(config: Config, store: RunStore, tile: str, cube, run: int, iteration: int,
                 codes: list[int]):
    """The context features of iteration `iteration` >= 1 (from the map of the one before)."""
    return context_of(store.segments(tile), store.tile_map(tile, run, iteration - 1), cube,
                      codes, config.chain.autocontext_superpixel_size)


def _classify_iteration(config: Config, store: RunStore, run: int, iteration: int,
                        codes: list[int], models: dict) -> None:
    """The tile maps of `iteration` for one run (class only) into `autocontext/iter_<k>/`."""
    refs = {region: ref for (region, r), ref in models.items() if r == run}
    boundary = config.classification.boundary_fusion
    grids = tile_grids(config.chain.list_tile, store)
    polygons = region_polygons(config.chain, grids)
    for tile in config.chain.list_tile:
        cube = open_cube(store.cube(tile))
        grid = grids[tile]
        context, names = (tile_context(config, store, tile, cube, run, iteration, codes)
                          if iteration > 0 else (None, ()))
        fusion = (fusion_options(boundary.interior_buffer_size, boundary.exterior_buffer_size,
                                 boundary.epsilon, grid.resolution) if boundary.enable else None)
        regions = tile_regions(polygons, grid)
        result = classify_tile(cube, regions, refs, codes, fusion, context, names)
        lazy.write_dataset(result[["classification"]], store.tile_map(tile, run, iteration),
                           f"auto-context iteration {iteration}: classifying {tile} (run {run})")


def _with_context(config: Config, store: RunStore, jobs: list, iteration: int,
                  codes: list[int]) -> list:
    """The jobs with the context features of `iteration` read at each sample's pixel."""
    out = []
    for run in sorted({run for _, run, _, _ in jobs}):
        mine = [job for job in jobs if job[1] == run]
        table = pd.concat([job[2] for job in mine])
        names, context = None, None
        for tile in table["tile"].unique():
            where = np.nonzero((table["tile"] == tile).to_numpy())[0]
            cube = open_cube(store.cube(tile))
            shares, names = tile_context(config, store, tile, cube, run, iteration, codes)
            if context is None:
                context = np.zeros((len(table), len(names)), np.float32)
            context[where] = lazy.pick(shares, table["row"].to_numpy()[where],
                                       table["col"].to_numpy()[where],
                                       "reading the context of the samples")
        base = [job[3][:len(job[3]) - len(names)] if iteration > 1 else job[3] for job in mine]
        start = 0
        for (region, _, part, _), features in zip(mine, base):
            part = part.drop(columns=names, errors="ignore").copy()
            part[names] = context[start:start + len(part)]
            start += len(part)
            out.append((region, run, part, features + names))
    return out
