"""The per-block prediction kernel and its lazy wrapper."""

from __future__ import annotations

import json
import shutil

import joblib
import numpy as np
import pytest
import rasterio
import xarray as xr
from lightgbm import LGBMClassifier
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import ExtraTreesClassifier

from geoclass.api import classify_cube, model_path, read_samples, train
from geoclass.io.reference import read_nomenclature
from geoclass.kernels.predict import predict_block, predict_in_strips, predict_with_fusion
from geoclass.lazy import lazy_rasterize
from geoclass.models.trained import TrainedModel
from geoclass.views.maps import fusion_options

from .conftest import config_of


def _constant_model(region, code, others, n_features=3) -> TrainedModel:
    """A model that gives `code` probability 0.7 and spreads the rest over `others`."""
    classes = [code, *others]
    y = np.array([code] * 7 * len(others) + [c for c in others for _ in range(3)])
    x = np.zeros((len(y), n_features))
    estimator = DummyClassifier(strategy="prior").fit(x, y)
    return TrainedModel(estimator, ["a", "b", "c"], sorted(classes), region, 0, "h")


def test_each_pixel_is_predicted_by_the_model_of_its_region():
    features = np.ones((3, 4, 5), np.float32)
    features[:, 0, 0] = np.nan
    regions = np.array([[1] * 5, [1] * 5, [2] * 5, [0] * 5])
    models = {1: _constant_model(1, 10, [20]), 2: _constant_model(2, 20, [10, 30])}
    out = predict_block(features, regions, models, [10, 20, 30])
    label, confidence, proba = out[0], out[1], out[2:]
    assert label[0, 0] == 0 and confidence[0, 0] == 0  # no valid data
    assert (label[1] == 10).all() and (label[2] == 20).all() and (label[3] == 0).all()
    p1 = models[1].estimator.class_prior_
    assert (confidence[1] == round(100 * p1.max())).all()
    assert (proba[:, 1, 0] == np.rint(np.array([p1[0], p1[1], 0]) * 1000)).all()
    sums = proba.sum(axis=0).astype(int)
    classified = label > 0
    assert classified.sum() == 14 and (np.abs(sums[classified] - 1000) <= 2).all()
    assert (proba[:, 3] == 0).all()


def test_ties_go_to_the_first_class():
    y = np.array([2, 1])
    estimator = DummyClassifier(strategy="prior").fit(np.zeros((2, 1)), y)
    model = TrainedModel(estimator, ["a"], [1, 2], 1, 0, "h")
    out = predict_block(np.zeros((1, 2, 2), np.float32), np.ones((2, 2), int), {1: model}, [1, 2])
    assert (out[0] == 1).all() and (out[1] == 50).all()


