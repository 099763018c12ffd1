"""Area-adjusted accuracy and area estimates from a validation sample (pure numpy).

The estimators are those of Olofsson et al. (2014), "Good practices for estimating area and
assessing accuracy of land change", Remote Sensing of Environment 148:42-57 (eqs. 2-10; the
variances of user's, producer's and overall accuracy come from Olofsson et al. 2013, Remote
Sensing of Environment 129:122-131). The validation sample is treated as a stratified random
sample whose strata are the map classes: stratum i holds N_i mapped pixels (weight
W_i = N_i / N) and n_i. sample pixels.

Orientation: geoclass's confusion matrices have rows = reference and columns = map
(prediction); Olofsson's tables have rows = map (i) and columns = reference (j). Functions here
take `rows="reference"` (geoclass, the default) or `rows="map"` (the paper) and transpose
explicitly; every matrix they return is in geoclass's orientation.

`class_pixel_counts` is the per-block part: its results add up over the blocks of a dask
array to give the mapped pixel counts N_i."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

Z95 = 1.96  # two-sided 95 % normal quantile used by Olofsson et al.
ROWS = ("reference", "map")


def class_pixel_counts(block: np.ndarray, codes: list[int] | np.ndarray) -> np.ndarray:
    """int64 (K,): number of pixels of each of the K `codes` in `block`.

    block: integer class codes of any shape (uint8 / uint16 tiles of a class map); 0 is nodata
    and never counted, values not in `codes` are ignored. Summing the results of every block
    gives the whole map's counts."""
    block = np.asarray(block)
    codes = np.asarray(codes, np.int64)
    if not np.issubdtype(block.dtype, np.integer):
        raise ValueError(f"block must hold integer class codes, got {block.dtype}")
    if codes.ndim != 1 or np.any(codes <= 0):
        raise ValueError(f"codes must be positive class codes (0 is nodata), got {codes.tolist()}")
    if codes.size == 0 or block.size == 0:
        return np.zeros(codes.size, np.int64)
    values = block.ravel()
    values = values[(values > 0) & (values <= codes.max())].astype(np.int64)
    counts = np.bincount(values, minlength=int(codes.max()) + 1)
    return counts[codes].astype(np.int64)


def _map_by_reference(confusion, rows: str) -> np.ndarray:
    """Sample counts n_ij as float64 with rows = map class i, columns = reference class j."""
    counts = np.asarray(confusion, np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"confusion must be a square matrix, got shape {counts.shape}")
    if np.any(counts < 0):
        raise ValueError("confusion holds negative counts")
    if rows == "reference":
        return counts.T
    if rows == "map":
        return counts
    raise ValueError(f"rows must be one of {ROWS}, got {rows!r}")


