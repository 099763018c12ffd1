"""Spatial regularisation of classification outputs, block by block (pure numpy): Bayesian
smoothing of class probabilities (as sits_smooth) and a majority filter of class maps (as OTB's
ClassificationMapRegularization).

Both take a padded block, (C, H, W) or (H, W), whose `halo` outer rows and columns on each side
are context only, and return its (C, h, w) or (h, w) core, h = H - 2 halo, w = W - 2 halo: a
core pixel depends only on the block within its window, so with dask

    da.map_overlap(kernel, array, depth=halo, boundary=..., trim=False, dtype=...,
                   chunks=array.chunks)        # depth={0: 0, 1: halo, 2: halo} for (C, H, W)

gives the same result whatever the chunks. `boundary` sets what lies past the image edges:
"reflect" (dask's reflect repeats the edge pixel, like sits' mirror) or the nodata value
(ignored, as missing neighbours)."""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage
from scipy.special import expit

from geoclass.kernels.uncertainty import PROBA_NODATA, PROBA_SCALE, encode, probabilities

LOGIT_EPS = 1e-6  # probabilities are kept in [1e-6, 1 - 1e-6] before the logit, as sits does
STRIP_VALUES = 1 << 21  # window values sorted at once (a row strip of the block)


def _core_shape(shape: tuple[int, int], halo: int) -> tuple[int, int]:
    core = (shape[0] - 2 * halo, shape[1] - 2 * halo)
    if min(core) < 1:
        raise ValueError(f"a block of {shape} has no core inside a halo of {halo}")
    return core


def _halo(halo: int | None, reach: int) -> int:
    halo = reach if halo is None else int(halo)
    if halo < reach:
        raise ValueError(f"halo {halo} is smaller than the window's reach {reach}")
    return halo


