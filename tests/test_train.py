"""Training one model per (region, run) on the dask cluster, saved with its metadata."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from sklearn.pipeline import Pipeline

from geoclass.api import classify, load_model, model_path, read_samples, train
from geoclass.config import Models
from geoclass.errors import ConfigError, InputError
from geoclass.models import make_classifier
from geoclass.views.cube import open_cube

from .conftest import config_of


def test_registry_defaults_dotted_paths_and_standardization():
    default = make_classifier(Models(), seed=3)
    assert type(default).__name__ == "LGBMClassifier"
    assert (default.n_estimators, default.num_leaves, default.learning_rate,
            default.colsample_bytree, default.subsample, default.random_state,
            default.n_jobs) == (100, 15, 0.2, 0.3, 0.7, 3, 1)
    rf = make_classifier(Models(classifier="extra_trees"), seed=3)
    assert (rf.n_estimators, rf.max_depth, rf.min_samples_leaf, rf.random_state) == (100, 25, 5, 3)
    svm = make_classifier(Models(classifier="svm"))
    assert isinstance(svm, Pipeline) and svm.steps[-1][1].probability
    knn = make_classifier(Models(classifier="sklearn.neighbors.KNeighborsClassifier",
                                 params={"n_neighbors": 3}, standardization=True))
    assert isinstance(knn, Pipeline) and knn.steps[-1][1].n_neighbors == 3
    with pytest.raises(ConfigError, match="unknown 'forest'"):
        make_classifier(Models(classifier="forest"))
    with pytest.raises(ConfigError, match="max_deep"):
        make_classifier(Models(params={"max_deep": 3}))


@pytest.fixture(scope="module")
def trained(scene_template, tmp_path_factory, client):
    target = tmp_path_factory.mktemp("trained") / "scene"
    shutil.copytree(scene_template.parent, target)
    config = config_of(target / "config.yaml", chain={"runs": 2},
                       models={"params": {"n_estimators": 20},
                               "cross_validation": {"parameters": {"max_depth": [2, 25]},
                                                    "folds": 3}})
    return config, train(config)


def test_one_model_per_region_and_run_with_metadata(trained):
    config, paths = trained
    assert set(paths) == {(1, 0), (2, 0), (1, 1), (2, 1)}
    cube = open_cube(config.chain.output_path / "cubes" / "T31TCJ.zarr")
    for (region, run), path in paths.items():
        assert path == model_path(config, region, run) and path.exists()
        model = load_model(path)
        assert (model.region, model.run) == (region, run)
        assert model.features == list(cube["feature"].values)
        learn = read_samples(config, run)
        assert model.classes == sorted(learn.loc[learn.region == region, "code"].unique())
        assert model.estimator.n_estimators == 20
        assert model.search["best_params"]["max_depth"] in (2, 25)
        assert model.versions["scikit-learn"]
        model.check_features(list(cube["feature"].values))


def test_models_differ_by_region_and_are_reproducible(trained, client):
    config, paths = trained
    learn = read_samples(config, 0)
    x = learn[load_model(paths[(1, 0)]).features].to_numpy(np.float32)[:300]
    p1 = load_model(paths[(1, 0)]).estimator.predict_proba(x)
    p2 = load_model(paths[(2, 0)]).estimator.predict_proba(x)
    assert not np.allclose(p1, p2)
    again = train(config, force=True)
    np.testing.assert_array_equal(p1, load_model(again[(1, 0)]).estimator.predict_proba(x))


def test_unchanged_training_is_skipped(trained):
    config, paths = trained
    stamp = paths[(1, 0)].stat().st_mtime_ns
    train(config)
    assert paths[(1, 0)].stat().st_mtime_ns == stamp


def test_features_that_do_not_match_are_a_clear_error(trained):
    _, paths = trained
    model = load_model(paths[(1, 0)])
    with pytest.raises(InputError, match="do not match"):
        model.check_features(model.features[:-1])
    with pytest.raises(InputError, match="no such model"):
        load_model(paths[(1, 0)].with_name("model_9_seed_0.joblib"))


def test_a_replaced_model_file_is_refused_naming_the_file(trained):
    """A model file that is not the one training wrote (its SHA-256 differs from the
    manifest's) is never unpickled: loading it, or classifying with it, stops with its path."""
    config, paths = trained
    target, other = paths[(1, 0)], paths[(2, 0)]
    original = target.read_bytes()
    try:
        target.write_bytes(other.read_bytes())  # a valid model, but not this one
        for load in (lambda: load_model(target),  # the hash from the run's manifest
                     lambda: load_model(target, paths.sha256[(1, 0)])):
            with pytest.raises(InputError, match="changed after training") as caught:
                load()
            assert str(target) in str(caught.value)
        with pytest.raises(InputError, match="changed after training") as caught:
            classify(config, force=True)
        assert str(target) in str(caught.value)
    finally:
        target.write_bytes(original)
    assert load_model(target).region == 1


def test_lightgbm_parameters_are_checked_before_any_fit():
    from geoclass.models import classifier_problems

    assert classifier_problems(Models()) == []
    assert classifier_problems(Models(params={"num_leaves": 1})) == [
        "models.params: Check failed: (num_leaves) > (1)"]
    assert classifier_problems(Models(params={"colsample_bytree": 2})) == [
        "models.params: Check failed: (feature_fraction) <= (1.0)"]


def test_models_are_saved_with_their_fast_predictor(tmp_path, monkeypatch):
    """The compiled predictor is saved with the model and loaded as it is; one made by
    another layout of the kernels is compiled again; fast=False drops it."""
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    from geoclass.kernels import fastboost, fastforest
    from geoclass.models import trained

    X, y = make_classification(400, 8, n_classes=3, n_informative=5, random_state=0)
    X = X.astype(np.float32)
    forest = RandomForestClassifier(10, random_state=0).fit(X, y)
    lgbm = pytest.importorskip("lightgbm").LGBMClassifier(
        n_estimators=10, num_leaves=7, verbose=-1).fit(X, y)
    paths = {}
    for name, estimator in (("rf", forest), ("lgbm", lgbm)):
        paths[name] = tmp_path / f"{name}.joblib"
        trained.save_model(trained.TrainedModel(estimator, [f"f{i}" for i in range(8)],
                                                [0, 1, 2], 1, 0, "hash"), paths[name])

    def no_compile(*_):
        raise AssertionError("compiled again")

    with monkeypatch.context() as patch:
        patch.setattr(fastforest, "compile_forest", no_compile)
        patch.setattr(fastboost, "compile_boosting", no_compile)
        rf, boost = load_model(paths["rf"]), load_model(paths["lgbm"])
    assert isinstance(rf.compiled, fastforest.CompiledForest)
    assert isinstance(boost.compiled, fastboost.CompiledBoosting)
    np.testing.assert_array_equal(fastforest.predict_proba(rf.compiled, X),
                                  forest.predict_proba(X))
    assert np.abs(fastboost.predict_proba(boost.compiled, X) - lgbm.predict_proba(X)).max() \
        < 1e-6
    assert load_model(paths["rf"], fast=False).compiled is None
    monkeypatch.setattr(trained, "COMPILED_FORMAT", (-1, -1))  # kernels of another layout
    compiled = []
    real = fastforest.compile_forest
    monkeypatch.setattr(fastforest, "compile_forest",
                        lambda estimator: compiled.append(1) or real(estimator))
    again = load_model(paths["rf"])
    assert compiled == [1] and again.compiled_format == (-1, -1)
    np.testing.assert_array_equal(fastforest.predict_proba(again.compiled, X),
                                  forest.predict_proba(X))