def _opt(value) -> float | None:
    """A float for JSON, None for an undefined (None or NaN) value."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _times(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def _sqrt(variance: float | None) -> float | None:
    return None if variance is None else math.sqrt(max(variance, 0.0))


def area_adjusted_accuracy(confusion, mapped_pixels, classes: list[int],
                           pixel_area: float = 1.0, rows: str = "reference") -> dict:
    """Olofsson et al. (2014) area and accuracy estimates of a map from a validation sample.

    confusion: (C, C) sample counts in the order of `classes`, rows = reference, columns = map
    (geoclass's `confusion_matrix`), or rows = map with `rows="map"` (the paper's Table 8).
    mapped_pixels: (C,) pixels mapped as each class (`class_pixel_counts` summed over blocks);
    pixel_area: area of one pixel (the areas come out in its unit, e.g. 0.09 for 30 m pixels in
    ha). With W_i = N_i / N and n_i. the sample count of map stratum i:
        p_ij = W_i n_ij / n_i.                       (eq. 4; area proportion, map i, ref. j)
        area_j = A p_.j,  S(p_.j)^2 = sum_i (W_i p_ij - p_ij^2) / (n_i. - 1)     (eqs. 9-10)
        UA_i = p_ii / p_i.,  V(UA_i) = UA_i (1 - UA_i) / (n_i. - 1)
        OA = sum_j p_jj,     V(OA) = sum_i W_i^2 UA_i (1 - UA_i) / (n_i. - 1)
        PA_j = p_jj / p_.j,  V(PA_j) = [W_j^2 (1 - PA_j)^2 UA_j (1 - UA_j) / (n_j. - 1)
              + PA_j^2 sum_{i != j} W_i^2 (n_ij / n_i.)(1 - n_ij / n_i.) / (n_i. - 1)] / p_.j^2
    and every ci95 is the half-width 1.96 SE of a 95 % confidence interval.

    Undefined values are None: UA of a class never mapped (W_i = 0) or mapped but not sampled;
    PA of a class of estimated area 0; every area, PA and OA when a mapped class has no sample
    (its stratum's p_ij cannot be estimated); a UA's SE when its stratum has fewer than 2
    samples, and every area, PA and OA SE when any mapped stratum has fewer than 2 samples
    (the (n_i. - 1) denominators). Strata with W_i = 0 contribute nothing, whatever their
    sample. `warnings` says which classes caused what.

    Returns a JSON-ready dict: classes, pixel_area, total_area, n_samples, proportions (C x C
    p_ij, rows = reference, columns = map, i.e. the transpose of the paper's Table 9; None
    where unknown), overall_accuracy (+ _se, _ci95), per_class (code, mapped_pixels,
    mapped_area, weight, n_samples (n_i., map stratum), n_reference (n_.j), users_accuracy,
    producers_accuracy, area_proportion, area, each with _se and _ci95) and warnings."""
    counts = _map_by_reference(confusion, rows)
    mapped = np.asarray(mapped_pixels, np.float64)
    n_classes = counts.shape[0]
    if len(classes) != n_classes or mapped.shape != (n_classes,):
        raise ValueError(f"{n_classes} classes in the matrix, {len(classes)} codes and "
                         f"{mapped.size} mapped counts")
    if np.any(mapped < 0) or mapped.sum() <= 0:
        raise ValueError("mapped_pixels must be non-negative with a positive total")
    weight = mapped / mapped.sum()
    total_area = float(mapped.sum() * pixel_area)
    n_stratum = counts.sum(axis=1)
    in_map = weight > 0
    share = np.divide(counts, n_stratum[:, None], out=np.zeros_like(counts),
                      where=n_stratum[:, None] > 0)  # n_ij / n_i.
    proportions = weight[:, None] * share

    warnings = []
    unsampled = in_map & (n_stratum == 0)
    thin = in_map & (n_stratum == 1)
    if unsampled.any():
        warnings.append(f"classes {_codes(classes, unsampled)} are mapped but have no sample: "
                        "areas, producer's and overall accuracy are undefined")
    if thin.any():
        warnings.append(f"classes {_codes(classes, thin)} have a single sample: their user's "
                        "accuracy SE and every area, producer's and overall accuracy SE "
                        "are undefined")
    estimable = not unsampled.any()
    variances_ok = estimable and not thin.any()
    # (n_ij / n_i.)(1 - n_ij / n_i.) / (n_i. - 1), 0 for strata outside the map
    term = np.divide(share * (1 - share), (n_stratum - 1)[:, None],
                       out=np.zeros_like(share), where=(n_stratum > 1)[:, None] & in_map[:, None])
    weighted_term = weight[:, None] ** 2 * term

    users = np.where(in_map & (n_stratum > 0), np.diag(share), np.nan)
    users_var = np.where(n_stratum > 1, users * (1 - users) / np.maximum(n_stratum - 1, 1),
                         np.nan)
    area_prop = proportions.sum(axis=0) if estimable else np.full(n_classes, np.nan)
    area_var = weighted_term.sum(axis=0) if variances_ok else np.full(n_classes, np.nan)
    producers = np.divide(np.diag(proportions), area_prop, out=np.full(n_classes, np.nan),
                          where=area_prop > 0)
    producers_var = np.full(n_classes, np.nan)
    if variances_ok:
        others = weighted_term.sum(axis=0) - np.diag(weighted_term)  # sum over i != j
        own = np.where(in_map, weight**2 * (1 - producers) ** 2 * np.nan_to_num(users_var), 0.0)
        producers_var = np.divide(own + producers**2 * others, area_prop**2,
                                  out=np.full(n_classes, np.nan), where=area_prop > 0)
    overall = float(np.trace(proportions)) if estimable else None
    overall_var = None
    if variances_ok:
        overall_var = float(np.sum(np.where(in_map, weight**2 * np.nan_to_num(users_var), 0.0)))

    per_class = []
    for i, code in enumerate(classes):
        entry = {"code": int(code), "mapped_pixels": float(mapped[i]),
                 "mapped_area": float(mapped[i] * pixel_area), "weight": float(weight[i]),
                 "n_samples": int(n_stratum[i]), "n_reference": int(counts[:, i].sum())}
        figures = {"users_accuracy": (users[i], users_var[i], 1.0),
                   "producers_accuracy": (producers[i], producers_var[i], 1.0),
                   "area_proportion": (area_prop[i], area_var[i], 1.0),
                   "area": (area_prop[i], area_var[i], total_area)}
        for key, (value, variance, scale) in figures.items():
            se = _times(_sqrt(_opt(variance)), scale)
            entry[key] = _times(_opt(value), scale)
            entry[f"{key}_se"] = se
            entry[f"{key}_ci95"] = _times(se, Z95)
        per_class.append(entry)

    overall_se = _sqrt(overall_var)
    known = ~in_map | (n_stratum > 0)  # map strata whose p_ij are known
    return {
        "classes": [int(c) for c in classes],
        "pixel_area": float(pixel_area),
        "total_area": total_area,
        "n_samples": int(counts.sum()),
        "proportions": [[float(proportions[i, j]) if known[i] else None
                         for i in range(n_classes)] for j in range(n_classes)],
        "overall_accuracy": overall,
        "overall_accuracy_se": overall_se,
        "overall_accuracy_ci95": _times(overall_se, Z95),
        "per_class": per_class,
        "warnings": warnings,
    }


def _codes(classes: list[int], mask: np.ndarray) -> list[int]:
    return [int(c) for c, m in zip(classes, mask) if m]


def spread(values: list[float | None], confidence: float = 0.95) -> dict:
    """Mean of the defined (not None) values, their std (ddof=1) and the half-width
    t(1 - alpha/2, n - 1) std / sqrt(n) of the Student t confidence interval (ci95 for the
    default 95 %), with n, the number of values used. std and ci95 are None below 2 values,
    mean too with none."""
    kept = np.array([v for v in values if v is not None], np.float64)
    n = int(kept.size)
    if n == 0:
        return {"mean": None, "std": None, "ci95": None, "n": 0}
    if n == 1:
        return {"mean": float(kept[0]), "std": None, "ci95": None, "n": 1}
    std = float(kept.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n))
    return {"mean": float(kept.mean()), "std": std, "ci95": half, "n": n}


def combine_runs(results: list[dict], confidence: float = 0.95) -> dict:
    """Summary over several runs' `area_adjusted_accuracy` results: a `spread` (mean, std,
    Student t half-width ci95, n) of the overall accuracy and, per class, of the adjusted area,
    area proportion, user's and producer's accuracy. Undefined (None) values of a run are left
    out of that figure's spread. The runs must have the same classes."""
    if not results:
        raise ValueError("no run to combine")
    classes = results[0]["classes"]
    if any(run["classes"] != classes for run in results):
        raise ValueError("the runs do not have the same classes")
    per_class = []
    for i, code in enumerate(classes):
        entry = {"code": code}
        for key in ("area", "area_proportion", "users_accuracy", "producers_accuracy"):
            entry[key] = spread([run["per_class"][i][key] for run in results], confidence)
        per_class.append(entry)
    return {
        "n_runs": len(results),
        "confidence": confidence,
        "overall_accuracy": spread([run["overall_accuracy"] for run in results], confidence),
        "per_class": per_class,
    }


