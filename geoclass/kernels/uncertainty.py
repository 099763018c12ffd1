"""Per-pixel uncertainty of class probabilities and uncertainty sampling (pure numpy).

Probability blocks are (C, h, w), either uint16 = probability x 1000 with 65535 = nodata (the
probability COG) or float in [0, 1] with NaN = nodata. A pixel is nodata when any of its bands
is. The measures (Settles 2009, "Active learning literature survey", section 3.1; as in sits'
sits_uncertainty: entropy, margin, least) are all in [0, 1], 1 = most uncertain:

    entropy  = -sum_c p_c log p_c / log C
    margin   = 1 - (p1 - p2)                     p1, p2 the two highest probabilities
    least    = (1 - p1) C / (C - 1)              normalised least confidence

Least confidence is normalised by C / (C - 1) (Monarch 2021, "Human-in-the-loop machine
learning", ch. 3) so that, like the two others, it reaches 1 on a uniform vector whatever C;
`normalised=False` gives Settles' and sits' plain 1 - p1 (at most 1 - 1/C). The uint16 output
is round(value x 10000) (0..10000; sits uses the same scale but truncates), 65535 = nodata.

Uncertainty sampling (active learning, like sits_uncertainty_sampling): `most_uncertain` picks
each block's candidates, `merge_candidates` the global selection; see their docstrings."""

from __future__ import annotations

import math

import numpy as np
from scipy.special import entr

PROBA_SCALE = 1000
PROBA_NODATA = 65535
UNCERTAINTY_SCALE = 10000
UNCERTAINTY_NODATA = 65535
MEASURES = ("entropy", "margin", "least")
# one sampling candidate: pixel row and column (in the coordinates the caller gave through
# `origin`), its uncertainty and its predicted class
CANDIDATE_DTYPE = np.dtype([("row", np.int64), ("col", np.int64),
                            ("uncertainty", np.float64), ("class", np.int64)])


def probabilities(block: np.ndarray, scale: float = PROBA_SCALE,
                  nodata: int = PROBA_NODATA) -> np.ndarray:
    """float64 (C, h, w) probabilities normalised to sum 1 at each pixel, NaN (every band) at
    nodata pixels.

    block: (C, h, w) integers (probability x `scale`, `nodata` where missing) or floats (NaN
    where missing). Normalising absorbs the rounding of scaled integers; a pixel whose
    probabilities sum to 0 is nodata."""
    block = np.asarray(block)
    if block.ndim != 3:
        raise ValueError(f"probabilities must be (classes, height, width), got {block.shape}")
    if np.issubdtype(block.dtype, np.integer):
        missing = (block == nodata).any(axis=0)
        values = block.astype(np.float64) / scale
    else:
        values = block.astype(np.float64)
        missing = np.isnan(values).any(axis=0)
    values = np.where(missing, 0.0, values)
    total = values.sum(axis=0)
    missing |= total <= 0
    safe = np.where(missing, 1.0, total)
    return np.where(missing, np.nan, values / safe)


def encode(values: np.ndarray, scale: float, nodata: int = 65535) -> np.ndarray:
    """uint16 round(values x scale), `nodata` where values is NaN (any shape)."""
    values = np.asarray(values, np.float64)
    missing = np.isnan(values)
    scaled = np.rint(np.where(missing, 0.0, values) * scale)
    if (scaled.min(initial=0) < 0 or scaled.max(initial=0) > 65535
            or np.any(scaled[~missing] == nodata)):
        raise ValueError(f"values x {scale} do not fit in uint16 without meeting nodata {nodata}")
    return np.where(missing, nodata, scaled).astype(np.uint16)


