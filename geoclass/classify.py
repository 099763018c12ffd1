"""Classification of every tile and run: the cube, the regions rasterized chunk by chunk and
the models of the run give a lazy map per tile, persisted to zarr block by block."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr

from geoclass import autocontext
from geoclass.atomic import atomic_output, record_step, step_is_current
from geoclass.cluster import compute
from geoclass.config import Config
from geoclass.cube import grid_of_cube, open_cube
from geoclass.grid import TileGrid
from geoclass.predict import classify_tile
from geoclass.rasterize import lazy_rasterize
from geoclass.reference import ClassInfo, ClassTable, load_regions
from geoclass.train import train

log = logging.getLogger(__name__)


def load_class_table(config: Config) -> ClassTable:
    """The class table written by the samples step (`samples/classes.json`)."""
    data = json.loads((Path(config.chain.output_path) / "samples" / "classes.json").read_text())
    classes = [ClassInfo(c["user_label"], int(c["code"]), c["name"], tuple(c["color"]))
               for c in data["classes"]]
    return ClassTable(classes, data["labels_are_strings"])


def tile_regions(config: Config, grid: TileGrid) -> da.Array:
    """The region of every pixel of a tile (0 outside every region), rasterized lazily; the
    whole tile is region 1 when the config has no region file."""
    if config.chain.region_path is None:
        return da.ones(grid.shape, chunks=grid.chunks, dtype=np.int32)
    regions = load_regions(config.chain.region_path, config.chain.region_field, grid.crs)
    return lazy_rasterize(regions, "region", grid)


def classify_lazy(config: Config, run: int, models: dict[tuple[int, int], Path],
                  cubes: dict[str, xr.Dataset] | None = None) -> dict[str, xr.Dataset]:
    """The lazy classification of every tile for one run (nothing is computed): the
    notebook entry point. `cubes` default to the persisted cubes."""
    from geoclass.cube import cube_path

    cubes = cubes or {t: open_cube(cube_path(config, t)) for t in config.chain.list_tile}
    codes = load_class_table(config).codes
    paths = {region: path for (region, r), path in models.items() if r == run}
    out = {}
    for tile, cube in cubes.items():
        grid = grid_of_cube(cube)
        features = cube.features
        if autocontext.enabled(config):  # the last iteration's models, with their context
            features = autocontext.tile_features(config, tile, cube, run,
                                                 config.chain.autocontext_iterations - 1, codes)
        result = classify_tile(features, tile_regions(config, grid), paths, codes,
                               config.classification.boundary_fusion, grid.resolution)
        if not config.classification.enable_probability_map:
            result = result.drop_vars("probabilities")
        result.attrs.update(cube.attrs)
        out[tile] = result
    return out


def tile_map_path(config: Config, tile: str, run: int) -> Path:
    return Path(config.chain.output_path) / "classif" / f"{tile}_seed_{run}.zarr"


def _settings(config: Config) -> dict:
    models = Path(config.chain.output_path) / "model" / "manifest.json"
    return {"models": json.loads(models.read_text()),
            "classification": config.classification.model_dump(
                mode="json", include={"enable_probability_map", "boundary_fusion"}),
            "chunk": config.dask.chunk_size}


def classify(config: Config, force: bool = False) -> dict[int, dict[str, Path]]:
    """Classify every tile of every run into `classif/<TILE>_seed_<run>.zarr` (training
    first if needed); skipped when the models and the classification settings did not
    change."""
    models = train(config)
    manifest = Path(config.chain.output_path) / "classif" / "manifest.json"
    settings = _settings(config)
    runs = range(config.chain.runs)
    paths = {run: {t: tile_map_path(config, t, run) for t in config.chain.list_tile}
             for run in runs}
    outputs = [p for m in paths.values() for p in m.values()]
    if step_is_current(manifest, settings, outputs, force):
        log.info("tile classifications are up to date")
        return paths
    manifest.unlink(missing_ok=True)
    _warn_regions_without_model(config, models)
    for run in runs:
        for tile, result in classify_lazy(config, run, models).items():
            with atomic_output(paths[run][tile]) as tmp:
                write = result.to_zarr(tmp, mode="w", consolidated=True, zarr_format=2,
                                       compute=False)
                compute(write, label=f"classifying {tile} (run {run})")
    record_step(manifest, settings)
    return paths


def _warn_regions_without_model(config: Config, models) -> None:
    if config.chain.region_path is None:
        return
    regions = set(load_regions(config.chain.region_path, config.chain.region_field)["region"])
    for run in range(config.chain.runs):
        missing = sorted(regions - {region for region, r in models if r == run})
        if missing:
            log.warning("run %d: regions %s have no model (no learning sample); their pixels "
                        "are left unclassified (0)", run, missing)
