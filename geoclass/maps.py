"""The final maps (iota2's names, under `final/`): per run the classification, confidence and
probability mosaics, the pixel validity, and the fusion of the runs, as COGs."""

from __future__ import annotations

import json
import logging
from functools import partial
from pathlib import Path

import dask.array as da
import numpy as np
from rasterio.crs import CRS

from geoclass.assess import values_at
from geoclass.atomic import atomic_output, record_step, step_is_current
from geoclass.classify import classify, load_class_table
from geoclass.cluster import compute
from geoclass.cog import write_cog
from geoclass.config import Config
from geoclass.cube import cube_path, grid_of_cube, open_cube
from geoclass.fusion import dempster_shafer, majority_vote, mob_masses
from geoclass.grid import TileGrid, crs_label
from geoclass.metrics import confusion_matrix
from geoclass.mosaic import (
    PROBA_NODATA,
    VALIDITY_NODATA,
    TileMap,
    lazy_mosaic,
    lazy_validity,
    mosaic_grid,
)
from geoclass.reference import ClassTable
from geoclass.samples import read_samples

log = logging.getLogger(__name__)

UNDECIDED_COLOR = (128, 128, 128)


def final_dir(config: Config) -> Path:
    return Path(config.chain.output_path) / "final"


def mosaic_path(config: Config, run: int | str) -> Path:
    return Path(config.chain.output_path) / "mosaic" / f"seed_{run}.zarr"


def tile_grids(config: Config) -> dict[str, TileGrid]:
    return {t: grid_of_cube(open_cube(cube_path(config, t))) for t in config.chain.list_tile}


def output_grid(config: Config, grids: dict[str, TileGrid] | None = None) -> TileGrid:
    """The mosaic grid: `chain.proj` (default: the first tile's CRS) at the cube resolution."""
    grids = grids or tile_grids(config)
    crs = CRS.from_user_input(config.chain.proj) if config.chain.proj else None
    return mosaic_grid(list(grids.values()), crs, chunk=config.dask.chunk_size)


def _store(arrays: dict[str, da.Array], path: Path, label: str) -> Path:
    """Store named dask arrays in one zarr group (one computation, atomically)."""
    import zarr

    with atomic_output(path) as tmp:
        group = zarr.open_group(str(tmp), mode="w")
        targets = [group.create_array(name, shape=a.shape, dtype=a.dtype,
                                      chunks=tuple(max(c) for c in a.chunks))
                   for name, a in arrays.items()]
        compute(da.store(list(arrays.values()), targets, lock=False, compute=False),
                label=label)
    return path


def _open(path: Path, name: str):
    import zarr

    return zarr.open_group(str(path), mode="r")[name]


def _class_dtype(codes) -> np.dtype:
    return np.dtype(np.uint8 if max(codes) <= 255 else np.uint16)


def _classification_cog(path: Path, source, grid: TileGrid, table: ClassTable,
                        extra: dict[int, tuple] | None = None) -> None:
    colors = {**table.colors, **(extra or {})}
    names = {f"CLASS_{c.code}": c.name for c in table.classes}
    write_cog(path, source, grid, nodata=0, dtype=_class_dtype(colors), colormap=colors,
              descriptions=["classification"], metadata=names)


def _settings(config: Config) -> dict:
    classif = Path(config.chain.output_path) / "classif" / "manifest.json"
    return {"classif": json.loads(classif.read_text()), "proj": config.chain.proj,
            "merge": config.classification.merge_final_classifications.model_dump(mode="json"),
            "chunk": config.dask.chunk_size}


def expected_outputs(config: Config) -> list[Path]:
    final, runs = final_dir(config), range(config.chain.runs)
    paths = [final / f"Classif_Seed_{r}.tif" for r in runs]
    paths += [final / f"Confidence_Seed_{r}.tif" for r in runs]
    paths.append(final / "PixelsValidity.tif")
    if config.classification.enable_probability_map:
        paths += [final / f"ProbabilityMap_Seed_{r}.tif" for r in runs]
    if _fusion_wanted(config):
        paths.append(final / "Classifications_fusion.tif")
    return paths


def _fusion_wanted(config: Config) -> bool:
    return config.classification.merge_final_classifications.enable and config.chain.runs > 1


