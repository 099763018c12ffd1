"""The mosaic step: every run's tile maps merged block by block onto one grid in `chain.proj`
(tiles in another CRS warped; where tiles overlap the higher confidence wins), the pixel
validity, the fusion of runs, and the final COGs under iota2's names in `final/`."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import numpy as np
from rasterio.warp import Resampling

from geoclass import fs, lazy
from geoclass.classes import ClassTable
from geoclass.config import Config
from geoclass.grid import TileGrid, crs_label
from geoclass.io.cog import write_cog
from geoclass.io.regrid import TileMap, read_onto
from geoclass.kernels.fusion import dempster_shafer, majority_vote, mob_masses
from geoclass.kernels.merge import PROBA_NODATA, VALIDITY_NODATA, merge_maps, merge_validity
from geoclass.kernels.scores import confusion_matrix
from geoclass.store import Maps, RunStore
from geoclass.views.maps import map_values_at, output_grid, tile_grids

log = logging.getLogger(__name__)

UNDECIDED_COLOR = (128, 128, 128)


def settings(config: Config) -> dict:
    return {"proj": config.chain.proj, "chunk": config.dask.chunk_size,
            "merge": config.classification.merge_final_classifications.model_dump(mode="json"),
            "probabilities": config.classification.enable_probability_map}


def _fusion_wanted(config: Config) -> bool:
    return config.classification.merge_final_classifications.enable and config.chain.runs > 1


def outputs(config: Config, store: RunStore, record=None) -> list[Path]:
    final, runs = store.final, range(config.chain.runs)
    paths = [final / f"Classif_Seed_{r}.tif" for r in runs]
    paths += [final / f"Confidence_Seed_{r}.tif" for r in runs]
    paths.append(final / "PixelsValidity.tif")
    if config.classification.enable_probability_map:
        paths += [final / f"ProbabilityMap_Seed_{r}.tif" for r in runs]
    if _fusion_wanted(config):
        paths.append(final / "Classifications_fusion.tif")
    return paths


# --- lazy mosaics ------------------------------------------------------------------------------


def _mosaic_block(tiles: list[TileMap], grid: TileGrid, n_classes: int, probabilities: bool,
                  window):
    """One mosaic block: each tile's maps read onto it (a thin reader), then merged."""
    block = grid.block_grid(window)
    layers = []
    for tile in tiles:
        label = read_onto(tile, "classification", block, Resampling.nearest, 0)
        if label is None:
            layers.append(None)
            continue
        confidence = read_onto(tile, "confidence", block, Resampling.nearest, 0)
        proba = (read_onto(tile, "probabilities", block, Resampling.bilinear, PROBA_NODATA)
                 if probabilities else None)
        layers.append((label, confidence, proba))
    return merge_maps(layers, block.shape, n_classes, probabilities)


def _validity_block(tiles: list[TileMap], grid: TileGrid, window):
    block = grid.block_grid(window)
    return merge_validity([read_onto(t, "validity", block, Resampling.nearest,
                                     VALIDITY_NODATA) for t in tiles], block.shape)


def lazy_mosaic(tiles: list[TileMap], grid: TileGrid, n_classes: int, probabilities: bool):
    """The (2 [+ C], y, x) uint16 mosaic of tile maps, one task per mosaic block."""
    bands = 2 + (n_classes if probabilities else 0)
    return lazy.from_windows(_mosaic_block, grid, (bands,), np.uint16, tiles, grid, n_classes,
                             probabilities)


def lazy_validity(tiles: list[TileMap], grid: TileGrid):
    return lazy.from_windows(_validity_block, grid, (), np.uint16, tiles, grid)


# --- the step ------------------------------------------------------------------------------


def _class_dtype(codes) -> np.dtype:
    return np.dtype(np.uint8 if max(codes) <= 255 else np.uint16)


def classification_cog(path: Path, source, grid: TileGrid, table: ClassTable,
                       extra: dict[int, tuple] | None = None) -> None:
    colors = {**table.colors, **(extra or {})}
    names = {f"CLASS_{c.code}": c.name for c in table.classes}
    write_cog(path, source, grid, nodata=0, dtype=_class_dtype(colors), colormap=colors,
              descriptions=["classification"], metadata=names)


