"""Block-wise prediction: each block picks, per pixel, the model of its region and returns the
class, the confidence and the class probabilities. Models are any objects with an
`estimator` (scikit-learn API) and, optionally, a `compiled` fast form (models.trained)."""

from __future__ import annotations

import numpy as np
from numba import njit
from threadpoolctl import threadpool_limits

from geoclass.kernels import fastboost, fastforest
from geoclass.kernels.boundary import region_weights
from geoclass.kernels.threads import task_threads

NODATA = 0


def predict_block(
    features: np.ndarray, regions: np.ndarray, models: dict,
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
    own = np.where(_all_finite(features.reshape(n_features, -1)).reshape(height, width),
                   regions, 0)
    target = np.isin(own, list(models))
    if not target.any():
        return out
    if target.all():  # the usual block: a view, (n, F) F-contiguous, read as is by fastforest
        own, pixels = own.reshape(-1), features.reshape(n_features, -1).T
    else:
        own, pixels = own[target], features[:, target].T
    position = {code: i for i, code in enumerate(classes)}
    proba = _own_model_proba(own, pixels, models, position) if weights is None else None
    if proba is None:
        proba = _weighted_proba(own, pixels, models, position, weights, target)
    codes = out.reshape(2 + n_classes, -1) if target.all() else \
        np.empty((2 + n_classes, len(own)), np.uint16)
    _encode(proba, np.asarray(classes, np.int64), codes)
    if not target.all():
        out[:, target] = codes
    return out


def _own_model_proba(own: np.ndarray, pixels: np.ndarray, models: dict, position: dict
                     ) -> np.ndarray | None:
    """The probabilities (n, C) of pixels that are all of one region: its model's, in the
    order of `position`, as the weighted mean would give them (weights 1: exact); None if
    the pixels are of several regions."""
    region = int(own[0])
    if not (own == region).all():
        return None
    model = models[region]
    columns = [position[int(c)] for c in model.estimator.classes_]
    proba = np.asarray(model_proba(model, pixels), np.float64)
    if columns == list(range(len(position))):
        return proba
    full = np.zeros((len(own), len(position)), np.float64)
    full[:, columns] = proba
    return full


def _weighted_proba(own, pixels, models, position, weights, target) -> np.ndarray:
    """The probabilities (n, C) of pixels: the weighted mean of their models' (see
    predict_block)."""
    n_classes = len(position)
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
    return total / weight_sum[:, None]


@njit(nogil=True, cache=True)
def _all_finite(features):  # pragma: no cover - compiled
    """Whether each pixel of (F, n) features is finite in every feature (numpy's
    `isfinite(...).all(axis=0)` without its (F, n) boolean array)."""
    ok = np.ones(features.shape[1], np.bool_)
    for f in range(features.shape[0]):
        row = features[f]
        for j in range(features.shape[1]):
            ok[j] &= np.abs(row[j]) < np.inf
    return ok


@njit(nogil=True, cache=True)
def _encode(proba, classes, codes):  # pragma: no cover - compiled
    """codes[:, j] of pixel j from its probabilities proba[j]: the class of the first
    highest one, 100 x that probability and 1000 x each, rounded half to even (as np.rint);
    one pass instead of numpy's temporaries (0.15 s of each 512 x 512 block)."""
    for j in range(proba.shape[0]):
        best = 0
        for k in range(1, proba.shape[1]):
            if proba[j, k] > proba[j, best]:
                best = k
        codes[0, j] = classes[best]
        codes[1, j] = np.uint16(np.rint(proba[j, best] * 100))
        for k in range(proba.shape[1]):
            codes[2 + k, j] = np.uint16(np.rint(proba[j, k] * 1000))


def model_proba(model, pixels: np.ndarray) -> np.ndarray:
    """Class probabilities of (n, F) pixels: through the model's compiled fast form when it
    has one (fastforest: scikit-learn's forests bit for bit; fastboost: XGBoost / LightGBM
    within float32 rounding), else the estimator's own predict_proba."""
    compiled = getattr(model, "compiled", None)
    if isinstance(compiled, fastforest.CompiledForest):
        return fastforest.predict_proba(compiled, pixels, n_threads=task_threads())
    if isinstance(compiled, fastboost.CompiledBoosting):
        return fastboost.predict_proba(compiled, pixels, n_threads=task_threads())
    with threadpool_limits(task_threads()):  # scikit-learn walks trees fastest on (n, F) C order
        return model.estimator.predict_proba(np.ascontiguousarray(pixels))


def predict_with_fusion(features: np.ndarray, padded_regions: np.ndarray, models: dict,
                        classes: list[int], fusion: dict | None) -> np.ndarray:
    """`predict_block` of a block whose regions come with a margin of `fusion["depth"]`
    pixels (boundary fusion: each region's weight from its distance to the boundary), or
    without margin when `fusion` is None."""
    return predict_in_strips(lambda rows: features[:, rows], features.shape[0], padded_regions,
                             models, classes, fusion, strip_rows=features.shape[1])


# Strips of features below glibc's largest mmap threshold (32 MiB): their buffers come back
# from the heap strip after strip instead of being mapped, faulted in and unmapped each time
# (a 512 px block of 455 features is 477 MB).
STRIP_BYTES = 30 * 2**20


def predict_in_strips(features_of, n_features: int, padded_regions: np.ndarray, models: dict,
                      classes: list[int], fusion: dict | None,
                      strip_rows: int | None = None) -> np.ndarray:
    """`predict_with_fusion` of a block whose features are computed strip by strip of rows:
    `features_of(rows)` gives the float32 (F, n, w) features of the block's rows `rows` (a
    slice). Strips of `strip_rows` rows (default: about STRIP_BYTES of features each); the
    result does not depend on them (each pixel is predicted on its own)."""
    depth = 0 if fusion is None else fusion["depth"]
    core = padded_regions[depth:padded_regions.shape[0] - depth,
                          depth:padded_regions.shape[1] - depth]
    weights = None if fusion is None else region_weights(
        padded_regions, depth, fusion["interior"], fusion["exterior"], fusion["resolution"],
        fusion["epsilon"])
    height, width = core.shape
    step = strip_rows or max(1, STRIP_BYTES // (4 * max(1, n_features) * max(1, width)))
    out = np.empty((2 + len(classes), height, width), np.uint16)
    for start in range(0, height, step):
        rows = slice(start, min(start + step, height))
        strip_weights = None if weights is None else {r: w[rows] for r, w in weights.items()}
        out[:, rows] = predict_block(features_of(rows), core[rows], models, classes,
                                     strip_weights)
    return out