@pytest.mark.parametrize("infinite", [False, True])
def test_a_block_of_one_region_gives_the_weighted_mean_s_codes(infinite):
    """The shortcut of a block whose valid pixels are all of one region (its model's
    probabilities, encoded in one pass) gives, bit for bit, what the weighted mean of the
    general path gives (weights of 1), with a model that knows only some of the classes."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    y = rng.choice([20, 30, 50], 300)
    model = TrainedModel(ExtraTreesClassifier(5, random_state=0).fit(x, y), list("abcd"),
                         [20, 30, 50], 1, 0, "h")
    features = rng.normal(size=(4, 37, 41)).astype(np.float32)
    if infinite:
        features[1, :5, :7] = np.nan
        features[3, 30:, 40] = -np.inf
    regions = np.ones((37, 41), int)
    classes = [10, 20, 30, 40, 50]
    fast = predict_block(features, regions, {1: model}, classes)
    general = predict_block(features, regions, {1: model}, classes,
                            {1: np.ones((37, 41))})
    np.testing.assert_array_equal(fast, general)
    valid = np.isfinite(features).all(axis=0)
    assert (fast[0][valid] > 0).all() and (fast[:, ~valid] == 0).all()
    assert set(np.unique(fast[0][valid])) <= {20, 30, 50} and (fast[[2, 5]] == 0).all()


@pytest.mark.parametrize("fusion", [None, fusion_options(20.0, 20.0, 0.0, 10.0)])
def test_strips_of_rows_give_the_block_s_prediction(fusion):
    """Features made and predicted strip by strip of rows (the observation cube's path):
    the same map as the whole block, boundary fusion included."""
    rng = np.random.default_rng(4)
    features = rng.random((3, 20, 9)).astype(np.float32)
    features[:, 5, 2] = np.nan
    regions = np.ones((20, 9), int)
    regions[:, 5:] = 2
    regions[17:, :2] = 0
    models = {}
    for region in (1, 2):
        x = rng.random((60, 3))
        y = np.where(x[:, region] > 0.5, 10, 20 + 10 * (x[:, 0] > 0.7))
        forest = ExtraTreesClassifier(n_estimators=5, random_state=region).fit(x, y)
        models[region] = TrainedModel(forest, ["a", "b", "c"], sorted(set(y)), region, 0, "h")
    depth = 0 if fusion is None else fusion["depth"]
    padded = np.pad(regions, depth, mode="edge")
    whole = predict_with_fusion(features, padded, models, [10, 20, 30], fusion)
    seen = []

    def features_of(rows):
        seen.append((rows.start, rows.stop))
        return features[:, rows]

    strips = predict_in_strips(features_of, 3, padded, models, [10, 20, 30], fusion,
                               strip_rows=6)
    assert seen == [(0, 6), (6, 12), (12, 18), (18, 20)]
    np.testing.assert_array_equal(strips, whole)
    assert len(np.unique(whole[0])) >= 3  # the features matter: rows must line up


def test_lazy_classification_of_a_generated_tile(scene_template, tmp_path_factory, client):
    from geoclass.io.reference import load_regions
    from geoclass.views.cube import grid_of_cube, open_cube

    target = tmp_path_factory.mktemp("predict") / "scene"
    shutil.copytree(scene_template.parent, target)
    config = config_of(target / "config.yaml", models={"params": {"n_estimators": 20}})
    paths = train(config)
    cube = open_cube(config.chain.output_path / "cubes" / "T31TCJ.zarr")
    grid = grid_of_cube(cube)
    regions = lazy_rasterize(load_regions(config.chain.region_path, "region", grid.crs),
                             "region", grid)
    classes = sorted({c for (r, run) in paths for c in
                      read_samples(config, run).query("region == @r")["code"]})
    result = classify_cube(cube.features, {r: p for (r, _), p in paths.items()}, classes,
                           regions)
    assert isinstance(result, xr.Dataset) and result.classification.chunks is not None
    label = result.classification.values
    assert set(np.unique(label)) <= {0, *classes}
    with rasterio.open(target / "truth" / "T31TCJ.tif") as src:
        truth = src.read(1)
    # string labels are coded 1..N: translate the map to the nomenclature's codes of the truth
    table = json.loads((config.chain.output_path / "samples" / "classes.json").read_text())
    nomenclature = read_nomenclature(config.chain.nomenclature_path)
    to_truth = {c["code"]: int(next(k for k, v in nomenclature.items() if v == c["user_label"]))
                for c in table["classes"]}
    ok = label > 0
    assert ok.mean() > 0.9
    mapped = np.vectorize(to_truth.get)(label[ok])
    assert (mapped == truth[ok]).mean() > 0.6
    # the same pixels through the region's own model directly
    model = joblib.load(model_path(config, 1, 0))
    region = regions.compute()
    rows, cols = np.nonzero((region == 1) & ok)
    x = cube.features.values[:, rows[:200], cols[:200]].T
    direct = model.estimator.predict(x)
    np.testing.assert_array_equal(label[rows[:200], cols[:200]], direct)
    assert isinstance(model.estimator, LGBMClassifier)  # the default classifier


def test_fast_path_and_sklearn_agree_on_every_pixel_of_a_generated_tile(scene_template,
                                                                         tmp_path_factory,
                                                                         client, monkeypatch):
    from geoclass.io.reference import load_regions
    from geoclass.models.trained import _cached
    from geoclass.views.cube import grid_of_cube, open_cube

    target = tmp_path_factory.mktemp("fast") / "scene"
    shutil.copytree(scene_template.parent, target)
    config = config_of(target / "config.yaml",
                       models={"classifier": "extra_trees", "params": {"n_estimators": 30}})
    paths = train(config)
    cube = open_cube(config.chain.output_path / "cubes" / "T31TDJ.zarr")
    grid = grid_of_cube(cube)
    regions = lazy_rasterize(load_regions(config.chain.region_path, "region", grid.crs),
                             "region", grid)
    classes = sorted(int(c) for c in read_samples(config, 0)["code"].unique())
    models = {r: p for (r, _), p in paths.items()}
    results = {}
    for flag in ("1", "0"):  # compiled forests, then scikit-learn's own predict_proba
        _cached.cache_clear()
        results[flag] = classify_cube(cube.features, models, classes, regions,
                                      fast=flag == "1").compute()
    fast, reference = results["1"], results["0"]
    from geoclass.api import load_model
    from geoclass.kernels.fastforest import compile_forest

    assert all(compile_forest(load_model(p).estimator) is not None for p in models.values())
    assert (fast.classification.values > 0).mean() > 0.9
    for name in ("classification", "confidence", "probabilities"):
        np.testing.assert_array_equal(fast[name].values, reference[name].values, err_msg=name)
