"""The compiled boosting kernels give XGBoost's and LightGBM's probabilities (within float32
rounding) and classes, NaN and zero-as-missing included; the XGBoost wrapper takes any class
codes; prediction takes the fast path."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from geoclass.kernels import fastboost as fb

N_FEATURES, N_CLASSES, N_TRAIN, N_PIXELS = 40, 6, 3000, 6000
CODES = np.array([5, 6, 10, 13, 21, 40])  # geoclass class codes: any integers
ZERO = np.float32(1e-35)
SPECIAL = np.array([0.0, -0.0, 1e-36, -1e-36, ZERO, -ZERO, np.nextafter(ZERO, np.float32(1)),
                    np.nextafter(-ZERO, np.float32(-1)), 1e-30, -1e-30, np.nan], np.float32)


@pytest.fixture(scope="module")
def data():
    """Samples (5 % NaN), class indices 0..5, and pixels to predict (10 % NaN), float32."""
    X, y = make_classification(N_TRAIN + N_PIXELS, N_FEATURES, n_informative=20,
                               n_redundant=10, n_classes=N_CLASSES, n_clusters_per_class=2,
                               flip_y=0.05, random_state=0)
    X = X.astype(np.float32)
    rng = np.random.default_rng(0)
    X[rng.random(X.shape) < 0.05] = np.nan
    pixels = X[N_TRAIN:].copy()
    pixels[rng.random(pixels.shape) < 0.05] = np.nan
    return X[:N_TRAIN], y[:N_TRAIN], pixels


def _at_thresholds(pixels, compiled, seed=0):
    """Copy of pixels where a third of them have 8 values at a compiled threshold c (left iff
    x <= c) or at the next float32 (right)."""
    inner = compiled.nodes[:, 0] >= 0
    features = compiled.nodes[inner, 0] & ((1 << (compiled.shift - 1)) - 1)
    thresholds = compiled.nodes[inner, 1].view(np.float32)
    finite = np.isfinite(thresholds)
    features, thresholds = features[finite], thresholds[finite]
    rng = np.random.default_rng(seed)
    out = pixels.copy()
    rows = rng.choice(len(out), len(out) // 3, replace=False)
    for _ in range(8):
        pick = rng.integers(0, len(features), len(rows))
        values = thresholds[pick]
        up = (rng.random(len(rows)) < 0.5) & (values < np.finfo(np.float32).max)
        values[up] = np.nextafter(values[up], np.float32(np.inf))
        out[rows, features[pick]] = values
    return out


def _check(estimator, compiled, pixels):
    """Probabilities within 1e-5 of the library's; same class everywhere (a difference would
    only be allowed on a near-tie; there is none on these data)."""
    expected = np.asarray(estimator.predict_proba(pixels), np.float64)
    proba = fb.predict_proba(compiled, pixels)
    assert proba.shape == expected.shape and proba.dtype == np.float64
    assert np.abs(proba - expected).max() <= 1e-5
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    top = np.sort(expected, axis=1)
    near_tie = top[:, -1] - top[:, -2] <= 1e-5
    differ = np.argmax(proba, axis=1) != np.argmax(expected, axis=1)
    assert not (differ & ~near_tie).any()
    assert differ.sum() == 0


def _check_kernels(compiled, pixels):
    """Every kernel, 1 or 2 threads, any layout or dtype of the pixels: the same numbers."""
    pixels = pixels[:3000]
    one = fb.predict_proba(compiled, pixels, n_threads=1)
    np.testing.assert_array_equal(one, fb.predict_proba(compiled, pixels, n_threads=2))
    for transposed in (False, True):
        as_pixels = fb.ff._as_pixels(np.asfortranarray(pixels) if transposed else pixels,
                                     N_FEATURES)
        assert as_pixels[1] == transposed
        kernels = ("exit", "simd", "scalar") if compiled.exits is not None else ("simd", "scalar")
        for kernel in kernels:
            np.testing.assert_array_equal(one, fb._predict(compiled, as_pixels, kernel,
                                                           compiled.link))
    np.testing.assert_array_equal(fb.predict_proba(compiled, np.asfortranarray(pixels)), one)
    np.testing.assert_array_equal(fb.predict_proba(compiled, pixels[::-1])[::-1], one)
    np.testing.assert_array_equal(fb.predict_proba(compiled, pixels.astype(np.float64)), one)
    assert fb.predict_proba(compiled, pixels[:0]).shape == (0, compiled.n_classes)
    with pytest.raises(ValueError):
        fb.predict_proba(compiled, pixels[:, :-1])


# --------------------------------------------------------------------------------------------
# XGBoost


@pytest.fixture(scope="module", params=["binary", "multiclass"])
def xgb_model(request, data):
    xgb = pytest.importorskip("xgboost")
    X, y, _ = data
    target = (y >= 3).astype(int) if request.param == "binary" else y
    return xgb.XGBClassifier(n_estimators=25, max_depth=6, learning_rate=0.3, n_jobs=1,
                             random_state=0).fit(X, target)


def test_xgboost_matches(xgb_model, data):
    pixels = data[2]
    compiled = fb.compile_boosting(xgb_model)
    assert compiled.library == "xgboost" and compiled.n_features == N_FEATURES
    n_classes = len(xgb_model.classes_)
    assert compiled.n_classes == n_classes
    assert compiled.n_trees == 25 * (n_classes if n_classes > 2 else 1)
    leaves = np.diff(compiled.exits.leaf_base)  # depth 6: 32-bit and 64-bit leaf masks
    assert leaves.max() > 32 and leaves.min() <= 32
    test = _at_thresholds(pixels, compiled)
    _check(xgb_model, compiled, test)
    # the float32 margins are XGBoost's bit for bit (same float32 sums, in the same order)
    margin = fb.predict_margin(compiled, test)
    expected = xgb_model.predict(test, output_margin=True)
    assert margin.dtype == np.float32
    np.testing.assert_array_equal(margin.reshape(expected.shape), expected)
    _check_kernels(compiled, test)


def test_xgboost_multi_softmax_and_parallel_trees(data):
    """multi:softmax (predict_proba: softmax of the margins) and several trees per round and
    class (num_parallel_tree, as XGBRFClassifier): the trees of a round are summed."""
    xgb = pytest.importorskip("xgboost")
    X, y, pixels = data
    for model in (xgb.XGBClassifier(n_estimators=5, objective="multi:softmax", n_jobs=1),
                  xgb.XGBRFClassifier(n_estimators=4, max_depth=5, n_jobs=1)):
        model.fit(X[:1500], y[:1500])
        compiled = fb.compile_boosting(model)
        assert compiled is not None
        _check(model, compiled, pixels)


def test_xgboost_early_stopping_uses_best_iteration(data):
    xgb = pytest.importorskip("xgboost")
    X, y, pixels = data
    model = xgb.XGBClassifier(n_estimators=300, max_depth=6, learning_rate=0.5, n_jobs=1,
                              early_stopping_rounds=3, random_state=0)
    model.fit(X[:2000], y[:2000], eval_set=[(X[2000:], y[2000:])], verbose=False)
    rounds = model.best_iteration + 1
    assert rounds < model.get_booster().num_boosted_rounds()
    compiled = fb.compile_boosting(model)
    assert compiled.n_trees == rounds * N_CLASSES
    _check(model, compiled, pixels)


# --------------------------------------------------------------------------------------------
# LightGBM


@pytest.fixture(scope="module", params=["binary", "multiclass"])
def lgbm_model(request, data):
    lgb = pytest.importorskip("lightgbm")
    X, y, _ = data
    codes = CODES[y]
    target = np.where(y >= 3, 7, 3) if request.param == "binary" else codes
    return lgb.LGBMClassifier(n_estimators=40, n_jobs=1, verbose=-1, random_state=0
                              ).fit(X, target)


def test_lightgbm_matches(lgbm_model, data):
    pixels = data[2]
    compiled = fb.compile_boosting(lgbm_model)
    assert compiled.library == "lightgbm"
    np.testing.assert_array_equal(compiled.classes_, lgbm_model.classes_)
    test = _at_thresholds(pixels, compiled)
    _check(lgbm_model, compiled, test)
    margin = fb.predict_margin(compiled, test)
    expected = lgbm_model.predict_proba(test, raw_score=True)
    assert np.abs(margin.reshape(expected.shape) - expected).max() <= 1e-12
    _check_kernels(compiled, test)


@pytest.mark.parametrize("missing", ["none", "nan", "zero"])
def test_lightgbm_missing_types_and_tiny_values(data, missing):
    """missing_type None (NaN reads as 0), NaN, Zero (0 and NaN to the default child, hence
    `flips`); |x| <= 1e-35 reads as 0 (thresholds at +-1e-35 appear with many zeros)."""
    lgb = pytest.importorskip("lightgbm")
    X, y, pixels = data
    rng = np.random.default_rng(2)
    train = np.nan_to_num(X) if missing == "none" else X.copy()
    train[rng.random(train.shape) < 0.3] = 0.0
    model = lgb.LGBMClassifier(n_estimators=30, n_jobs=1, verbose=-1, random_state=0,
                               zero_as_missing=missing == "zero").fit(train, CODES[y])
    compiled = fb.compile_boosting(model)
    assert compiled.flips.any() == (missing == "zero")
    test = _at_thresholds(pixels, compiled)
    special = rng.random(test.shape) < 0.3
    test[special] = rng.choice(SPECIAL, special.sum())
    _check(model, compiled, test)
    _check_kernels(compiled, test)


def test_lightgbm_trees_of_many_leaves_are_walked(data):
    """More than 64 leaves: no exit-leaf kernel, the trees are walked (SIMD or scalar)."""
    lgb = pytest.importorskip("lightgbm")
    X, y, pixels = data
    model = lgb.LGBMClassifier(n_estimators=5, num_leaves=100, min_child_samples=5, n_jobs=1,
                               verbose=-1, random_state=0).fit(X, CODES[y])
    compiled = fb.compile_boosting(model)
    assert compiled.exits is None
    assert fb._kernel_name(compiled, fb.ff._as_pixels(pixels, N_FEATURES)) != "exit"
    test = _at_thresholds(pixels, compiled)
    _check(model, compiled, test)
    _check_kernels(compiled, test)


def test_exit_masks_number_leaves_left_to_right():
    """A tree (0: x0 <= 1 ? 1 : 2; 1: x1 <= 2 ? leaf a : leaf b; 2: leaf c): going right at
    node 0 removes a and b, at node 1 removes a."""
    left = np.array([1, 3, -1, -1, -1])
    right = np.array([2, 4, -1, -1, -1])
    tree = (left, right, np.array([0, 1, 0, 0, 0]), np.array([1, 2, 0, 0, 0], np.float32),
            np.zeros(5, bool), np.zeros(5, bool), np.array([0, 0, 30.0, 10.0, 20.0]))
    nodes, flips, roots, leaf_base, values, shift = fb._encode_trees([tree], 2)
    exits = fb._exit_tables(nodes, flips, roots, leaf_base, values, shift)
    np.testing.assert_array_equal(exits.values, [10.0, 20.0, 30.0])
    np.testing.assert_array_equal(exits.keep32, [~np.uint32(0b011), ~np.uint32(0b001)])
    np.testing.assert_array_equal(exits.feature, [0, 1])
    np.testing.assert_array_equal(exits.node_base, [0, 2])


@pytest.mark.filterwarnings("ignore:The argument 'eval_set' is deprecated")
def test_lightgbm_early_stopping_uses_best_iteration(data):
    lgb = pytest.importorskip("lightgbm")
    X, y, pixels = data
    model = lgb.LGBMClassifier(n_estimators=300, learning_rate=0.5, n_jobs=1, verbose=-1,
                               random_state=0)
    model.fit(X[:2000], y[:2000], eval_set=[(X[2000:], y[2000:])],
              callbacks=[lgb.early_stopping(3, verbose=False)])
    assert 0 < model.best_iteration_ < 300
    compiled = fb.compile_boosting(model)
    assert compiled.n_trees == model.best_iteration_ * N_CLASSES
    _check(model, compiled, pixels)
    # the sklearn API keeps only the best rounds; a booster that has more predicts with them
    model.booster_.best_iteration = 5
    compiled = fb.compile_boosting(model)
    assert compiled.n_trees == 5 * N_CLASSES
    _check(model, compiled, pixels)


# --------------------------------------------------------------------------------------------
# both


def test_standard_scaler_is_folded(data):
    xgb = pytest.importorskip("xgboost")
    lgb = pytest.importorskip("lightgbm")
    X, y, pixels = data
    for model in (xgb.XGBClassifier(n_estimators=10, n_jobs=1),
                  lgb.LGBMClassifier(n_estimators=10, n_jobs=1, verbose=-1)):
        pipeline = make_pipeline(StandardScaler(), model).fit(X[:1500], y[:1500])
        compiled = fb.compile_boosting(pipeline)
        assert compiled is not None
        _check(pipeline, compiled, _at_thresholds(pixels, compiled))


def test_unsupported_models_give_none(data):
    xgb = pytest.importorskip("xgboost")
    lgb = pytest.importorskip("lightgbm")
    X, y, _ = data
    small_X, small_y = X[:500, :10], y[:500]
    binary = (small_y > 2).astype(int)
    assert fb.compile_boosting(RandomForestClassifier(2).fit(small_X, small_y)) is None
    assert fb.compile_boosting(xgb.XGBClassifier()) is None  # not fitted
    assert fb.compile_boosting(lgb.LGBMClassifier()) is None
    for params in ({"booster": "dart"}, {"booster": "gblinear"}, {"missing": 0.0},
                   {"objective": "binary:logitraw"}):
        model = xgb.XGBClassifier(n_estimators=3, n_jobs=1, **params).fit(small_X, binary)
        assert fb.compile_boosting(model) is None, params
    assert fb.compile_boosting(xgb.XGBRegressor(n_estimators=3).fit(small_X, small_y)) is None
    ova = lgb.LGBMClassifier(n_estimators=3, objective="multiclassova", verbose=-1)
    assert fb.compile_boosting(ova.fit(small_X, small_y)) is None
    categorical = small_X.copy()
    categorical[:, 0] = small_y  # a perfect categorical feature: categorical splits
    cat = lgb.LGBMClassifier(n_estimators=3, verbose=-1, min_data_per_group=5, cat_smooth=1)
    cat.fit(categorical, small_y, categorical_feature=[0])
    assert "==" in str(cat.booster_.dump_model())
    assert fb.compile_boosting(cat) is None
    linear = lgb.LGBMClassifier(n_estimators=3, verbose=-1, linear_tree=True)
    assert fb.compile_boosting(linear.fit(np.nan_to_num(small_X), binary)) is None
    assert fb.compile_boosting(lgb.LGBMRegressor(n_estimators=3, verbose=-1
                                                 ).fit(small_X, small_y)) is None


# --------------------------------------------------------------------------------------------
# the XGBoost wrapper, the registry, prediction


def test_wrapper_round_trips_class_codes(data):
    pytest.importorskip("xgboost")
    from geoclass.models.boosting import XGBoostClassifier

    X, y, pixels = data
    model = XGBoostClassifier(n_estimators=20, random_state=0).fit(X, CODES[y])
    np.testing.assert_array_equal(model.classes_, CODES)
    np.testing.assert_array_equal(model.predict_proba(pixels), model.model_.predict_proba(pixels))
    predicted = model.predict(pixels)
    assert set(np.unique(predicted)) <= set(CODES)
    np.testing.assert_array_equal(predicted, CODES[model.model_.predict(pixels)])
    compiled = fb.compile_boosting(model)
    np.testing.assert_array_equal(compiled.classes_, CODES)
    _check(model, compiled, pixels)
    # scikit-learn conventions
    params = model.get_params()
    assert params["n_estimators"] == 20 and params["n_jobs"] == 1
    copy = clone(model).set_params(max_depth=3, params={"max_leaves": 4})
    assert copy.get_params()["max_depth"] == 3 and not hasattr(copy, "classes_")
    assert copy.fit(X[:500], CODES[y[:500]]).model_.get_params()["max_leaves"] == 4
    # two codes: binary:logistic; one code: a constant model (not compiled)
    two = XGBoostClassifier(n_estimators=5).fit(X, np.where(y > 2, 13, 5))
    np.testing.assert_array_equal(two.classes_, [5, 13])
    _check(two, fb.compile_boosting(two), pixels)
    one = XGBoostClassifier(n_estimators=5).fit(X, np.full(len(X), 21))
    np.testing.assert_array_equal(one.predict(pixels[:3]), [21, 21, 21])
    assert one.predict_proba(pixels[:3]).shape == (3, 1)
    assert fb.compile_boosting(one) is None


def test_wrapper_early_stopping_on_polygon_groups(data):
    pytest.importorskip("xgboost")
    from geoclass.models.boosting import XGBoostClassifier

    X, y, pixels = data
    groups = np.arange(len(y)) // 20  # polygons of 20 samples
    model = XGBoostClassifier(n_estimators=300, max_depth=4, learning_rate=0.5,
                              early_stopping_rounds=3,
                              validation_fraction=0.2, random_state=1)
    model.fit(X, CODES[y], groups=groups)
    assert model.best_iteration_ is not None and model.best_iteration_ + 1 < 300
    compiled = fb.compile_boosting(model)
    assert compiled.n_trees == (model.best_iteration_ + 1) * N_CLASSES
    _check(model, compiled, pixels)


def test_validation_split_keeps_groups_and_classes():
    from geoclass.models.boosting import validation_split

    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), 10)
    codes = rng.integers(0, 3, 40)[groups]
    codes[groups == 7] = 3  # a class with a single polygon
    for seed in range(10):
        train, valid = validation_split(codes, groups, 0.5, seed)
        assert len(train) + len(valid) == len(codes) and len(valid) > 0
        assert not set(groups[train]) & set(groups[valid])
        assert set(codes[train]) == {0, 1, 2, 3}
        train, valid = validation_split(codes, None, 0.2, seed)
        assert set(codes[train]) == {0, 1, 2, 3} and len(valid) > 0
    assert validation_split(np.zeros(10, int), np.zeros(10, int), 0.5, 0) is None


def test_registry_and_fit_model_pass_the_polygons(data):
    pytest.importorskip("xgboost")
    from geoclass.config import Models
    from geoclass.models import classifier_problems, make_classifier
    from geoclass.models.boosting import XGBoostClassifier
    from geoclass.steps.train import fit_model

    X, y, _ = data
    model = make_classifier(Models(classifier="xgboost"), seed=3)
    assert isinstance(model, XGBoostClassifier)
    assert classifier_problems(Models(classifier="xgboost")) == []
    assert (model.n_estimators, model.max_depth, model.learning_rate, model.tree_method,
            model.n_jobs, model.random_state) == (200, 6, 0.1, "hist", 1, 3)
    groups = np.arange(len(y)) // 20
    params = {"n_estimators": 300, "max_depth": 3, "learning_rate": 0.5,
              "early_stopping_rounds": 3}
    fitted, _ = fit_model(X[:1500], CODES[y[:1500]], groups[:1500],
                          Models(classifier="xgboost", params=params), seed=0)
    assert fitted.best_iteration_ is not None
    scaled = Models(classifier="xgboost", standardization=True, params=params)
    fitted, _ = fit_model(X[:1500], CODES[y[:1500]], groups[:1500], scaled, seed=0)
    assert fitted[-1].best_iteration_ is not None
    assert fb.compile_boosting(fitted) is not None


def test_check_reports_a_missing_xgboost(monkeypatch):
    from geoclass.config import Models
    from geoclass.errors import ConfigError
    from geoclass.models import boosting, classifier_problems

    monkeypatch.setattr(boosting.importlib.util, "find_spec", lambda name: None)
    problems = classifier_problems(Models(classifier="xgboost"))
    assert len(problems) == 1 and "geoclass[boost]" in problems[0]
    with pytest.raises(ConfigError, match="needs XGBoost"):
        boosting.XGBoostClassifier().fit(np.zeros((4, 2)), [1, 2, 1, 2])


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_model_proba_takes_the_fast_path(data, library):
    pytest.importorskip(library)
    from geoclass.config import Models
    from geoclass.kernels.predict import model_proba
    from geoclass.models import make_classifier
    from geoclass.models.trained import TrainedModel

    X, y, pixels = data
    estimator = make_classifier(Models(classifier=library, params={"n_estimators": 20}))
    estimator.fit(X, CODES[y])
    model = TrainedModel(estimator, [f"f{i}" for i in range(N_FEATURES)], list(CODES), 1, 0,
                         "hash")
    model.compile()  # as loading a model does
    proba = model_proba(model, np.asfortranarray(pixels))
    assert isinstance(model.compiled, fb.CompiledBoosting)
    _check(estimator, model.compiled, pixels)
    np.testing.assert_array_equal(proba, fb.predict_proba(model.compiled, pixels))
