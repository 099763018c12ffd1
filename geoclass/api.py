"""The verbs of the Python API, in the order a notebook chains them:
open_cubes -> sample -> train -> classify -> mosaic -> assess (and make_report, run_chain).

Each one-step verb asks the runner (pipeline.run_steps) for that step and the ones before it
that are not up to date, on the active dask client, then hands back the step's typed result
from the run store. `classify_cube` needs neither a config nor an output folder: a cube (or any
(feature, y, x) DataArray) and fitted estimators give a lazy map."""

from __future__ import annotations

import numpy as np
import xarray as xr
from dask_ml.wrappers import ParallelPostFit

from geoclass import lazy
from geoclass.config import Config
from geoclass.models.fitting import dask_table
from geoclass.models.trained import TrainedModel, load_model
from geoclass.pipeline import run_chain, run_steps
from geoclass.steps import classify as classify_step
from geoclass.steps.mosaic import cogs as final_maps
from geoclass.steps.samples import read_samples as _read_samples
from geoclass.steps.suggest import suggest as suggest_locations
from geoclass.steps.train import table_features
from geoclass.store import (
    Accuracy,
    Cubes,
    Maps,
    Models,
    RunStore,
    Samples,
    TileMaps,
)
from geoclass.views.cube import open_cube, open_cubes
from geoclass.views.maps import classify_features, fusion_options

__all__ = ["assess", "build_cubes", "classify", "classify_cube", "classify_lazy", "cube_path",
           "load_class_table", "load_model", "make_report", "model_path", "mosaic",
           "open_cube", "open_cubes", "read_samples", "run_chain", "sample", "suggest",
           "train"]


def _store(config: Config) -> RunStore:
    return RunStore(config.chain.output_path)


def _up_to(config: Config, step: str, force: bool) -> RunStore:
    run_steps(config, until=step, force=(step,) if force else ())
    return _store(config)


def cube_path(config: Config, tile: str):
    """Where the cube of `tile` is stored."""
    return _store(config).cube(tile)


def model_path(config: Config, region: int, run: int):
    """Where the model of (region, run) is stored."""
    return _store(config).model(region, run)


def load_class_table(config: Config):
    """The class table of a run (written by its samples step)."""
    return _store(config).class_table()


def build_cubes(config: Config, force: bool = False) -> Cubes:
    """The stored observation cube of every tile (tile -> zarr path)."""
    store = _up_to(config, "cubes", force)
    return Cubes({tile: store.cube(tile) for tile in config.chain.list_tile})


def sample(config: Config, force: bool = False) -> Samples:
    """The learning and validation samples of every run."""
    store = _up_to(config, "samples", force)
    return Samples(store, config.chain.runs, store.class_table())


def read_samples(config: Config, run: int, kind: str = "learn"):
    """The `learn` or `validation` samples of a run (a pandas DataFrame)."""
    return _read_samples(_store(config), run, kind)


def learn_table(config: Config, region: int, run: int = 0):
    """The learning table of (region, run) as lazy dask arrays (X, codes, polygon ids), one
    block per parquet row group, read on the workers when computed."""
    store = _store(config)
    parts = store.learn_parts(run)
    if region not in parts:
        raise KeyError(f"no learning table for region {region} of run {run} "
                       f"(regions with one: {sorted(parts)})")
    return dask_table(parts[region], table_features(parts[region]))


def predict_table(model, X, proba: bool = False):
    """Lazy predictions (class codes, or probabilities with `proba`) of a dask array of
    samples (n, features), block by block on the cluster, with dask-ml's ParallelPostFit:
    any fitted estimator (or TrainedModel, or model file), nothing gathered on the driver."""
    if not isinstance(model, TrainedModel) and not hasattr(model, "predict"):
        model = load_model(model)
    estimator = model.estimator if isinstance(model, TrainedModel) else model
    wrapped = ParallelPostFit(estimator=estimator)
    return wrapped.predict_proba(X) if proba else wrapped.predict(X)


def train(config: Config, force: bool = False) -> Models:
    """The model of every (region, run): (region, run) -> its file (hashes in `.sha256`)."""
    return _up_to(config, "train", force).models()


def classify(config: Config, force: bool = False) -> TileMaps:
    """The map of every tile and run: run -> {tile -> zarr path}."""
    store = _up_to(config, "classify", force)
    return TileMaps({run: {t: store.tile_map(t, run) for t in config.chain.list_tile}
                     for run in range(config.chain.runs)})


def mosaic(config: Config, force: bool = False) -> Maps:
    """The final COGs (classification, confidence, probabilities, validity, fusion)."""
    store = _up_to(config, "mosaic", force)
    return Maps(final_maps(config, store))


def assess(config: Config, force: bool = False) -> Accuracy:
    """The accuracy figures of every run, their summary and the fusion's."""
    return Accuracy(_up_to(config, "validate", force).metrics())


def make_report(config: Config, force: bool = False):
    """`final/report.html`."""
    return _up_to(config, "report", force).final / "report.html"


def suggest(config: Config, n: int = 200, min_distance: float | None = None,
            measure: str | None = None, run: int = 0, min_uncertainty: float | None = None,
            output=None):
    """The `n` most uncertain locations of a run's map to label next (active learning), as a
    GeoDataFrame of points also written to a GeoPackage (default
    final/SuggestedSamples_Seed_<run>.gpkg); the maps are made first if needed. See
    `geoclass.steps.suggest.suggest`."""
    store = _up_to(config, "mosaic", False)
    return suggest_locations(config, store, n, min_distance, measure, run, min_uncertainty,
                             output)[1]


def classify_lazy(config: Config, run: int, models: Models | None = None) -> dict:
    """The lazy maps of every tile for one run (nothing is computed), from the stored cubes
    and models (`models`: those `train` returned; default the stored ones)."""
    return classify_step.tile_maps(config, _store(config), run, models)


def classify_cube(features: xr.DataArray, models, classes: list[int] | None = None,
                  regions=None, fusion=None, resolution: float | None = None,
                  fast: bool = True) -> xr.Dataset:
    """A lazy map of any (feature, y, x) DataArray (e.g. `open_cube(...).features`) with
    fitted models: `models` is one estimator for every pixel, or {region: estimator, model
    file or TrainedModel} with `regions` (y, x) the region of each pixel (0: none). `fusion`
    (config.BoundaryFusion, enabled) weights neighbouring regions' models near boundaries
    (`resolution`: the pixel size, default from the x coordinates). Returns
    `classification`, `confidence` (y, x) and `probabilities` (class, y, x)."""
    if not isinstance(models, dict):
        models = {1: models}
    if classes is None:
        classes = sorted({int(c) for m in models.values()
                          for c in (m.estimator if isinstance(m, TrainedModel) else m).classes_})
    if regions is None:
        regions = lazy.map_yx(_ones_like, features.data.rechunk({0: -1}), lead=(),
                              dtype=np.int32)
    regions = getattr(regions, "data", regions)
    options = None
    if fusion is not None and getattr(fusion, "enable", True):
        resolution = resolution or abs(float(features["x"][1] - features["x"][0]))
        options = fusion_options(fusion.interior_buffer_size, fusion.exterior_buffer_size,
                                 fusion.epsilon, resolution)
    return classify_features(features, regions, models, list(classes), options, fast)


def _ones_like(features):
    return np.ones(features.shape[1:], np.int32)
