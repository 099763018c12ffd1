"""iota2's OTB classifiers (`argTrain.classifier` and its `options` string) as geoclass models.

Each OTB classifier maps to the nearest scikit-learn estimator, with OTB's defaults where they
differ from scikit-learn's, so that a file without options trains what iota2 trained:
`rf` (OpenCV) defaults to 100 trees of depth at most 5 that split nodes of more than 10
samples; `sharkrf` to 100 unbounded trees that split nodes of more than 25 samples.

OpenCV's `-classifier.rf.min` and Shark's `-classifier.sharkrf.nodesize` are not minimum leaf
sizes: a node of at most that many samples becomes a leaf (OpenCV's `n <= min_sample_count`,
Shark's `n <= nodeSize`), which is scikit-learn's `min_samples_split = value + 1` with
`min_samples_leaf = 1`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Model", "otb_model", "split_options"]


@dataclass
class Model:
    """A geoclass `models.classifier` and `models.params`, and what could not be carried."""

    classifier: str
    params: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


# --- option values ----------------------------------------------------------------------------


def _one(values: list[str]) -> str:
    if len(values) != 1:
        raise ValueError(f"expects one value, got {len(values)}")
    return values[0]


def _int(values):
    return int(float(_one(values)))


def _float(values):
    return float(_one(values))


def _split_above(values):
    """OpenCV's min_sample_count / Shark's nodeSize: nodes of at most n samples stay leaves."""
    return _int(values) + 1


def _mtry(values):
    count = _int(values)
    return "sqrt" if count == 0 else count  # 0: OTB's default, sqrt(number of features)


def _kernel(values):
    kernel = _one(values).lower()
    if kernel not in ("linear", "rbf", "poly", "sigmoid"):
        raise ValueError(f"kernel '{kernel}' has no scikit-learn equivalent")
    return kernel


def _svm_type(values):
    if _one(values).lower() != "csvc":
        raise ValueError("only C-SVC is supported (use scikit_models_parameters with "
                         "model_type NuSVC for a nu-SVC)")


def _sizes(values):
    return [int(v) for v in " ".join(values).replace(",", " ").split()]


def _activation(values):
    name = {"sig": "logistic", "ident": "identity"}.get(_one(values).lower())
    if name is None:
        raise ValueError("only 'sig' and 'ident' have a scikit-learn equivalent")
    return name


# --- classifiers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    classifier: str  # geoclass models.classifier
    options: dict[str, tuple[str | None, Callable]]  # OTB option -> (parameter, converter)
    defaults: dict[str, str] = field(default_factory=dict)  # OTB defaults, OTB's names
    fixed: dict[str, Any] = field(default_factory=dict)  # parameters whatever the options
    unsupported: dict[str, str] = field(default_factory=dict)  # OTB option -> why
    note: str | None = None  # a difference that holds whatever the options


_FOREST = {"nbtrees": ("n_estimators", _int)}
_SVM = {"k": ("kernel", _kernel), "c": ("C", _float), "gamma": ("gamma", _float),
        "coef0": ("coef0", _float), "degree": ("degree", _int), "m": (None, _svm_type)}
_SVM_UNSUPPORTED = {"opt": "not supported: OTB's parameter search; use "
                           "scikit_models_parameters.cross_validation_parameters",
                    "prob": "not needed: geoclass always computes class probabilities",
                    "nu": "not supported: nu applies to nu-SVC only"}

SPECS: dict[str, _Spec] = {
    "sharkrf": _Spec(
        "random_forest",
        {**_FOREST, "nodesize": ("min_samples_split", _split_above),
         "mtry": ("max_features", _mtry)},
        defaults={"nbtrees": "100", "nodesize": "25"},
        fixed={"max_depth": None, "min_samples_leaf": 1},
        unsupported={"oobr": "not supported: scikit-learn's bootstrap draws as many samples as "
                             "the learning set (Shark's out-of-bag ratio has no equivalent)"}),
    "rf": _Spec(
        "random_forest",
        {**_FOREST, "max": ("max_depth", _int), "min": ("min_samples_split", _split_above),
         "var": ("max_features", _mtry)},
        defaults={"nbtrees": "100", "max": "5", "min": "10"},
        fixed={"min_samples_leaf": 1},
        unsupported={"ra": "not needed: regression accuracy (regression only)",
                     "cat": "not needed: geoclass features are numeric, not categorical",
                     "acc": "not supported: OpenCV's out-of-bag accuracy stop; scikit-learn "
                            "grows every tree"}),
    "libsvm": _Spec("svm", _SVM, defaults={"k": "linear", "c": "1", "gamma": "1"},
                    unsupported=_SVM_UNSUPPORTED),
    "svm": _Spec("svm", _SVM, defaults={"k": "linear", "c": "1", "gamma": "1", "degree": "1"},
                 unsupported=_SVM_UNSUPPORTED),
    "knn": _Spec("sklearn.neighbors.KNeighborsClassifier", {"k": ("n_neighbors", _int)},
                 defaults={"k": "32"},
                 unsupported={"rule": "not needed: the voting rule of KNN regression"}),
    "bayes": _Spec(
        "sklearn.discriminant_analysis.QuadraticDiscriminantAnalysis", {},
        note="OpenCV's normal Bayes classifier (one full-covariance Gaussian per class) is "
             "scikit-learn's QuadraticDiscriminantAnalysis, not GaussianNB"),
    "dt": _Spec(
        "sklearn.tree.DecisionTreeClassifier",
        {"max": ("max_depth", _int), "min": ("min_samples_split", _split_above)},
        defaults={"max": "65535", "min": "10"},
        unsupported={"ra": "not needed: regression accuracy (regression only)",
                     "cat": "not needed: geoclass features are numeric, not categorical",
                     "f": "not supported: pruning by cross-validation",
                     "r": "not supported: pruning by cross-validation (1SE rule)",
                     "t": "not supported: truncation of the pruned tree"},
        note="OpenCV may prune its decision tree by cross-validation; scikit-learn's is not "
             "pruned"),
    "boost": _Spec(
        "sklearn.ensemble.AdaBoostClassifier", {"w": ("n_estimators", _int)},
        defaults={"w": "100"},
        unsupported={"t": "not supported: the boosting type (scikit-learn's AdaBoost is "
                          "discrete SAMME)",
                     "m": "not supported: the depth of the weak trees (scikit-learn uses "
                          "stumps, depth 1, OTB's default)",
                     "r": "not supported: OpenCV's weight trimming"},
        note="OTB boosts with Real AdaBoost by default; scikit-learn's AdaBoostClassifier is "
             "discrete (SAMME)"),
    "ann": _Spec(
        "sklearn.neural_network.MLPClassifier",
        {"sizes": ("hidden_layer_sizes", _sizes), "f": ("activation", _activation),
         "iter": ("max_iter", _int), "eps": ("tol", _float)},
        defaults={"f": "sig", "iter": "1000", "eps": "0.01"},
        unsupported={key: "not supported: OpenCV's training settings (scikit-learn trains "
                          "with adam)"
                     for key in ("t", "a", "b", "bpdw", "bpms", "rdw", "rdwm", "term")},
        note="OTB trains the network by RPROP; scikit-learn's MLPClassifier uses adam"),
}

NOT_CLASSIFIERS = {"sharkkm": "k-means is unsupervised, not a classifier"}


def split_options(text: str) -> list[tuple[str, list[str]]]:
    """OTB command-line flags and their values: `-a 1 -b x y` -> [('a', ['1']), ('b', ['x',
    'y'])]. A word after a flag is a value unless it is `-` followed by a letter."""
    pairs: list[tuple[str, list[str]]] = []
    for word in text.split():
        if word.startswith("-") and word[1:2].isalpha():
            pairs.append((word[1:], []))
        elif pairs:
            pairs[-1][1].append(word)
        else:
            raise ValueError(f"'{word}' comes before any -option")
    return pairs


def otb_model(name: str, options: str) -> Model | None:
    """The geoclass model for OTB classifier `name` trained with `options` (None when `name`
    is not an OTB classifier geoclass knows)."""
    key = name.strip().lower()
    if key in NOT_CLASSIFIERS:
        return Model("", {}, errors=[f"'{name}': not supported: {NOT_CLASSIFIERS[key]}"])
    spec = SPECS.get(key)
    if spec is None:
        return None
    model = Model(spec.classifier, dict(spec.fixed))
    if spec.note:
        model.warnings.append(spec.note)
    try:
        given = split_options(options)
    except ValueError as err:
        model.errors.append(f"cannot read the OTB options '{options.strip()}': {err}")
        return model
    prefix = f"classifier.{key}."
    settings = {opt: ([value], True) for opt, value in spec.defaults.items()}
    for flag, values in given:
        if flag.startswith(prefix):
            settings[flag[len(prefix):]] = (values, False)
        elif flag.startswith("classifier."):
            model.warnings.append(f"-{flag}: ignored: an option of another classifier than "
                                  f"'{key}' (OTB ignores it too)")
        elif flag == "rand":
            model.warnings.append("-rand: not needed: geoclass seeds each model from "
                                  "chain.random_seed and the run")
        else:
            model.warnings.append(f"-{flag}: not supported: unknown OTB training option")
    for option, (values, default) in settings.items():
        flag = f"-{prefix}{option}"
        if option in spec.unsupported:
            model.warnings.append(f"{flag}: {spec.unsupported[option]}")
            continue
        if option not in spec.options:
            model.warnings.append(f"{flag}: not supported: unknown option of '{key}'")
            continue
        param, convert = spec.options[option]
        try:
            value = convert(values or ["true"])
        except ValueError as err:
            origin = "OTB's default" if default else "given"
            model.errors.append(f"{flag} {' '.join(values)} ({origin}): {err}")
            continue
        if param is not None:
            model.params[param] = value
    return model
