"""Fusion of several runs' classification maps, block by block (pure numpy): majority vote and
Dempster-Shafer combination with iota2's measures of belief (precision, recall, accuracy,
kappa of each run's confusion matrix)."""

from __future__ import annotations

import numpy as np

from geoclass.kernels.scores import cohen_kappa, overall_accuracy, precisions, recalls

MAX_MASS = 1.0 - 1e-9
# A class never right in validation (precision 0) still counts a little: without this floor,
# runs that agree on it would leave every belief at 0 and the pixel to an arbitrary class.
MIN_MASS = 1e-6
TIE_RTOL = 1e-12
MEASURES_OF_BELIEF = ("precision", "recall", "accuracy", "kappa")


def _check_stack(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be (runs, height, width), got shape {labels.shape}")
    return labels


def _votes(labels: np.ndarray, confidences: np.ndarray, codes: np.ndarray):
    """Per class in `codes`: number of runs voting for it and the sum of their confidences,
    both int64 (C, h, w)."""
    votes = np.stack([(labels == code).sum(axis=0) for code in codes]).astype(np.int64)
    confidence = np.stack([
        np.where(labels == code, confidences, 0).sum(axis=0, dtype=np.int64) for code in codes
    ])
    return votes, confidence


def majority_vote(labels: np.ndarray, confidences: np.ndarray, undecided_label: int | None = None,
                  nodata: int = 0) -> np.ndarray:
    """The class chosen by most runs at each pixel.

    labels: (K, h, w) class codes of K runs (`nodata` = no vote); confidences: (K, h, w)
    0..100. Nodata votes are ignored; a pixel without any vote stays `nodata`. Ties between the
    most-voted classes go to `undecided_label` if given, else to the tied class with the highest
    mean confidence over the runs that voted for it (tied classes have the same number of votes,
    so this is the highest confidence sum), then to the smallest class code. Same dtype as
    labels."""
    labels = _check_stack(labels)
    confidences = np.asarray(confidences)
    if confidences.shape != labels.shape:
        raise ValueError(f"confidences {confidences.shape} and labels {labels.shape} differ")
    out = np.full(labels.shape[1:], nodata, labels.dtype)
    codes = np.unique(labels[labels != nodata])  # ascending: argmax picks the smallest code
    if codes.size == 0:
        return out
    votes, confidence = _votes(labels, confidences, codes)
    most = votes.max(axis=0)
    tied = votes == most
    if undecided_label is None:
        score = np.where(tied, confidence, -1)
        winner = codes[score.argmax(axis=0)]
    else:
        winner = np.where(tied.sum(axis=0) > 1, undecided_label, codes[votes.argmax(axis=0)])
    return np.where(most > 0, winner, out).astype(labels.dtype)


def _class_index(labels: np.ndarray, classes: list[int], nodata: int):
    """Index in `classes` of each label and whether the label is a vote (not nodata)."""
    codes = np.asarray(classes)
    if codes.size == 0 or codes.size != np.unique(codes).size:
        raise ValueError(f"classes must be distinct and not empty, got {list(classes)}")
    order = np.argsort(codes)
    slot = np.clip(np.searchsorted(codes[order], labels), 0, codes.size - 1)
    voting = labels != nodata
    unknown = voting & (codes[order][slot] != labels)
    if unknown.any():
        raise ValueError(f"labels {np.unique(labels[unknown]).tolist()} are not in {classes}")
    return order[slot], voting


def _source_masses(labels, masses, classes, nodata) -> tuple[np.ndarray, np.ndarray]:
    """Index of each source's class and its mass a_k (0 where the source is nodata)."""
    masses = np.clip(np.asarray(masses, np.float64), MIN_MASS, MAX_MASS)
    if masses.shape != (labels.shape[0], len(classes)):
        raise ValueError(f"masses must be (runs, classes) = {(labels.shape[0], len(classes))}, "
                         f"got {masses.shape}")
    index, voting = _class_index(labels, classes, nodata)
    runs = np.arange(labels.shape[0])[:, None, None]
    return np.where(voting, index, -1), np.where(voting, masses[runs, index], 0.0)


def dempster_shafer_belief(labels: np.ndarray, masses: np.ndarray | list, classes: list[int],
                           nodata: int = 0) -> np.ndarray:
    """Normalised Dempster-Shafer belief of each class, float64 (C, h, w) in `classes` order.

    Source k predicting class c puts a_k = masses[k][index of c] (clipped to [1e-6, 1 - 1e-9]) on
    {c} and 1 - a_k on Omega; nodata sources are ignored (a_k = 0). Dempster's rule for such
    simple support functions gives, unnormalised,
        m({c}) = (1 - prod_{k predicts c} (1 - a_k)) * prod_{k predicts another class} (1 - a_k)
        m(Omega) = prod_k (1 - a_k),
    the rest being conflict; belief({c}) = m({c}) / (sum_d m({d}) + m(Omega)). All-nodata
    pixels get belief 0 for every class."""
    labels = _check_stack(labels)
    index, support = _source_masses(labels, masses, classes, nodata)
    doubt = 1.0 - support
    mass = np.empty((len(classes), *labels.shape[1:]), np.float64)
    for i in range(len(classes)):
        for_class = index == i
        kept = np.where(for_class, doubt, 1.0).prod(axis=0)
        against = np.where(for_class, 1.0, doubt).prod(axis=0)
        mass[i] = (1.0 - kept) * against
    total = mass.sum(axis=0) + doubt.prod(axis=0)
    return np.divide(mass, total, out=np.zeros_like(mass), where=total > 0)


def dempster_shafer(labels: np.ndarray, masses: np.ndarray | list, classes: list[int],
                    undecided_label: int | None = None, nodata: int = 0) -> np.ndarray:
    """Fused map: at each pixel the class of highest `dempster_shafer_belief`.

    Ties (beliefs equal up to a 1e-12 relative rounding) go to `undecided_label` if given, else
    to the smallest tied class code. Pixels where every source is nodata stay `nodata`. Same
    dtype as labels."""
    labels = _check_stack(labels)
    belief = dempster_shafer_belief(labels, masses, classes, nodata)
    best = belief.max(axis=0)
    tied = np.isclose(belief, best, rtol=TIE_RTOL, atol=0.0)
    order = np.argsort(classes)
    codes = np.asarray(classes)[order]
    winner = codes[tied[order].argmax(axis=0)]  # first tied class in ascending code order
    if undecided_label is not None:
        winner = np.where(tied.sum(axis=0) > 1, undecided_label, winner)
    voted = (labels != nodata).any(axis=0)
    return np.where(voted, winner, nodata).astype(labels.dtype)


def mob_masses(confusion: np.ndarray, mob: str) -> np.ndarray:
    """Per-class mass (C,) of one run from its confusion matrix (rows = reference, columns =
    prediction), by iota2's measure of belief `mob`:
    precision = diagonal / column sums; recall = diagonal / row sums; accuracy = trace / total
    (same for every class); kappa = Cohen's (po - pe) / (1 - pe), clipped at 0 (same for every
    class). Zero denominators give 0."""
    confusion = np.asarray(confusion)
    n_classes = confusion.shape[0]
    if mob == "precision":
        return precisions(confusion)
    if mob == "recall":
        return recalls(confusion)
    if mob == "accuracy":
        return np.full(n_classes, overall_accuracy(confusion))
    if mob == "kappa":
        return np.full(n_classes, max(cohen_kappa(confusion), 0.0))
    raise ValueError(f"unknown measure of belief {mob!r}, expected one of {MEASURES_OF_BELIEF}")