def _bayes_class(logits: np.ndarray, window: int, halo: int, fraction: float,
                 smoothness: float) -> np.ndarray:
    """Posterior logits (h, w) of one class from its padded logits (H, W), NaN = missing."""
    leg = window // 2
    h, w = _core_shape(logits.shape, halo)
    region = logits[halo - leg:halo + h + leg, halo - leg:halo + w + leg]
    out = np.empty((h, w))
    size = window * window
    strip = max(1, STRIP_VALUES // (w * size))
    for r0 in range(0, h, strip):
        r1 = min(h, r0 + strip)
        values = sliding_window_view(region[r0:r1 + 2 * leg], (window, window))
        values = values.reshape(r1 - r0, w, size)
        # the ceil(fraction x n) highest logits of the window's n valid ones (sits'
        # neigh_high; the 1e-9 keeps e.g. 0.3 x 10 from rounding up to 4)
        count = np.ceil(fraction * (~np.isnan(values)).sum(axis=-1) - 1e-9).astype(np.int64)
        head = -np.sort(-values, axis=-1)[..., :max(int(count.max()), 1)]  # descending, NaN last
        # sums of the first `count` values by running sums: the same additions in the same
        # order for a pixel whatever the strip, hence results independent of the chunks
        last = np.maximum(count - 1, 0)[..., None]
        mean = np.take_along_axis(np.cumsum(head, axis=-1), last, axis=-1)[..., 0]
        mean = mean / np.maximum(count, 1)
        squares = np.cumsum((head - mean[..., None]) ** 2, axis=-1)
        variance = np.take_along_axis(squares, last, axis=-1)[..., 0] / np.maximum(count - 1, 1)
        centre = region[r0 + leg:r1 + leg, leg:leg + w]
        weight = variance / (variance + smoothness)
        posterior = weight * centre + (1.0 - weight) * mean
        # fewer than 2 values: no variance, the pixel keeps its own logit
        out[r0:r1] = np.where(count >= 2, posterior, centre)
    return out


def bayes_smooth(probs: np.ndarray, window_size: int = 9, neigh_fraction: float = 0.5,
                 smoothness: float | list[float] = 20.0, halo: int | None = None,
                 scale: float = PROBA_SCALE, nodata: int = PROBA_NODATA,
                 normalise: bool = False) -> np.ndarray:
    """Bayesian smoothing of class probabilities, as sits_smooth (Camara et al. 2024,
    "Bayesian inference for post-processing of remote sensing image classification", Remote
    Sensing 16(23):4572; sits' R/api_smooth.R `.smooth_fn_bayes` and src/smooth_bayes.cpp
    `bayes_smoother_fraction`).

    probs: (C, H, W) padded block, uint16 = probability x `scale` (`nodata` where missing) or
    float (NaN where missing); halo: its padding, at least window_size // 2 (the default).
    Per pixel and class, on logits x = log(p / (1 - p)) of the probabilities normalised to sum
    1 (sits: log(p / (sum - p))) and kept in [1e-6, 1 - 1e-6]:
        m, s2 = mean and variance (n - 1) of the ceil(neigh_fraction x n) highest logits of
                the class among the n valid pixels of the window_size x window_size window
        x' = (s2 x + sigma2 m) / (s2 + sigma2)    (weight s2 / (s2 + sigma2) on the pixel)
    with sigma2 = `smoothness` (one value or one per class, the prior variance of the logit),
    then p' = exp(x') / (1 + exp(x')). As sits, p' is not renormalised (its classes need not
    sum to 1; the argmax is what matters); `normalise=True` divides by the sum. Missing pixels
    are left out of every window and stay missing (sits fills them with m); a pixel whose
    window leaves fewer than 2 logits keeps its own (sits would give NaN). sits' defaults:
    window_size 9, neigh_fraction 0.5, smoothness 20. Returns the (C, h, w) core in the input's
    kind: uint16 x `scale` with `nodata`, or float of the input's dtype with NaN."""
    probs = np.asarray(probs)
    if window_size < 3 or window_size % 2 == 0:
        raise ValueError(f"window_size must be an odd integer >= 3, got {window_size}")
    if not 0 < neigh_fraction <= 1:
        raise ValueError(f"neigh_fraction must be in (0, 1], got {neigh_fraction}")
    if math.ceil(neigh_fraction * window_size**2 - 1e-9) < 2:
        raise ValueError("neigh_fraction x window_size^2 must keep at least 2 neighbours")
    halo = _halo(halo, window_size // 2)
    values = probabilities(probs, scale, nodata)
    n_classes = values.shape[0]
    sigma2 = np.broadcast_to(np.asarray(smoothness, np.float64), (n_classes,))
    if np.any(sigma2 <= 0):
        raise ValueError(f"smoothness must be positive, got {smoothness}")
    clipped = np.clip(values, LOGIT_EPS, 1 - LOGIT_EPS)  # NaN stays NaN
    logits = np.log(clipped / (1 - clipped))
    smoothed = np.stack([
        expit(_bayes_class(logits[c], window_size, halo, neigh_fraction, sigma2[c]))
        for c in range(n_classes)
    ])
    missing = np.isnan(values[0, halo:values.shape[1] - halo, halo:values.shape[2] - halo])
    smoothed[:, missing] = np.nan
    if normalise:
        smoothed = smoothed / smoothed.sum(axis=0)
    if np.issubdtype(probs.dtype, np.integer):
        return encode(smoothed, scale, nodata).astype(probs.dtype)
    return smoothed.astype(probs.dtype)


def ball(radius: int | tuple[int, int]) -> np.ndarray:
    """bool (2 ry + 1, 2 rx + 1) footprint of ITK's BinaryBallStructuringElement (used by OTB's
    majority filter): offsets (dy, dx) with (dy / (ry + 0.5))^2 + (dx / (rx + 0.5))^2 <= 1.
    Radius 1 is the full 3 x 3 square, radius 2 the 5 x 5 square without its corners."""
    ry, rx = (radius, radius) if np.isscalar(radius) else radius
    if ry < 1 or rx < 1:
        raise ValueError(f"radius must be at least 1, got {radius}")
    dy, dx = np.mgrid[-ry:ry + 1, -rx:rx + 1]
    return (dy / (ry + 0.5)) ** 2 + (dx / (rx + 0.5)) ** 2 <= 1


def majority_filter(labels: np.ndarray, radius: int | tuple[int, int] = 1,
                    halo: int | None = None, nodata: int = 0, undecided: int | None = None,
                    isolated_threshold: int | None = None) -> np.ndarray:
    """Majority (mode) filter of a class map, as OTB's ClassificationMapRegularization
    (otb::NeighborhoodMajorityVotingImageFilter).

    labels: (H, W) padded block of class codes; halo: its padding, at least the radius (the
    default is max(ry, rx)). Each pixel takes the most frequent class among the pixels of the
    `ball(radius)` around it (itself included), nodata neighbours not counted; OTB's rules:
    a nodata pixel stays nodata; when several classes share the highest count the pixel keeps
    its own class (OTB's default, even if its class is not among the tied ones), or takes
    `undecided` if given (OTB's -ip.suvbool with -ip.undecidedlabel); with
    `isolated_threshold` (OTB's -ip.onlyisolatedpixels / -ip.isolatedthreshold) only pixels
    whose class counts at most that many pixels in the ball, itself included, may change.
    Returns the (h, w) core, labels' dtype."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be (height, width), got shape {labels.shape}")
    footprint = ball(radius)
    ry, rx = footprint.shape[0] // 2, footprint.shape[1] // 2
    halo = _halo(halo, max(ry, rx))
    h, w = _core_shape(labels.shape, halo)
    region = labels[halo - ry:halo + h + ry, halo - rx:halo + w + rx]
    centre = region[ry:ry + h, rx:rx + w]
    best = np.zeros((h, w), np.int32)
    winner = np.full((h, w), nodata, labels.dtype)
    tied = np.zeros((h, w), bool)
    own = np.zeros((h, w), np.int32)  # count of the pixel's own class
    for code in np.unique(region[region != nodata]):
        count = ndimage.correlate((region == code).astype(np.int32), footprint.astype(np.int32),
                                  mode="constant", cval=0)[ry:ry + h, rx:rx + w]
        higher = count > best
        tied = np.where(higher, False, tied | ((count == best) & (count > 0)))
        winner = np.where(higher, code, winner)
        best = np.maximum(best, count)
        own = np.where(centre == code, count, own)
    result = np.where(tied, centre if undecided is None else undecided, winner)
    if isolated_threshold is not None:
        result = np.where(own > isolated_threshold, centre, result)
    return np.where(centre == nodata, nodata, result).astype(labels.dtype)


def labels_from_probabilities(probs: np.ndarray, codes: list[int] | np.ndarray,
                              scale: float = PROBA_SCALE, nodata: int = PROBA_NODATA,
                              dtype=np.uint16) -> np.ndarray:
    """(h, w) class codes of a (C, h, w) probability block: codes[c] of the highest
    probability (the first class on ties), 0 where the pixel is nodata.

    probs: uint16 x `scale` (`nodata` where missing) or float (NaN where missing); the
    smoothed probabilities of `bayes_smooth` need not sum to 1, only their order counts."""
    probs = np.asarray(probs)
    codes = np.asarray(codes)
    if probs.ndim != 3 or probs.shape[0] != codes.size:
        raise ValueError(f"probabilities {probs.shape} for {codes.size} classes")
    if np.issubdtype(probs.dtype, np.integer):
        missing = (probs == nodata).any(axis=0)
        best = np.argmax(np.where(missing, 0, probs), axis=0)
    else:
        missing = np.isnan(probs).any(axis=0)
        best = np.argmax(np.where(missing, 0.0, probs), axis=0)
    return np.where(missing, 0, codes[best]).astype(dtype)


def isolated_pixels(labels: np.ndarray, halo: int = 1, nodata: int = 0) -> np.ndarray:
    """int64 (1,): the pixels of the (h, w) core of a padded (H, W) class block (`halo` >= 1
    rows and columns of context on each side) that are not nodata and differ from each of
    their 8 neighbours (salt-and-pepper). Neighbours past the image edge are given as
    `nodata` (the pad), so they count as different."""
    labels = np.asarray(labels)
    halo = _halo(halo, 1)
    h, w = _core_shape(labels.shape, halo)
    region = labels[halo - 1:halo + h + 1, halo - 1:halo + w + 1]
    centre = region[1:h + 1, 1:w + 1]
    alone = centre != nodata
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            if dy == 1 and dx == 1:
                continue
            alone &= region[dy:dy + h, dx:dx + w] != centre
    return np.array([int(alone.sum())], np.int64)
