"""Training: one model per (region, run), fitted as tasks on the dask cluster, saved with the
metadata that prediction checks (features, classes, region, run, config hash, versions)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np
import sklearn

from geoclass import autocontext
from geoclass.atomic import atomic_output, record_step, step_is_current
from geoclass.config import Config, Models
from geoclass.errors import InputError
from geoclass.memory import fit_problem_of, worker_room
from geoclass.models import make_classifier
from geoclass.samples import META, read_samples, sample

log = logging.getLogger(__name__)

AUTOCONTEXT_KEYS = {"enable_autocontext", "autocontext_iterations", "autocontext_superpixel_size",
                    "autocontext_compactness", "autocontext_features"}


@dataclass
class TrainedModel:
    """A fitted estimator and what it was fitted on."""

    estimator: object
    features: list[str]
    classes: list[int]
    region: int
    run: int
    config_hash: str
    versions: dict[str, str] = field(default_factory=dict)
    search: dict | None = None

    def check_features(self, names: list[str], source: str = "the cube") -> None:
        """Raise a clear error if `names` are not the features the model was trained on."""
        if list(names) != self.features:
            missing = [f for f in self.features if f not in set(names)][:5]
            raise InputError([f"model of region {self.region} run {self.run} was trained on "
                              f"{len(self.features)} features that do not match the "
                              f"{len(names)} of {source} (missing e.g. {missing}); "
                              "retrain it (geoclass train --force)"])


def model_path(config: Config, region: int, run: int) -> Path:
    return Path(config.chain.output_path) / "model" / f"model_{region}_seed_{run}.joblib"


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
    from sklearn.model_selection import GridSearchCV, GroupKFold, StratifiedKFold

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
    import inspect

    from sklearn.pipeline import Pipeline

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
    import geoclass

    return {"geoclass": geoclass.__version__, "scikit-learn": sklearn.__version__,
            "numpy": np.__version__}


def _jobs(config: Config):
    """(region, run, X, y, groups, features) of every model to fit."""
    for run in range(config.chain.runs):
        learn = read_samples(config, run, "learn")
        features = [c for c in learn.columns if c not in META]
        for region, part in learn.groupby("region", sort=True):
            if part["code"].nunique() < 2:
                log.warning("region %s run %s: fewer than 2 classes in the samples; "
                            "a constant model is used", region, run)
            yield int(region), run, part, features


def _keys(config: Config) -> list[tuple[int, int]]:
    """(region, run) of every model, reading only the region column of the samples (the
    learning tables can be large: they are loaded only when models are fitted)."""
    import pandas as pd

    folder = Path(config.chain.output_path) / "samples"
    return [(int(region), run) for run in range(config.chain.runs)
            for region in sorted(pd.read_parquet(folder / f"learn_seed_{run}.parquet",
                                                 columns=["region"])["region"].unique())]


def _settings(config: Config) -> dict:
    samples = Path(config.chain.output_path) / "samples" / "manifest.json"
    return {"samples": json.loads(samples.read_text()), "models": config.section_hash("models"),
            "autocontext": config.chain.model_dump(mode="json", include=AUTOCONTEXT_KEYS)}


def train(config: Config, force: bool = False) -> dict[tuple[int, int], Path]:
    """Fit and save the model of every (region, run), building samples first if needed;
    skipped when the samples and the `models` section did not change."""
    sample(config)
    manifest = Path(config.chain.output_path) / "model" / "manifest.json"
    settings = _settings(config)
    paths = {(region, run): model_path(config, region, run) for region, run in _keys(config)}
    if step_is_current(manifest, settings, paths.values(), force):
        log.info("models are up to date")
        return paths
    jobs = list(_jobs(config))
    if autocontext.enabled(config):
        jobs, fitted = autocontext.fit_iterations(config, jobs, _fit_all, _save_model)
    else:
        fitted = _fit_all(config, jobs)
    for job, result in zip(jobs, fitted):
        _save_model(config, job, result, paths[(job[0], job[1])])
        log.info("region %d run %d: %s fitted on %d samples", job[0], job[1],
                 config.models.classifier, len(job[2]))
    record_step(manifest, settings)
    del jobs, fitted
    _release_arrow_memory()
    return paths


def _save_model(config: Config, job: tuple, result: tuple, path: Path) -> None:
    """Save the estimator fitted for `job` ((region, run, samples, features)) with its
    metadata, atomically."""
    region, run, part, features = job
    estimator, search = result
    model = TrainedModel(estimator, list(features), sorted(int(c) for c in part["code"].unique()),
                         region, run, config.section_hash("chain", "sampling", "models"),
                         _versions(), search)
    with atomic_output(path) as tmp:
        joblib.dump(model, tmp)


def _release_arrow_memory() -> None:
    """Give back to the OS the memory Arrow's pool keeps after the learning tables are freed
    (hundreds of MB that would otherwise stay with a driver that goes on to classify)."""
    import pyarrow

    pyarrow.default_memory_pool().release_unused()


def _fit_all(config: Config, jobs) -> list:
    """Fit every job as a task on the active dask client (data scattered once per job)."""
    from distributed import get_client

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


def load_model(path: str | Path) -> TrainedModel:
    """Load a saved model (see `train`)."""
    path = Path(path)
    if not path.exists():
        raise InputError([f"{path}: no such model; run geoclass train first"])
    model = joblib.load(path)
    if not isinstance(model, TrainedModel):
        raise InputError([f"{path}: not a geoclass model"])
    return model
