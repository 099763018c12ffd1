"""iota2 configurations as geoclass configurations: `convert_iota2` (with the iota2 origin of
every key, a warning for every iota2 setting geoclass ignores and an error for every one it
cannot reproduce), `to_yaml`, and `load_iota2` (what `load_config` does with an iota2 file).

The key map is `geoclass.io.iota2.keys`; the OTB classifiers are `geoclass.io.iota2.otb`.
"""

from __future__ import annotations

import importlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from geoclass.config import Config, parse_config
from geoclass.errors import ConfigError
from geoclass.io.iota2.keys import (
    IOTA2_NAMES,
    RULES,
    SECTION_RULES,
    SECTIONS,
    hint_for,
    norm,
)
from geoclass.io.iota2.otb import SPECS, otb_model
from geoclass.io.iota2.parser import is_unset, looks_like_iota2, parse_iota2

__all__ = ["Conversion", "convert_iota2", "load_iota2", "looks_like_iota2", "to_yaml"]

log = logging.getLogger("geoclass.config")

# iota2's default for argTrain.options (with its default classifier, 'rf')
IOTA2_DEFAULT_OPTIONS = " -classifier.rf.min 5 -classifier.rf.max 25 "
IOTA2_UNDECIDED_LABEL = 255  # iota2's default merge_final_classifications_undecidedlabel
_DATED_SENSOR_KEYS = ("S2Path", "S2_S2C_Path", "L8Path", "L8Path_old", "L5Path_old",
                      "S2_L3A_Path", "S1Path")
_SKLEARN_MODULES = ("ensemble", "svm", "neighbors", "tree", "naive_bayes", "neural_network",
                    "linear_model", "discriminant_analysis", "gaussian_process",
                    "semi_supervised", "dummy")
_MERGE = "classification.merge_final_classifications"


@dataclass
class Conversion:
    """A geoclass configuration dict (`data`, for `parse_config`), the iota2 `section.key`
    each geoclass key came from (`origins`), the iota2 settings geoclass ignores, each with
    its reason (`warnings`), and those it cannot reproduce (`errors`)."""

    data: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class _Context:
    """What the rules of `iota2_keys` read and write."""

    def __init__(self, raw: dict, base_dir: Path):
        self.base_dir = base_dir
        self.out = Conversion()
        self.bodies: dict[str, list[tuple[str, dict]]] = {}
        for section, body in raw.items():
            name = SECTIONS.get(norm(section))
            if name is not None and isinstance(body, dict):
                self.bodies.setdefault(name, []).append((section, body))

    def get(self, section: str, key: str) -> tuple[str | None, Any]:
        """(origin, value) of iota2's `section.key` in the file, or (None, None)."""
        for written, body in self.bodies.get(norm(section), []):
            for name, value in body.items():
                if norm(name) == norm(key):
                    return f"{written}.{name}", value
        return None, None

    def put(self, target: str, value: Any, origin: str) -> None:
        *parents, last = target.split(".")
        node = self.out.data
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
        self.out.origins[target] = origin

    def value(self, target: str) -> Any:
        node: Any = self.out.data
        for part in target.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def warn(self, origin: str, reason: str) -> None:
        self.out.warnings.append(f"{origin}: {reason}")

    def error(self, origin: str, reason: str) -> None:
        self.out.errors.append(f"{origin}: {reason}")

    def path(self, value: Any) -> str:
        path = Path(str(value).strip())
        return str(path if path.is_absolute() else self.base_dir / path)

    def dated_sensors(self) -> list[str]:
        found = [self.get("chain", key) for key in _DATED_SENSOR_KEYS]
        return [origin for origin, value in found if origin and not is_unset(value)]

    def class_counts(self, origin: str, value: Any) -> dict[str, int]:
        """OTB's per-class sample counts: a CSV file of `class,count` lines."""
        path = Path(self.path(value))
        try:
            rows = [re.split(r"[,;\s]+", line.strip())
                    for line in path.read_text().splitlines() if line.strip()]
            return {row[0]: int(float(row[1])) for row in rows}
        except (OSError, ValueError, IndexError) as err:
            self.error(origin, f"cannot read the class counts {path}: {err}")
            return {}