def _top_two(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The highest and second highest probability of each pixel, (h, w) each."""
    if probs.shape[0] == 1:
        return probs[0], np.zeros_like(probs[0])
    top = np.partition(probs, -2, axis=0)
    return top[-1], top[-2]


def entropy(block: np.ndarray, scale: float = PROBA_SCALE,
            nodata: int = PROBA_NODATA) -> np.ndarray:
    """float64 (h, w): Shannon entropy -sum p log p / log C in [0, 1] (0 log 0 = 0; 0 when
    C = 1), NaN at nodata. block: (C, h, w) as in `probabilities`."""
    probs = probabilities(block, scale, nodata)
    n_classes = probs.shape[0]
    if n_classes < 2:
        return np.where(np.isnan(probs[0]), np.nan, 0.0)
    return np.clip(entr(probs).sum(axis=0) / math.log(n_classes), 0.0, 1.0)


def margin(block: np.ndarray, scale: float = PROBA_SCALE,
           nodata: int = PROBA_NODATA) -> np.ndarray:
    """float64 (h, w): 1 - (p1 - p2) in [0, 1], p1 >= p2 the two highest probabilities
    (p2 = 0 when C = 1), NaN at nodata. block: (C, h, w) as in `probabilities`."""
    first, second = _top_two(probabilities(block, scale, nodata))
    return 1.0 - (first - second)


def least_confidence(block: np.ndarray, normalised: bool = True, scale: float = PROBA_SCALE,
                     nodata: int = PROBA_NODATA) -> np.ndarray:
    """float64 (h, w): (1 - p1) C / (C - 1) in [0, 1] (plain 1 - p1 if not `normalised`;
    0 when C = 1), NaN at nodata. block: (C, h, w) as in `probabilities`."""
    probs = probabilities(block, scale, nodata)
    n_classes = probs.shape[0]
    value = 1.0 - _top_two(probs)[0]
    if normalised:
        value = value * n_classes / (n_classes - 1) if n_classes > 1 else value * 0.0
    return np.clip(value, 0.0, 1.0)


def uncertainty(block: np.ndarray, measure: str = "entropy", scale: float = PROBA_SCALE,
                nodata: int = PROBA_NODATA, out_scale: float = UNCERTAINTY_SCALE,
                out_nodata: int = UNCERTAINTY_NODATA) -> np.ndarray:
    """uint16 (h, w): `measure` ("entropy", "margin" or "least", normalised) of a (C, h, w)
    probability block, x `out_scale` (0..10000), `out_nodata` where the input is nodata."""
    functions = {"entropy": entropy, "margin": margin, "least": least_confidence}
    if measure not in functions:
        raise ValueError(f"unknown uncertainty measure {measure!r}, expected one of {MEASURES}")
    return encode(functions[measure](block, scale=scale, nodata=nodata), out_scale, out_nodata)


def _disk(min_distance: float) -> tuple[np.ndarray, np.ndarray]:
    """Row and column offsets closer than min_distance to (0, 0)."""
    reach = max(math.ceil(min_distance) - 1, 0)
    dr, dc = np.mgrid[-reach:reach + 1, -reach:reach + 1]
    near = dr**2 + dc**2 < min_distance**2
    return dr[near], dc[near]


def _spaced_in_block(rows, cols, n: int, min_distance: float, shape) -> list[int]:
    """Greedy non-maximum suppression: positions in the (already ordered) candidates of the
    first n that are each at least min_distance from the ones kept before them."""
    if min_distance <= 1:  # distinct pixels are always at least 1 apart
        return list(range(min(n, len(rows))))
    blocked = np.zeros(shape, bool)
    dr, dc = _disk(min_distance)
    kept: list[int] = []
    batch = max(4 * n, 256)
    for start in range(0, len(rows), batch):
        span = np.arange(start, min(start + batch, len(rows)))
        for i in span[~blocked[rows[span], cols[span]]]:  # skip the already blocked at once
            if blocked[rows[i], cols[i]]:
                continue
            kept.append(int(i))
            if len(kept) == n:
                return kept
            rr, cc = rows[i] + dr, cols[i] + dc
            inside = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
            blocked[rr[inside], cc[inside]] = True
    return kept


def most_uncertain(uncertainty_block: np.ndarray, classes_block: np.ndarray, n: int,
                   min_distance: float = 0.0, origin: tuple[int, int] = (0, 0),
                   nodata: float = UNCERTAINTY_NODATA, class_nodata: int = 0,
                   min_uncertainty: float | None = None) -> np.ndarray:
    """A block's sampling candidates: for each predicted class, up to `n` of its most
    uncertain pixels, each at least `min_distance` pixels (Euclidean) from the more uncertain
    ones kept for that class (greedy non-maximum suppression).

    uncertainty_block: (h, w) uint16 (`nodata` = missing) or float (NaN = missing);
    classes_block: (h, w) predicted class codes (`class_nodata` = missing). Pixels missing in
    either, or below `min_uncertainty` (same unit as the block), are never candidates. Ties go
    to the smaller row, then column. Returns a CANDIDATE_DTYPE array (row and col offset by
    `origin`, the block's position in the image) sorted by decreasing uncertainty. Spacing
    between classes and across blocks is `merge_candidates`' job; ask each block for more
    than the final count per class to leave it room."""
    values = np.asarray(uncertainty_block)
    labels = np.asarray(classes_block)
    if values.ndim != 2 or values.shape != labels.shape:
        raise ValueError(f"uncertainty {values.shape} and classes {labels.shape} must be the "
                         "same (height, width)")
    valid = labels != class_nodata
    if np.issubdtype(values.dtype, np.integer):
        valid &= values != nodata
    else:
        valid &= np.isfinite(values)
    if min_uncertainty is not None:
        valid &= values >= min_uncertainty
    rows, cols = np.nonzero(valid)
    scores = values[rows, cols].astype(np.float64)
    picked = []
    for code in np.unique(labels[rows, cols]):
        mine = np.flatnonzero(labels[rows, cols] == code)
        mine = mine[np.lexsort((cols[mine], rows[mine], -scores[mine]))]
        keep = mine[_spaced_in_block(rows[mine], cols[mine], n, min_distance, values.shape)]
        picked.append(keep)
    chosen = np.concatenate(picked) if picked else np.zeros(0, np.int64)
    out = np.empty(chosen.size, CANDIDATE_DTYPE)
    out["row"] = rows[chosen] + origin[0]
    out["col"] = cols[chosen] + origin[1]
    out["uncertainty"] = scores[chosen]
    out["class"] = labels[rows[chosen], cols[chosen]]
    return _by_uncertainty(out)


def _by_uncertainty(candidates: np.ndarray) -> np.ndarray:
    """Candidates sorted by decreasing uncertainty, then row, then column."""
    order = np.lexsort((candidates["col"], candidates["row"], -candidates["uncertainty"]))
    return candidates[order]


class _SpacedSet:
    """Points chosen so far, hashed on a grid of min_distance cells so that checking a new
    point only looks at the 3 x 3 cells around it."""

    def __init__(self, min_distance: float):
        self.min_distance = min_distance
        self.cells: dict[tuple[int, int], list[tuple[int, int]]] = {}

    def _cell(self, row: int, col: int) -> tuple[int, int]:
        return int(row // self.min_distance), int(col // self.min_distance)

    def fits(self, row: int, col: int) -> bool:
        if self.min_distance <= 0:
            return True
        cell_row, cell_col = self._cell(row, col)
        limit = self.min_distance**2
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                for r, c in self.cells.get((cell_row + dr, cell_col + dc), ()):
                    if (r - row) ** 2 + (c - col) ** 2 < limit:
                        return False
        return True

    def add(self, row: int, col: int) -> None:
        if self.min_distance > 0:
            self.cells.setdefault(self._cell(row, col), []).append((row, col))


def merge_candidates(candidates: list[np.ndarray] | np.ndarray, n: int,
                     min_distance: float = 0.0, per_class: bool = True) -> np.ndarray:
    """The final sample: up to `n` candidates (CANDIDATE_DTYPE, from `most_uncertain` on each
    block) pairwise at least `min_distance` pixels apart, whatever their block or class.

    per_class (round-robin): each round gives every predicted class that still has candidates
    one pixel, its most uncertain one at least min_distance from all those already chosen; in
    a round the classes take their turn from the one with the most uncertain such pixel down.
    The classes thus get equal shares as far as their candidates allow (a class short of
    candidates leaves its share to the others) and the first rounds hold the most uncertain
    pixels. Without per_class: the plain greedy top n by uncertainty. Ties: smaller row, then
    column. Returned in the order chosen.

    Each block keeps only its own greedy picks, so a pixel that its block left out because of
    a neighbour that the merge later rejects cannot come back: the result can differ from a
    greedy pass over the whole image, but the spacing always holds."""
    if isinstance(candidates, np.ndarray):
        pool = candidates.astype(CANDIDATE_DTYPE)
    else:
        pool = np.concatenate([np.asarray(c, CANDIDATE_DTYPE) for c in candidates] or
                              [np.zeros(0, CANDIDATE_DTYPE)])
    pool = _by_uncertainty(np.unique(pool))  # the same pixel twice counts once
    chosen = _SpacedSet(min_distance)
    picked: list[int] = []

    def take(i: int) -> None:
        chosen.add(int(pool["row"][i]), int(pool["col"][i]))
        picked.append(i)

    def fits(i: int) -> bool:
        return chosen.fits(int(pool["row"][i]), int(pool["col"][i]))

    if not per_class:
        for i in range(pool.size):
            if len(picked) == n:
                break
            if fits(i):
                take(i)
        return pool[picked]
    queues = {int(code): list(np.flatnonzero(pool["class"] == code))
              for code in np.unique(pool["class"])}
    heads = dict.fromkeys(queues, 0)

    def next_fitting(code: int) -> int | None:
        queue = queues[code]
        while heads[code] < len(queue) and not fits(queue[heads[code]]):
            heads[code] += 1
        return queue[heads[code]] if heads[code] < len(queue) else None

    while len(picked) < n:
        offers = {code: next_fitting(code) for code in queues}
        turn = sorted((i, code) for code, i in offers.items() if i is not None)
        if not turn:
            break
        for _, code in turn:  # pool order: most uncertain first
            i = next_fitting(code)  # an earlier pick of this round may have blocked it
            if i is None:
                continue
            take(i)
            heads[code] += 1
            if len(picked) == n:
                break
    return pool[picked]
