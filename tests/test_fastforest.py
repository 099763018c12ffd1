"""The compiled forest kernels give scikit-learn's probabilities and classes on every pixel."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.decomposition import PCA
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from geoclass.kernels import fastforest as ff

N_FEATURES, N_CLASSES, N_TRAIN, N_PIXELS = 60, 6, 3000, 20000

MODELS = {
    "rf-deep": lambda: RandomForestClassifier(20, min_samples_leaf=1, random_state=1),
    "rf-25-leaf5": lambda: RandomForestClassifier(20, max_depth=25, min_samples_leaf=5,
                                                  random_state=2),
    "rf-1-tree": lambda: RandomForestClassifier(1, min_samples_leaf=3, random_state=3),
    "extra-trees": lambda: ExtraTreesClassifier(20, min_samples_leaf=2, random_state=4),
}


@pytest.fixture(scope="module")
def data():
    """Training samples and labels (class codes 10..60), and pixels to predict (float32)."""
    X, y = make_classification(N_TRAIN + N_PIXELS, N_FEATURES, n_informative=20,
                               n_redundant=10, n_classes=N_CLASSES, n_clusters_per_class=2,
                               flip_y=0.05, random_state=0)
    X = X.astype(np.float32)
    return X[:N_TRAIN], (y[:N_TRAIN] + 1) * 10, X[N_TRAIN:]


@pytest.fixture(scope="module", params=sorted(MODELS))
def fitted(request, data):
    """(estimator, pixels with some values exactly at and just above tree thresholds)."""
    X, y, pixels = data
    estimator = MODELS[request.param]().fit(X, y)
    return estimator, _at_thresholds(pixels, _tree_splits(estimator))


def _tree_splits(estimator):
    """(feature, float32 threshold) of every split of every tree."""
    features, thresholds = [], []
    for tree in estimator.estimators_:
        inner = tree.tree_.children_left >= 0
        features.append(tree.tree_.feature[inner])
        thresholds.append(ff._floor_float32(tree.tree_.threshold[inner]))
    return np.concatenate(features), np.concatenate(thresholds)


def _at_thresholds(pixels, splits, seed=0):
    """Copy of pixels where a third of them have 8 values at a split's threshold, or the next
    float32 above it (x == t32 goes left, the next one right)."""
    features, thresholds = splits
    rng = np.random.default_rng(seed)
    out = pixels.copy()
    rows = rng.choice(len(out), len(out) // 3, replace=False)
    for _ in range(8):
        pick = rng.integers(0, len(features), len(rows))
        values = thresholds[pick]
        up = rng.random(len(rows)) < 0.3
        values[up] = np.nextafter(values[up], np.float32(np.inf))
        out[rows, features[pick]] = values
    return out


def _check_same(estimator, proba, pixels):
    """Same class (first maximum, in classes_ order) and probabilities within 1e-6."""
    expected = estimator.predict_proba(pixels)
    assert proba.shape == expected.shape and proba.dtype == np.float64
    assert np.abs(proba - expected).max() <= 1e-6
    np.testing.assert_array_equal(estimator.classes_[np.argmax(proba, axis=1)],
                                  estimator.predict(pixels))


def test_matches_sklearn(fitted):
    estimator, pixels = fitted
    forest = ff.compile_forest(estimator)
    assert forest.n_features == N_FEATURES and forest.n_classes == N_CLASSES
    np.testing.assert_array_equal(forest.classes_, estimator.classes_)
    _check_same(estimator, ff.predict_proba(forest, pixels), pixels)


def test_kernels_and_threads_agree_bit_for_bit(fitted):
    estimator, pixels = fitted
    forest = ff.compile_forest(estimator)
    one = ff.predict_proba(forest, pixels, n_threads=1)
    np.testing.assert_array_equal(one, ff.predict_proba(forest, pixels, n_threads=2))
    for kernel in ("simd", "scalar"):
        np.testing.assert_array_equal(one, ff._predict(forest, ff._as_pixels(pixels, N_FEATURES),
                                                       kernel))


def test_layouts_and_dtypes(fitted):
    estimator, pixels = fitted
    forest = ff.compile_forest(estimator)
    part = pixels[:3000]
    expected = ff.predict_proba(forest, part)
    np.testing.assert_array_equal(ff.predict_proba(forest, np.asfortranarray(part)), expected)
    np.testing.assert_array_equal(ff.predict_proba(forest, part[::-1])[::-1], expected)
    np.testing.assert_array_equal(ff.predict_proba(forest, part.astype(np.float64)), expected)
    assert ff.predict_proba(forest, part[:0]).shape == (0, N_CLASSES)
    with pytest.raises(ValueError):
        ff.predict_proba(forest, part[:, :-1])


def test_missing_values_follow_sklearn(data):
    X, y, pixels = data
    rng = np.random.default_rng(1)
    with_nan = X.copy()
    with_nan[rng.random(X.shape) < 0.05] = np.nan
    test = pixels[:5000].copy()
    test[rng.random(test.shape) < 0.1] = np.nan
    for train in (X, with_nan):  # NaN unseen in training: the child with most samples
        estimator = RandomForestClassifier(10, random_state=0).fit(train, y)
        _check_same(estimator, ff.predict_proba(ff.compile_forest(estimator), test), test)


def test_standard_scaler_is_folded(data):
    X, y, pixels = data
    pipeline = make_pipeline(StandardScaler(), RandomForestClassifier(10, random_state=0))
    pipeline.fit(X, y)
    forest = ff.compile_forest(pipeline)
    assert forest is not None
    inner = forest.nodes[:, 0] >= 0
    features = forest.nodes[inner, 0] & ((1 << (forest.shift - 1)) - 1)
    raw = forest.nodes[inner, 1].view(np.float32)
    finite = np.isfinite(raw)
    test = _at_thresholds(pixels[:6000], (features[finite], raw[finite]))
    _check_same(pipeline, ff.predict_proba(forest, test), test)


def test_unsupported_estimators_give_none(data):
    X, y, _ = data
    small_X, small_y = X[:300, :10], y[:300]
    assert ff.compile_forest(LogisticRegression(max_iter=1000).fit(small_X, small_y)) is None
    assert ff.compile_forest(HistGradientBoostingClassifier(max_iter=2).fit(small_X, small_y)
                             ) is None
    assert ff.compile_forest(RandomForestRegressor(2).fit(small_X, small_y)) is None
    assert ff.compile_forest(RandomForestClassifier(2)) is None  # not fitted
    two_outputs = np.stack([small_y, small_y[::-1]], axis=1)
    assert ff.compile_forest(RandomForestClassifier(2).fit(small_X, two_outputs)) is None
    pca = make_pipeline(PCA(5), RandomForestClassifier(2)).fit(small_X, small_y)
    assert ff.compile_forest(pca) is None


def test_concurrent_calls_from_threads(fitted):
    """As dask worker threads do: several calls at once, each with its share of threads."""
    from concurrent.futures import ThreadPoolExecutor

    estimator, pixels = fitted
    forest = ff.compile_forest(estimator)
    parts = np.array_split(pixels[:8000], 8)
    expected = [ff.predict_proba(forest, part) for part in parts]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda part: ff.predict_proba(forest, part, n_threads=1), parts))
    for result, reference in zip(results, expected):
        np.testing.assert_array_equal(result, reference)


@pytest.mark.parametrize(("n_features", "n_classes"), [(2, 12), (60, 6)])
def test_pure_leaves_add_their_class_without_their_row(n_features, n_classes):
    # a leaf of one class carries 1 + its class in its key; the sums stay scikit-learn's,
    # bit for bit, also where the classes need more bits than the feature indices
    rng = np.random.default_rng(5)
    X = rng.normal(size=(4000, n_features)).astype(np.float32)
    y = np.digitize(X[:, 0] + 0.3 * X[:, 1], np.linspace(-2, 2, n_classes - 1))
    noise = rng.random(len(y)) < 0.1
    y[noise] = rng.integers(0, n_classes, noise.sum())
    estimator = RandomForestClassifier(10, min_samples_leaf=2, random_state=6)
    estimator.fit(X[:2000], y[:2000])
    forest = ff.compile_forest(estimator)
    assert (1 << forest.shift) > n_classes
    leaves = forest.nodes[:, 0] < 0
    tree_of_node = np.repeat(np.arange(forest.n_trees),
                             np.diff(np.append(forest.roots, len(forest.nodes))))
    keys = forest.nodes[leaves, 0]
    rows = forest.leaf_base[tree_of_node[leaves]] + ~(keys >> forest.shift)
    codes = keys & ((1 << forest.shift) - 1)
    pure = forest.values.max(axis=1) == 1.0
    assert 0 < pure.mean() < 1
    np.testing.assert_array_equal(codes > 0, pure[rows])
    np.testing.assert_array_equal(codes[codes > 0] - 1, forest.values[rows[codes > 0]].argmax(1))
    for kernel in ("simd", "scalar"):
        proba = ff._predict(forest, ff._as_pixels(X[2000:], n_features), kernel)
        np.testing.assert_array_equal(proba, estimator.predict_proba(X[2000:]))


def test_avx2_gathers_are_asked_for_only_on_avx2_cpus_without_avx512(monkeypatch):
    from llvmlite import binding
    from numba.core import config

    monkeypatch.setattr(config, "CPU_NAME", None)
    monkeypatch.setattr(config, "CPU_FEATURES", None)
    for features, expected in (({"avx2": True, "avx512f": False}, True),
                               ({"avx2": True, "avx512f": True}, False),
                               ({"avx2": False}, False), ({"neon": True}, False)):
        monkeypatch.setattr(binding, "get_host_cpu_features", lambda f=features: f)
        assert ff._avx2_gathers() is expected
    monkeypatch.setattr(config, "CPU_NAME", "generic")  # a portable target: LLVM's own gathers
    assert ff._avx2_gathers() is False
