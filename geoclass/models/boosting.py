"""XGBoost for geoclass: any integer class codes, and early stopping on a polygon-grouped split.

`xgboost.XGBClassifier` wants the labels 0..K-1, geoclass's class codes are any integers (5, 6,
10, 13...): `XGBoostClassifier` encodes them in `fit` and its `classes_` are the codes, in
increasing order, as a scikit-learn classifier's. Its predictions are those of the fitted
`XGBClassifier` in `model_`, which `geoclass.kernels.fastboost` compiles for the fast
prediction path.

Early stopping (`early_stopping_rounds`): a `validation_fraction` of the samples is held out,
by polygon when `fit` gets `groups` (geoclass.train passes the polygon of each sample), so that
pixels of one field are never on both sides; the boosting stops after `early_stopping_rounds`
rounds without improvement of the validation log-loss and predicts with the best round (as
XGBoost does). Classes absent from the training part after the split are moved back into it
(with their polygons). The model is not refitted on all samples.
"""

from __future__ import annotations

import importlib.util
import tempfile
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import GroupShuffleSplit, ShuffleSplit, StratifiedShuffleSplit
from sklearn.utils.validation import check_is_fitted

from geoclass.errors import ConfigError


def is_lightgbm(estimator) -> bool:
    """Whether an estimator (or estimator class) is one of LightGBM's."""
    cls = estimator if isinstance(estimator, type) else type(estimator)
    return cls.__module__.startswith("lightgbm")


def xgboost_problem() -> str | None:
    """Why the xgboost classifier cannot be trained (XGBoost not installed), else None; does
    not import xgboost."""
    try:
        found = importlib.util.find_spec("xgboost") is not None
    except (ImportError, ValueError):
        found = False
    return None if found else ("models.classifier xgboost needs XGBoost: pip install "
                               "'geoclass[boost]' (or xgboost-cpu, without the CUDA libraries)")


