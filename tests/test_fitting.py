"""Fitting on the cluster (issue 18): a forest's trees spread over the workers, the dask-ml
grid search, incremental fits over the table's row groups, the boosting libraries' dask
interfaces; the learning tables as one parquet file per (region, run)."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster, get_task_stream
from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import Pipeline

from geoclass.api import learn_table, predict_table, read_samples, sample
from geoclass.config import Models
from geoclass.kernels import fastboost
from geoclass.models import fitting
from geoclass.store import SAMPLE_META, RunStore

from .conftest import config_of

FEATURES = [f"f{i}" for i in range(12)]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """A learning table as the samples step writes it: 4 classes coded 3, 5, 8, 11; pixels
    of 40-pixel polygons; row groups of 500 rows."""
    x, y = make_classification(2400, len(FEATURES), n_informative=8, n_classes=4,
                               random_state=0)
    frame = pd.DataFrame(x.astype(np.float32), columns=FEATURES)
    frame["code"] = np.array([3, 5, 8, 11])[y]
    frame["piece"] = np.arange(len(frame)) // 40
    path = tmp_path_factory.mktemp("fitting") / "region_1.parquet"
    frame.to_parquet(path, index=False, row_group_size=500)
    return path


@pytest.fixture(scope="module")
def two_workers():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as c:
        yield c


def test_read_table_and_dask_table_agree(table):
    x, y, groups = fitting.read_table(table, FEATURES)
    dx, dy, dg = fitting.dask_table(table, FEATURES)
    assert dx.numblocks[0] == 5  # one block per row group
    np.testing.assert_array_equal(x, dx.compute(scheduler="sync"))
    np.testing.assert_array_equal(y, dy.compute(scheduler="sync"))
    np.testing.assert_array_equal(groups, dg.compute(scheduler="sync"))


def test_forest_spread_over_workers_gives_the_one_task_model(two_workers):
    x, y = make_classification(20000, 20, n_informative=10, n_classes=4, random_state=1)
    x, groups = x.astype(np.float32), np.arange(len(x)) // 40
    models = Models(classifier="extra_trees",
                    params={"n_estimators": 16, "max_features": None})  # trees of ~0.2 s
    alone = fitting.fit_in_task(x, y, groups, models, 7)
    with get_task_stream(two_workers) as stream:
        spread = two_workers.submit(fitting.fit_in_task, x, y, groups, models, 7, None, None,
                                    True, pure=False).result()
    np.testing.assert_array_equal(alone.predict_proba(x), spread.predict_proba(x))
    assert spread.n_jobs == 1
    # the trees are built by tasks of their own, which the scheduler may place on any worker
    # (which ones is its choice, by load and data locality: bench_train.py shows both busy)
    tree_tasks = [t for t in stream.data if "fit_in_task" not in t["key"]]
    assert len(tree_tasks) >= 2, "the trees were built by cluster tasks"
    assert {t["worker"] for t in tree_tasks} <= set(two_workers.scheduler_info()["workers"])


def test_grid_search_on_the_cluster_finds_scikit_learns_best(table, two_workers):
    models = Models(classifier="extra_trees", params={"n_estimators": 10},
                    cross_validation={"parameters": {"max_depth": [2, 6, None],
                                                     "min_samples_leaf": [1, 20]},
                                      "folds": 3})
    best, summary = fitting.search_params(table, FEATURES, models, 4)
    x, y, groups = fitting.read_table(table, FEATURES)
    reference = GridSearchCV(fitting.new_estimator(models, 4, FEATURES),
                             {"max_depth": [2, 6, None], "min_samples_leaf": [1, 20]},
                             cv=GroupKFold(3)).fit(x, y, groups=groups)
    assert best == reference.best_params_
    assert summary["best_score"] == pytest.approx(reference.best_score_)
    assert summary["candidates"] == 6 and summary["folds"] == 3


def test_partial_fit_estimators_stream_the_row_groups(table, two_workers):
    models = Models(classifier="sklearn.linear_model.SGDClassifier",
                    params={"loss": "log_loss"}, standardization=True, distributed=True)
    assert fitting.choose_path(models, 2400, len(FEATURES), 4, 2) == "incremental"
    fitted = fitting.fit_incremental(table, FEATURES, [3, 5, 8, 11], models, 1)
    assert isinstance(fitted, Pipeline)
    x, y, _ = fitting.read_table(table, FEATURES)
    np.testing.assert_allclose(fitted[0].mean_, x.mean(axis=0), rtol=1e-4, atol=1e-5)
    assert list(fitted.classes_) == [3, 5, 8, 11]
    assert (fitted.predict(x) == y).mean() > 0.5  # 4 classes: chance is 0.25


def test_paths_chosen_by_size_and_setting():
    forest = Models(classifier="extra_trees")
    sgd = Models(classifier="sklearn.linear_model.SGDClassifier")
    assert fitting.choose_path(forest, 1000, 10, jobs=4, threads=2) == "task"
    assert fitting.choose_path(forest, 1000, 10, jobs=1, threads=2) == "spread"
    assert fitting.choose_path(forest, 10**8, 10, jobs=4, threads=2) == "spread"
    assert fitting.choose_path(sgd, 1000, 10, jobs=1, threads=2) == "task"
    assert fitting.choose_path(sgd, 10**8, 10, jobs=1, threads=2) == "incremental"
    assert fitting.choose_path(Models(distributed=False), 10**8, 10, 1, 2) == "task"
    # the default, LightGBM: one task (one thread, seeded: the same model on any cluster),
    # its dask interface for tables above 512 MiB
    assert fitting.choose_path(Models(), 1000, 10, jobs=1, threads=2) == "task"
    assert fitting.choose_path(Models(), 10**8, 10, jobs=1, threads=2) == "boosting"


@pytest.mark.skipif(importlib.util.find_spec("xgboost") is None, reason="XGBoost not installed")
def test_xgboost_dask_interface(table, two_workers):
    models = Models(classifier="xgboost", params={"n_estimators": 30,
                                                  "early_stopping_rounds": 5},
                    distributed=True)
    assert fitting.choose_path(models, 2400, len(FEATURES), 1, 2) == "boosting"
    fitted = fitting.fit_boosting_dask(table, FEATURES, [3, 5, 8, 11], models, 2)
    x, y, _ = fitting.read_table(table, FEATURES)
    assert list(fitted.classes_) == [3, 5, 8, 11]
    assert fitted.best_iteration_ is not None and fitted.best_iteration_ < 30
    assert (fitted.predict(x) == y).mean() > 0.8
    compiled = fastboost.compile_boosting(fitted)
    assert compiled is not None
    np.testing.assert_allclose(fastboost.predict_proba(compiled, x), fitted.predict_proba(x),
                               atol=1e-5)


def test_learning_tables_are_one_file_per_region_and_run(scene_template, tmp_path, client):
    shutil.copytree(scene_template.parent, tmp_path / "scene")
    config = config_of(tmp_path / "scene" / "config.yaml", chain={"runs": 2})
    sample(config)
    store = RunStore(config.chain.output_path)
    for run in range(2):
        parts = store.learn_parts(run)
        assert sorted(parts) == [1, 2]
        whole = read_samples(config, run)
        pieces = [pd.read_parquet(p) for p in parts.values()]
        assert all((p["region"] == r).all() for r, p in zip(parts, pieces))
        pd.testing.assert_frame_equal(whole, pd.concat(pieces, ignore_index=True))
        assert list(whole.columns[:len(SAMPLE_META)]) == SAMPLE_META
        validation = read_samples(config, run, "validation")
        assert list(validation.columns) == SAMPLE_META  # no feature in the driver's table
        x, codes, pieces_ = learn_table(config, 2, run)  # lazy, as the train step reads it
        frame = pd.read_parquet(parts[2])
        np.testing.assert_array_equal(codes.compute(), frame["code"])
        np.testing.assert_array_equal(x.compute()[:, 0], frame[frame.columns[len(SAMPLE_META)]])


@pytest.mark.skipif(importlib.util.find_spec("lightgbm") is None,
                    reason="LightGBM not installed")
def test_lightgbm_dask_interface(table, two_workers):
    models = Models(classifier="lightgbm", params={"n_estimators": 30}, distributed=True)
    fitted = fitting.fit_boosting_dask(table, FEATURES, [3, 5, 8, 11], models, 2)
    x, y, _ = fitting.read_table(table, FEATURES)
    assert type(fitted).__name__ == "LGBMClassifier"  # the local model, as one task gives
    assert list(fitted.classes_) == [3, 5, 8, 11]
    assert (fitted.predict(x) == y).mean() > 0.8
    np.testing.assert_allclose(fastboost.predict_proba(fastboost.compile_boosting(fitted), x),
                               fitted.predict_proba(x), atol=1e-5)


def test_predict_table_runs_block_by_block_on_the_cluster(table, two_workers):
    """api.predict_table (dask-ml's ParallelPostFit): the estimator's own predictions of a
    lazy table, one task per row group, on the workers."""
    from sklearn.linear_model import LogisticRegression

    x, y, _ = fitting.read_table(table, FEATURES)
    fitted = LogisticRegression(max_iter=500).fit(x, y)
    dx, _, _ = fitting.dask_table(table, FEATURES)
    labels, proba = predict_table(fitted, dx), predict_table(fitted, dx, proba=True)
    assert labels.numblocks[0] == 5  # lazy, one block per row group
    got = two_workers.compute(labels).result()
    np.testing.assert_array_equal(got, fitted.predict(x))
    np.testing.assert_allclose(two_workers.compute(proba).result(), fitted.predict_proba(x),
                               rtol=1e-6)