def convert_iota2(raw: dict, base_dir: Path) -> Conversion:
    """The geoclass configuration equivalent to iota2's `raw` (from `parse_iota2`); relative
    paths resolve against `base_dir` and come out absolute."""
    ctx = _Context(raw, Path(base_dir).resolve())
    for section, body in raw.items():
        if not isinstance(body, dict):
            ctx.warn(section, "unknown top-level value: ignored")
            continue
        name = SECTIONS.get(norm(section))
        if name is None:
            SECTION_RULES.get(norm(section), _unknown_section)(ctx, section, body)
            continue
        for key, value in body.items():
            rule = RULES.get((name, norm(key)))
            if rule is None:
                ctx.warn(f"{section}.{key}", "unknown key: ignored")
            else:
                rule.handle(ctx, f"{section}.{key}", value, rule.target)
    _models(ctx)
    if ctx.value(f"{_MERGE}.enable") is True and ctx.value(f"{_MERGE}.undecided_label") is None:
        ctx.put(f"{_MERGE}.undecided_label", IOTA2_UNDECIDED_LABEL,
                f"chain.merge_final_classifications_undecidedlabel (iota2's default: "
                f"{IOTA2_UNDECIDED_LABEL})")
    order = list(Config.model_fields)
    ctx.out.data = dict(sorted(ctx.out.data.items(), key=lambda item: order.index(item[0])))
    return ctx.out


def _unknown_section(ctx, section, body):
    ctx.warn(section, "unknown section: ignored")


# --- the classifier: argTrain.classifier/options, or scikit_models_parameters -----------------


def _models(ctx: _Context) -> None:
    scikit = "scikit_models_parameters"
    origin, model_type = ctx.get(scikit, "model_type")
    otb_keys = [ctx.get("argTrain", key) for key in
                ("classifier", "options", "otb_classifier_options")]
    if not is_unset(model_type):
        _scikit_model(ctx, origin, str(model_type))
        for key_origin, value in otb_keys:
            if key_origin and not is_unset(value):
                ctx.warn(key_origin, f"ignored: {origin} is set, so iota2 trains the "
                                     "scikit-learn model")
        return
    for key in ("keyword_arguments", "standardization", "cross_validation_parameters",
                "cross_validation_folds", "cross_validation_grouped"):
        key_origin, value = ctx.get(scikit, key)
        if key_origin and not is_unset(value) and value not in (False, {}):
            ctx.warn(key_origin, f"ignored: {scikit}.model_type is not set")
    _otb_model(ctx, *otb_keys)


def _otb_model(ctx: _Context, classifier, options, new_options) -> None:
    name_origin, name = classifier
    options_origin, text = options if options[0] else new_options
    if is_unset(name):
        name_origin, name = "argTrain.classifier (iota2's default: rf)", "rf"
    if is_unset(text) and str(name).lower() == "rf":
        options_origin, text = "argTrain.options (iota2's default)", IOTA2_DEFAULT_OPTIONS
    elif is_unset(text):
        options_origin, text = f"{name_origin} (OTB's defaults)", ""
    model = otb_model(str(name), str(text))
    if model is None:
        ctx.error(name_origin, f"'{name}' is not an OTB classifier geoclass knows "
                               f"({', '.join(SPECS)})")
        return
    for warning in model.warnings:
        ctx.warn(options_origin, warning)
    for error in model.errors:
        ctx.error(options_origin, error)
    if model.classifier:
        ctx.put("models.classifier", model.classifier, name_origin)
        ctx.put("models.params", model.params, options_origin)


def _scikit_model(ctx: _Context, origin: str, model_type: str) -> None:
    scikit = "scikit_models_parameters"
    path = _sklearn_path(model_type)
    if path is None:
        ctx.error(origin, f"'{model_type}' is not a scikit-learn classifier")
    else:
        ctx.put("models.classifier", path, origin)
    kwargs_origin, kwargs = ctx.get(scikit, "keyword_arguments")
    if isinstance(kwargs, dict) and kwargs:
        ctx.put("models.params", kwargs, kwargs_origin)
    std_origin, standardization = ctx.get(scikit, "standardization")
    if isinstance(standardization, bool):
        ctx.put("models.standardization", standardization, std_origin)
    grid_origin, grid = ctx.get(scikit, "cross_validation_parameters")
    folds_origin, folds = ctx.get(scikit, "cross_validation_folds")
    grouped_origin, grouped = ctx.get(scikit, "cross_validation_grouped")
    if not (isinstance(grid, dict) and grid):
        for key_origin, value in ((folds_origin, folds), (grouped_origin, grouped)):
            if key_origin and not is_unset(value):
                ctx.warn(key_origin, "ignored: no cross_validation_parameters")
        return
    cv = "models.cross_validation"
    ctx.put(f"{cv}.parameters", {k: v if isinstance(v, list) else [v] for k, v in grid.items()},
            grid_origin)
    if not is_unset(folds):
        ctx.put(f"{cv}.folds", folds, folds_origin)
    if is_unset(grouped):  # iota2's default differs from geoclass's
        grouped, grouped_origin = False, f"{scikit}.cross_validation_grouped (iota2's default)"
    ctx.put(f"{cv}.grouped", grouped, grouped_origin)


