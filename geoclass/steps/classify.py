"""The classify step: every tile of every run classified block by block (features computed
in the prediction's task from the cube's observations, each pixel by its region's model),
into `classif/<TILE>_seed_<run>.zarr`."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from geoclass import lazy
from geoclass.config import Config
from geoclass.io.reference import load_regions
from geoclass.store import RunStore, TileMaps
from geoclass.views.context import context_of, enabled
from geoclass.views.cube import open_cube
from geoclass.views.maps import (
    classify_tile,
    fusion_options,
    region_polygons,
    tile_grids,
    tile_regions,
)

log = logging.getLogger(__name__)


def settings(config: Config) -> dict:
    options = config.classification
    values = {"classification": options.model_dump(
                  mode="json", include={"enable_probability_map", "boundary_fusion"}),
              "chunk": config.dask.chunk_size, "fast": fast_path()}
    if options.needs_probabilities and not options.enable_probability_map:
        values["probabilities"] = True  # kept for the uncertainty maps or the smoothing
    return values


def outputs(config: Config, store: RunStore, record) -> list[Path]:
    return [store.tile_map(t, r) for r in range(config.chain.runs)
            for t in config.chain.list_tile]


def fast_path() -> bool:
    """Whether models are predicted through their compiled fast form (GEOCLASS_FASTFOREST=0
    forces every estimator's own predict_proba: the reference path)."""
    return os.environ.get("GEOCLASS_FASTFOREST", "1") != "0"


def tile_maps(config: Config, store: RunStore, run: int, models=None) -> dict:
    """The lazy maps of every tile for one run (nothing is computed); `models`: the train
    step's (default: from its manifest)."""
    models = models or store.models()
    table = store.class_table()
    refs = {region: (path, models.sha256.get((region, r)))
            for (region, r), path in models.items() if r == run}
    boundary = config.classification.boundary_fusion
    grids = tile_grids(config.chain.list_tile, store)
    polygons = region_polygons(config.chain, grids)
    out = {}
    for tile in config.chain.list_tile:
        cube = open_cube(store.cube(tile))
        grid = grids[tile]
        fusion = (fusion_options(boundary.interior_buffer_size, boundary.exterior_buffer_size,
                                 boundary.epsilon, grid.resolution)
                  if boundary.enable else None)
        context, names = None, ()
        if enabled(config):  # the last iteration's models, fed the context of the one before
            before = config.chain.autocontext_iterations - 2
            context, names = context_of(store.segments(tile), store.tile_map(tile, run, before),
                                        cube, table.codes,
                                        config.chain.autocontext_superpixel_size)
        regions = tile_regions(polygons, grid)
        result = classify_tile(cube, regions, refs, table.codes, fusion, context, names,
                               fast_path())
        if not config.classification.needs_probabilities:
            result = result.drop_vars("probabilities")
        out[tile] = result
    return out


def run(config: Config, store: RunStore, force: bool = False) -> TileMaps:
    """Classify every tile of every run into `classif/` (each map atomically)."""
    models = store.models()
    _warn_regions_without_model(config, models)
    paths = TileMaps()
    for run_number in range(config.chain.runs):
        paths[run_number] = {}
        for tile, result in tile_maps(config, store, run_number, models).items():
            path = store.tile_map(tile, run_number)
            lazy.write_dataset(result, path, f"classifying {tile} (run {run_number})")
            paths[run_number][tile] = path
    return paths


def _warn_regions_without_model(config: Config, models) -> None:
    chain = config.chain
    if chain.region_path is not None:
        regions = set(load_regions(chain.region_path, chain.region_field)["region"])
    elif chain.region_tiles is not None:
        regions = set(chain.region_tiles)
    else:
        return
    for run in range(config.chain.runs):
        missing = sorted(regions - {region for region, r in models if r == run})
        if missing:
            log.warning("run %d: regions %s have no model (no learning sample); their pixels "
                        "are left unclassified (0)", run, missing)
