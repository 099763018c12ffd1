"""Block-wise prediction: each chunk picks, per pixel, the model of its region and returns the
class, the confidence and the class probabilities."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr

from geoclass.train import TrainedModel, load_model

NODATA = 0


def predict_block(
    features: np.ndarray, regions: np.ndarray, models: dict[int, TrainedModel],
    classes: list[int],
) -> np.ndarray:
    """Classify one block.

    features: float32 (F, h, w), NaN where the pixel has no valid data; regions: int (h, w),
    0 outside every region; models: region -> model; classes: every class code, in the order
    of the probability bands. Returns uint16 (2 + C, h, w): the class code (0 = nodata), the
    confidence (100 x the highest probability, 0..100, as iota2) and the probability of each
    class x 1000 (rounded). Ties go to the class listed first in `classes`."""
    n_classes, (_, height, width) = len(classes), features.shape
    out = np.zeros((2 + n_classes, height, width), np.uint16)
    valid = np.isfinite(features).all(axis=0)
    position = {code: i for i, code in enumerate(classes)}
    for region, model in models.items():
        mask = valid & (regions == region)
        if not mask.any():
            continue
        proba = np.zeros((int(mask.sum()), n_classes), np.float64)
        fitted = model.estimator.predict_proba(features[:, mask].T)
        proba[:, [position[int(c)] for c in model.estimator.classes_]] = fitted
        best = proba.argmax(axis=1)  # first maximum: the documented tie-break
        out[0][mask] = np.asarray(classes)[best]
        out[1][mask] = np.rint(proba.max(axis=1) * 100).astype(np.uint16)
        out[2:, mask] = np.rint(proba.T * 1000).astype(np.uint16)
    return out


@functools.lru_cache(maxsize=64)
def _cached_model(path: str, stamp: int) -> TrainedModel:
    return load_model(path)


def _load(path: str) -> TrainedModel:
    """Load a model once per worker process (cached by path and modification time)."""
    return _cached_model(path, os.stat(path).st_mtime_ns)


def _predict_chunk(features, regions, model_paths, classes, names):
    models = {region: _load(path) for region, path in model_paths.items()}
    for model in models.values():
        model.check_features(names)
    return predict_block(features, regions[0], models, classes)


def classify_tile(
    features: xr.DataArray, regions: da.Array, model_paths: dict[int, Path], classes: list[int]
) -> xr.Dataset:
    """Lazy classification of one tile: `classification`, `confidence` (y, x) and
    `probabilities` (class, y, x). Models are read from their files inside the tasks (once per
    worker), never embedded in the graph."""
    paths = {int(r): str(p) for r, p in model_paths.items()}
    names = list(features["feature"].values)
    stacked = da.map_blocks(
        _predict_chunk, features.data, regions[None], paths, list(classes), names,
        chunks=((2 + len(classes),), *features.data.chunks[1:]), dtype=np.uint16,
    )
    coords = {"y": features["y"].values, "x": features["x"].values}
    return xr.Dataset(
        {"classification": (("y", "x"), stacked[0]),
         "confidence": (("y", "x"), stacked[1].astype(np.uint8)),
         "probabilities": (("class", "y", "x"), stacked[2:])},
        coords={**coords, "class": list(classes)},
    )