def _sklearn_path(name: str) -> str | None:
    """`RandomForestClassifier` -> `sklearn.ensemble.RandomForestClassifier`."""
    if "." in name:
        return name
    # scikit-learn is imported here, for an iota2 file that names a classifier: reading a
    # configuration stays light
    classifier = importlib.import_module("sklearn.base").ClassifierMixin
    for module in _SKLEARN_MODULES:
        cls = getattr(importlib.import_module(f"sklearn.{module}"), name, None)
        if isinstance(cls, type) and issubclass(cls, classifier):
            return f"sklearn.{module}.{name}"
    return None


# --- YAML ---------------------------------------------------------------------------------------


def _flow(key: str, value: Any) -> str:
    text = yaml.safe_dump({key: value}, default_flow_style=True, sort_keys=False,
                          allow_unicode=True, width=10**9)
    return text.strip()[1:-1]


def _emit(mapping: dict, prefix: str, origins: dict, indent: int) -> list[str]:
    lines = []
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        comment = f"  # iota2: {origins[dotted]}" if dotted in origins else ""
        if isinstance(value, dict) and value and dotted not in origins:
            lines.append(f"{' ' * indent}{_flow(key, {})[:-4]}:{comment}")
            lines += _emit(value, f"{dotted}.", origins, indent + 2)
        else:
            lines.append(f"{' ' * indent}{_flow(key, value)}{comment}")
    return lines


def to_yaml(conversion: Conversion) -> str:
    """The conversion as a geoclass YAML file: errors and warnings as comments at the top,
    and beside each key the iota2 setting it came from."""
    lines = ["# geoclass configuration converted from an iota2 configuration "
             "(geoclass import-iota2)"]
    lines += [f"# error: {e}" for e in conversion.errors]
    lines += [f"# warning: {w}" for w in conversion.warnings]
    lines += _emit(conversion.data, "", conversion.origins, 0)
    return "\n".join(lines) + "\n"


# --- loading ------------------------------------------------------------------------------------

_IOTA2_NAME_OF = {target: name for name, target in reversed(IOTA2_NAMES.items())}


def _name_iota2_keys(message: str, conversion: Conversion) -> str:
    """Append to each `  geoclass.key: ...` line of a validation message its iota2 name."""
    def annotate(match: re.Match) -> str:
        key = match.group(1)
        name = conversion.origins.get(key) or _IOTA2_NAME_OF.get(key)
        return f"{match.group(0)} (iota2: {name})" if name else match.group(0)
    return re.sub(r"(?m)^  ([\w.]+): .*$", annotate, message)


def load_iota2(path: str | Path, text: str | None = None) -> Config:
    """Read, convert and validate an iota2 configuration file. Warnings are logged (and kept
    in `config._import_warnings`); settings geoclass cannot reproduce raise a `ConfigError`
    that lists them all."""
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig") if text is None else text
    try:
        raw = parse_iota2(text, str(path))
    except ConfigError as err:
        raise ConfigError(f"{err}\n(read as an iota2 configuration, since it is not valid "
                          "YAML)") from None
    base_dir = path.resolve().parent
    conversion = convert_iota2(raw, base_dir)
    for warning in conversion.warnings:
        log.warning("%s: %s", path.name, warning)
    if conversion.errors:
        listed = "\n".join(f"  {e}" for e in conversion.errors)
        raise ConfigError(f"iota2 configuration {path}: geoclass cannot reproduce these "
                          f"settings:\n{listed}")
    try:
        config = parse_config(conversion.data, base_dir, str(path), hint=hint_for)
    except ConfigError as err:
        raise ConfigError(_name_iota2_keys(str(err), conversion)) from None
    config.source = path.resolve()
    config._import_warnings = list(conversion.warnings)
    return config
