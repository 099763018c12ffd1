"""Bayesian smoothing and majority filter on hand-made blocks, against a plain-Python
transcription of sits' bayes_smoother_fraction, and independent of dask's chunks."""

from __future__ import annotations

import math
import statistics

import dask.array as da
import numpy as np
import pytest
from scipy.special import expit

from geoclass.kernels.smoothing import ball, bayes_smooth, majority_filter


def sits_reference(probs, window, fraction, smoothness):
    """sits' bayes_smoother_fraction transcribed loop by loop (mirror indices at the edges,
    NA neighbours left out, sample variance), with the inverse logit of .smooth_fn_bayes.
    probs: (C, H, W) floats summing to 1, NaN = missing; returns (C, H, W)."""
    n_classes, height, width = probs.shape
    leg = window // 2

    def mirror(i, size):  # sits' locus_neigh
        return -i - 1 if i < 0 else (2 * size - i - 1 if i >= size else i)

    out = np.full(probs.shape, np.nan)
    for c in range(n_classes):
        p = np.clip(probs[c], 1e-6, 1 - 1e-6)
        logit = np.log(p / (1 - p))
        for i in range(height):
            for j in range(width):
                x0 = logit[i, j]
                if math.isnan(x0):
                    continue
                neigh = [logit[mirror(i + a, height), mirror(j + b, width)]
                         for a in range(-leg, leg + 1) for b in range(-leg, leg + 1)]
                neigh = sorted((v for v in neigh if not math.isnan(v)), reverse=True)
                high = neigh[:math.ceil(fraction * len(neigh) - 1e-9)]
                m0, s0 = statistics.mean(high), statistics.variance(high)
                w = s0 / (s0 + smoothness[c])
                out[c, i, j] = expit(w * x0 + (1 - w) * m0)
    return out


def random_probs(shape, seed, classes=3):
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.ones(classes), size=shape).transpose(2, 0, 1)


def test_one_pixel_by_hand():
    # two classes with logits l and -l: class 0's window of logits is 2 at the centre, 0 around
    logit = np.zeros((3, 3))
    logit[1, 1] = 2.0
    probs = np.stack([expit(logit), expit(-logit)])
    # all 9 neighbours: m = 2/9, s2 = ((2 - 2/9)^2 + 8 (2/9)^2) / 8 = 4/9; with sigma2 = 4/9
    # the weight is 1/2: x' = (2 + 2/9) / 2 = 10/9
    out = bayes_smooth(probs, window_size=3, neigh_fraction=1.0, smoothness=4 / 9)
    assert out.shape == (2, 1, 1)
    np.testing.assert_allclose(out[:, 0, 0], [expit(10 / 9), expit(-10 / 9)], rtol=1e-12)
    # half of them (ceil 4.5 = 5): the 2 and four 0s: m = 2/5, s2 = (1.6^2 + 4 0.4^2) / 4 = 0.8
    out = bayes_smooth(probs, window_size=3, neigh_fraction=0.5, smoothness=0.8)
    assert out[0, 0, 0] == pytest.approx(expit((2 + 0.4) / 2), rel=1e-12)


def test_matches_sits_transcription():
    probs = random_probs((7, 8), seed=0)
    smoothness = [10.0, 20.0, 5.0]
    padded = np.pad(probs, ((0, 0), (2, 2), (2, 2)), mode="symmetric")  # sits' mirror
    out = bayes_smooth(padded, window_size=5, neigh_fraction=0.5, smoothness=smoothness)
    np.testing.assert_allclose(out, sits_reference(probs, 5, 0.5, smoothness), rtol=1e-10)
    # as sits: no renormalisation, unless asked
    assert not np.allclose(out.sum(axis=0), 1.0)
    normalised = bayes_smooth(padded, 5, 0.5, smoothness, normalise=True)
    np.testing.assert_allclose(normalised.sum(axis=0), 1.0)


def test_missing_pixels_are_left_out_and_stay_missing():
    probs = random_probs((6, 6), seed=1)
    probs[:, 2, 3] = np.nan
    probs[:, 0, 0] = np.nan
    padded = np.pad(probs, ((0, 0), (1, 1), (1, 1)), mode="symmetric")
    out = bayes_smooth(padded, window_size=3, neigh_fraction=0.7, smoothness=3.0)
    reference = sits_reference(probs, 3, 0.7, [3.0] * 3)
    np.testing.assert_allclose(out, reference, rtol=1e-10)
    assert np.isnan(out[:, 2, 3]).all() and np.isnan(out[:, 0, 0]).all()
    assert not np.isnan(out[:, 2, 2]).any()


