"""Area-adjusted accuracy checked against Olofsson et al. (2014)'s worked example and small
matrices worked out by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from geoclass.kernels.areas import (
    area_adjusted_accuracy,
    class_pixel_counts,
    combine_runs,
    spread,
)

# Olofsson et al. 2014, section 5, Table 8, as printed: rows = MAP class, columns = reference.
# Classes: deforestation, forest gain, stable forest, stable non-forest.
TABLE8_MAP_ROWS = np.array([[66, 0, 5, 4],
                            [0, 55, 8, 12],
                            [1, 0, 153, 11],
                            [2, 1, 9, 313]])
MAPPED_PIXELS = [200_000, 150_000, 3_200_000, 6_450_000]  # 30 m pixels
HECTARES_PER_PIXEL = 0.09
CLASSES = [1, 2, 3, 4]


@pytest.fixture(scope="module")
def paper():
    # geoclass's matrices have rows = reference: the paper's table enters transposed
    return area_adjusted_accuracy(TABLE8_MAP_ROWS.T, MAPPED_PIXELS, CLASSES,
                                  pixel_area=HECTARES_PER_PIXEL)


def test_paper_proportions_table(paper):
    # the paper's Table 9 (rows = map), to its 4 decimals; ours has rows = reference
    table9 = [[0.0176, 0.0000, 0.0013, 0.0011],
              [0.0000, 0.0110, 0.0016, 0.0024],
              [0.0019, 0.0000, 0.2967, 0.0213],
              [0.0040, 0.0020, 0.0179, 0.6212]]
    np.testing.assert_allclose(np.array(paper["proportions"]).T, table9, atol=5e-5)
    assert paper["n_samples"] == 640
    assert paper["total_area"] == pytest.approx(900_000)


def test_paper_areas_and_confidence_intervals(paper):
    # the paper's estimated areas (ha) +- 95 % CI
    published = [(21_158, 6_158), (11_686, 3_756), (285_770, 15_510), (581_386, 16_282)]
    for entry, (area, ci) in zip(paper["per_class"], published):
        assert round(entry["area"]) == area
        assert round(entry["area_ci95"]) == ci
        assert entry["area_ci95"] == pytest.approx(1.96 * entry["area_se"])
    # the deforestation map area (18,000 ha) underestimates the area by 3,158 ha
    assert paper["per_class"][0]["mapped_area"] == pytest.approx(18_000)


def test_paper_accuracies(paper):
    per_class = paper["per_class"]
    users = [(0.88, 0.07), (0.73, 0.10), (0.93, 0.04), (0.96, 0.02)]
    producers = [(0.75, 0.21), (0.85, 0.25), (0.93, 0.03), (0.96, 0.02)]
    for entry, (ua, ua_ci), (pa, pa_ci) in zip(per_class, users, producers):
        assert round(entry["users_accuracy"], 2) == ua
        assert round(entry["users_accuracy_ci95"], 2) == ua_ci
        assert round(entry["producers_accuracy"], 2) == pa
        assert round(entry["producers_accuracy_ci95"], 2) == pa_ci
    assert round(paper["overall_accuracy"], 2) == 0.95
    assert round(paper["overall_accuracy_ci95"], 2) == 0.02
    assert per_class[0]["users_accuracy"] == pytest.approx(66 / 75)
    assert [e["n_samples"] for e in per_class] == [75, 75, 165, 325]
    assert [e["n_reference"] for e in per_class] == [69, 56, 175, 340]
    assert paper["warnings"] == []


def test_map_rows_give_the_same_result(paper):
    by_map = area_adjusted_accuracy(TABLE8_MAP_ROWS, MAPPED_PIXELS, CLASSES,
                                    pixel_area=HECTARES_PER_PIXEL, rows="map")
    assert by_map == paper
    with pytest.raises(ValueError, match="rows"):
        area_adjusted_accuracy(TABLE8_MAP_ROWS, MAPPED_PIXELS, CLASSES, rows="columns")


def test_result_is_strict_json(paper):
    assert json.loads(json.dumps(paper, allow_nan=False)) == paper


def test_two_classes_by_hand():
    # rows = map: stratum 1 has 8 right, 2 wrong; stratum 2 has 1 wrong, 9 right;
    # W = (0.6, 0.4): p = [[0.48, 0.12], [0.04, 0.36]] (map x reference)
    result = area_adjusted_accuracy([[8, 2], [1, 9]], [60, 40], [5, 7], rows="map")
    first, second = result["per_class"]
    assert result["overall_accuracy"] == pytest.approx(0.84)
    # V(OA) = 0.6^2 * 0.8 * 0.2 / 9 + 0.4^2 * 0.9 * 0.1 / 9 = 0.008
    assert result["overall_accuracy_se"] == pytest.approx(math.sqrt(0.008))
    assert first["area_proportion"] == pytest.approx(0.52)
    assert first["area"] == pytest.approx(52.0)  # pixel_area 1, 100 pixels
    # S(p.1)^2 = (0.6 * 0.48 - 0.48^2) / 9 + (0.4 * 0.04 - 0.04^2) / 9 = 0.008
    assert first["area_se"] == pytest.approx(math.sqrt(0.008) * 100)
    assert first["users_accuracy"] == pytest.approx(0.8)
    assert first["users_accuracy_se"] == pytest.approx(math.sqrt(0.8 * 0.2 / 9))
    assert second["users_accuracy"] == pytest.approx(0.9)
    pa = 0.48 / 0.52
    assert first["producers_accuracy"] == pytest.approx(pa)
    var_pa = (0.36 * (1 - pa) ** 2 * 0.8 * 0.2 / 9 + pa**2 * 0.16 * 0.1 * 0.9 / 9) / 0.52**2
    assert first["producers_accuracy_se"] == pytest.approx(math.sqrt(var_pa))
    assert second["area_proportion"] == pytest.approx(0.48)
    # rows = reference, columns = map: the transpose of p
    np.testing.assert_allclose(result["proportions"], [[0.48, 0.04], [0.12, 0.36]])


def test_class_never_mapped():
    # rows = reference (geoclass): class 3 is in the reference but was never mapped
    confusion = [[9, 1, 0],
                 [1, 9, 0],
                 [2, 0, 0]]
    result = area_adjusted_accuracy(confusion, [50, 50, 0], [1, 2, 3])
    third = result["per_class"][2]
    assert third["weight"] == 0
    assert third["users_accuracy"] is None and third["users_accuracy_se"] is None
    assert third["producers_accuracy"] == 0.0  # found by the reference, never by the map
    # stratum 1 (map = 1) holds 9 + 1 + 2 = 12 samples, 2 of them class 3: p_13 = 0.5 * 2/12
    assert third["area_proportion"] == pytest.approx(0.5 * 2 / 12)
    assert result["overall_accuracy"] == pytest.approx(0.5 * 9 / 12 + 0.5 * 9 / 10)
    assert result["overall_accuracy_se"] is not None
    assert result["warnings"] == []


def test_mapped_class_without_sample_leaves_areas_undefined():
    # class 3 covers 20 % of the map but no sample fell in it
    confusion = [[9, 1, 0],
                 [1, 9, 0],
                 [0, 0, 0]]
    result = area_adjusted_accuracy(confusion, [40, 40, 20], [1, 2, 3])
    assert result["overall_accuracy"] is None
    for entry in result["per_class"]:
        assert entry["area"] is None and entry["producers_accuracy"] is None
    assert result["per_class"][0]["users_accuracy"] == pytest.approx(0.9)
    assert result["per_class"][2]["users_accuracy"] is None
    # rows = reference, columns = map: the map stratum 3 column is unknown
    assert all(row[2] is None for row in result["proportions"])
    assert result["proportions"][0][:2] == pytest.approx([0.4 * 0.9, 0.4 * 0.1])
    assert "[3]" in result["warnings"][0]


def test_single_sample_stratum_leaves_standard_errors_undefined():
    confusion = [[9, 1, 0],
                 [1, 9, 0],
                 [0, 0, 1]]
    result = area_adjusted_accuracy(confusion, [40, 40, 20], [1, 2, 3])
    third = result["per_class"][2]
    assert third["users_accuracy"] == 1.0 and third["users_accuracy_se"] is None
    assert result["per_class"][0]["users_accuracy_se"] is not None
    assert result["overall_accuracy"] == pytest.approx(0.4 * 0.9 + 0.4 * 0.9 + 0.2)
    assert result["overall_accuracy_se"] is None
    assert all(e["area"] is not None and e["area_se"] is None for e in result["per_class"])
    assert all(e["producers_accuracy_ci95"] is None for e in result["per_class"])
    assert "single sample" in result["warnings"][0]


def test_bad_inputs():
    with pytest.raises(ValueError, match="square"):
        area_adjusted_accuracy([[1, 2, 3]], [1], [1])
    with pytest.raises(ValueError, match="mapped"):
        area_adjusted_accuracy([[1, 0], [0, 1]], [1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="positive total"):
        area_adjusted_accuracy([[1, 0], [0, 1]], [0, 0], [1, 2])
    with pytest.raises(ValueError, match="negative"):
        area_adjusted_accuracy([[1, -1], [0, 1]], [1, 1], [1, 2])


def test_class_pixel_counts_and_block_sums():
    block = np.array([[0, 1, 1, 3],
                      [3, 3, 0, 9],
                      [200, 1, 3, 3]], np.uint8)
    np.testing.assert_array_equal(class_pixel_counts(block, [1, 3, 5]), [3, 5, 0])
    np.testing.assert_array_equal(class_pixel_counts(block, [200, 9]), [1, 1])
    # summed over blocks = whole map, for uint16 codes too
    rng = np.random.default_rng(3)
    whole = rng.choice(np.array([0, 4, 1000, 65535], np.uint16), size=(40, 30))
    codes = [4, 1000, 65535]
    blocks = [whole[r:r + 16, c:c + 7] for r in range(0, 40, 16) for c in range(0, 30, 7)]
    total = sum(class_pixel_counts(b, codes) for b in blocks)
    expected = [(whole == code).sum() for code in codes]
    np.testing.assert_array_equal(total, expected)
    assert class_pixel_counts(whole, codes).dtype == np.int64
    with pytest.raises(ValueError, match="positive"):
        class_pixel_counts(block, [0, 1])
    with pytest.raises(ValueError, match="integer"):
        class_pixel_counts(block.astype(float), [1])


def test_spread_uses_student_t():
    result = spread([0.8, 0.9, 1.0])
    # t(0.975, 2) = 4.302653, std = 0.1
    assert result["mean"] == pytest.approx(0.9)
    assert result["std"] == pytest.approx(0.1)
    assert result["ci95"] == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-6)
    assert result["n"] == 3
    assert spread([0.7, None]) == {"mean": 0.7, "std": None, "ci95": None, "n": 1}
    assert spread([None]) == {"mean": None, "std": None, "ci95": None, "n": 0}
    # 90 %: t(0.95, 2) = 2.919986
    assert spread([0.8, 0.9, 1.0], 0.90)["ci95"] == pytest.approx(2.919986 * 0.1 / math.sqrt(3),
                                                                  rel=1e-6)


def test_combine_runs():
    runs = [area_adjusted_accuracy(m, [60, 40], [5, 7], rows="map")
            for m in ([[8, 2], [1, 9]], [[9, 1], [1, 9]], [[7, 3], [2, 8]])]
    summary = combine_runs(runs)
    assert summary["n_runs"] == 3
    oa = [run["overall_accuracy"] for run in runs]  # 0.84, 0.9, 0.74
    assert oa == pytest.approx([0.84, 0.9, 0.74])
    assert summary["overall_accuracy"]["mean"] == pytest.approx(np.mean(oa))
    std = np.std(oa, ddof=1)
    assert summary["overall_accuracy"]["ci95"] == pytest.approx(4.302653 * std / math.sqrt(3),
                                                                rel=1e-6)
    # p.1 = 0.6 n_11 / 10 + 0.4 n_21 / 10, 100 pixels of area 1
    areas = [run["per_class"][0]["area"] for run in runs]
    assert areas == pytest.approx([52, 58, 50])
    first = summary["per_class"][0]
    assert first["code"] == 5
    assert first["area"]["mean"] == pytest.approx(160 / 3)
    assert first["area"]["std"] == pytest.approx(math.sqrt(52 / 3))
    assert set(first) == {"code", "area", "area_proportion", "users_accuracy",
                          "producers_accuracy"}
    assert json.dumps(summary, allow_nan=False)
    other = area_adjusted_accuracy([[8, 2], [1, 9]], [60, 40], [5, 8], rows="map")
    with pytest.raises(ValueError, match="same classes"):
        combine_runs([runs[0], other])
    with pytest.raises(ValueError, match="no run"):
        combine_runs([])
