"""The train step: one model per (region, run), fitted as tasks on the dask cluster, saved
with the metadata that prediction checks (features, classes, region, run, config hash,
versions) and recorded in the step's manifest with each file's SHA-256."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow
import sklearn
from distributed import get_client
from sklearn.model_selection import GridSearchCV as SklearnGridSearchCV
from sklearn.model_selection import GroupKFold, StratifiedKFold
from sklearn.pipeline import Pipeline

from geoclass import fs, lazy
from geoclass.cluster import compute
from geoclass.config import Config, Models
from geoclass.errors import InputError
from geoclass.memory import fit_problem_of, worker_room
from geoclass.models import make_classifier
from geoclass.models.fitting import (
    choose_path,
    fit_boosting_dask,
    fit_in_task,
    fit_incremental,
    new_estimator,
    read_table,
    search_params,
)
from geoclass.models.trained import TrainedModel, save_model
from geoclass.steps import autocontext
from geoclass.store import SAMPLE_META, RunStore
from geoclass.store import Models as ModelFiles

log = logging.getLogger(__name__)

AUTOCONTEXT_KEYS = {"enable_autocontext", "autocontext_iterations", "autocontext_superpixel_size",
                    "autocontext_compactness", "autocontext_features"}


# --- fitting one model -----------------------------------------------------------------------


def model_seed(seed: int, region: int, run: int) -> int:
    return int(np.random.SeedSequence([seed, run, region]).generate_state(1)[0])


def fit_model(x: np.ndarray, y: np.ndarray, groups: np.ndarray, models: Models, seed: int,
              features: list[str] | None = None):
    """Fit one estimator in this process (with the configured grid search, scikit-learn's,
    folds grouped by polygon if asked); returns (estimator, search summary or None). The
    chain itself fits on the cluster (`run`); this is the in-memory path auto-context and
    notebooks use."""
    cv = models.cross_validation
    if not cv or not cv.parameters:
        return fit_in_task(x, y, groups, models, seed, features), None
    estimator = new_estimator(models, seed, features)
    prefix = f"{estimator.steps[-1][0]}__" if isinstance(estimator, Pipeline) else ""
    grid = {f"{prefix}{k}": v for k, v in cv.parameters.items()}
    folds = GroupKFold(cv.folds) if cv.grouped else StratifiedKFold(cv.folds, shuffle=True,
                                                                      random_state=seed)
    search = SklearnGridSearchCV(estimator, grid, cv=folds, n_jobs=1)
    search.fit(x, y, groups=groups if cv.grouped else None)
    summary = {"best_params": {k.removeprefix(prefix): v
                               for k, v in search.best_params_.items()},
               "best_score": float(search.best_score_)}
    return search.best_estimator_, summary


def _versions() -> dict[str, str]:
    return {"geoclass": version("geoclass"), "scikit-learn": sklearn.__version__,
            "numpy": np.__version__}


# --- the step -------------------------------------------------------------------------------


def settings(config: Config) -> dict:
    return {"models": config.section_hash("models"), "seed": config.chain.random_seed,
            "autocontext": config.chain.model_dump(mode="json", include=AUTOCONTEXT_KEYS)}


def outputs(config: Config, store: RunStore, record) -> list[Path]:
    return [store.root / m["file"] for m in (record or {}).get("models", [])] or [
        store.root / "model" / "missing"]


def record(models: ModelFiles) -> dict:
    """The models' keys, files (relative to the run) and SHA-256, for the later steps."""
    return {"models": [{"region": region, "run": run, "file": str(path.relative_to(
        path.parents[1])), "sha256": models.sha256[(region, run)]}
        for (region, run), path in sorted(models.items())]}


@dataclass(frozen=True)
class LearnPart:
    """The learning table of one (region, run), as the driver knows it: its file, row count,
    classes and features (read from the file's metadata and code column only)."""

    region: int
    run: int
    path: Path
    rows: int
    classes: tuple[int, ...]
    features: tuple[str, ...]

    def load(self) -> pd.DataFrame:
        return fs.read_parquet(self.path)


def table_features(path) -> list[str]:
    """The feature columns of a learning table, from its schema (nothing else is read)."""
    return [c for c in fs.parquet_file(path).schema_arrow.names if c not in SAMPLE_META]


def learning_parts(store: RunStore, runs: int) -> list[LearnPart]:
    """Every (region, run) to fit, without reading the samples' features."""
    parts = []
    for run in range(runs):
        for region, path in store.learn_parts(run).items():
            features = table_features(path)
            codes = fs.read_parquet(path, columns=["code"])["code"]
            classes = tuple(sorted(int(c) for c in codes.unique()))
            if len(classes) < 2:
                log.warning("region %s run %s: fewer than 2 classes in the samples; "
                            "a constant model is used", region, run)
            parts.append(LearnPart(region, run, path, len(codes), classes, tuple(features)))
    return parts


def learning_jobs(store: RunStore, runs: int):
    """(region, run, samples, features) of every model to fit, the samples in memory (the
    auto-context path)."""
    for part in learning_parts(store, runs):
        yield part.region, part.run, part.load(), list(part.features)


def run(config: Config, store: RunStore, force: bool = False) -> ModelFiles:
    """Fit and save the model of every (region, run) from the stored samples, on the
    cluster (through the auto-context iterations when they are on)."""
    models = ModelFiles()
    if autocontext.enabled(config):
        jobs = list(learning_jobs(store, config.chain.runs))
        jobs, fitted = autocontext.fit_iterations(config, store, jobs, _fitter(config),
                                                  _saver(config, store))
        save = _saver(config, store)
        for job, result in zip(jobs, fitted):
            region, run_number, part, _ = job
            path = store.model(region, run_number)
            models[(region, run_number)] = path
            models.sha256[(region, run_number)] = save(job, result, path)
        del jobs, fitted
        pyarrow.default_memory_pool().release_unused()
        return models
    parts = learning_parts(store, config.chain.runs)
    digests = fit_on_cluster(config, store, parts)
    for part, digest in zip(parts, digests):
        models[(part.region, part.run)] = store.model(part.region, part.run)
        models.sha256[(part.region, part.run)] = digest
    return models


