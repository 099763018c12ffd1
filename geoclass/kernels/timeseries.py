"""Time-series kernels: stored observations decoded to physical values, gap-filling onto a
regular date grid, spectral indices, and the features of a block computed from its
observations in one call (`features_from_observations`), so that a consuming task never
reads, writes or sends a feature cube.

Shapes: observations (T, B, h, w) for T dates and B bands; gap-filled series (G, B, h, w) on G
output dates; features (F, h, w)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numba
import numpy as np

from geoclass.kernels.select import fill_where
from geoclass.kernels.threads import ByThreads, numba_threads, task_threads

INDICES = ("NDVI", "NDWI", "Brightness")
INDEX_ROLES = {"NDVI": ("red", "nir"), "NDWI": ("nir", "swir"), "Brightness": ()}


# --- decoding -------------------------------------------------------------------------------


def is_missing(raw: np.ndarray, sentinel) -> np.ndarray:
    """Where observations are masked: equal to the integer `sentinel`, or NaN for floats."""
    if np.issubdtype(raw.dtype, np.floating):
        return np.isnan(raw)
    return raw == sentinel


def decode_block(raw: np.ndarray, scale: np.ndarray, offset: np.ndarray, sentinel,
                 db_input: bool = False) -> np.ndarray:
    """Stored observations (T, B, h, w) in the sensor's encoding -> float32 physical values,
    NaN where masked (the `sentinel` in band 0 masks every band of that date and pixel).
    `scale`, `offset`: (T, B) float32, value = raw * scale + offset (then from dB to linear
    with `db_input`). The same float32 arithmetic as reading the files directly, so values
    are identical bit for bit."""
    missing = is_missing(raw[:, 0], sentinel)
    out = raw.astype(np.float32)
    out *= scale.astype(np.float32)[:, :, None, None]
    out += offset.astype(np.float32)[:, :, None, None]
    if db_input:
        out = np.power(np.float32(10), out / np.float32(10), dtype=np.float32)
    for t in np.flatnonzero(missing.any(axis=(1, 2))):
        fill_where(out[t], np.float32(np.nan), missing[t])
    return out


def clear_count(raw: np.ndarray, sentinel) -> np.ndarray:
    """uint16 (h, w): the number of clear observations of each pixel (iota2's validity)."""
    return (~is_missing(raw[:, 0], sentinel)).sum(axis=0).astype(np.uint16)


# --- gap-filling ----------------------------------------------------------------------------


def gapfill_reference(values: np.ndarray, obs_days: np.ndarray,
                      out_days: np.ndarray) -> np.ndarray:
    """Gap-fill one block in time (the plain numpy statement of `gapfill_block`).

    values: float32 (T, B, Y, X), NaN where the observation is masked (all bands together);
    obs_days: (T,) increasing acquisition days; out_days: (G,) days to produce.
    Returns float32 (G, B, Y, X): linear interpolation between the nearest clear observations
    before and after each output day, the nearest clear one beyond the ends, NaN for pixels
    with no clear observation at all."""
    n_obs = values.shape[0]
    clear = ~np.isnan(values[:, 0])
    order = np.arange(n_obs)[:, None, None]
    last_clear = np.maximum.accumulate(np.where(clear, order, -1), axis=0)
    next_clear = np.minimum.accumulate(np.where(clear, order, n_obs)[::-1], axis=0)[::-1]
    obs_days = np.asarray(obs_days, np.float64)
    out = np.empty((len(out_days), *values.shape[1:]), np.float32)
    for g, day in enumerate(np.asarray(out_days, np.float64)):
        before = np.searchsorted(obs_days, day, side="right") - 1
        after = np.searchsorted(obs_days, day, side="left")
        left = last_clear[before] if before >= 0 else np.full(clear.shape[1:], -1)
        right = next_clear[after] if after < n_obs else np.full(clear.shape[1:], n_obs)
        has_left, has_right = left >= 0, right < n_obs
        left_i, right_i = np.clip(left, 0, n_obs - 1), np.clip(right, 0, n_obs - 1)
        v_left = np.take_along_axis(values, left_i[None, None], axis=0)[0]
        v_right = np.take_along_axis(values, right_i[None, None], axis=0)[0]
        span = obs_days[right_i] - obs_days[left_i]
        weight = np.where(span > 0, (day - obs_days[left_i]) / np.where(span > 0, span, 1), 0.0)
        both = has_left & has_right
        filled = np.where(both, v_left + (v_right - v_left) * weight.astype(np.float32), np.nan)
        filled = np.where(has_left & ~has_right, v_left, filled)
        filled = np.where(~has_left & has_right, v_right, filled)
        out[g] = filled
    return out


# Written with numba because the plain numpy form makes (G x B) passes over whole arrays,
# as slow as the classification it feeds; this walks each pixel's dates once, row by row in
# parallel, with the same float32 arithmetic (no fastmath: results equal gapfill_reference).
# It reads the stored values and decodes those it uses (raw * scale + offset in float32, as
# decode_block): no decoded copy of the block. Masked: the sentinel, or NaN.
@numba.njit(parallel=True, cache=True)
def _gapfill_rows(raw, scale, offset, sentinel, obs_days, out_days, before, after, out):
    n_obs, n_bands, height, width = raw.shape
    for y in numba.prange(height):
        last = np.empty((n_obs, width), np.int64)
        nxt = np.empty((n_obs, width), np.int64)
        for t in range(n_obs):
            for x in range(width):
                v = raw[t, 0, y, x]
                clear = not (v == sentinel or v != v)
                last[t, x] = t if clear else (last[t - 1, x] if t > 0 else -1)
        for t in range(n_obs - 1, -1, -1):
            for x in range(width):
                nxt[t, x] = t if last[t, x] == t else (nxt[t + 1, x] if t < n_obs - 1
                                                        else n_obs)
        left = np.empty(width, np.int64)
        right = np.empty(width, np.int64)
        weight = np.empty(width, np.float32)
        for g in range(out_days.shape[0]):
            day = out_days[g]
            for x in range(width):
                lo = last[before[g], x] if before[g] >= 0 else -1
                hi = nxt[after[g], x] if after[g] < n_obs else n_obs
                left[x], right[x] = lo, hi
                if lo >= 0 and hi < n_obs:
                    span = obs_days[hi] - obs_days[lo]
                    weight[x] = np.float32((day - obs_days[lo]) / span if span > 0 else 0.0)
            for b in range(n_bands):
                for x in range(width):
                    lo, hi = left[x], right[x]
                    if lo >= 0 and hi < n_obs:
                        v_left = np.float32(raw[lo, b, y, x]) * scale[lo, b] + offset[lo, b]
                        v_right = np.float32(raw[hi, b, y, x]) * scale[hi, b] + offset[hi, b]
                        out[g, b, y, x] = v_left + (v_right - v_left) * weight[x]
                    elif lo >= 0:
                        out[g, b, y, x] = np.float32(raw[lo, b, y, x]) * scale[lo, b] + \
                            offset[lo, b]
                    elif hi < n_obs:
                        out[g, b, y, x] = np.float32(raw[hi, b, y, x]) * scale[hi, b] + \
                            offset[hi, b]
                    else:
                        out[g, b, y, x] = np.nan


_gapfill_rows = ByThreads(_gapfill_rows)


def gapfill_block(values: np.ndarray, obs_days: np.ndarray, out_days: np.ndarray,
                  n_threads: int | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Gap-fill one block in time: float32 (T, B, Y, X) with NaN where masked -> float32
    (G, B, Y, X) on `out_days`, as `gapfill_reference` states it (linear between the nearest
    clear observations, the nearest beyond the ends, NaN where never clear), on `n_threads`
    numba threads (None: numba's setting); into `out` when given (any strides: a view of
    the feature block)."""
    values = np.ascontiguousarray(values, np.float32)
    ones = np.ones(values.shape[:2], np.float32)
    return gapfill_stored(values, ones, ones * 0, np.nan, obs_days, out_days, n_threads, out)


def gapfill_stored(raw: np.ndarray, scale: np.ndarray, offset: np.ndarray, sentinel,
                   obs_days: np.ndarray, out_days: np.ndarray, n_threads: int | None = None,
                   out: np.ndarray | None = None) -> np.ndarray:
    """`gapfill_block` of stored observations (T, B, Y, X) in their encoding (`sentinel`
    where masked, value = raw * scale + offset, (T, B) float32), decoding only the values
    it uses: the same float32 results as `gapfill_block(decode_block(...))`."""
    raw = np.ascontiguousarray(raw)
    obs_days = np.asarray(obs_days, np.float64)
    out_days = np.asarray(out_days, np.float64)
    before = np.searchsorted(obs_days, out_days, side="right") - 1
    after = np.searchsorted(obs_days, out_days, side="left")
    if out is None:
        out = np.empty((len(out_days), *raw.shape[1:]), np.float32)
    if raw.shape[0] == 0:
        out[:] = np.nan
        return out
    sentinel = float(sentinel) if np.issubdtype(raw.dtype, np.floating) else int(sentinel)
    with numba_threads(n_threads):
        _gapfill_rows(raw, np.ascontiguousarray(scale, np.float32),
                      np.ascontiguousarray(offset, np.float32), sentinel, obs_days, out_days,
                      before.astype(np.int64), after.astype(np.int64), out)
    return out


# --- features -------------------------------------------------------------------------------


def _normalized_difference(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """(a - b) / (a + b) into `out`, 0 where a + b is 0 (the same float32 operations as
    `np.where(a + b != 0, (a - b) / (a + b), 0)`, without its temporaries)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        total = a + b
        np.subtract(a, b, out=out)
        np.divide(out, total, out=out)
    out[total == 0] = 0


def _brightness(filled: np.ndarray, out: np.ndarray) -> None:
    """sqrt of the sum of the squared bands into `out`, band after band (the order of
    numpy's sum over the band axis, without a squared copy of the block)."""
    total = np.square(filled[:, 0], dtype=np.float32)
    for b in range(1, filled.shape[1]):
        total += np.square(filled[:, b], dtype=np.float32)
    np.sqrt(total, out=out)


def indices_block(
    filled: np.ndarray, band_names: tuple[str, ...], index_bands: dict[str, str], names: tuple,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Spectral indices of a (G, B, Y, X) reflectance block -> float32 (G, len(names), Y, X)
    (into `out` when given).

    NDVI = (nir - red) / (nir + red); NDWI = (nir - swir) / (nir + swir) (Gao's, as iota2);
    Brightness = sqrt(sum of the squared reflectances of all bands)."""
    band = {name: filled[:, band_names.index(b)] for name, b in index_bands.items()}
    formulas = {
        "NDVI": lambda out: _normalized_difference(band["nir"], band["red"], out),
        "NDWI": lambda out: _normalized_difference(band["nir"], band["swir"], out),
        "Brightness": lambda out: _brightness(filled, out),
    }
    if out is None:
        out = np.empty((filled.shape[0], len(names), *filled.shape[2:]), np.float32)
    for i, name in enumerate(names):
        formulas[name](out[:, i])
    return out


def to_db(linear: np.ndarray) -> np.ndarray:
    """10 log10 of linear backscatter (values <= 0 give the floor of -100 dB)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.float32(10) * np.log10(np.maximum(linear, np.float32(1e-10)))).astype(
            np.float32)


def feature_layout(n_dates: int, n_bands: int, n_indices: int, height: int,
                   width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The float32 (F, Y, X) feature block (every band over the dates, then every index over
    the dates: the order of `feature_names`; `n_bands` 0 without reflectances) and its two
    parts as views in date-major order: bands (G, B, Y, X) and indices (G, I, Y, X), which
    the kernels write into in place (no concatenation of parts)."""
    n_refl = n_bands * n_dates
    out = np.empty((n_refl + n_indices * n_dates, height, width), np.float32)
    bands = out[:n_refl].reshape(n_bands, n_dates, height, width).transpose(1, 0, 2, 3)
    indices = out[n_refl:].reshape(n_indices, n_dates, height, width).transpose(1, 0, 2, 3)
    return out, bands, indices


def features_block(
    filled: np.ndarray,
    band_names: tuple[str, ...],
    index_bands: dict[str, str],
    indices: tuple[str, ...],
    keep_reflectances: bool,
    db: bool = False,
) -> np.ndarray:
    """(G, B, Y, X) gap-filled block -> float32 (F, Y, X): every band over the dates (in dB
    with `db`), then every index over the dates (the order of `feature_names`)."""
    n_dates, n_bands, height, width = filled.shape
    out, bands, idx = feature_layout(n_dates, n_bands if keep_reflectances else 0,
                                     len(indices), height, width)
    if keep_reflectances:
        np.copyto(bands, to_db(filled) if db else filled)
    if indices:
        indices_block(filled, band_names, index_bands, indices, out=idx)
    return out


def feature_names(
    prefix: str, band_names, dates: list[dt.date], indices, keep_reflectances: bool
) -> list[str]:
    channels = (list(band_names) if keep_reflectances else []) + list(indices)
    return [f"{prefix}{c}_{d:%Y%m%d}" for c in channels for d in dates]


def usable_indices(index_bands: dict[str, str], indices) -> tuple[str, ...]:
    """The indices that a sensor's bands allow: none without index bands (radar, plain
    series)."""
    if not index_bands:
        return ()
    return tuple(i for i in indices if all(r in index_bands for r in INDEX_ROLES[i]))


def days(dates) -> np.ndarray:
    return np.array([d.toordinal() for d in dates], np.int64)


@dataclass(frozen=True)
class SensorRecipe:
    """How one sensor's features come from its stored observations: plain values, handed to
    every task that computes features (`features_from_observations`)."""

    name: str  # the cube variable holding the observations
    prefix: str
    band_names: tuple[str, ...]
    obs_dates: tuple[dt.date, ...]
    grid_dates: tuple[dt.date, ...]
    scale: np.ndarray = field(compare=False)  # (T, B) float32
    offset: np.ndarray = field(compare=False)  # (T, B) float32
    sentinel: float | int = 0
    index_bands: dict = field(default_factory=dict)
    indices: tuple[str, ...] = ()
    keep_reflectances: bool = True
    db_input: bool = False
    db_features: bool = False

    @property
    def feature_names(self) -> list[str]:
        return feature_names(self.prefix, self.band_names, list(self.grid_dates),
                             self.indices, self.keep_reflectances)

    def decode(self, raw: np.ndarray) -> np.ndarray:
        return decode_block(raw, self.scale, self.offset, self.sentinel, self.db_input)

    def gapfilled(self, raw: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(G, B, h, w) float32: the observations decoded and gap-filled on the grid (into
        `out` when given)."""
        if self.db_input:  # decoded first: the linear values are interpolated
            return gapfill_block(self.decode(raw), days(self.obs_dates),
                                 days(self.grid_dates), task_threads(), out)
        return gapfill_stored(raw, self.scale, self.offset, self.sentinel, days(self.obs_dates),
                              days(self.grid_dates), task_threads(), out)

    def features(self, raw: np.ndarray) -> np.ndarray:
        """(F, h, w) float32 features of a (T, B, h, w) block of stored observations."""
        if not self.keep_reflectances or self.db_features:
            return features_block(self.gapfilled(raw), self.band_names, self.index_bands,
                                  self.indices, self.keep_reflectances, self.db_features)
        # the gap-filling writes straight into the feature block's bands (no gap-filled copy
        # of the block): the same values as features_block
        out, filled, idx = feature_layout(len(self.grid_dates), len(self.band_names),
                                          len(self.indices), *raw.shape[2:])
        self.gapfilled(raw, filled)
        if self.indices:
            indices_block(filled, self.band_names, self.index_bands, self.indices, out=idx)
        return out


def features_from_observations(recipes: tuple[SensorRecipe, ...], blocks: list[np.ndarray],
                               extra: list[np.ndarray] = ()) -> np.ndarray:
    """float32 (F, h, w): the features of each sensor's observation block (T, B, h, w), in
    recipe order, then the `extra` (k, h, w) blocks (user rasters, context features)."""
    parts = [recipe.features(raw) for recipe, raw in zip(recipes, blocks)]
    parts += [np.asarray(e, np.float32) for e in extra]
    return np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
