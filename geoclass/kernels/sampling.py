"""Learning/validation split of polygons, sample-selection strategies and sample augmentation
(iota2's rules), as pure functions of tables. A selection `rule` is any object with the values
`strategy`, `constant_nb`, `percent_p`, `total_v`, `byclass_in` (config.SelectionRule has
them); augmentation `options` likewise (`strategy`, `samples_strategy`, `min_number`,
`by_class`, `jitter_stdfactor`, `smote_neighbors`: config.SampleAugmentation)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from imblearn.over_sampling import SMOTE

# --- split ----------------------------------------------------------------------------------


def run_rng(seed: int, run: int, *keys: int) -> np.random.Generator:
    """The random generator of one run (and optional sub-keys), independent of everything
    else: same seed and run, same draws."""
    return np.random.default_rng([seed, run, *keys])


def split_polygons(
    pieces: pd.DataFrame, ratio: float, run: int, seed: int, split: bool = True
) -> tuple[pd.Series, list[str]]:
    """Assign each polygon piece (columns `piece`, `region`, `code`) to learning (True) or
    validation (False), per class and per region, with `ratio` of the polygons for learning.

    A class with a single polygon in a region goes to learning only and is reported; with
    `split=False` every polygon is used for both sets (the caller treats them as such)."""
    learn = pd.Series(True, index=pieces.index, name="learn")
    notes: list[str] = []
    if not split:
        notes.append("split_ground_truth is false: every polygon is used for learning AND "
                     "validation, so the accuracy figures are optimistic")
        return learn, notes
    for (region, code), group in pieces.groupby(["region", "code"], sort=True):
        ids = np.sort(group["piece"].to_numpy())
        if len(ids) == 1:
            notes.append(f"region {region}: class {code} has a single polygon; it is used for "
                         "learning only, so this class has no validation data there")
            continue
        rng = run_rng(seed, run, int(region), int(code))
        order = rng.permutation(ids)
        n_learn = min(max(1, int(round(ratio * len(ids)))), len(ids) - 1)
        validation = set(order[n_learn:].tolist())
        learn[group.index[group["piece"].isin(validation)]] = False
    return learn, notes


# --- selection ------------------------------------------------------------------------------


def target_counts(counts: pd.Series, rule, labels: dict[int, str]) -> pd.Series:
    """How many samples each class of one region gets from its eligible pixel `counts`
    (index: class code), under a selection `rule`. `labels` maps codes to user labels for
    the `byclass` table."""
    counts = counts.astype(np.int64)
    if rule.strategy == "all":
        wanted = counts
    elif rule.strategy == "constant":
        wanted = counts.clip(upper=rule.constant_nb)
    elif rule.strategy == "percent":
        wanted = (counts * rule.percent_p).round().astype(np.int64)
    elif rule.strategy == "smallest":
        wanted = counts.clip(upper=int(counts[counts > 0].min()) if (counts > 0).any() else 0)
    elif rule.strategy == "byclass":
        table = rule.byclass_in
        wanted = pd.Series([table.get(labels.get(c, str(c)), table.get(str(c), 0))
                            for c in counts.index], index=counts.index).clip(upper=counts)
    else:  # total: split proportionally, largest remainders first
        share = counts / max(int(counts.sum()), 1) * min(rule.total_v, int(counts.sum()))
        wanted = np.floor(share).astype(np.int64)
        left = int(min(rule.total_v, counts.sum()) - wanted.sum())
        order = (share - wanted).sort_values(ascending=False, kind="stable").index[:left]
        wanted[order] += 1
    return wanted.astype(np.int64)


def pixel_keys(tile: int, rows: np.ndarray, cols: np.ndarray, seed: int, run: int) -> np.ndarray:
    """A uniform [0, 1) key per pixel from a hash of (tile, row, col, seed, run): random
    sampling that is the same whatever the chunking or the number of workers.

    Written by hand (splitmix64) because numpy's generators draw sequences, not values
    addressed by pixel position."""
    with np.errstate(over="ignore"):
        x = (np.uint64(tile) << np.uint64(42)) | (rows.astype(np.uint64) << np.uint64(21))
        x = x | cols.astype(np.uint64)
        x = x ^ (np.uint64(seed & 0xFFFFFFFF) * np.uint64(0x9E3779B97F4A7C15))
        x = x + np.uint64(run + 1) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def candidate_fraction(wanted: int, available: int) -> float:
    """The key threshold that keeps, with overwhelming probability, at least `wanted` of
    `available` pixels (a few standard deviations above wanted / available)."""
    if available <= 0 or wanted >= available:
        return 1.0
    p = wanted / available
    return min(1.0, p + 6 * np.sqrt(p * (1 - p) / available) + 20 / available)


def select(candidates: pd.DataFrame, wanted: int, sampler: str) -> pd.DataFrame:
    """Pick exactly `wanted` rows: the smallest keys (random), or evenly spaced rows in
    raster order (periodic)."""
    if wanted >= len(candidates):
        return candidates
    if sampler == "periodic":
        ordered = candidates.sort_values(["tile", "row", "col"], kind="stable")
        picks = (np.arange(wanted) * len(ordered)) // wanted
        return ordered.iloc[picks]
    return candidates.sort_values(["key", "tile", "row", "col"], kind="stable").iloc[:wanted]


# --- augmentation ---------------------------------------------------------------------------


def augmentation_targets(counts: pd.Series, options,
                         labels: dict[int, str]) -> pd.Series:
    """How many synthetic samples each class (index: code) of one region gets."""
    if options.samples_strategy == "balance":
        goal = pd.Series(int(counts.max()), index=counts.index)
    elif options.samples_strategy == "minNumber":
        goal = pd.Series(options.min_number, index=counts.index)
    else:
        table = options.by_class
        goal = pd.Series([table.get(labels.get(c, str(c)), table.get(str(c), 0))
                          for c in counts.index], index=counts.index)
    return (goal - counts).clip(lower=0).astype(np.int64)


def augment(
    samples: pd.DataFrame, features: list[str], options,
    labels: dict[int, str], rng: np.random.Generator,
) -> pd.DataFrame:
    """Synthetic learning samples of one region (rows flagged `synthetic`), by replication,
    jitter (replicas plus Gaussian noise of std = feature std / stdfactor) or SMOTE."""
    counts = samples["code"].value_counts().sort_index()
    extra = augmentation_targets(counts, options, labels)
    extra = extra[extra > 0]
    if extra.empty:
        return samples.iloc[:0]
    if options.strategy == "smote":
        new = _smote(samples, features, counts, extra, options.smote_neighbors, rng)
    else:
        parts = [samples[samples["code"] == c].iloc[rng.integers(0, counts[c], n)]
                 for c, n in extra.items()]
        new = pd.concat(parts).copy()
        if options.strategy == "jitter":
            std = samples[features].std(ddof=0).to_numpy() / options.jitter_stdfactor
            noise = rng.standard_normal((len(new), len(features))) * std
            new[features] = new[features].to_numpy() + noise.astype(np.float32)
    new["synthetic"] = True
    for column in ("row", "col", "piece", "fid"):
        if column in new:
            new[column] = -1
    if "tile" in new:
        new["tile"] = "synthetic"  # a string like the tile names (the Parquet column type)
    return new


def _smote(samples, features, counts, extra, neighbors, rng) -> pd.DataFrame:
    usable = {c: int(counts[c] + n) for c, n in extra.items() if counts[c] > 1}
    if not usable:
        return samples.iloc[:0]
    k = max(1, min(neighbors, int(min(counts[c] for c in usable)) - 1))
    smote = SMOTE(sampling_strategy=usable, k_neighbors=k,
                  random_state=int(rng.integers(0, 2**31 - 1)))
    x, y = smote.fit_resample(samples[features].to_numpy(), samples["code"].to_numpy())
    x_new, y_new = x[len(samples):], y[len(samples):]
    first = samples.groupby("code").head(1).set_index("code")
    new = first.loc[y_new].reset_index()
    new[features] = x_new.astype(np.float32)
    return new[samples.columns]
