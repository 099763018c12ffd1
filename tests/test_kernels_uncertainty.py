"""Uncertainty measures on hand-made probability vectors, and uncertainty sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from geoclass.kernels.uncertainty import (
    CANDIDATE_DTYPE,
    encode,
    entropy,
    least_confidence,
    margin,
    merge_candidates,
    most_uncertain,
    probabilities,
    uncertainty,
)


def pixels(*vectors, dtype=np.float64):
    """(C, 1, P) block from P probability vectors of C classes."""
    return np.array(vectors, dtype).T[:, None, :]


# uniform, certain, two-way tie, a typical vector (C = 3)
VECTORS = [(1 / 3, 1 / 3, 1 / 3), (1.0, 0.0, 0.0), (0.5, 0.5, 0.0), (0.6, 0.3, 0.1)]


def test_probabilities_from_scaled_integers():
    block = pixels((333, 333, 333), (1000, 0, 0), (65535, 500, 500), (0, 0, 0),
                   dtype=np.uint16)
    probs = probabilities(block)
    assert probs.shape == (3, 1, 4)
    np.testing.assert_allclose(probs[:, 0, 0], [1 / 3] * 3)  # rounding absorbed
    np.testing.assert_allclose(probs[:, 0, 1], [1, 0, 0])
    assert np.isnan(probs[:, 0, 2]).all()  # one band nodata: the pixel is nodata
    assert np.isnan(probs[:, 0, 3]).all()  # nothing to normalise


def test_probabilities_from_floats():
    block = pixels((0.2, 0.2, 0.4), (np.nan, 0.5, 0.5), dtype=np.float32)
    probs = probabilities(block)
    np.testing.assert_allclose(probs[:, 0, 0], [0.25, 0.25, 0.5])
    assert np.isnan(probs[:, 0, 1]).all()
    with pytest.raises(ValueError, match="classes, height, width"):
        probabilities(np.zeros((3, 4)))


def test_entropy():
    values = entropy(pixels(*VECTORS))[0]
    # -sum p ln p / ln 3: uniform 1, certain 0, tie ln 2 / ln 3
    typical = -(0.6 * math.log(0.6) + 0.3 * math.log(0.3) + 0.1 * math.log(0.1)) / math.log(3)
    np.testing.assert_allclose(values, [1.0, 0.0, math.log(2) / math.log(3), typical],
                               atol=1e-12)


def test_margin():
    values = margin(pixels(*VECTORS))[0]
    np.testing.assert_allclose(values, [1.0, 0.0, 1.0, 0.7], atol=1e-12)


def test_least_confidence_normalised_and_plain():
    normalised = least_confidence(pixels(*VECTORS))[0]
    np.testing.assert_allclose(normalised, [1.0, 0.0, 0.75, 0.6], atol=1e-12)  # (1-p1)*3/2
    plain = least_confidence(pixels(*VECTORS), normalised=False)[0]
    np.testing.assert_allclose(plain, [2 / 3, 0.0, 0.5, 0.4], atol=1e-12)


def test_single_class_is_certain():
    block = pixels((1.0,), (np.nan,))
    for function in (entropy, margin, least_confidence):
        values = function(block)[0]
        assert values[0] == 0.0 and np.isnan(values[1])


def test_uncertainty_as_scaled_uint16():
    block = pixels((600, 300, 100), (1000, 0, 0), (65535, 0, 0), (500, 500, 0),
                   dtype=np.uint16)
    np.testing.assert_array_equal(uncertainty(block, "margin")[0], [7000, 0, 65535, 10000])
    np.testing.assert_array_equal(uncertainty(block, "least")[0], [6000, 0, 65535, 7500])
    ent = uncertainty(block, "entropy")
    assert ent.dtype == np.uint16 and ent.shape == (1, 4)
    assert ent[0, 3] == round(10000 * math.log(2) / math.log(3))  # 6309
    with pytest.raises(ValueError, match="unknown uncertainty measure"):
        uncertainty(block, "variance")


def test_encode():
    np.testing.assert_array_equal(encode(np.array([0.0, 0.12345, 1.0, np.nan]), 10000),
                                  [0, 1234, 10000, 65535])
    with pytest.raises(ValueError, match="uint16"):
        encode(np.array([7.0]), 10000)  # 70000
    with pytest.raises(ValueError, match="uint16"):
        encode(np.array([-0.1]), 10000)


def as_tuples(candidates):
    return [(int(c["row"]), int(c["col"]), float(c["uncertainty"]), int(c["class"]))
            for c in candidates]


def test_most_uncertain_in_a_block():
    values = np.array([[90, 80, 10, 10, 95],
                       [85, 10, 10, 10, 10],
                       [10, 10, 70, 10, 10],
                       [10, 10, 10, 10, 99],
                       [60, 10, 10, 10, 65535]], np.uint16)
    classes = np.ones((5, 5), np.uint8)
    classes[:, 3:] = 2
    classes[3, 4] = 0  # 99 but no predicted class: never a candidate
    # class 1: 90 (0,0); 85 (1,0) and 80 (0,1) are closer than 2 to it; 70 (2,2) is kept
    # class 2: 95 (0,4), then the first 10 (row, column order) at least 2 from it: (0,3),
    # (1,3) and (1,4) are too close, (2,3) is sqrt(5) away
    found = most_uncertain(values, classes, n=2, min_distance=2)
    assert found.dtype == CANDIDATE_DTYPE
    assert as_tuples(found) == [(0, 4, 95.0, 2), (0, 0, 90.0, 1), (2, 2, 70.0, 1),
                                (2, 3, 10.0, 2)]
    # no spacing: the top 2 of each class; origin shifts the coordinates
    found = most_uncertain(values, classes, n=2, origin=(100, 200))
    assert as_tuples(found) == [(100, 204, 95.0, 2), (100, 200, 90.0, 1),
                                (101, 200, 85.0, 1), (100, 203, 10.0, 2)]
    # a threshold in the block's unit
    found = most_uncertain(values, classes, n=5, min_distance=2, min_uncertainty=60)
    assert as_tuples(found) == [(0, 4, 95.0, 2), (0, 0, 90.0, 1), (2, 2, 70.0, 1),
                                (4, 0, 60.0, 1)]


def test_most_uncertain_float_block_and_empty():
    values = np.array([[0.2, np.nan], [0.9, 0.5]])
    classes = np.array([[3, 3], [3, 3]], np.uint8)
    assert as_tuples(most_uncertain(values, classes, n=5)) == [
        (1, 0, 0.9, 3), (1, 1, 0.5, 3), (0, 0, 0.2, 3)]
    empty = most_uncertain(values, np.zeros((2, 2), np.uint8), n=5)
    assert empty.size == 0 and empty.dtype == CANDIDATE_DTYPE
    with pytest.raises(ValueError, match="same"):
        most_uncertain(values, classes[:1], n=1)


def candidates(*rows):
    return np.array(list(rows), CANDIDATE_DTYPE)


def test_merge_respects_spacing_across_blocks_and_classes():
    # two blocks meeting between columns 9 and 10: their best pixels are 1 apart
    left = candidates((5, 9, 0.9, 1), (0, 0, 0.5, 1))
    right = candidates((5, 10, 0.8, 2), (9, 19, 0.7, 2))
    merged = merge_candidates([left, right], n=3, min_distance=3)
    assert as_tuples(merged) == [(5, 9, 0.9, 1), (9, 19, 0.7, 2), (0, 0, 0.5, 1)]
    spread_out = merge_candidates([left, right], n=4, min_distance=0)
    assert len(spread_out) == 4


def test_merge_round_robin_shares_the_classes():
    # class 1 has the 4 most uncertain pixels, class 2 and 3 fewer and less uncertain
    pool = candidates((0, 0, 0.99, 1), (0, 10, 0.98, 1), (0, 20, 0.97, 1), (0, 30, 0.96, 1),
                      (10, 0, 0.50, 2), (10, 10, 0.40, 2),
                      (20, 0, 0.60, 3))
    merged = merge_candidates(pool, n=5, min_distance=2)
    # round 1: one per class, most uncertain first; round 2: classes 1 and 2 (3 is spent)
    assert as_tuples(merged) == [(0, 0, 0.99, 1), (20, 0, 0.60, 3), (10, 0, 0.50, 2),
                                 (0, 10, 0.98, 1), (10, 10, 0.40, 2)]
    plain = merge_candidates(pool, n=5, min_distance=2, per_class=False)
    assert [c[3] for c in as_tuples(plain)] == [1, 1, 1, 1, 3]
    everything = merge_candidates(pool, n=100, min_distance=2)
    assert len(everything) == 7  # runs out of candidates
    assert merge_candidates([], n=3).size == 0


def test_merge_of_blocks_equals_the_whole_image_for_separate_peaks():
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 0.3, (40, 40))
    classes = np.where(np.arange(40)[None, :] < 20, 1, 2).repeat(40, axis=0).astype(np.uint8)
    peaks = [(3, 4), (3, 30), (15, 15), (25, 36), (33, 8), (36, 25), (20, 21), (10, 27)]
    for k, (r, c) in enumerate(peaks):
        values[r, c] = 0.99 - k * 0.05
    whole = merge_candidates(most_uncertain(values, classes, 4, 6), n=6, min_distance=6)
    blocks = [most_uncertain(values[r:r + 16, c:c + 16], classes[r:r + 16, c:c + 16], 4, 6,
                             origin=(r, c)) for r in range(0, 40, 16) for c in range(0, 40, 16)]
    merged = merge_candidates(blocks, n=6, min_distance=6)
    assert as_tuples(merged) == as_tuples(whole)
    assert {(t[0], t[1]) for t in as_tuples(merged)} <= set(peaks)
    assert sorted(t[3] for t in as_tuples(merged)) == [1, 1, 1, 2, 2, 2]
    # and the spacing holds between any two, whatever the blocks
    points = np.array([(t[0], t[1]) for t in as_tuples(merged)], float)
    distances = np.hypot(*(points[:, None, :] - points[None, :, :]).transpose(2, 0, 1))
    assert distances[~np.eye(len(points), dtype=bool)].min() >= 6


def test_merge_spacing_on_a_dense_random_map():
    rng = np.random.default_rng(1)
    values = rng.integers(0, 10001, (64, 64)).astype(np.uint16)
    classes = rng.integers(1, 4, (64, 64)).astype(np.uint8)
    blocks = [most_uncertain(values[r:r + 20, c:c + 20], classes[r:r + 20, c:c + 20], 10, 5,
                             origin=(r, c)) for r in range(0, 64, 20) for c in range(0, 64, 20)]
    merged = merge_candidates(blocks, n=30, min_distance=5)
    assert len(merged) == 30
    points = np.stack([merged["row"], merged["col"]], axis=1).astype(float)
    distances = np.hypot(*(points[:, None, :] - points[None, :, :]).transpose(2, 0, 1))
    assert distances[~np.eye(30, dtype=bool)].min() >= 5
    assert np.bincount(merged["class"], minlength=4)[1:].tolist() == [10, 10, 10]
    assert (values[merged["row"], merged["col"]] == merged["uncertainty"]).all()
