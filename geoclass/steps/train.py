"""The train step: one model per (region, run), fitted as tasks on the dask cluster, saved
with the metadata that prediction checks (features, classes, region, run, config hash,
versions) and recorded in the step's manifest with each file's SHA-256."""

from __future__ import annotations

import inspect
import logging
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow
import sklearn
from distributed import get_client
from sklearn.model_selection import GridSearchCV, GroupKFold, StratifiedKFold
from sklearn.pipeline import Pipeline

from geoclass.config import Config, Models
from geoclass.errors import InputError
from geoclass.memory import fit_problem_of, worker_room
from geoclass.models import make_classifier
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


def _name_features(estimator, features: list[str] | None) -> None:
    """Estimators that read the feature names (the deep temporal models rebuild (date,
    channel) from them) get them before fit."""
    if features is None:
        return
    for key in estimator.get_params():
        if key == "feature_names" or key.endswith("__feature_names"):
            estimator.set_params(**{key: list(features)})


def fit_model(x: np.ndarray, y: np.ndarray, groups: np.ndarray, models: Models, seed: int,
              features: list[str] | None = None):
    """Fit one estimator (with the configured grid search, folds grouped by polygon if
    asked); returns (estimator, search summary or None)."""
    estimator = make_classifier(models, seed)
    _name_features(estimator, features)
    cv = models.cross_validation
    if not cv or not cv.parameters:
        return estimator.fit(x, y, **_group_params(estimator, groups)), None
    grid = {(f"{estimator.steps[-1][0]}__{k}" if hasattr(estimator, "steps") else k): v
            for k, v in cv.parameters.items()}
    folds = GroupKFold(cv.folds) if cv.grouped else StratifiedKFold(cv.folds, shuffle=True,
                                                                      random_state=seed)
    search = GridSearchCV(estimator, grid, cv=folds, n_jobs=1)
    search.fit(x, y, groups=groups if cv.grouped else None)
    summary = {"best_params": search.best_params_, "best_score": float(search.best_score_)}
    return search.best_estimator_, summary


def _group_params(estimator, groups) -> dict:
    """{"groups": the polygon of each sample} (with the step's prefix in a Pipeline) for an
    estimator whose `fit` takes them (XGBoostClassifier: early stopping on a grouped split),
    else {}."""
    if groups is None:
        return {}
    prefix, final = "", estimator
    if isinstance(estimator, Pipeline):
        name, final = estimator.steps[-1]
        prefix = f"{name}__"
    if "groups" not in inspect.signature(final.fit).parameters:
        return {}
    return {f"{prefix}groups": groups}


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


def learning_jobs(store: RunStore, runs: int):
    """(region, run, samples, features) of every model to fit."""
    for run in range(runs):
        learn = pd.read_parquet(store.samples(run, "learn"))
        features = [c for c in learn.columns if c not in SAMPLE_META]
        for region, part in learn.groupby("region", sort=True):
            if part["code"].nunique() < 2:
                log.warning("region %s run %s: fewer than 2 classes in the samples; "
                            "a constant model is used", region, run)
            yield int(region), run, part, features


def run(config: Config, store: RunStore, force: bool = False) -> ModelFiles:
    """Fit and save the model of every (region, run) from the stored samples (through the
    auto-context iterations when they are on)."""
    jobs = list(learning_jobs(store, config.chain.runs))
    fit = _fitter(config)
    if autocontext.enabled(config):
        jobs, fitted = autocontext.fit_iterations(config, store, jobs, fit,
                                                  _saver(config, store))
    else:
        fitted = fit(jobs)
    models = ModelFiles()
    save = _saver(config, store)
    for job, result in zip(jobs, fitted):
        region, run_number, part, _ = job
        path = store.model(region, run_number)
        models[(region, run_number)] = path
        models.sha256[(region, run_number)] = save(job, result, path)
        log.info("region %d run %d: %s fitted on %d samples", region, run_number,
                 config.models.classifier, len(part))
    del jobs, fitted
    # Arrow keeps the freed learning tables' memory (hundreds of MB): give it back
    pyarrow.default_memory_pool().release_unused()
    return models


def _saver(config: Config, store: RunStore):
    config_hash = config.section_hash("chain", "sampling", "models")

    def save(job: tuple, result: tuple, path: Path) -> str:
        """Save the estimator fitted for `job` with its metadata; returns its SHA-256."""
        region, run, part, features = job
        estimator, search = result
        classes = sorted(int(c) for c in part["code"].unique())
        model = TrainedModel(estimator, list(features), classes, region, run, config_hash,
                             _versions(), search)
        return save_model(model, path)

    return save


def _fitter(config: Config):
    def fit_all(jobs) -> list:
        """Fit every job as a task on the active dask client (data scattered once per
        job)."""
        args = [(part[features].to_numpy(np.float32), part["code"].to_numpy(),
                 part["piece"].to_numpy(), config.models,
                 model_seed(config.chain.random_seed, region, run), features)
                for region, run, part, features in jobs]
        try:
            client = get_client()
        except ValueError:
            return [fit_model(*a) for a in args]
        _check_fit_memory(client, config, jobs)
        futures = [client.submit(fit_model, *client.scatter(list(a[:3])), *a[3:], pure=False)
                   for a in args]
        return client.gather(futures)

    return fit_all


def _check_fit_memory(client, config: Config, jobs) -> None:
    """Refuse, before fitting, models whose samples a worker's memory cannot hold (each
    model is fitted in one task)."""
    limit, footprint = worker_room(client)
    if not limit:
        return
    params = make_classifier(config.models).get_params()
    params = {k.rsplit("__", 1)[-1]: v for k, v in params.items()}
    problems = [p for region, run, part, features in jobs
                if (p := fit_problem_of(len(part), len(features), params, limit, footprint,
                                        f"region {region} run {run}"))]
    if problems:
        raise InputError(problems)
