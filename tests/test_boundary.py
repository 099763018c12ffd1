"""Region boundary fusion: the weights, and a map without a seam where two models disagree."""

from __future__ import annotations

import dask.array as da
import joblib
import numpy as np
import pytest
import xarray as xr
from sklearn.dummy import DummyClassifier

from geoclass.api import classify_cube
from geoclass.config import BoundaryFusion
from geoclass.kernels.boundary import overlap_depth, region_weights
from geoclass.models.trained import TrainedModel


def test_weights_are_one_inside_zero_outside_and_linear_between():
    regions = np.where(np.arange(40) < 20, 1, 2)[None, :].repeat(40, axis=0)
    depth = overlap_depth(50, 50, 10)
    padded = np.pad(regions, depth, mode="edge")
    weights = region_weights(padded, depth, interior=50, exterior=50, resolution=10)
    assert sorted(weights) == [1, 2] and weights[1].shape == (40, 40)
    row = weights[1][7]
    # pixel centre of column j is (19.5 - j) pixels = (20 - j - 0.5) * 10 m inside region 1
    expected = np.clip(((19.5 - np.arange(40)) * 10 + 50) / 100, 0, 1)
    np.testing.assert_allclose(row, expected, atol=1e-6)
    assert row[14] == 1 and row[19] == pytest.approx(0.55) and row[20] == pytest.approx(0.45)
    assert row[25] == 0
    np.testing.assert_allclose(weights[1] + weights[2], 1, atol=1e-6)


def test_exterior_buffer_only_reaches_outside_the_region():
    regions = np.where(np.arange(30) < 15, 1, 2)[None, :].repeat(5, axis=0)
    padded = np.pad(regions, 3, mode="edge")
    w = region_weights(padded, 3, interior=0, exterior=20, resolution=10)[1][0]
    assert (w[:15] == 1).all()  # no interior buffer: full weight down to the boundary
    np.testing.assert_allclose(w[15:18], [0.75, 0.25, 0], atol=1e-6)


def _model(tmp_path, region, p10) -> str:
    """A constant model of region `region`: class 10 with probability p10, else 20."""
    n = 10
    y = np.array([10] * int(round(p10 * n)) + [20] * (n - int(round(p10 * n))))
    estimator = DummyClassifier(strategy="prior").fit(np.zeros((n, 2)), y)
    path = tmp_path / f"model_{region}.joblib"
    joblib.dump(TrainedModel(estimator, ["a", "b"], [10, 20], region, 0, "h"), path)
    return path


def _classify(tmp_path, boundary_col, fusion):
    features = xr.DataArray(da.ones((2, 64, 64), chunks=(2, 32, 32), dtype=np.float32),
                            dims=("feature", "y", "x"),
                            coords={"feature": ["a", "b"], "x": np.arange(64) * 10.0 + 5,
                                    "y": -np.arange(64) * 10.0})
    regions = da.from_array(np.where(np.arange(64) < boundary_col, 1, 2)[None, :]
                            .repeat(64, axis=0).astype(np.int32), chunks=32)
    models = {1: _model(tmp_path, 1, 0.8), 2: _model(tmp_path, 2, 0.2)}
    result = classify_cube(features, models, [10, 20], regions, fusion, 10.0)
    return result.compute()


@pytest.mark.parametrize("boundary_col", [32, 40])  # on a chunk edge, and inside a chunk
def test_without_fusion_the_seam_is_hard_each_region_by_its_own_model(tmp_path, boundary_col):
    result = _classify(tmp_path, boundary_col, None)
    p10 = result.probabilities.sel({"class": 10}).values[5].astype(int)
    label = result.classification.values
    assert (label[:, :boundary_col] == 10).all() and (label[:, boundary_col:] == 20).all()
    assert (p10[:boundary_col] == 800).all() and (p10[boundary_col:] == 200).all()
    assert np.abs(np.diff(p10)).max() == 600


@pytest.mark.parametrize("boundary_col", [32, 40])
def test_with_fusion_probabilities_change_linearly_across_the_boundary(tmp_path, boundary_col):
    fusion = BoundaryFusion(enable=True, interior_buffer_size=100, exterior_buffer_size=100)
    result = _classify(tmp_path, boundary_col, fusion)
    p10 = result.probabilities.sel({"class": 10}).values.astype(int)
    assert (p10 == p10[:1]).all()  # the same on every row
    row = p10[0]
    distance = (boundary_col - 0.5 - np.arange(64)) * 10  # signed, > 0 in region 1
    w1 = np.clip((distance + 100) / 200, 0, 1)
    w2 = np.clip((-distance + 100) / 200, 0, 1)
    expected = np.rint((0.8 * w1 + 0.2 * w2) / (w1 + w2) * 1000)
    np.testing.assert_allclose(row, expected, atol=1)
    assert np.abs(np.diff(row)).max() <= 31  # 0.6 spread over 20 pixels: no seam
    assert (row[:boundary_col - 10] == 800).all()  # beyond the buffers: own model only
    assert (row[boundary_col + 10:] == 200).all()
    label = result.classification.values[0]
    assert (label[:boundary_col] == 10).all() and (label[boundary_col:] == 20).all()
    confidence = result.confidence.values[0]
    assert confidence[boundary_col - 1] < 60 < confidence[0]