def test_scaled_uint16_in_and_out():
    probs = random_probs((5, 5), seed=2)
    scaled = np.rint(probs * 1000).astype(np.uint16)
    scaled[:, 1, 1] = 65535
    out = bayes_smooth(scaled, window_size=3, neigh_fraction=0.5, smoothness=10.0, halo=1)
    assert out.dtype == np.uint16 and out.shape == (3, 3, 3)
    assert (out[:, 0, 0] == 65535).all()  # (1, 1) of the padded block
    as_float = np.where(scaled == 65535, np.nan, scaled / 1000.0)
    expected = bayes_smooth(as_float, window_size=3, neigh_fraction=0.5, smoothness=10.0)
    expected = np.where(np.isnan(expected), 65535, np.rint(expected * 1000))
    np.testing.assert_array_equal(out, expected)
    assert bayes_smooth(probs.astype(np.float32), 3).dtype == np.float32


def test_wider_halo_gives_the_same_core():
    probs = random_probs((12, 12), seed=3)
    narrow = bayes_smooth(probs[:, 2:-2, 2:-2], window_size=5)
    wide = bayes_smooth(probs, window_size=5, halo=4)
    np.testing.assert_array_equal(narrow, wide)


def test_bad_parameters():
    probs = random_probs((9, 9), seed=4)
    with pytest.raises(ValueError, match="odd"):
        bayes_smooth(probs, window_size=4)
    with pytest.raises(ValueError, match="neigh_fraction"):
        bayes_smooth(probs, window_size=3, neigh_fraction=0.0)
    with pytest.raises(ValueError, match="at least 2"):
        bayes_smooth(probs, window_size=3, neigh_fraction=0.1)
    with pytest.raises(ValueError, match="halo"):
        bayes_smooth(probs, window_size=5, halo=1)
    with pytest.raises(ValueError, match="smoothness"):
        bayes_smooth(probs, window_size=3, smoothness=[1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="no core"):
        bayes_smooth(probs[:, :4, :4], window_size=5)


def test_bayes_smoothing_is_independent_of_the_chunks():
    probs = random_probs((37, 41), seed=5)
    probs[:, 10, 12] = np.nan
    whole = bayes_smooth(np.pad(probs, ((0, 0), (3, 3), (3, 3)), mode="symmetric"), 7)

    def smooth(chunks):
        array = da.from_array(probs, chunks=chunks)
        return da.map_overlap(bayes_smooth, array, depth={0: 0, 1: 3, 2: 3},
                              boundary="reflect", trim=False, dtype=probs.dtype,
                              chunks=array.chunks, window_size=7).compute()

    first, second = smooth((3, 13, 20)), smooth((3, 19, 9))
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, whole)


def test_bayes_smoothing_removes_salt_and_pepper():
    # class 0 everywhere (p = 0.8) but for scattered pixels where class 1 wins (p = 0.6)
    rng = np.random.default_rng(6)
    noise = rng.random((40, 40)) < 0.1
    first = np.where(noise, 0.4, 0.8)
    probs = np.stack([first, 1 - first])
    out = bayes_smooth(np.pad(probs, ((0, 0), (4, 4), (4, 4)), mode="symmetric"))
    assert noise.sum() > 100
    assert (out.argmax(axis=0) == 0).all()


def test_ball_footprints():
    assert ball(1).all() and ball(1).shape == (3, 3)
    expected = np.ones((5, 5), bool)
    expected[[0, 0, -1, -1], [0, -1, 0, -1]] = False
    np.testing.assert_array_equal(ball(2), expected)
    assert ball(2).sum() == 21 and ball(3).sum() == 37
    assert ball((1, 2)).shape == (3, 5)
    with pytest.raises(ValueError, match="radius"):
        ball(0)


def test_majority_by_hand():
    labels = np.array([[1, 1, 1, 2, 2],
                       [1, 3, 1, 2, 2],
                       [1, 1, 0, 2, 2],
                       [4, 4, 2, 2, 5],
                       [4, 4, 4, 2, 5]], np.uint8)
    out = majority_filter(labels, radius=1)  # halo 1: the 3 x 3 core
    # (1,1): the 3 among seven 1s -> 1; (1,2): 1 (four 1s, three 2s, one 3);
    # (1,3): 2 (six 2s); (2,1): 1 (four 1s, two 4s); (2,2): nodata stays nodata;
    # (2,3): 2 (six 2s); (3,1): 4 (five 4s); (3,2): 2 (four 2s, three 4s); (3,3): 2
    np.testing.assert_array_equal(out, [[1, 1, 2],
                                        [1, 0, 2],
                                        [4, 2, 2]])
    assert out.dtype == np.uint8


