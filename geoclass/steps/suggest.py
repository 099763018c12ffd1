"""Uncertainty sampling (active learning, as sits_uncertainty_sampling): the most uncertain
pixels of a run's map, spread apart and shared out between the predicted classes, written as
a GeoPackage of points for a user to label next (`geoclass suggest`). Not a step of the
chain: it reads a finished mosaic (its stored uncertainty, or its class probabilities)."""

from __future__ import annotations

import logging
from pathlib import Path

import geopandas as gpd
import numpy as np

from geoclass import fs, lazy
from geoclass.config import Config
from geoclass.errors import InputError
from geoclass.io.vector import write_geopackage
from geoclass.kernels.uncertainty import MEASURES, UNCERTAINTY_SCALE, merge_candidates
from geoclass.store import RunStore
from geoclass.views.maps import output_grid, tile_grids, uncertain_candidates, uncertainty_map

log = logging.getLogger(__name__)

DEFAULT_SPACING = 10  # pixels between suggestions when no distance is given (sits' window)


def _uncertainty(store: RunStore, run: int, measure: str):
    """The stored uncertainty of the run's mosaic, or one computed from its probabilities."""
    path = store.mosaic(run)
    if not path.exists():
        raise InputError([f"{path}: no map of run {run}; run geoclass run (or geoclass "
                          "classify) first"])
    names = set(lazy.open_zarr(path).data_vars)
    if f"uncertainty_{measure}" in names:
        return lazy.read_zarr(path, f"uncertainty_{measure}")
    if "probabilities" in names:
        return uncertainty_map(lazy.read_zarr(path, "probabilities"), measure)
    raise InputError([f"run {run}: the map kept no class probabilities; set "
                      "classification.uncertainty (e.g. [entropy]) or "
                      "classification.enable_probability_map in the configuration and run "
                      "geoclass run again"])


def suggest(config: Config, store: RunStore, n: int = 200, min_distance: float | None = None,
            measure: str | None = None, run: int = 0, min_uncertainty: float | None = None,
            output: str | Path | None = None) -> tuple[Path, gpd.GeoDataFrame]:
    """Write the `n` most uncertain locations of run `run`'s map (uncertainty `measure`:
    entropy, margin or least; default the first of classification.uncertainty, else
    entropy), each at least `min_distance` map units (default 10 pixels) from the others,
    shared out round-robin between the predicted classes (most uncertain first), and none
    below `min_uncertainty` (0-1). Points at pixel centres in the map's CRS, with their
    predicted `code` and class `name`, `uncertainty` (0-1), `measure`, `run`, `row`, `col`.
    Written to `output` (default final/SuggestedSamples_Seed_<run>.gpkg); returns the path
    and the points."""
    measure = measure or (config.classification.uncertainty or ["entropy"])[0]
    if measure not in MEASURES:
        raise InputError([f"unknown uncertainty measure {measure!r}; one of {MEASURES}"])
    if n < 1:
        raise InputError([f"the number of suggestions must be at least 1, got {n}"])
    if not 0 <= run < config.chain.runs:
        raise InputError([f"run {run} does not exist: chain.runs is {config.chain.runs}"])
    values = _uncertainty(store, run, measure)
    grid = output_grid(tile_grids(config.chain.list_tile, store), config.chain.proj,
                       config.dask.chunk_size)
    spacing = (DEFAULT_SPACING if min_distance is None
               else float(min_distance) / grid.resolution)  # in pixels
    classes = lazy.read_zarr(store.mosaic(run), "classification")
    threshold = None if min_uncertainty is None else min_uncertainty * UNCERTAINTY_SCALE
    tasks = uncertain_candidates(values, classes, n, spacing, threshold)
    chosen = merge_candidates(list(lazy.compute_all(tasks, label="uncertain pixels")), n,
                              spacing)
    table = store.class_table()
    rows, cols = chosen["row"], chosen["col"]
    xs, ys = grid.transform * (cols + 0.5, rows + 0.5)
    points = gpd.GeoDataFrame(
        {"code": chosen["class"].astype(np.int64),
         "name": [table.names.get(int(c), str(c)) for c in chosen["class"]],
         "uncertainty": chosen["uncertainty"] / UNCERTAINTY_SCALE, "measure": measure,
         "run": run, "row": rows, "col": cols},
        geometry=gpd.points_from_xy(xs, ys), crs=grid.crs)
    path = fs.as_path(output) if output is not None else store.suggestions(run)
    write_geopackage(points, path, layer="suggested_samples")
    if len(points) < n:
        log.warning("only %d locations found at least %.1f pixels apart (of %d asked)",
                    len(points), spacing, n)
    log.info("%d locations to label written to %s", len(points), path)
    return path, points
