"""Fusion of several runs' maps, checked on small hand-made blocks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from geoclass.kernels.fusion import (
    dempster_shafer,
    dempster_shafer_belief,
    majority_vote,
    mob_masses,
)


def stack(*runs):
    """(K, 1, P) block from K lists of P pixel values."""
    return np.array(runs)[:, None, :]


def test_majority_clear_winner_and_nodata():
    labels = stack([1, 0, 0, 3],
                   [1, 0, 2, 3],
                   [2, 0, 0, 1])
    confidences = stack([10, 0, 0, 10],
                        [10, 0, 90, 10],
                        [99, 0, 0, 99])
    # pixel 0: 1 has two votes; pixel 1: no vote -> nodata; pixel 2: the only vote (nodata
    # votes ignored); pixel 3: 3 has two votes despite the confident vote for 1
    result = majority_vote(labels.astype(np.uint8), confidences)
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, [[1, 0, 2, 3]])


def test_majority_tie_broken_by_mean_confidence():
    labels = stack([1, 1, 2, 5],
                   [2, 1, 1, 4],
                   [0, 2, 2, 0],
                   [0, 2, 0, 0])
    confidences = stack([60, 50, 70, 40],
                        [80, 70, 70, 40],
                        [0, 90, 70, 0],
                        [0, 40, 0, 0])
    # pixel 0: 1 (mean 60) vs 2 (mean 80) -> 2
    # pixel 1: 1 (50, 70: mean 60) vs 2 (90, 40: mean 65) -> 2
    # pixel 2: 2 has two votes (no tie) -> 2
    # pixel 3: 5 (40) vs 4 (40), still tied -> smallest code 4
    np.testing.assert_array_equal(majority_vote(labels, confidences), [[2, 2, 2, 4]])


def test_majority_tie_gives_undecided_label():
    labels = stack([1, 1, 0],
                   [2, 1, 0],
                   [0, 2, 0])
    confidences = stack([60, 60, 0],
                        [80, 60, 0],
                        [0, 60, 0])
    # pixel 0: tie 1/2 -> 255; pixel 1: 1 wins 2 to 1; pixel 2: nodata stays nodata
    result = majority_vote(labels, confidences, undecided_label=255)
    np.testing.assert_array_equal(result, [[255, 1, 0]])


def test_majority_all_nodata_and_custom_nodata():
    np.testing.assert_array_equal(majority_vote(np.zeros((3, 2, 2), np.int16),
                                                np.zeros((3, 2, 2))), np.zeros((2, 2)))
    labels = stack([9, 1], [9, 2], [9, 2])
    np.testing.assert_array_equal(majority_vote(labels, np.ones_like(labels), nodata=9),
                                  [[9, 2]])


def slow_majority(votes, confidences, undecided):
    """One pixel, written the obvious way."""
    counted = [(label, c) for label, c in zip(votes, confidences) if label != 0]
    if not counted:
        return 0
    count = {label: sum(1 for lab, _ in counted if lab == label) for label, _ in counted}
    most = max(count.values())
    tied = sorted(label for label, n in count.items() if n == most)
    if len(tied) > 1 and undecided is not None:
        return undecided
    mean = {t: np.mean([c for lab, c in counted if lab == t]) for t in tied}
    return max(tied, key=lambda t: (mean[t], -t))


@pytest.mark.parametrize("undecided", [None, 99])
def test_majority_matches_pixel_by_pixel_version(undecided):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, (4, 12, 12))
    confidences = rng.integers(0, 101, (4, 12, 12))
    result = majority_vote(labels, confidences, undecided)
    for y, x in itertools.product(range(12), range(12)):
        assert result[y, x] == slow_majority(labels[:, y, x], confidences[:, y, x], undecided)


def test_dempster_shafer_two_runs_agree():
    labels = stack([1], [1])
    masses = [[0.8, 0.5], [0.6, 0.5]]
    # m({1}) = 1 - (1 - 0.8)(1 - 0.6) = 0.92, m(Omega) = 0.2 * 0.4 = 0.08, m({2}) = 0,
    # no conflict -> belief(1) = 0.92
    belief = dempster_shafer_belief(labels, masses, [1, 2])
    np.testing.assert_allclose(belief[:, 0, 0], [0.92, 0.0])
    np.testing.assert_array_equal(dempster_shafer(labels, masses, [1, 2]), [[1]])


def test_dempster_shafer_strong_source_beats_two_weak_ones():
    labels = stack([1], [2], [2])
    masses = np.array([[0.95, 0.95], [0.3, 0.3], [0.3, 0.3]])
    # m({1}) = 0.95 * (1 - 0.3)(1 - 0.3)          = 0.95 * 0.49 = 0.4655
    # m({2}) = (1 - (1 - 0.3)(1 - 0.3)) * (1 - 0.95) = 0.51 * 0.05 = 0.0255
    # m(Omega) = 0.05 * 0.49 = 0.0245; conflict = 1 - 0.4655 - 0.0255 - 0.0245 = 0.4845
    # belief(1) = 0.4655 / 0.5155 = 0.90301, belief(2) = 0.0255 / 0.5155 = 0.04947
    belief = dempster_shafer_belief(labels, masses, [1, 2])
    np.testing.assert_allclose(belief[:, 0, 0], [0.4655 / 0.5155, 0.0255 / 0.5155])
    assert belief[0, 0, 0] == pytest.approx(0.90301, abs=1e-5)
    np.testing.assert_array_equal(dempster_shafer(labels, masses, [1, 2]), [[1]])
    # the majority vote picks the two weak runs' class
    np.testing.assert_array_equal(majority_vote(labels, np.full_like(labels, 50)), [[2]])


def test_dempster_shafer_exact_tie():
    labels = stack([1, 1], [2, 0])
    masses = [[0.6, 0.2], [0.2, 0.6]]
    # pixel 0: m({1}) = 0.6 * 0.4 = m({2}) = 0.6 * 0.4 = 0.24 -> tie
    # pixel 1: the only source says 1
    assert dempster_shafer(labels, masses, [1, 2], undecided_label=255).tolist() == [[255, 1]]
    assert dempster_shafer(labels, masses, [1, 2]).tolist() == [[1, 1]]
    # smallest code, whatever the order of `classes`
    assert dempster_shafer(labels, masses[::-1], [2, 1]).tolist() == [[1, 1]]


def test_dempster_shafer_nodata_and_perfect_sources():
    labels = stack([0, 0, 3], [0, 4, 4]).astype(np.uint16)
    masses = [[1.0, 1.0], [1.0, 1.0]]  # clipped to 1 - 1e-9: no 0/0
    belief = dempster_shafer_belief(labels, masses, [3, 4])
    assert np.isfinite(belief).all()
    np.testing.assert_array_equal(belief[:, 0, 0], [0.0, 0.0])  # all nodata: no belief
    np.testing.assert_allclose(belief[:, 0, 1], [0.0, 1.0])
    # pixel 2: two perfect sources disagree -> equal beliefs of 0.5
    np.testing.assert_allclose(belief[:, 0, 2], [0.5, 0.5])
    result = dempster_shafer(labels, masses, [3, 4], undecided_label=7)
    assert result.dtype == np.uint16
    assert result.tolist() == [[0, 4, 7]]


def test_dempster_shafer_rejects_bad_input():
    with pytest.raises(ValueError, match="not in"):
        dempster_shafer(stack([5]), [[0.5, 0.5]], [1, 2])
    with pytest.raises(ValueError, match="masses"):
        dempster_shafer(stack([1], [2]), [[0.5, 0.5]], [1, 2])


def dempster_rule(sources, classes):
    """Dempster's rule written with focal sets, for one pixel: sources = [(class, mass)]."""
    omega = frozenset(classes)
    combined = {omega: 1.0}
    for code, mass in sources:
        step = {}
        for (a, ma), (b, mb) in itertools.product(combined.items(),
                                                  {frozenset([code]): mass,
                                                   omega: 1 - mass}.items()):
            step[a & b] = step.get(a & b, 0.0) + ma * mb
        combined = step
    conflict = combined.pop(frozenset(), 0.0)
    return [combined.get(frozenset([c]), 0.0) / (1 - conflict) for c in classes]


