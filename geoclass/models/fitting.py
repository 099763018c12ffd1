"""How one (region, run) model is fitted on the cluster, by what the estimator allows:

- in one task (any estimator), on the worker that reads the region's table;
- a forest's trees spread over every worker thread (joblib's dask backend, from inside that
  task): the trees are those of a one-process fit (scikit-learn draws each tree's seed before
  building them), so the model does not depend on the number of workers;
- `partial_fit` estimators (SGD, MLP, naive Bayes...) streamed over the table's row groups with
  `dask_ml.wrappers.Incremental`, when the table is too big for one worker;
- XGBoost and LightGBM through their own dask interfaces (`xgboost.dask`,
  `lightgbm.DaskLGBMClassifier`), data partitioned over the workers;
- a hyper-parameter search with `dask_ml.model_selection.GridSearchCV`: each (candidate, fold)
  fit is a task, the folds are cut once and shared by all candidates, the table is read on a
  worker and never reaches the driver.

A region's table is read with `read_table` (numpy) or `dask_table` (dask arrays, one block per
parquet row group)."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

import dask
import dask.array as da
import joblib
import numpy as np
from dask_ml.model_selection import GridSearchCV
from dask_ml.preprocessing import StandardScaler as DaskStandardScaler
from dask_ml.wrappers import Incremental
from distributed import get_client, get_worker
from sklearn.ensemble._forest import BaseForest
from sklearn.model_selection import GroupKFold, StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from geoclass import fs
from geoclass.config import Models
from geoclass.models import boosting, make_classifier

log = logging.getLogger(__name__)

# A table above this many bytes takes the distributed paths under `models.distributed: auto`
DISTRIBUTED_BYTES = 512 * 2**20


# --- reading a region's table -----------------------------------------------------------------


def read_table(path: str | Path, features: list[str]):
    """(X float32 (n, F), class codes (n,), polygon of each sample (n,)) of one table, read
    row group by row group into X (peak memory: X and one row group, not two copies)."""
    file = fs.parquet_file(path)
    meta = file.metadata
    x = np.empty((meta.num_rows, len(features)), np.float32)
    codes, groups, start = [], [], 0
    for i in range(meta.num_row_groups):
        part, code, piece = _row_group(str(path), i, features, file)
        x[start:start + len(part)] = part
        codes.append(code)
        groups.append(piece)
        start += len(part)
    if not codes:
        return x, np.empty(0, np.int64), np.empty(0, np.int64)
    return x, np.concatenate(codes), np.concatenate(groups)


def dask_table(path: str | Path, features: list[str]):
    """The same as dask arrays, one block per row group of the file, read on the workers (the
    row counts come from the file's metadata: nothing is read here)."""
    path = str(path)
    groups = fs.parquet_file(path).metadata
    sizes = [groups.row_group(i).num_rows for i in range(groups.num_row_groups)]
    read = dask.delayed(_row_group, pure=True)
    blocks = [read(path, i, features) for i in range(len(sizes))]
    x = da.concatenate([da.from_delayed(b[0], (n, len(features)), np.float32)
                        for b, n in zip(blocks, sizes)])
    y, g = (da.concatenate([da.from_delayed(b[k], (n,), np.int64)
                            for b, n in zip(blocks, sizes)]) for k in (1, 2))
    return x, y, g


def _row_group(path: str, index: int, features: list[str], file=None):
    """(X, codes, polygons) of one row group."""
    file = file or fs.parquet_file(path)
    table = file.read_row_group(index, columns=[*features, "code", "piece"])
    x = np.empty((table.num_rows, len(features)), np.float32)
    for j, name in enumerate(features):
        x[:, j] = table.column(name).to_numpy()
    return (x, table.column("code").to_numpy().astype(np.int64),
            table.column("piece").to_numpy().astype(np.int64))


# --- the estimator --------------------------------------------------------------------------


def final_step(estimator):
    return estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator


def is_forest(estimator) -> bool:
    return isinstance(final_step(estimator), BaseForest)


def is_incremental(estimator) -> bool:
    return hasattr(final_step(estimator), "partial_fit")


def dask_boosting(estimator) -> str | None:
    """'xgboost' / 'lightgbm' when the estimator has a dask interface, else None."""
    final = final_step(estimator)
    if isinstance(final, boosting.XGBoostClassifier):
        return "xgboost"
    if boosting.is_lightgbm(final):
        return "lightgbm"
    return None


def group_params(estimator, groups) -> dict:
    """{"groups": the polygon of each sample} (with the step's prefix in a Pipeline) for an
    estimator whose `fit` takes them (XGBoostClassifier: early stopping on a grouped split),
    else {}."""
    if groups is None:
        return {}
    prefix = f"{estimator.steps[-1][0]}__" if isinstance(estimator, Pipeline) else ""
    if "groups" not in inspect.signature(final_step(estimator).fit).parameters:
        return {}
    return {f"{prefix}groups": groups}


def name_features(estimator, features: list[str] | None) -> None:
    """Estimators that read the feature names (the deep temporal models rebuild (date,
    channel) from them) get them before fit."""
    if features is None:
        return
    for key in estimator.get_params():
        if key == "feature_names" or key.endswith("__feature_names"):
            estimator.set_params(**{key: list(features)})


def new_estimator(models: Models, seed: int, features: list[str] | None,
                  params: dict | None = None):
    estimator = make_classifier(models, seed)
    name_features(estimator, features)
    if params:
        estimator.set_params(**params)
    return estimator


# --- fitting ----------------------------------------------------------------------------------


def fit_in_task(x, y, groups, models: Models, seed: int, features: list[str] | None = None,
                params: dict | None = None, spread: bool = False):
    """Fit one estimator in this process (a dask task, or a plain call); `spread`: a forest's
    trees are built by tasks on every worker thread (from inside a dask task only)."""
    estimator = new_estimator(models, seed, features, params)
    fit_args = group_params(estimator, groups)
    if not (spread and is_forest(estimator) and _in_worker()):
        return estimator.fit(x, y, **fit_args)
    prefix = f"{estimator.steps[-1][0]}__" if isinstance(estimator, Pipeline) else ""
    estimator.set_params(**{f"{prefix}n_jobs": -1})
    # joblib's dask backend takes this worker's client and secedes while the trees build (X
    # is scattered once; the other workers fetch it when they take tree tasks)
    with joblib.parallel_backend("dask"):
        estimator.fit(x, y, **fit_args)
    estimator.set_params(**{f"{prefix}n_jobs": 1})  # predicting is the map kernel's work
    return estimator


def _in_worker() -> bool:
    try:
        get_worker()
    except ValueError:
        return False
    return True


def fit_incremental(path: Path, features: list[str], classes: list[int], models: Models,
                    seed: int):
    """Stream the table's row groups through the estimator's `partial_fit` on the cluster
    (dask_ml.wrappers.Incremental; blocks in a seeded random order, one pass per
    `models.params.max_iter`-free epoch); standardization, if any, fitted on the dask arrays
    first. Returns the fitted estimator (small: a linear model or an MLP)."""
    estimator = new_estimator(models, seed, features)
    x, y, _ = dask_table(path, features)
    scaler = None
    if isinstance(estimator, Pipeline):
        scaler = DaskStandardScaler().fit(x)
        x = scaler.transform(x)
    wrapper = Incremental(final_step(estimator), shuffle_blocks=True, random_state=seed)
    wrapper.fit(x, y, classes=np.asarray(classes))
    fitted = wrapper.estimator_
    if scaler is None:
        return fitted
    plain = StandardScaler()
    plain.mean_, plain.scale_ = np.asarray(scaler.mean_), np.asarray(scaler.scale_)
    plain.var_, plain.n_features_in_ = np.asarray(scaler.var_), x.shape[1]
    plain.n_samples_seen_ = int(x.shape[0])
    return make_pipeline(plain, fitted)


def fit_boosting_dask(path: Path, features: list[str], classes: list[int], models: Models,
                      seed: int):
    """XGBoost or LightGBM trained by their dask interfaces over the table's row groups,
    returned as the same local estimator the one-task fit gives."""
    estimator = new_estimator(models, seed, features)
    x, y, groups = dask_table(path, features)
    final = final_step(estimator)
    if dask_boosting(estimator) == "xgboost":
        fitted = final.fit_dask(get_client(), x, y, groups, np.asarray(classes))
    else:
        import lightgbm  # noqa: PLC0415 - optional dependency

        params = {k: v for k, v in final.get_params().items() if k != "n_jobs"}
        dask_model = lightgbm.DaskLGBMClassifier(client=get_client(), **params)
        fitted = dask_model.fit(x, y).to_local()
    if isinstance(estimator, Pipeline):
        raise ValueError("models.standardization with a distributed boosting fit: trees need "
                         "no standardization, set it to false")
    return fitted


def search_params(path: Path, features: list[str], models: Models, seed: int):
    """The best parameters of `models.cross_validation` for one table, by a dask-ml grid
    search on the cluster (each (candidate, fold) fit a task; folds grouped by polygon if
    asked); returns (best parameters, summary)."""
    cv = models.cross_validation
    estimator = new_estimator(models, seed, features)
    prefix = f"{estimator.steps[-1][0]}__" if isinstance(estimator, Pipeline) else ""
    grid = {f"{prefix}{k}": v for k, v in cv.parameters.items()}
    folds = GroupKFold(cv.folds) if cv.grouped else StratifiedKFold(cv.folds, shuffle=True,
                                                                    random_state=seed)
    table = dask.delayed(read_table, pure=True)(str(path), list(features))
    x, y, groups = table[0], table[1], table[2]
    try:
        scheduler = get_client()
    except ValueError:
        scheduler = None
    search = GridSearchCV(estimator, grid, cv=folds, refit=False, scheduler=scheduler,
                          cache_cv=True)
    search.fit(x, y, groups=groups if cv.grouped else None)
    results = search.cv_results_  # refit=False: the best as scikit-learn picks it (rank 1)
    index = int(np.argmin(results["rank_test_score"]))
    best = dict(results["params"][index])
    summary = {"best_params": {k.removeprefix(prefix): v for k, v in best.items()},
               "best_score": float(results["mean_test_score"][index]),
               "candidates": len(search.cv_results_["params"]), "folds": cv.folds}
    return best, summary


def table_bytes(rows: int, features: int) -> int:
    return rows * features * 4


def choose_path(models: Models, rows: int, features: int, jobs: int, threads: int) -> str:
    """How to fit one (region, run): 'task', 'spread' (a forest's trees over the workers),
    'incremental' or 'boosting' (a dask interface), by `models.distributed` (auto: the
    distributed paths for tables above DISTRIBUTED_BYTES; a forest spreads its trees too
    when there are fewer models than worker threads)."""
    estimator = make_classifier(models)
    mode = models.distributed
    if mode is False:
        return "task"
    big = mode is True or table_bytes(rows, features) > DISTRIBUTED_BYTES
    if is_forest(estimator):
        return "spread" if big or jobs < threads else "task"
    if dask_boosting(estimator) and big:
        return "boosting"
    if is_incremental(estimator) and big:
        return "incremental"
    return "task"