class XGBoostClassifier(ClassifierMixin, BaseEstimator):
    """`xgboost.XGBClassifier` for arbitrary class codes, with optional grouped early stopping.

    The parameters are XGBoost's (same names and meaning); `params` holds any other
    XGBClassifier parameter. Defaults: 200 rounds of depth-6 trees, learning rate 0.1,
    histogram tree method, one thread (parallelism comes from dask: one model per task)."""

    def __init__(self, n_estimators: int = 200, max_depth: int = 6, learning_rate: float = 0.1,
                 tree_method: str = "hist", subsample: float = 1.0,
                 colsample_bytree: float = 1.0, min_child_weight: float = 1.0,
                 gamma: float = 0.0, reg_alpha: float = 0.0, reg_lambda: float = 1.0,
                 max_bin: int = 256, early_stopping_rounds: int | None = None,
                 validation_fraction: float = 0.1, n_jobs: int = 1, random_state: int = 0,
                 params: dict[str, Any] | None = None):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.tree_method = tree_method
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.gamma = gamma
        self.reg_alpha = reg_alpha
        self.reg_lambda = reg_lambda
        self.max_bin = max_bin
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.params = params

    def _xgb_params(self) -> dict[str, Any]:
        own = self.get_params()
        for key in ("early_stopping_rounds", "validation_fraction", "params"):
            own.pop(key)
        return {**own, **(self.params or {})}

    def fit(self, X, y, groups=None, sample_weight=None):
        """Fit on samples X (n, F) and class codes y (n,); `groups` (n,), e.g. the polygon of
        each sample, keeps groups whole in the early-stopping split."""
        problem = xgboost_problem()
        if problem:
            raise ConfigError(problem)
        from xgboost import XGBClassifier

        X = np.asarray(X)
        self.classes_, codes = np.unique(np.asarray(y), return_inverse=True)
        self.n_features_in_ = X.shape[1]
        self.best_iteration_ = None
        if len(self.classes_) < 2:  # nothing to learn: every sample is the one class
            self.model_ = None
            return self
        weights = None if sample_weight is None else np.asarray(sample_weight)
        split = None
        if self.early_stopping_rounds:
            split = validation_split(codes, None if groups is None else np.asarray(groups),
                                     self.validation_fraction, self.random_state)
        if split is None:
            self.model_ = XGBClassifier(**self._xgb_params()).fit(X, codes,
                                                                  sample_weight=weights)
            return self
        train, valid = split
        self.model_ = XGBClassifier(**self._xgb_params(),
                                    early_stopping_rounds=self.early_stopping_rounds)
        self.model_.fit(X[train], codes[train], eval_set=[(X[valid], codes[valid])],
                        sample_weight=None if weights is None else weights[train],
                        verbose=False)
        self.best_iteration_ = int(self.model_.best_iteration)
        return self

    def fit_dask(self, client, X, y, groups, classes):
        """Fit with `xgboost.dask` on dask arrays X (n, F), class codes y and polygons
        `groups` (n,) partitioned over the workers; `classes`: every class code of y. Early
        stopping holds out a `validation_fraction` of the polygons, drawn by a hash of their
        id (no class is moved back, unlike `fit`). The model is the same XGBClassifier as
        `fit` gives (loaded from the dask model), for prediction and fastboost."""
        problem = xgboost_problem()
        if problem:
            raise ConfigError(problem)
        from xgboost import XGBClassifier  # noqa: PLC0415 - optional dependency
        from xgboost import dask as dxgb  # noqa: PLC0415 - optional dependency

        self.classes_ = np.asarray(classes)
        self.n_features_in_ = X.shape[1]
        self.best_iteration_ = None
        if len(self.classes_) < 2:
            self.model_ = None
            return self
        codes = y.map_blocks(_encode, self.classes_, dtype=np.int64)
        params = self._xgb_params()
        model = dxgb.DaskXGBClassifier(**params, early_stopping_rounds=(
            self.early_stopping_rounds if groups is not None else None))
        model.client = client
        if self.early_stopping_rounds and groups is not None:
            held = groups.map_blocks(_held_out, self.validation_fraction, self.random_state,
                                     dtype=bool)
            train, valid = ~held, held
            model.fit(X[train], codes[train], eval_set=[(X[valid], codes[valid])],
                      verbose=False)
            self.best_iteration_ = int(model.best_iteration)
        else:
            model.fit(X, codes)
        with tempfile.TemporaryDirectory() as folder:
            path = f"{folder}/model.json"
            model.save_model(path)
            self.model_ = XGBClassifier(**params)
            self.model_.load_model(path)
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (n, n_classes), columns in the order of `classes_`."""
        check_is_fitted(self, "classes_")
        if self.model_ is None:
            return np.ones((len(X), 1))
        return self.model_.predict_proba(X)

    def predict(self, X) -> np.ndarray:
        """The class code of highest probability (the first one on ties)."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def _encode(codes: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return np.searchsorted(classes, codes).astype(np.int64)


def _held_out(groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Whether each sample's group is held out: a hash of the group id (same groups, same
    answer, whatever the partitioning)."""
    h = (groups.astype(np.uint64) + np.uint64(seed)) * np.uint64(0x9E3779B97F4A7C15)
    h ^= h >> np.uint64(31)
    return (h % np.uint64(10_000)) < np.uint64(round(fraction * 10_000))


def validation_split(codes: np.ndarray, groups: np.ndarray | None, fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(train, validation) sample indices: a `fraction` of the groups (or, without groups, of
    the samples, stratified by class when possible) held out, every class kept in the training
    part (the groups of a class absent from it are moved back). None if nothing is left to
    validate on."""

    index = np.arange(len(codes))
    if groups is not None:
        if len(np.unique(groups)) < 2:
            return None
        splitter = GroupShuffleSplit(1, test_size=fraction, random_state=seed)
        train, valid = next(splitter.split(index, codes, groups))
    else:
        try:
            splitter = StratifiedShuffleSplit(1, test_size=fraction, random_state=seed)
            train, valid = next(splitter.split(index, codes))
        except ValueError:  # a class too small to stratify
            splitter = ShuffleSplit(1, test_size=fraction, random_state=seed)
            train, valid = next(splitter.split(index))
    absent = np.setdiff1d(codes, codes[train])
    if absent.size:
        back = np.isin(codes[valid], absent)
        if groups is not None:
            back = np.isin(groups[valid], groups[valid][back])
        train, valid = np.sort(np.concatenate([train, valid[back]])), valid[~back]
    return (train, valid) if len(valid) else None