def run(config: Config, store: RunStore, force: bool = False) -> Maps:
    """Mosaic every run, write the final COGs, the pixel validity and the fusion of runs."""
    grids = tile_grids(config.chain.list_tile, store)
    grid = output_grid(grids, config.chain.proj, config.dask.chunk_size)
    table = store.class_table()
    probabilities = config.classification.enable_probability_map
    log.info("mosaic grid: %d x %d px in %s", grid.width, grid.height, crs_label(grid.crs))
    for run_number in range(config.chain.runs):
        tiles = [TileMap(str(store.tile_map(t, run_number)), grids[t])
                 for t in config.chain.list_tile]
        stacked = lazy_mosaic(tiles, grid, len(table.codes), probabilities)
        bands = {"classification": stacked[0], "confidence": stacked[1]}
        if probabilities:
            bands["probabilities"] = stacked[2:]
        mosaic = lazy.write_zarr(bands, store.mosaic(run_number), f"mosaic of run {run_number}")
        _run_cogs(store.final, run_number, mosaic, grid, table, probabilities)
    cubes = [TileMap(str(store.cube(t)), grids[t]) for t in config.chain.list_tile]
    validity = lazy.write_zarr({"validity": lazy_validity(cubes, grid)},
                               store.mosaic("validity"), "pixel validity")
    write_cog(store.final / "PixelsValidity.tif", lazy.stored_array(validity, "validity"), grid,
              nodata=VALIDITY_NODATA, descriptions=["number of clear dates"],
              overview_resampling="nearest")
    if _fusion_wanted(config):
        fuse_runs(config, store, grid, grids, table)
    return Maps(outputs(config, store))


def _run_cogs(final: Path, run: int, mosaic: Path, grid: TileGrid, table: ClassTable,
              probabilities: bool) -> None:
    classification_cog(final / f"Classif_Seed_{run}.tif",
                       lazy.stored_array(mosaic, "classification"), grid, table)
    write_cog(final / f"Confidence_Seed_{run}.tif", lazy.stored_array(mosaic, "confidence"),
              grid, nodata=0, dtype=np.uint8, descriptions=["confidence (%)"],
              overview_resampling="average")
    if probabilities:
        write_cog(final / f"ProbabilityMap_Seed_{run}.tif",
                  lazy.stored_array(mosaic, "probabilities"), grid, nodata=PROBA_NODATA,
                  scale=0.001, descriptions=[c.name for c in table.classes],
                  overview_resampling="average")


def run_confusion(config: Config, store: RunStore, run: int | str, grid: TileGrid,
                  grids: dict[str, TileGrid], table: ClassTable,
                  samples_run: int | None = None) -> np.ndarray:
    """The confusion matrix of a mosaic against the validation pixels of `samples_run`."""
    samples = fs.read_parquet(store.samples(run if samples_run is None else samples_run,
                                            "validation"))
    predicted = map_values_at(store.mosaic(run), grid, samples,
                              {t: g.crs for t, g in grids.items()})
    return confusion_matrix(samples["code"].to_numpy(), predicted, table.codes)


def fuse_runs(config: Config, store: RunStore, grid: TileGrid, grids: dict[str, TileGrid],
              table: ClassTable) -> Path:
    """`Classifications_fusion.tif`: majority voting (ties to the best mean confidence, or
    the undecided label) or Dempster-Shafer with each run's confusion matrix as belief."""
    options = config.classification.merge_final_classifications
    runs = range(config.chain.runs)
    labels, confidences = (
        lazy.stack([lazy.read_zarr(store.mosaic(r), name) for r in runs])
        for name in ("classification", "confidence"))
    if options.method == "majorityvoting":
        vote = partial(majority_vote, undecided_label=options.undecided_label)
        fused = lazy.map_yx(vote, labels, confidences, lead=(), dtype=np.uint16)
    else:
        masses = np.array([mob_masses(run_confusion(config, store, r, grid, grids, table),
                                      options.dempstershafer_mob) for r in runs])
        log.info("Dempster-Shafer masses (%s) per run: %s", options.dempstershafer_mob,
                 np.round(masses, 3).tolist())
        belief = partial(dempster_shafer, masses=masses, classes=table.codes,
                         undecided_label=options.undecided_label)
        fused = lazy.map_yx(belief, labels, lead=(), dtype=np.uint16)
    mosaic = lazy.write_zarr({"classification": fused}, store.mosaic("fusion"), "fusion of runs")
    extra = {options.undecided_label: UNDECIDED_COLOR} if options.undecided_label else None
    path = store.final / "Classifications_fusion.tif"
    classification_cog(path, lazy.stored_array(mosaic, "classification"), grid, table, extra)
    return path