def mosaic(config: Config, force: bool = False) -> list[Path]:
    """Classify (if needed), mosaic every run, write the final COGs and the fusion of runs;
    skipped when the classifications and the settings did not change."""
    tile_maps = classify(config)
    manifest = Path(config.chain.output_path) / "mosaic" / "manifest.json"
    settings, outputs = _settings(config), expected_outputs(config)
    if step_is_current(manifest, settings, outputs, force):
        log.info("final maps are up to date")
        return outputs
    manifest.unlink(missing_ok=True)
    grids = tile_grids(config)
    grid = output_grid(config, grids)
    table = load_class_table(config)
    probabilities = config.classification.enable_probability_map
    final = final_dir(config)
    log.info("mosaic grid: %d x %d px in %s", grid.width, grid.height, crs_label(grid.crs))
    for run, paths in tile_maps.items():
        tiles = [TileMap(str(paths[t]), grids[t]) for t in config.chain.list_tile]
        stacked = lazy_mosaic(tiles, grid, len(table.codes), probabilities)
        bands = {"classification": stacked[0], "confidence": stacked[1]}
        if probabilities:
            bands["probabilities"] = stacked[2:]
        store = _store(bands, mosaic_path(config, run), f"mosaic of run {run}")
        _run_cogs(final, run, store, grid, table, probabilities)
    cubes = [TileMap(str(cube_path(config, t)), grids[t]) for t in config.chain.list_tile]
    validity = _store({"validity": lazy_validity(cubes, grid)},
                      mosaic_path(config, "validity"), "pixel validity")
    write_cog(final / "PixelsValidity.tif", _open(validity, "validity"), grid,
              nodata=VALIDITY_NODATA, descriptions=["number of clear dates"],
              overview_resampling="nearest")
    if _fusion_wanted(config):
        fuse_runs(config, grid, grids, table)
    record_step(manifest, settings)
    return outputs


def _run_cogs(final: Path, run: int, store: Path, grid: TileGrid, table: ClassTable,
              probabilities: bool) -> None:
    _classification_cog(final / f"Classif_Seed_{run}.tif", _open(store, "classification"),
                        grid, table)
    write_cog(final / f"Confidence_Seed_{run}.tif", _open(store, "confidence"), grid, nodata=0,
              dtype=np.uint8, descriptions=["confidence (%)"], overview_resampling="average")
    if probabilities:
        write_cog(final / f"ProbabilityMap_Seed_{run}.tif", _open(store, "probabilities"),
                  grid, nodata=PROBA_NODATA, scale=0.001,
                  descriptions=[c.name for c in table.classes], overview_resampling="average")


def run_confusion(config: Config, run: int | str, grid: TileGrid, grids: dict[str, TileGrid],
                  table: ClassTable, samples_run: int | None = None) -> np.ndarray:
    """The confusion matrix of a mosaic against the validation pixels of `samples_run`."""
    samples = read_samples(config, run if samples_run is None else samples_run, "validation")
    predicted = values_at(mosaic_path(config, run), grid, samples,
                          {t: g.crs for t, g in grids.items()})
    return confusion_matrix(samples["code"].to_numpy(), predicted, table.codes)


def fuse_runs(config: Config, grid: TileGrid, grids: dict[str, TileGrid],
              table: ClassTable) -> Path:
    """`Classifications_fusion.tif`: majority voting (ties to the best mean confidence, or
    the undecided label) or Dempster-Shafer with each run's confusion matrix as belief."""
    options = config.classification.merge_final_classifications
    runs = range(config.chain.runs)
    labels, confidences = (
        da.stack([da.from_zarr(_open(mosaic_path(config, r), name)) for r in runs])
        .rechunk({0: -1}) for name in ("classification", "confidence"))
    if options.method == "majorityvoting":
        vote = partial(majority_vote, undecided_label=options.undecided_label)
        fused = da.map_blocks(vote, labels, confidences, drop_axis=0, dtype=np.uint16)
    else:
        masses = np.array([mob_masses(run_confusion(config, r, grid, grids, table),
                                      options.dempstershafer_mob) for r in runs])
        log.info("Dempster-Shafer masses (%s) per run: %s", options.dempstershafer_mob,
                 np.round(masses, 3).tolist())
        belief = partial(dempster_shafer, masses=masses, classes=table.codes,
                         undecided_label=options.undecided_label)
        fused = da.map_blocks(belief, labels, drop_axis=0, dtype=np.uint16)
    store = _store({"classification": fused}, mosaic_path(config, "fusion"), "fusion of runs")
    extra = {options.undecided_label: UNDECIDED_COLOR} if options.undecided_label else None
    path = final_dir(config) / "Classifications_fusion.tif"
    _classification_cog(path, _open(store, "classification"), grid, table, extra)
    return path
