"""A fitted model and what it was fitted on, saved with its SHA-256 and loaded only when the
file still has it (a model file runs code when unpickled: one replaced in the output folder is
refused, never loaded). Forests and gradient boosting are saved with their compiled fast
predictors (kernels.fastforest, kernels.fastboost): a worker loads them as they are, instead of
compiling them again (1.2 s for the default LightGBM model of the OTB anchor stack, in each
worker thread that loaded it at once); one compiled by another layout is compiled again."""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from pathlib import Path

import joblib

from geoclass import fs
from geoclass.atomic import atomic_output
from geoclass.errors import InputError
from geoclass.kernels import fastboost, fastforest
from geoclass.store import RunStore, sha256_of

COMPILED_FORMAT = (fastforest.FORMAT, fastboost.FORMAT)


@dataclass
class TrainedModel:
    """A fitted estimator and what it was fitted on; `compiled`: its fast predictor (saved
    with it), made by the kernels' layouts `compiled_format`."""

    estimator: object
    features: list[str]
    classes: list[int]
    region: int
    run: int
    config_hash: str
    versions: dict[str, str] = field(default_factory=dict)
    search: dict | None = None
    compiled: object = field(default=None, compare=False, repr=False)
    compiled_format: tuple | None = field(default=None, compare=False, repr=False)

    def check_features(self, names: list[str], source: str = "the cube") -> None:
        """Raise a clear error if `names` are not the features the model was trained on."""
        if list(names) != self.features:
            missing = [f for f in self.features if f not in set(names)][:5]
            raise InputError([f"model of region {self.region} run {self.run} was trained on "
                              f"{len(self.features)} features that do not match the "
                              f"{len(names)} of {source} (missing e.g. {missing}); "
                              "retrain it (geoclass train --force)"])

    def compile(self) -> TrainedModel:
        """Set `compiled`: the estimator's fast predictor, if it has one (kept if it was
        made by the kernels' present layouts)."""
        if self.compiled_format != COMPILED_FORMAT:
            self.compiled = (fastforest.compile_forest(self.estimator)
                             or fastboost.compile_boosting(self.estimator))
            self.compiled_format = COMPILED_FORMAT
        return self


def save_model(model: TrainedModel, path: Path) -> str:
    """Save a model atomically, with its fast predictor; returns the file's SHA-256 (for the
    manifest)."""
    model.compile()
    # joblib (pickle) runs code when loading, hence the SHA-256 check in load_model. skops
    # (no code at load, an allow-list of types) was tried: it carries scikit-learn's
    # estimators (forests, SVM pipelines, histogram boosting: same probabilities) and this
    # class once trusted by name, but not the torch models nor the xgboost/lightgbm
    # wrappers, which it can only load by trusting their types (pickle's trust again); one
    # format for every model, checked by its hash, was kept (README, RESULTS.md: issue 20).
    with atomic_output(path) as tmp:
        joblib.dump(model, tmp)
        digest = sha256_of(tmp)
    return digest


def load_model(path: str | Path, sha256: str | None = None, fast: bool = True) -> TrainedModel:
    """Load a saved model, refusing a file whose SHA-256 is not `sha256` (default: the one
    the train step recorded for it in its run's `manifests/train.json`, when it is one of that
    run's models); `fast`: compile its fast predictor."""
    path = fs.as_path(path)
    if not path.exists():
        raise InputError([f"{path}: no such model; run geoclass train first"])
    if sha256 is None and len(path.resolve().parents) > 1:  # <run>/model/<file>
        sha256 = RunStore(path.resolve().parents[1]).recorded_sha256(path)
    if sha256 is not None and sha256_of(path) != sha256:
        raise InputError([f"{path}: this model file changed after training (its SHA-256 is "
                          "not the one recorded in manifests/train.json): it may have been "
                          "replaced, and is not loaded; retrain (geoclass train --force)"])
    with fs.open(path, "rb") as f:
        model = joblib.load(f)
    if not isinstance(model, TrainedModel):
        raise InputError([f"{path}: not a geoclass model"])
    if fast:
        return model.compile()
    model.compiled = model.compiled_format = None
    return model


@functools.lru_cache(maxsize=64)
def _cached(path: str, stamp: int, sha256: str | None, fast: bool) -> TrainedModel:
    return load_model(path, sha256, fast)


_LOADING = threading.Lock()


def cached_model(path: str, sha256: str | None = None, fast: bool = True) -> TrainedModel:
    """A model loaded once per worker process (by path, modification time and hash), by one
    thread: the worker's other threads wait for it instead of loading it too."""
    with _LOADING:
        return _cached(str(path), fs.mtime_ns(path), sha256, fast)