def test_belief_matches_general_dempster_rule():
    rng = np.random.default_rng(7)
    classes = [2, 5, 7]
    labels = rng.choice([0, 2, 5, 7], (4, 6, 6))
    masses = rng.uniform(0.05, 0.95, (4, 3))
    belief = dempster_shafer_belief(labels, masses, classes)
    for y, x in itertools.product(range(6), range(6)):
        sources = [(int(lab), masses[k][classes.index(lab)])
                   for k, lab in enumerate(labels[:, y, x]) if lab != 0]
        expected = dempster_rule(sources, classes) if sources else [0.0] * 3
        np.testing.assert_allclose(belief[:, y, x], expected, rtol=1e-9, atol=1e-12)


# rows = reference, columns = prediction
#            pred 1  2  3     row sums
# ref 1:          5  1  0     6
# ref 2:          2  3  0     5
# ref 3:          0  1  4     5
# column sums:    7  5  4     total 16, trace 12
CONFUSION = np.array([[5, 1, 0], [2, 3, 0], [0, 1, 4]])


def test_mob_masses_by_hand():
    np.testing.assert_allclose(mob_masses(CONFUSION, "precision"), [5 / 7, 3 / 5, 4 / 4])
    np.testing.assert_allclose(mob_masses(CONFUSION, "recall"), [5 / 6, 3 / 5, 4 / 5])
    np.testing.assert_allclose(mob_masses(CONFUSION, "accuracy"), [0.75] * 3)  # 12 / 16
    # pe = (6*7 + 5*5 + 5*4) / 256 = 87/256; kappa = (192 - 87) / (256 - 87) = 105/169
    np.testing.assert_allclose(mob_masses(CONFUSION, "kappa"), [105 / 169] * 3)


def test_mob_masses_zero_denominators_and_negative_kappa():
    never_predicted = np.array([[2, 0], [1, 0]])  # class 2: column sum 0
    np.testing.assert_allclose(mob_masses(never_predicted, "precision"), [2 / 3, 0.0])
    no_reference = np.array([[2, 1], [0, 0]])  # class 2: row sum 0
    np.testing.assert_allclose(mob_masses(no_reference, "recall"), [2 / 3, 0.0])
    always_wrong = np.array([[0, 5], [5, 0]])  # po = 0, pe = 0.5 -> kappa = -1, clipped
    np.testing.assert_array_equal(mob_masses(always_wrong, "kappa"), [0.0, 0.0])
    np.testing.assert_array_equal(mob_masses(np.zeros((2, 2)), "accuracy"), [0.0, 0.0])
    with pytest.raises(ValueError, match="measure of belief"):
        mob_masses(CONFUSION, "f1")