DESIGN = ("stratified random sampling with the map classes as strata (Olofsson et al. 2014): "
          "each class's validation pixels are taken as a simple random sample of the pixels "
          "mapped as that class")


def _value(value: float | None, ci: float | None, digits: int, width: int,
           thousands: bool = False) -> str:
    if value is None:
        return f"{'n/a':>{width}}"
    text = f"{value:,.{digits}f}" if thousands else f"{value:.{digits}f}"
    if ci is not None:
        text += f" +- {ci:,.{digits}f}" if thousands else f" +- {ci:.{digits}f}"
    return f"{text:>{width}}"


def format_areas(result: dict, names: dict[int, str] | None = None, unit: str = "ha") -> str:
    """Text table of an `area_adjusted_accuracy` result: per class the mapped area, the
    adjusted area +- its 95 % CI half-width, user's and producer's accuracy +- CI; then the
    area-weighted overall accuracy, the design assumed and the warnings."""
    names = names or {}
    labels = [str(names.get(e["code"], e["code"])) for e in result["per_class"]]
    width = max([len("class"), *(len(label) for label in labels)])
    lines = ["Area-adjusted accuracy and area estimates (Olofsson et al. 2014)",
             f"Design assumed: {DESIGN}.",
             f"Pixel area: {result['pixel_area']:g} {unit}; mapped area: "
             f"{result['total_area']:,.2f} {unit}; validation pixels: {result['n_samples']}", "",
             f"{'class':<{width}}  {'mapped (' + unit + ')':>14}  "
             f"{'adjusted (' + unit + ') +- 95 % CI':>30}  {'UA +- 95 % CI':>16}  "
             f"{'PA +- 95 % CI':>16}"]
    for label, entry in zip(labels, result["per_class"]):
        lines.append(
            f"{label:<{width}}  {entry['mapped_area']:>14,.2f}  "
            f"{_value(entry['area'], entry['area_ci95'], 2, 30, thousands=True)}  "
            f"{_value(entry['users_accuracy'], entry['users_accuracy_ci95'], 3, 16)}  "
            f"{_value(entry['producers_accuracy'], entry['producers_accuracy_ci95'], 3, 16)}")
    lines += ["", "Overall accuracy (area-weighted): "
              + _value(result["overall_accuracy"], result["overall_accuracy_ci95"], 3, 0)
              .strip() + " (95 % CI)"]
    lines += [f"Warning: {w}" for w in result.get("warnings", [])]
    return "\n".join(lines) + "\n"