def test_majority_ties_and_nodata_neighbours():
    tie = np.array([[2, 2, 3],
                    [2, 1, 3],
                    [0, 3, 0]], np.uint8)
    # 2 and 3 have 3 each: OTB keeps the centre's class 1, though 1 is not among them
    assert majority_filter(tie)[0, 0] == 1
    assert majority_filter(tie, undecided=255)[0, 0] == 255
    nodata_around = np.array([[2, 2, 0],
                              [2, 1, 0],
                              [3, 3, 0]], np.uint8)
    # three nodata neighbours are not votes: 2 wins with 3 against 2
    assert majority_filter(nodata_around)[0, 0] == 2
    # with another nodata value 0 is a class: 2 and 0 tie with 3 each, 1 stays
    assert majority_filter(nodata_around, nodata=9)[0, 0] == 1


def test_majority_isolated_pixels_only():
    labels = np.array([[1, 1, 1, 2],
                       [1, 2, 1, 2],
                       [1, 1, 2, 2],
                       [1, 1, 2, 2]], np.uint8)
    # core (0,0) is a 2 with one other 2 in its window (count 2, seven 1s);
    # core (0,1) is a 1 with three other 1s (count 4, five 2s); the others are majorities
    assert majority_filter(labels).tolist() == [[1, 2], [1, 2]]
    assert majority_filter(labels, isolated_threshold=1).tolist() == [[2, 1], [1, 2]]
    assert majority_filter(labels, isolated_threshold=2).tolist() == [[1, 1], [1, 2]]
    assert majority_filter(labels, isolated_threshold=4).tolist() == [[1, 2], [1, 2]]


def test_majority_radius_two_uses_the_ball():
    labels = np.full((5, 5), 1, np.uint8)
    labels[[0, 0, 4, 4], [0, 4, 0, 4]] = 7  # only the corners, outside the radius 2 ball
    labels[2, 2] = 7
    labels[0, 1] = labels[1, 0] = 7
    # in the ball: 7 at the centre and (0,1), (1,0): 3 sevens against 18 ones
    assert majority_filter(labels, radius=2).tolist() == [[1]]
    with pytest.raises(ValueError, match="halo"):
        majority_filter(labels, radius=2, halo=1)


def isolated(labels):
    """Number of pixels whose 8 neighbours all differ from them (edges padded with 0)."""
    padded = np.pad(labels, 1)
    same = sum((padded[1 + dr:padded.shape[0] - 1 + dr, 1 + dc:padded.shape[1] - 1 + dc]
                == labels).astype(int)
               for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0))
    return int(((same == 0) & (labels != 0)).sum())


def test_majority_reduces_isolated_pixels_and_is_chunk_independent():
    rng = np.random.default_rng(7)
    truth = np.repeat(np.repeat(rng.integers(1, 5, (6, 6)), 10, axis=0), 10, axis=1)
    noisy = np.where(rng.random(truth.shape) < 0.15, rng.integers(1, 5, truth.shape), truth)
    noisy[rng.random(truth.shape) < 0.02] = 0
    noisy = noisy.astype(np.uint8)

    def regularise(chunks, boundary):
        array = da.from_array(noisy, chunks=chunks)
        return da.map_overlap(majority_filter, array, depth=2, boundary=boundary, trim=False,
                              dtype=np.uint8, chunks=array.chunks, radius=2).compute()

    first = regularise((17, 23), 0)
    np.testing.assert_array_equal(first, regularise((32, 11), 0))
    np.testing.assert_array_equal(first, majority_filter(np.pad(noisy, 2), radius=2))
    np.testing.assert_array_equal(regularise((17, 23), "nearest"),
                                  regularise((60, 60), "nearest"))
    assert isolated(noisy) > 100
    assert isolated(first) < isolated(noisy) / 10
    assert ((first == 0) == (noisy == 0)).all()  # nodata stays, nothing else becomes nodata
    assert (first == truth)[noisy != 0].mean() > (noisy == truth)[noisy != 0].mean()
