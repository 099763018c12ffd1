"""Block-wise prediction: each chunk picks, per pixel, the model of its region and returns the
class, the confidence and the class probabilities."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr
from threadpoolctl import threadpool_limits

from geoclass import fastboost, fastforest
from geoclass.boundary import overlap_depth, region_weights
from geoclass.config import BoundaryFusion
from geoclass.train import TrainedModel, load_model

NODATA = 0


def predict_block(
    features: np.ndarray, regions: np.ndarray, models: dict[int, TrainedModel],
    classes: list[int], weights: dict[int, np.ndarray] | None = None,
) -> np.ndarray:
    """Classify one block.

    features: float32 (F, h, w), NaN where the pixel has no valid data; regions: int (h, w),
    0 outside every region; models: region -> model; classes: every class code, in the order
    of the probability bands; weights: region -> (h, w) boundary-fusion weights (None: each
    pixel is predicted by its own region's model alone).

    A pixel is classified when its data are valid and its region has a model. Its
    probabilities are the weighted mean of the probabilities of the models with a non-zero
    weight there (its own model always counts), summed in region order. Returns uint16
    (2 + C, h, w): the class code (0 = nodata), the confidence (100 x the highest probability,
    0..100, as iota2) and the probability of each class x 1000 (rounded). Ties go to the class
    listed first in `classes`."""
    n_classes, (n_features, height, width) = len(classes), features.shape
    out = np.zeros((2 + n_classes, height, width), np.uint16)
    own = np.where(np.isfinite(features).all(axis=0), regions, 0)
    target = np.isin(own, list(models))
    if not target.any():
        return out
    if target.all():  # the usual block: a view, (n, F) F-contiguous, read as is by fastforest
        own, pixels = own.reshape(-1), features.reshape(n_features, -1).T
    else:
        own, pixels = own[target], features[:, target].T
    position = {code: i for i, code in enumerate(classes)}
    total = np.zeros((len(own), n_classes), np.float64)
    weight_sum = np.zeros(len(own), np.float64)
    for region in sorted(models):
        weight = (own == region).astype(np.float64)
        if weights is not None and region in weights:
            weight = np.where(own == region, np.maximum(weights[region][target], 1e-6),
                              weights[region][target])
        chosen = weight > 0
        if not chosen.any():
            continue
        model = models[region]
        columns = [position[int(c)] for c in model.estimator.classes_]
        if chosen.all():  # no copy of the pixels
            total[:, columns] += weight[:, None] * model_proba(model, pixels)
            weight_sum += weight
            continue
        proba = model_proba(model, pixels[chosen])
        total[np.ix_(chosen, columns)] += weight[chosen, None] * proba
        weight_sum[chosen] += weight[chosen]
    proba = total / weight_sum[:, None]
    best = proba.argmax(axis=1)  # first maximum: the documented tie-break
    out[0][target] = np.asarray(classes)[best]
    out[1][target] = np.rint(proba.max(axis=1) * 100).astype(np.uint16)
    out[2:, target] = np.rint(proba.T * 1000).astype(np.uint16)
    return out


def model_proba(model: TrainedModel, pixels: np.ndarray) -> np.ndarray:
    """Class probabilities of (n, F) pixels: through a compiled fast path for random forests
    and extra trees (fastforest: same results as scikit-learn) and for XGBoost / LightGBM
    (fastboost: the library's results within float32 rounding), several times faster; else
    the estimator's own predict_proba (the reference path). The compiled form is cached on
    the model."""
    if os.environ.get("GEOCLASS_FASTFOREST", "1") != "0":
        if not hasattr(model, "_compiled"):
            model._compiled = (fastforest.compile_forest(model.estimator)
                               or fastboost.compile_boosting(model.estimator))
        if isinstance(model._compiled, fastforest.CompiledForest):
            return fastforest.predict_proba(model._compiled, pixels, n_threads=task_threads())
        if isinstance(model._compiled, fastboost.CompiledBoosting):
            return fastboost.predict_proba(model._compiled, pixels, n_threads=task_threads())
    with threadpool_limits(task_threads()):  # scikit-learn walks trees fastest on (n, F) C order
        return model.estimator.predict_proba(np.ascontiguousarray(pixels))


def task_threads() -> int:
    """Cores one task may use: the machine's cores shared among the dask worker's threads
    (running tasks), so that numba/BLAS threads do not oversubscribe the cores."""
    cores = os.cpu_count() or 1
    try:
        from distributed import get_worker

        return max(1, cores // max(1, get_worker().state.nthreads))
    except (ValueError, ImportError):
        return cores


@functools.lru_cache(maxsize=64)
def _cached_model(path: str, stamp: int) -> TrainedModel:
    return load_model(path)


def _load(path: str) -> TrainedModel:
    """Load a model once per worker process (cached by path and modification time)."""
    return _cached_model(path, os.stat(path).st_mtime_ns)


def _predict_chunk(features, regions, model_paths, classes, names, fusion):
    models = {region: _load(path) for region, path in model_paths.items()}
    for model in models.values():
        model.check_features(names)
    regions = regions[0]
    if fusion is None:
        return predict_block(features, regions, models, classes)
    depth = fusion["depth"]
    weights = region_weights(regions, depth, fusion["interior"], fusion["exterior"],
                             fusion["resolution"], fusion["epsilon"])
    core = regions[depth:regions.shape[0] - depth, depth:regions.shape[1] - depth]
    return predict_block(features, core, models, classes, weights)


def classify_tile(
    features: xr.DataArray, regions: da.Array, model_paths: dict[int, Path], classes: list[int],
    fusion: BoundaryFusion | None = None, resolution: float | None = None,
) -> xr.Dataset:
    """Lazy classification of one tile: `classification`, `confidence` (y, x) and
    `probabilities` (class, y, x). Models are read from their files inside the tasks (once per
    worker), never embedded in the graph. With boundary `fusion` enabled, each block sees the
    regions of its neighbourhood (overlap of the largest buffer) to weight the models."""
    paths = {int(r): str(p) for r, p in model_paths.items()}
    names = list(features["feature"].values)
    data = features.data.rechunk({0: -1})  # one block holds every feature of its pixels
    regions = regions.rechunk(data.chunks[1:])
    options = None
    if fusion is not None and fusion.enable:
        resolution = resolution or abs(float(features["x"][1] - features["x"][0]))
        depth = overlap_depth(fusion.interior_buffer_size, fusion.exterior_buffer_size,
                              resolution)
        options = {"depth": depth, "interior": fusion.interior_buffer_size,
                   "exterior": fusion.exterior_buffer_size, "resolution": resolution,
                   "epsilon": fusion.epsilon}
        regions = da.overlap.overlap(regions, depth={0: depth, 1: depth},
                                     boundary={0: "nearest", 1: "nearest"})
    stacked = da.map_blocks(
        _predict_chunk, data, regions[None], paths, list(classes), names, options,
        chunks=((2 + len(classes),), *data.chunks[1:]), dtype=np.uint16,
    )
    coords = {"y": features["y"].values, "x": features["x"].values}
    return xr.Dataset(
        {"classification": (("y", "x"), stacked[0]),
         "confidence": (("y", "x"), stacked[1].astype(np.uint8)),
         "probabilities": (("class", "y", "x"), stacked[2:])},
        coords={**coords, "class": list(classes)},
    )
