"""Classifier registry: short names for the usual scikit-learn models, or any estimator by dotted
path, optionally standardized.

Defaults of `random_forest` / `extra_trees` follow iota2's OTB random forest (100 trees, max depth
25, at least 5 samples per leaf): deep enough for dozens of classes, with leaves large enough to
resist the label noise of field-level ground truth. `extra_trees` is the default classifier: as
accurate as the random forest or more, faster to train, and predicted by the same compiled kernel
(figures in benchmarks/RESULTS.md, issue 8).

`xgboost` (geoclass.models.boosting.XGBoostClassifier: XGBoost for any class codes, optional
early stopping on a polygon-grouped split) and `lightgbm` are gradient boosting (200 rounds of
depth-6 / 31-leaf trees, learning rate 0.1); both are predicted by a compiled kernel too
(geoclass.kernels.fastboost).

`tempcnn` / `lighttae` (geoclass.models.deep) are deep temporal models that need PyTorch and
the feature names (their `feature_names` parameter) to read the time series."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from geoclass.config import Models
from geoclass.errors import ConfigError
from geoclass.models import boosting, deep

FOREST = {"n_estimators": 100, "max_depth": 25, "min_samples_leaf": 5}
BOOSTING = {"n_estimators": 200, "max_depth": 6, "learning_rate": 0.1, "tree_method": "hist"}

CLASSIFIERS: dict[str, tuple[str, dict[str, Any], bool]] = {
    # name: (estimator class, default parameters, always standardize)
    "random_forest": ("sklearn.ensemble.RandomForestClassifier", FOREST, False),
    "extra_trees": ("sklearn.ensemble.ExtraTreesClassifier", FOREST, False),
    "svm": ("sklearn.svm.SVC", {"probability": True}, True),
    "hist_gradient_boosting": ("sklearn.ensemble.HistGradientBoostingClassifier",
                               {"max_iter": 200}, False),
    "xgboost": ("geoclass.models.boosting.XGBoostClassifier", BOOSTING, False),
    "lightgbm": ("lightgbm.LGBMClassifier", {"n_estimators": 200, "verbose": -1}, False),
    "tempcnn": ("geoclass.models.deep.TempCNNClassifier", {}, False),
    "lighttae": ("geoclass.models.deep.LightTAEClassifier", {}, False),
}


def _import(dotted: str):
    module, _, name = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(f"models.classifier: cannot import '{dotted}': {err}") from None


def make_classifier(models: Models, seed: int = 0):
    """A new, unfitted estimator for `models` (random_state set to `seed` unless given)."""
    if models.classifier in CLASSIFIERS:
        path, defaults, scale = CLASSIFIERS[models.classifier]
    elif "." in models.classifier:
        path, defaults, scale = models.classifier, {}, False
    else:
        known = ", ".join(CLASSIFIERS)
        raise ConfigError(f"models.classifier: unknown '{models.classifier}'; use one of {known} "
                          "or a dotted path such as sklearn.neighbors.KNeighborsClassifier")
    cls = _import(path)
    params = {**defaults, **models.params}
    accepted = inspect.signature(cls).parameters
    if "random_state" in accepted and "random_state" not in params:
        params["random_state"] = seed
    if "n_jobs" in accepted and "n_jobs" not in params:
        params["n_jobs"] = 1  # parallelism comes from dask: one model per task
    unknown = sorted(set(params) - set(accepted))
    if unknown and not any(p.kind == p.VAR_KEYWORD for p in accepted.values()):
        raise ConfigError(f"models.params: {', '.join(unknown)} not accepted by {path}")
    estimator = cls(**params)
    if scale or models.standardization:
        estimator = make_pipeline(StandardScaler(), estimator)
    return estimator



def classifier_problems(models: Models) -> list[str]:
    """What keeps `models` from being trained (unknown name, refused parameters, PyTorch missing
    for a deep model, XGBoost for xgboost), found without training or importing them."""
    try:
        estimator = make_classifier(models)
    except ConfigError as err:
        return [str(err)]
    final = estimator[-1] if isinstance(estimator, Pipeline) else estimator
    problem = (deep.torch_problem(final._name) if isinstance(final, deep._DeepClassifier)
               else boosting.xgboost_problem() if isinstance(final, boosting.XGBoostClassifier)
               else None)
    return [problem] if problem else parameter_problems(estimator)


def parameter_problems(estimator) -> list[str]:
    """Parameter values the estimator refuses (e.g. a negative n_estimators), found the way
    scikit-learn checks them at fit time, without fitting."""
    steps = [s for _, s in estimator.steps] if isinstance(estimator, Pipeline) else [estimator]
    problems = []
    for step in steps:
        if getattr(type(step), "_parameter_constraints", None) is None:
            continue  # estimators outside scikit-learn declare no constraints
        try:
            step._validate_params()
        except (ValueError, TypeError) as err:
            problems.append(f"models.params: {err}")
    return problems
