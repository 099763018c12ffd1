"""Accuracy figures checked against numbers worked out by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from geoclass.kernels.scores import (
    class_labels,
    confusion_matrix,
    format_run_report,
    format_summary,
    scores,
    summarize,
    unclassified_count,
    write_confusion_csv,
)

CLASSES = [1, 2, 3]
NAMES = {1: "Forest", 2: "Water", 3: "Urban"}
# rows = reference, columns = prediction
#            pred 1  2  3     row sums
# ref 1:          5  1  0     6
# ref 2:          2  3  0     5
# ref 3:          0  1  4     5
# column sums:    7  5  4     total 16, trace 12
MATRIX = np.array([[5, 1, 0], [2, 3, 0], [0, 1, 4]])


def pairs_of(matrix, classes):
    """Reference and predicted arrays whose confusion matrix is `matrix`."""
    reference, predicted = [], []
    for i, ref in enumerate(classes):
        for j, pred in enumerate(classes):
            reference += [ref] * int(matrix[i][j])
            predicted += [pred] * int(matrix[i][j])
    return np.array(reference), np.array(predicted)


def test_confusion_matrix_from_pixels():
    reference, predicted = pairs_of(MATRIX, CLASSES)
    order = np.random.default_rng(0).permutation(reference.size)
    reference, predicted = reference[order].reshape(4, 4), predicted[order].reshape(4, 4)
    matrix = confusion_matrix(reference, predicted, CLASSES)
    assert matrix.dtype == np.int64
    np.testing.assert_array_equal(matrix, MATRIX)
    assert unclassified_count(reference, predicted, CLASSES) == 0


def test_class_order_follows_classes():
    reference, predicted = pairs_of(MATRIX, CLASSES)
    matrix = confusion_matrix(reference, predicted, [3, 1, 2])
    np.testing.assert_array_equal(matrix, MATRIX[np.ix_([2, 0, 1], [2, 0, 1])])


def test_nodata_predictions_are_excluded_and_counted():
    reference, predicted = pairs_of(MATRIX, CLASSES)
    # three validation pixels left as nodata (0) by the map, one pixel outside the reference
    reference = np.concatenate([reference, [1, 2, 3, 0]])
    predicted = np.concatenate([predicted, [0, 0, 0, 2]])
    np.testing.assert_array_equal(confusion_matrix(reference, predicted, CLASSES), MATRIX)
    assert unclassified_count(reference, predicted, CLASSES) == 4


def test_bad_arguments():
    with pytest.raises(ValueError):
        confusion_matrix(np.array([1, 2]), np.array([1]), CLASSES)
    with pytest.raises(ValueError):
        confusion_matrix(np.array([1]), np.array([1]), [1, 1])


def test_scores_by_hand():
    result = scores(MATRIX, CLASSES, NAMES)
    assert result["n_samples"] == 16
    assert result["overall_accuracy"] == pytest.approx(12 / 16)  # 0.75
    # pe = (6*7 + 5*5 + 5*4) / 16^2 = 87/256; kappa = (192/256 - 87/256) / (1 - 87/256) = 105/169
    assert result["kappa"] == pytest.approx(105 / 169)
    by_code = {entry["code"]: entry for entry in result["per_class"]}
    # precision = diag / column sums, recall = diag / row sums, F1 = 2 TP / (2 TP + FP + FN)
    assert by_code[1]["precision"] == pytest.approx(5 / 7)
    assert by_code[1]["recall"] == pytest.approx(5 / 6)
    assert by_code[1]["f1"] == pytest.approx(10 / 13)  # 10 / (10 + 2 + 1)
    assert by_code[2]["precision"] == pytest.approx(3 / 5)
    assert by_code[2]["recall"] == pytest.approx(3 / 5)
    assert by_code[2]["f1"] == pytest.approx(6 / 10)  # 6 / (6 + 2 + 2)
    assert by_code[3]["precision"] == pytest.approx(1.0)
    assert by_code[3]["recall"] == pytest.approx(4 / 5)
    assert by_code[3]["f1"] == pytest.approx(8 / 9)  # 8 / (8 + 0 + 1)
    assert [by_code[c]["support"] for c in CLASSES] == [6, 5, 5]
    assert [by_code[c]["predicted"] for c in CLASSES] == [7, 5, 4]
    assert by_code[2]["name"] == "Water"
    assert result["macro_f1"] == pytest.approx((10 / 13 + 6 / 10 + 8 / 9) / 3)
    json.dumps(result)  # JSON-ready: plain python numbers only


def test_class_without_reference_sample():
    # class 4 is predicted once on a class-1 pixel but has no reference sample;
    # class 5 is neither in the reference nor in the prediction
    matrix = np.zeros((5, 5), int)
    matrix[:3, :3] = MATRIX
    matrix[0, 3] = 1
    result = scores(matrix, [1, 2, 3, 4, 5])
    four, five = result["per_class"][3], result["per_class"][4]
    assert (four["support"], four["predicted"]) == (0, 1)
    # its one prediction is wrong (precision 0); its recall and F1 are not measured
    assert (four["precision"], four["recall"], four["f1"]) == (0.0, None, None)
    assert (five["support"], five["predicted"], five["f1"]) == (0, 0, None)
    assert four["name"] == "4" and result["not_measured"] == ["4", "5"]
    # class 1 now: TP 5, FP 2, FN 2 -> F1 = 10 / 14; macro over the classes with validation
    # pixels only, not counting the unmeasured ones as 0
    assert result["macro_f1"] == pytest.approx((10 / 14 + 6 / 10 + 8 / 9) / 3)
    assert result["overall_accuracy"] == pytest.approx(12 / 17)


def test_empty_matrix_gives_zeros():
    result = scores(np.zeros((2, 2), int), [1, 2])
    assert (result["overall_accuracy"], result["kappa"], result["macro_f1"]) == (0.0, 0.0, 0.0)


RUN_MATRICES = [MATRIX, np.array([[6, 0, 0], [1, 4, 0], [0, 1, 4]]), np.array([[4, 2, 0],
                                                                                 [2, 3, 0],
                                                                                 [1, 1, 3]])]


def test_summarize_three_runs_against_student_t():
    runs = [scores(m, CLASSES, NAMES) for m in RUN_MATRICES]
    summary = summarize(runs)
    assert summary["n_runs"] == 3
    oa = [12 / 16, 14 / 16, 10 / 16]  # traces 12, 14, 10 over 16 samples
    # mean 0.75, std (ddof=1) = sqrt(((0)^2 + 0.125^2 + 0.125^2) / 2) = 0.125
    assert summary["overall_accuracy"]["mean"] == pytest.approx(0.75)
    assert summary["overall_accuracy"]["std"] == pytest.approx(0.125)
    half_width = stats.t.ppf(0.975, 2) * 0.125 / math.sqrt(3)  # t = 4.3027 -> 0.3105
    assert summary["overall_accuracy"]["ci95"] == pytest.approx(half_width)
    assert half_width == pytest.approx(0.31052, abs=1e-5)
    assert summary["overall_accuracy"]["mean"] == pytest.approx(np.mean(oa))
    kappas = [run["kappa"] for run in runs]
    assert summary["kappa"]["std"] == pytest.approx(np.std(kappas, ddof=1))
    water_f1 = [run["per_class"][1]["f1"] for run in runs]
    water = summary["per_class"][1]
    assert (water["code"], water["name"]) == (2, "Water")
    assert water["f1"]["mean"] == pytest.approx(np.mean(water_f1))
    assert water["f1"]["ci95"] == pytest.approx(
        stats.t.ppf(0.975, 2) * np.std(water_f1, ddof=1) / math.sqrt(3))
    assert set(water) >= {"precision", "recall", "f1"}
    json.dumps(summary)


def test_summarize_single_run_has_no_interval():
    summary = summarize([scores(MATRIX, CLASSES, NAMES)])
    assert summary["overall_accuracy"] == {"mean": 0.75, "std": None, "ci95": None}
    assert summary["per_class"][0]["f1"]["ci95"] is None
    json.dumps(summary)
    assert "0.750 (1 run, no CI)" in format_summary(summary, NAMES)


def test_summarize_rejects_mismatched_runs():
    with pytest.raises(ValueError):
        summarize([])
    with pytest.raises(ValueError):
        summarize([scores(MATRIX, CLASSES), scores(MATRIX, [1, 2, 4])])


def test_run_report_contains_names_matrix_and_figures():
    result = scores(MATRIX, CLASSES, NAMES)
    text = format_run_report(MATRIX, result, CLASSES, NAMES, run=2, title="Tile T31TCJ")
    assert "Tile T31TCJ" in text and "Run 2" in text
    assert "Overall accuracy (OA): 0.7500" in text
    assert f"Kappa: {105 / 169:.4f}" in text
    for name in NAMES.values():
        assert name in text
    matrix_rows = [line for line in text.splitlines() if line.startswith("Water ")]
    assert matrix_rows[0].split("|")[1].split() == ["2", "3", "0"]
    assert "0.7143" in text  # Forest precision 5/7


def test_column_headers_are_truncated_but_distinct():
    names = {1: "Broadleaf forest", 2: "Broadleaf forest wet", 3: "Water"}
    assert class_labels([1, 2, 3], names, 12) == ["Broadleaf #1", "Broadleaf #2", "Water"]
    assert class_labels([1, 2, 3], names) == ["Broadleaf forest", "Broadleaf forest wet", "Water"]
    text = format_run_report(MATRIX, scores(MATRIX, [1, 2, 3], names), [1, 2, 3], names, 1, "T")
    header = next(line for line in text.splitlines() if line.startswith("reference"))
    assert "Broadleaf #1" in header and "Broadleaf #2" in header


def test_summary_text():
    summary = summarize([scores(m, CLASSES, NAMES) for m in RUN_MATRICES])
    text = format_summary(summary, {3: "Built-up"})
    assert "OA = 0.750 +- 0.311 (95 % CI, 3 runs)" in text
    assert "Kappa = " in text and "Macro F1 = " in text
    assert "Built-up" in text and "Forest" in text


def test_confusion_csv_round_trip(tmp_path):
    path = write_confusion_csv(tmp_path / "confusion.csv", MATRIX, CLASSES, NAMES)
    table = pd.read_csv(path, index_col=0)
    assert list(table.columns) == ["Forest", "Water", "Urban"]
    assert list(table.index) == ["Forest", "Water", "Urban"]
    np.testing.assert_array_equal(table.to_numpy(), MATRIX)