def fit_on_cluster(config: Config, store: RunStore, parts: list[LearnPart]) -> list[str]:
    """Fit and save every part's model on the cluster; returns the files' SHA-256. The
    driver holds no sample: each table is read by the task (or the dask collections) that
    fits it, and the model is saved where it was fitted, but for the small incremental and
    boosting models that dask-ml and the boosting libraries hand back."""
    try:
        client = get_client()
    except ValueError:
        client = None
    threads = sum(client.nthreads().values()) if client else 1
    paths = {p: _choose(config.models, p, len(parts), threads) for p in parts}
    if client is not None:
        _check_fit_memory(client, config, [p for p in parts if paths[p] in ("task", "spread")])
    searched = {p: _search(config, p) for p in parts}
    save = _saver(config, store)
    local = [p for p in parts if paths[p] in ("task", "spread")]
    fit = lazy.delayed(_fit_and_save)
    tasks = [fit(p, config.models, _seed(config, p), searched[p], paths[p] == "spread", save,
                 store.model(p.region, p.run)) for p in local]
    digests = dict(zip(local, compute(*tasks, label=f"fitting {len(tasks)} models")
                       if tasks else ()))
    for part in parts:
        if part in digests:
            continue
        seed = _seed(config, part)
        log.info("region %d run %d: %s fitted %s on the cluster", part.region, part.run,
                 config.models.classifier, "incrementally" if paths[part] == "incremental"
                 else "by its dask interface")
        fit_on = fit_incremental if paths[part] == "incremental" else fit_boosting_dask
        estimator = fit_on(part.path, list(part.features), list(part.classes), config.models,
                           seed)
        digests[part] = save(part, (estimator, searched[part][1]),
                             store.model(part.region, part.run))
    for part in parts:
        log.info("region %d run %d: %s fitted on %d samples (%s)", part.region, part.run,
                 config.models.classifier, part.rows, paths[part])
    return [digests[p] for p in parts]


def _seed(config: Config, part: LearnPart) -> int:
    return model_seed(config.chain.random_seed, part.region, part.run)


def _choose(models: Models, part: LearnPart, jobs: int, threads: int) -> str:
    if len(part.classes) < 2:
        return "task"
    return choose_path(models, part.rows, len(part.features), jobs, threads)


def _search(config: Config, part: LearnPart) -> tuple[dict | None, dict | None]:
    """(best parameters, search summary) of the configured grid search, or (None, None)."""
    cv = config.models.cross_validation
    if not cv or not cv.parameters or len(part.classes) < 2:
        return None, None
    log.info("region %d run %d: grid search of %s on the cluster", part.region, part.run,
             config.models.classifier)
    return search_params(part.path, list(part.features), config.models, _seed(config, part))


def _fit_and_save(part: LearnPart, models: Models, seed: int, searched: tuple, spread: bool,
                  save, path: Path) -> str:
    """A task: read the table, fit (the search's best parameters, if any), save; returns the
    model file's SHA-256."""
    params, summary = searched
    x, y, groups = read_table(part.path, list(part.features))
    estimator = fit_in_task(x, y, groups, models, seed, list(part.features), params, spread)
    del x, y, groups
    return save(part, (estimator, summary), path)


def _saver(config: Config, store: RunStore):
    config_hash = config.section_hash("chain", "sampling", "models")

    def save(job, result: tuple, path: Path) -> str:
        """Save the estimator fitted for `job` (a LearnPart, or the auto-context's (region,
        run, samples, features)) with its metadata; returns its SHA-256."""
        if isinstance(job, LearnPart):
            region, run, classes, features = job.region, job.run, job.classes, job.features
        else:
            region, run, part, features = job
            classes = sorted(int(c) for c in part["code"].unique())
        estimator, search = result
        model = TrainedModel(estimator, list(features), list(classes), region, run,
                             config_hash, _versions(), search)
        return save_model(model, path)

    return save


def _fitter(config: Config):
    def fit_all(jobs) -> list:
        """Fit every in-memory job as a task on the active dask client (data scattered once
        per job); the auto-context path."""
        args = [(part[features].to_numpy(np.float32), part["code"].to_numpy(),
                 part["piece"].to_numpy(), config.models,
                 model_seed(config.chain.random_seed, region, run), features)
                for region, run, part, features in jobs]
        try:
            client = get_client()
        except ValueError:
            return [fit_model(*a) for a in args]
        _check_fit_memory(client, config, [LearnPart(r, n, Path(), len(p), (), tuple(f))
                                           for r, n, p, f in jobs])
        futures = [client.submit(fit_model, *client.scatter(list(a[:3])), *a[3:], pure=False)
                   for a in args]
        return client.gather(futures)

    return fit_all


def _check_fit_memory(client, config: Config, parts: list[LearnPart]) -> None:
    """Refuse, before fitting, models whose samples a worker's memory cannot hold (each
    model is fitted in one task)."""
    limit, footprint = worker_room(client)
    if not limit or not parts:
        return
    params = make_classifier(config.models).get_params()
    params = {k.rsplit("__", 1)[-1]: v for k, v in params.items()}
    problems = [p for part in parts
                if (p := fit_problem_of(part.rows, len(part.features), params, limit,
                                        footprint, f"region {part.region} run {part.run}"))]
    if problems:
        raise InputError(problems)