def _spread_text(figure: dict, digits: int, thousands: bool = False) -> str:
    if figure["mean"] is None:
        return "n/a"
    spec = f"{',' if thousands else ''}.{digits}f"
    text = format(figure["mean"], spec)
    if figure["ci95"] is not None:
        text += " +- " + format(figure["ci95"], spec)
    return text


def format_area_summary(summary: dict, names: dict[int, str] | None = None,
                        unit: str = "ha") -> str:
    """Text of a `combine_runs` result: the area-weighted OA and each class's adjusted area,
    user's and producer's accuracy as mean +- Student t 95 % CI half-width over the runs."""
    names = names or {}
    runs = summary["n_runs"]
    labels = [str(names.get(e["code"], e["code"])) for e in summary["per_class"]]
    width = max([len("class"), *(len(label) for label in labels)])
    lines = [f"Area-adjusted estimates over {runs} run{'s' if runs > 1 else ''} "
             "(mean +- 95 % CI over the runs; Olofsson et al. 2014)", "",
             "OA (area-weighted) = " + _spread_text(summary["overall_accuracy"], 3), "",
             f"{'class':<{width}}  {'adjusted area (' + unit + ')':>26}  {'UA':>16}  "
             f"{'PA':>16}"]
    for label, entry in zip(labels, summary["per_class"]):
        lines.append(f"{label:<{width}}  {_spread_text(entry['area'], 2, True):>26}  "
                     f"{_spread_text(entry['users_accuracy'], 3):>16}  "
                     f"{_spread_text(entry['producers_accuracy'], 3):>16}")
    return "\n".join(lines) + "\n"
