"""The mosaic step: every run's tile maps merged block by block onto one grid in `chain.proj`
(tiles in another CRS warped; where tiles overlap the higher confidence wins), the pixel
validity, the fusion of runs, and the final COGs under iota2's names in `final/`; with them
the uncertainty maps, the smoothed maps (block by block with an overlap) and, next to every
class map, its QGIS style and GDAL attribute table."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import numpy as np
from rasterio.warp import Resampling

from geoclass import fs, lazy
from geoclass.classes import ClassTable
from geoclass.config import Config, Smoothing
from geoclass.errors import InputError
from geoclass.grid import TileGrid, crs_label
from geoclass.io.cog import write_cog
from geoclass.io.qgis import write_class_styles
from geoclass.io.regrid import TileMap, read_onto
from geoclass.kernels.fusion import dempster_shafer, majority_vote, mob_masses
from geoclass.kernels.merge import PROBA_NODATA, VALIDITY_NODATA, merge_maps, merge_validity
from geoclass.kernels.scores import confusion_matrix
from geoclass.kernels.uncertainty import UNCERTAINTY_NODATA, UNCERTAINTY_SCALE
from geoclass.store import Maps, RunStore
from geoclass.views.maps import (
    bayes_smoothed,
    class_counts,
    labels_of,
    majority_smoothed,
    map_values_at,
    output_grid,
    tile_grids,
    uncertainty_map,
)

log = logging.getLogger(__name__)

UNDECIDED_COLOR = (128, 128, 128)
UNDECIDED_NAME = "undecided"


def settings(config: Config) -> dict:
    options = config.classification
    return {"proj": config.chain.proj, "chunk": config.dask.chunk_size,
            "merge": options.merge_final_classifications.model_dump(mode="json"),
            "probabilities": options.enable_probability_map,
            "keep_probabilities": options.needs_probabilities,
            "uncertainty": list(options.uncertainty),
            "smoothing": options.smoothing.model_dump(mode="json")}


def _fusion_wanted(config: Config) -> bool:
    return config.classification.merge_final_classifications.enable and config.chain.runs > 1


def class_maps(config: Config, store: RunStore) -> list[Path]:
    """The class-map COGs (each gets a QGIS style and an attribute table)."""
    final, runs = store.final, range(config.chain.runs)
    paths = [final / f"Classif_Seed_{r}.tif" for r in runs]
    if config.classification.smoothing.method:
        paths += [store.smoothed_cog(r) for r in runs]
    if _fusion_wanted(config):
        paths.append(final / "Classifications_fusion.tif")
    return paths


def cogs(config: Config, store: RunStore) -> list[Path]:
    """Every COG the step writes."""
    options = config.classification
    final, runs = store.final, range(config.chain.runs)
    paths = [final / f"Classif_Seed_{r}.tif" for r in runs]
    paths += [final / f"Confidence_Seed_{r}.tif" for r in runs]
    paths.append(final / "PixelsValidity.tif")
    if options.enable_probability_map:
        paths += [final / f"ProbabilityMap_Seed_{r}.tif" for r in runs]
    paths += [store.uncertainty_cog(m, r) for r in runs for m in options.uncertainty]
    if options.smoothing.method:
        paths += [store.smoothed_cog(r) for r in runs]
        if options.smoothing.method == "bayes" and options.enable_probability_map:
            paths += [store.smoothed_probability_cog(r) for r in runs]
    if _fusion_wanted(config):
        paths.append(final / "Classifications_fusion.tif")
    return paths


def outputs(config: Config, store: RunStore, record=None) -> list[Path]:
    return cogs(config, store) + [p for m in class_maps(config, store) for p in store.styles(m)]


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


def classification_cog(path: Path, mosaic: Path, grid: TileGrid, table: ClassTable,
                       extra: dict[int, tuple] | None = None) -> None:
    """A class-map COG from a stored mosaic's `classification` (palette, class names in the
    metadata), its QGIS style (<name>.qml) and its GDAL attribute table with pixel counts
    (<name>.tif.aux.xml). `extra`: code -> colour of labels outside the classes (undecided)."""
    colors = {**table.colors, **(extra or {})}
    names = {f"CLASS_{c.code}": c.name for c in table.classes}
    write_cog(path, lazy.stored_array(mosaic, "classification"), grid, nodata=0,
              dtype=_class_dtype(colors), colormap=colors, descriptions=["classification"],
              metadata=names)
    styles = [(c.code, c.name, c.color) for c in table.classes]
    styles += [(code, UNDECIDED_NAME, color) for code, color in (extra or {}).items()
               if code not in table.codes]
    codes = [code for code, _, _ in styles]
    counts, = lazy.compute_all([class_counts(lazy.read_zarr(mosaic, "classification"), codes)],
                               label=f"class counts of {path.name}")
    for stale in RunStore.styles(path):  # a previous map's sidecar describes another raster
        fs.rm(stale)
    write_class_styles(path, styles, counts=dict(zip(codes, counts.tolist())))


def run(config: Config, store: RunStore, force: bool = False) -> Maps:
    """Mosaic every run, write the final COGs, the pixel validity and the fusion of runs."""
    grids = tile_grids(config.chain.list_tile, store)
    grid = output_grid(grids, config.chain.proj, config.dask.chunk_size)
    table = store.class_table()
    options = config.classification
    probabilities = options.needs_probabilities
    log.info("mosaic grid: %d x %d px in %s", grid.width, grid.height, crs_label(grid.crs))
    for run_number in range(config.chain.runs):
        tiles = [TileMap(str(store.tile_map(t, run_number)), grids[t])
                 for t in config.chain.list_tile]
        stacked = lazy_mosaic(tiles, grid, len(table.codes), probabilities)
        bands = {"classification": stacked[0], "confidence": stacked[1]}
        if probabilities:
            bands["probabilities"] = stacked[2:]
        for measure in options.uncertainty:  # from the same blocks, in the same pass
            bands[f"uncertainty_{measure}"] = uncertainty_map(stacked[2:], measure)
        mosaic = lazy.write_zarr(bands, store.mosaic(run_number), f"mosaic of run {run_number}")
        _run_cogs(store, run_number, mosaic, grid, table, options.enable_probability_map)
        for measure in options.uncertainty:
            write_cog(store.uncertainty_cog(measure, run_number),
                      lazy.stored_array(mosaic, f"uncertainty_{measure}"), grid,
                      nodata=UNCERTAINTY_NODATA, dtype=np.uint16, scale=1 / UNCERTAINTY_SCALE,
                      descriptions=[f"{measure} uncertainty (0-1)"],
                      overview_resampling="average")
        if options.smoothing.method:
            smooth_run(options.smoothing, store, run_number, grid, table,
                       options.enable_probability_map)
    cubes = [TileMap(str(store.cube(t)), grids[t]) for t in config.chain.list_tile]
    validity = lazy.write_zarr({"validity": lazy_validity(cubes, grid)},
                               store.mosaic("validity"), "pixel validity")
    write_cog(store.final / "PixelsValidity.tif", lazy.stored_array(validity, "validity"), grid,
              nodata=VALIDITY_NODATA, descriptions=["number of clear dates"],
              overview_resampling="nearest")
    if _fusion_wanted(config):
        fuse_runs(config, store, grid, grids, table)
    return Maps(cogs(config, store))


def _run_cogs(store: RunStore, run: int, mosaic: Path, grid: TileGrid, table: ClassTable,
              probabilities: bool) -> None:
    final = store.final
    classification_cog(final / f"Classif_Seed_{run}.tif", mosaic, grid, table)
    write_cog(final / f"Confidence_Seed_{run}.tif", lazy.stored_array(mosaic, "confidence"),
              grid, nodata=0, dtype=np.uint8, descriptions=["confidence (%)"],
              overview_resampling="average")
    if probabilities:
        write_cog(final / f"ProbabilityMap_Seed_{run}.tif",
                  lazy.stored_array(mosaic, "probabilities"), grid, nodata=PROBA_NODATA,
                  scale=0.001, descriptions=[c.name for c in table.classes],
                  overview_resampling="average")


def smoothness_per_class(smoothness: float | dict[str, float], table: ClassTable,
                         default: float = 20.0) -> float | list[float]:
    """`smoothing.smoothness` as one value, or one per class in code order from a mapping of
    class names, labels or codes (classes left out get `default`, sits' value)."""
    if not isinstance(smoothness, dict):
        return float(smoothness)
    keys = {}
    for info in table.classes:
        for key in (info.name, info.user_label, str(info.code)):
            keys.setdefault(str(key), info.code)
    unknown = [k for k in smoothness if str(k) not in keys]
    if unknown:
        raise InputError([f"classification.smoothing.smoothness: unknown classes {unknown}; "
                          f"the classes are {[c.name for c in table.classes]}"])
    by_code = {keys[str(k)]: float(v) for k, v in smoothness.items()}
    return [by_code.get(code, default) for code in table.codes]


def smooth_run(options: Smoothing, store: RunStore, run: int, grid: TileGrid,
               table: ClassTable, probability_cog: bool) -> Path:
    """The smoothed map of a run, from its stored mosaic, block by block with an overlap
    (results independent of the chunks): Bayesian smoothing of the probabilities then the
    most probable class, or the majority filter of the class map. Writes
    mosaic/seed_<run>_smoothed.zarr, Classif_Smoothed_Seed_<run>.tif (+ style) and, for
    the Bayesian smoothing with probability maps, ProbabilityMap_Smoothed_Seed_<run>.tif."""
    source = store.mosaic(run)
    extra = None
    if options.method == "bayes":
        smoothed = bayes_smoothed(lazy.read_zarr(source, "probabilities"), options.window_size,
                                  options.neigh_fraction,
                                  smoothness_per_class(options.smoothness, table))
        arrays = {"classification": labels_of(smoothed, table.codes), "probabilities": smoothed}
    else:
        arrays = {"classification": majority_smoothed(
            lazy.read_zarr(source, "classification"), options.radius, options.undecided_label,
            options.isolated_threshold)}
        if options.undecided_label is not None:
            extra = {options.undecided_label: UNDECIDED_COLOR}
    mosaic = lazy.write_zarr(arrays, store.smoothed_mosaic(run),
                             f"{options.method} smoothing of run {run}")
    classification_cog(store.smoothed_cog(run), mosaic, grid, table, extra)
    if options.method == "bayes" and probability_cog:
        write_cog(store.smoothed_probability_cog(run), lazy.stored_array(mosaic, "probabilities"),
                  grid, nodata=PROBA_NODATA, scale=0.001,
                  descriptions=[c.name for c in table.classes], overview_resampling="average")
    return mosaic


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
    classification_cog(path, mosaic, grid, table, extra)
    return path
