"""Classifier registry: short names for the usual scikit-learn models, or any estimator by dotted
path, optionally standardized.

`lightgbm` is the default classifier, chosen by measurement (benchmarks/RESULTS.md, issue 18:
the best mean overall accuracy on the OTB anchor stack and the generated scenes among the
models predicted at least as fast as the forests): 100 rounds of 15-leaf trees, learning rate
0.2, each tree on 30 % of the features and 70 % of the samples (seeded: the same model for the
same seed), predicted by a compiled kernel (geoclass.kernels.fastboost) about 4x faster than
the forests.

Defaults of `random_forest` / `extra_trees` follow iota2's OTB random forest (100 trees, max depth
25, at least 5 samples per leaf): deep enough for dozens of classes, with leaves large enough to
resist the label noise of field-level ground truth; both are predicted by a compiled kernel
(geoclass.kernels.fastforest). `xgboost` (geoclass.models.boosting.XGBoostClassifier: XGBoost for
any class codes, optional early stopping on a polygon-grouped split) is gradient boosting of 200
rounds of depth-6 trees, learning rate 0.1.

`tempcnn` / `lighttae` (geoclass.models.deep) are deep temporal models that need PyTorch and
the feature names (their `feature_names` parameter) to read the time series."""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any

import numpy as np
import sklearn.base
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from geoclass.config import Models
from geoclass.errors import ConfigError
from geoclass.models import boosting, deep

FOREST = {"n_estimators": 100, "max_depth": 25, "min_samples_leaf": 5}
BOOSTING = {"n_estimators": 200, "max_depth": 6, "learning_rate": 0.1, "tree_method": "hist"}
LIGHTGBM = {"n_estimators": 100, "num_leaves": 15, "learning_rate": 0.2, "colsample_bytree": 0.3,
            "subsample": 0.7, "subsample_freq": 1, "verbose": -1}

CLASSIFIERS: dict[str, tuple[str, dict[str, Any], bool]] = {
    # name: (estimator class, default parameters, always standardize)
    "random_forest": ("sklearn.ensemble.RandomForestClassifier", FOREST, False),
    "extra_trees": ("sklearn.ensemble.ExtraTreesClassifier", FOREST, False),
    "svm": ("sklearn.svm.SVC", {"probability": True}, True),
    "hist_gradient_boosting": ("sklearn.ensemble.HistGradientBoostingClassifier",
                               {"max_iter": 200}, False),
    "xgboost": ("geoclass.models.boosting.XGBoostClassifier", BOOSTING, False),
    "lightgbm": ("lightgbm.LGBMClassifier", LIGHTGBM, False),
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
    names = accepted_names(cls)
    unknown = sorted(set(params) - names) if names is not None else []
    if unknown:
        raise ConfigError(f"models.params: {', '.join(unknown)} not accepted by {path}")
    estimator = cls(**params)
    if scale or models.standardization:
        estimator = make_pipeline(StandardScaler(), estimator)
    return estimator


def accepted_names(cls) -> set[str] | None:
    """The parameter names an estimator class takes (None: any). LightGBM's `**kwargs` are
    its core parameters, under any of their aliases (the list LightGBM itself keeps)."""
    parameters = inspect.signature(cls).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        return set(parameters)
    if not boosting.is_lightgbm(cls):
        return None
    try:
        from lightgbm.basic import _ConfigAliases  # noqa: PLC0415 - only for LightGBM
        aliases = _ConfigAliases._get_all_param_aliases()
    except (ImportError, AttributeError):  # another LightGBM version: no check
        return None
    return set(parameters) | set(aliases) | {a for names in aliases.values() for a in names}


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
        if boosting.is_lightgbm(step):
            problems += _lightgbm_problems(step)
        if getattr(type(step), "_parameter_constraints", None) is None:
            continue  # estimators outside scikit-learn declare no constraints
        try:
            step._validate_params()
        except (ValueError, TypeError) as err:
            problems.append(f"models.params: {err}")
    return problems


def _lightgbm_problems(estimator) -> list[str]:
    """LightGBM checks its parameters in its C++ core when it fits: a fit on 20 rows of 2
    classes finds a refused value in milliseconds."""
    import lightgbm  # noqa: PLC0415 - only for a LightGBM model

    rows = np.arange(40, dtype=np.float32).reshape(20, 2)
    try:
        sklearn.base.clone(estimator).set_params(n_jobs=1).fit(rows, np.arange(20) % 2)
    except (ValueError, TypeError, lightgbm.basic.LightGBMError) as err:
        where = re.compile(r" at \S+, line \d+ ?\.?")  # LightGBM's C++ source line
        return [f"models.params: {where.sub('', str(err)).strip()}"]
    return []
