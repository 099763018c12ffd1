"""The key map from iota2's configuration to geoclass's: one rule per iota2 `section.key`
(the geoclass key it becomes and how its value is carried, or why it is ignored), the names
table used for hints, and `hint_for`.

Names are matched without case and underscores, so iota2's older camelCase names
(`argTrain.sampleSelection`) and its newer snake_case ones (`arg_train.sample_selection`) are
both read. Sections that iota2 moved keys between over its versions (`runs` in `chain` or
`argTrain`, `proj` in `GlobChain` or `chain`) accept them in either.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from geoclass.config import Features
from geoclass.io.bands import L8_BANDS, S2_BANDS
from geoclass.io.iota2.parser import is_unset

__all__ = ["IOTA2_NAMES", "RULES", "SECTION_RULES", "hint_for", "norm"]


def norm(name: str) -> str:
    """A name without case and underscores: `sample_selection` == `sampleSelection`."""
    return str(name).replace("_", "").lower()


# --- handlers: (ctx, origin, value, target) ---------------------------------------------------


def _plain(ctx, origin, value, target):
    if not is_unset(value):
        ctx.put(target, value, origin)


def _path(ctx, origin, value, target):
    if not is_unset(value):
        ctx.put(target, ctx.path(value), origin)


def _tiles(ctx, origin, value, target):
    if not is_unset(value):
        tiles = value.split() if isinstance(value, str) else [str(t) for t in value]
        ctx.put(target, tiles, origin)


def _resolution(ctx, origin, value, target):
    values = value if isinstance(value, list) else [value]
    values = [abs(float(v)) for v in values if not is_unset(v)]
    if not values:
        return
    if len(set(values)) > 1:
        ctx.error(origin, f"not supported: pixels of {values} (geoclass grids have square "
                          "pixels)")
        return
    ctx.put(target, values[0], origin)


def _cloud_threshold(ctx, origin, value, target):
    """iota2 keeps the pixels seen at least n times (`nbView >= n`); geoclass keeps those
    whose clear observations number more than its threshold: n - 1."""
    if is_unset(value):
        return
    try:
        count = int(value)
    except (TypeError, ValueError):
        ctx.error(origin, f"'{value}' is not an integer")
        return
    ctx.put(target, max(count - 1, 0),
            f"{origin} = {count} (clear dates >= {count})")


def _multi_regions(ctx) -> bool:
    """Older iota2's `chain.mode: 'multi_regions'`: the regions are tiles (`chain.model`)."""
    return str(ctx.get("chain", "mode")[1]).strip().lower() == "multi_regions"


def _region_path(ctx, origin, value, target):
    if is_unset(value):
        return
    if _multi_regions(ctx):
        ctx.warn(origin, "ignored: with chain.mode 'multi_regions', iota2 writes there the "
                         "regions it makes from the tiles of chain.model")
        return
    ctx.put(target, ctx.path(value), origin)


def _mode(ctx, origin, value, target):
    """Older iota2's region modes: 'one_region' (every tile, one model), 'outside' (the
    regions of chain.regionPath), 'multi_regions' (tiles grouped by chain.model)."""
    if is_unset(value):
        return
    mode = str(value).strip().lower()
    if mode == "one_region":
        ctx.warn(origin, "not needed: without regions, geoclass trains one model for all tiles")
    elif mode == "outside":
        ctx.warn(origin, "not needed: geoclass reads the regions of chain.regionPath")
    elif mode != "multi_regions":
        ctx.error(origin, f"'{value}' is not one of iota2's modes (one_region, multi_regions, "
                          "outside)")
    elif is_unset(ctx.get("chain", "model")[1]):
        ctx.error(origin, "'multi_regions' needs chain.model, the file of the tiles of each "
                          "region")


def _model_file(ctx, origin, value, target):
    """Older iota2's region list (`chain.model`, read with `chain.mode: 'multi_regions'`):
    one line per region, `R1 : T31TCJ,T31TDJ`; region k is the k-th line (the name before
    ':' is not read), up to the first empty line, as iota2 reads it."""
    if is_unset(value):
        return
    if not _multi_regions(ctx):
        ctx.warn(origin, "ignored: iota2 reads it only with chain.mode 'multi_regions'")
        return
    path = Path(ctx.path(value))
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        ctx.error(origin, f"cannot read the region list {path}: {err}")
        return
    regions: dict[int, list[str]] = {}
    for number, line in enumerate(lines, 1):
        if line == "":
            if any(rest.strip() for rest in lines[number:]):
                ctx.warn(origin, f"{path.name}: lines after the empty line {number} ignored "
                                 "(iota2 stops reading there)")
            break
        tiles = [t for t in line.split(":")[-1].replace(" ", "").split(",") if t]
        if not tiles:
            ctx.error(origin, f"{path.name}, line {number}: no tile in {line!r} (expected "
                              "'R1 : T31TCJ,T31TDJ')")
            return
        regions[len(regions) + 1] = tiles
    if not regions:
        ctx.error(origin, f"{path.name}: no region (expected lines like 'R1 : T31TCJ,T31TDJ')")
        return
    ctx.put(target, regions, origin)


def _words(ctx, origin, value, target):
    if is_unset(value):
        return
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    ctx.put(target, [item.strip() for item in items if item.strip()], origin)


def _date(ctx, origin, value, target):
    if is_unset(value):
        return
    auto_origin, auto = ctx.get("GlobChain", "autoDate")
    if auto is not False:
        ctx.warn(origin, f"ignored: {auto_origin or 'GlobChain.autoDate'} is True (iota2's "
                         "default), so iota2 took the date range from the data, as geoclass "
                         "does")
        return
    text = str(value).strip().replace("-", "")
    try:
        ctx.put(target, dt.datetime.strptime(text, "%Y%m%d").date(), origin)
    except ValueError:
        ctx.error(origin, f"'{value}' is not a date (iota2 writes YYYYMMDD)")


def _auto_date(ctx, origin, value, target):
    if value is not False:
        return
    dates = [k for s in SENSORS for k in ("startDate", "endDate") if ctx.get(s, k)[0]]
    if not dates:
        ctx.warn(origin, "False without any sensor's startDate/endDate: geoclass takes the "
                         "date range from the data")


def _keep_bands(ctx, origin, value, target):
    if is_unset(value):
        return
    bands = _sensor_bands(origin)
    if {str(b) for b in value} == set(bands):
        ctx.warn(origin, f"not needed: geoclass keeps every band ({', '.join(bands)})")
        return
    _, extract = ctx.get("iota2FeatureExtraction", "extractBands")
    if extract is True:
        ctx.error(origin, f"not supported yet: band selection {list(value)}; geoclass keeps "
                          f"every band ({', '.join(bands)})")
    else:
        ctx.warn(origin, "ignored: iota2 selects bands only with "
                         "iota2FeatureExtraction.extractBands True")


def _sensor_bands(origin: str) -> tuple[str, ...]:
    return L8_BANDS if norm(origin).startswith("landsat") else S2_BANDS


def _additional(ctx, origin, value, target):
    if is_unset(value):
        return
    _, use = ctx.get("GlobChain", "useAdditionalFeatures")
    if use is True:
        ctx.error(origin, f"not supported: OTB BandMath expressions ({value}); write them as "
                          "features.user_functions")
    else:
        ctx.warn(origin, "ignored: GlobChain.useAdditionalFeatures is not True")


def _gapfilling(ctx, origin, value, target):
    if value is not False:
        return
    sensors = ctx.dated_sensors()
    if sensors:
        ctx.error(origin, "False is not supported: geoclass always gap-fills the dated series "
                          f"({', '.join(sensors)}) onto a regular date grid")
    else:
        ctx.warn(origin, "ignored: geoclass gap-fills dated series only, and this "
                         "configuration has none (userFeat only): nothing changes")


def _indices(ctx, origin, value, target):
    if is_unset(value):
        return
    known = get_args(get_args(Features.model_fields["indices"].annotation)[0])
    names = [str(v) for v in value] if isinstance(value, list) else str(value).split()
    unknown = [n for n in names if n not in known]
    if unknown:
        ctx.error(origin, f"not supported: {', '.join(unknown)} (geoclass computes "
                          f"{', '.join(known)}; others can be features.user_functions)")
    ctx.put(target, [n for n in names if n in known], origin)


def _probability(ctx, origin, value, target):
    if is_unset(value):
        return
    if value is True or ctx.value(target) is None:
        ctx.put(target, bool(value), origin)


def _classif_mode(ctx, origin, value, target):
    if not is_unset(value) and str(value).lower() != "separate":
        ctx.error(origin, f"'{value}' is not supported: geoclass classifies each pixel with "
                          "its own region's model ('separate'), it does not fuse the "
                          "classifications of every region's model ('fusion')")


def _arbo(ctx, origin, value, target):
    if not is_unset(value) and str(value).strip() != "/*":
        ctx.warn(origin, f"ignored: '{value}'; geoclass reads the rasters of "
                         "<userFeatPath>/<TILE>/ (iota2's '/*')")


def _external_module(ctx, origin, value, target):
    if not is_unset(value) and is_unset(ctx.get("external_features", "functions")[1]):
        ctx.warn(origin, "ignored: no external_features.functions")


def _external_functions(ctx, origin, value, target):
    if is_unset(value):
        return
    names = []
    for item in value.replace(",", " ").split() if isinstance(value, str) else value:
        if isinstance(item, list):
            if len(item) > 1 and item[1]:
                ctx.error(origin, f"not supported: arguments of external functions ({item})")
            item = item[0]
        names.append(str(item))
    _, module = ctx.get("external_features", "module")
    if is_unset(module):
        ctx.error(origin, "not supported: functions without a module (iota2's own external "
                          "functions are not part of geoclass)")
        return
    stem = Path(str(module)).stem if str(module).endswith(".py") else str(module)
    ctx.put(target, [f"{stem}:{name}" for name in names], origin)
    ctx.warn(origin, f"check: iota2's functions receive iota2's data container and return "
                     f"numpy arrays; geoclass calls each with the lazy gap-filled cube (xarray) "
                     f"and expects a DataArray: adapt them, and put the folder of {module} on "
                     "PYTHONPATH")


def _unsupported_if_true(reason: str) -> Callable:
    def handle(ctx, origin, value, target):
        if value is True:
            ctx.error(origin, f"not supported: {reason}")
        elif not is_unset(value) and value is not False:
            ctx.warn(origin, f"ignored: {reason} is not supported")
    return handle


def _unsupported_if_set(reason: str, yet: bool = False) -> Callable:
    def handle(ctx, origin, value, target):
        if not is_unset(value) and value is not False:
            ctx.error(origin, f"not supported{' yet' if yet else ''}: {reason}")
    return handle


def _ignored(reason: str) -> Callable:
    """A key geoclass has no use for; warned about when it has a value."""
    def handle(ctx, origin, value, target):
        if not is_unset(value):
            ctx.warn(origin, reason)
    return handle


def _concat_mode(ctx, origin, value, target):
    if value is False:
        ctx.error(origin, "False is not supported: geoclass adds the external features to the "
                          "others, it does not replace them")


def _consumed(ctx, origin, value, target):
    """Read together with other keys (see `convert`)."""


def _selection(ctx, origin, value, target):
    if is_unset(value):
        return
    if not isinstance(value, dict):
        ctx.error(origin, f"expected a mapping, found {value!r}")
        return
    ctx.put(target, _selection_rule(ctx, origin, value, top=True), origin)


_SELECTION_KEYS = {"sampler", "strategy", "strategy.constant.nb", "strategy.percent.p",
                   "strategy.total.v"}


def _selection_rule(ctx, origin, raw: dict, top: bool) -> dict:
    rule: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{origin}.{key}"
        if key in _SELECTION_KEYS:
            rule[key] = value
        elif key == "strategy.byclass.in":
            rule[key] = value if isinstance(value, dict) else ctx.class_counts(where, value)
        elif key == "per_model" and top:
            rule[key] = [_selection_rule(ctx, f"{where}[{i}]", item, top=False)
                         for i, item in enumerate(value)]
        elif key == "target_model" and not top:
            rule[key] = int(value)
        elif key == "ram":
            ctx.warn(where, "not needed: OTB RAM hint")
        elif key == "rand":
            ctx.warn(where, "not needed: geoclass draws the samples from chain.random_seed "
                            "and the run")
        elif key.startswith("elev."):
            ctx.warn(where, "not needed: OTB elevation settings")
        elif key == "sampler.periodic.jitter":
            ctx.warn(where, "not supported: the jitter of the periodic sampler")
        else:
            ctx.warn(where, "unknown sampleSelection key: ignored")
    return rule


_AUGMENTATION_KEYS = {"activate", "strategy", "strategy.jitter.stdfactor",
                      "strategy.smote.neighbors", "samples.strategy",
                      "samples.strategy.minNumber"}


def _augmentation(ctx, origin, value, target):
    if is_unset(value) or not isinstance(value, dict):
        return
    out: dict[str, Any] = {}
    for key, item in value.items():
        where = f"{origin}.{key}"
        if key in _AUGMENTATION_KEYS:
            out[key] = item
        elif key == "target_models":
            models = item if isinstance(item, list) else [item]
            out[key] = [int(m) if str(m).isdigit() else str(m) for m in models]
        elif key == "samples.strategy.byClass":
            out[key] = item if isinstance(item, dict) else ctx.class_counts(where, item)
        else:
            ctx.warn(where, "unknown sampleAugmentation key: ignored")
    ctx.put(target, out, origin)


# --- the rules ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    section: str  # iota2's (older) section name
    key: str  # iota2's (older) key name
    target: str | None  # the geoclass key, if there is one
    handle: Callable


SENSORS = {"Sentinel_2": "sentinel_2", "Sentinel_2_S2C": "sentinel_2_s2c",
           "Landsat8": "landsat_8", "Landsat8_old": "landsat_8_old"}

# other section names iota2 used -> the name the rules use
SECTION_ALIASES = {"sensorsdatainterpolation": "GlobChain", "i2featureextraction":
                   "iota2FeatureExtraction", "argclassification": "argClassification"}

_LOGS = _ignored("not needed: geoclass logs to the console and to output_path/logs/ "
                 "(--debug for debug logs)")
_CUBES = _ignored("not needed: geoclass writes its feature cubes to output_path/cubes/")
_STEPS = _ignored("ignored: geoclass runs every step that is not up to date; use "
                  "`geoclass run --from-step STEP` or `--only-step STEP`")
_CROPMIX = _ignored("ignored: used by iota2 with cropMix only, which geoclass does not support")
_FUSION_ONLY = _ignored("ignored: iota2 uses it only with classifMode 'fusion' (fusion of every "
                        "region model's classification); the fusion of runs is "
                        "chain.merge_final_classifications*")
_MERGE = "classification.merge_final_classifications"
_BOUNDARY = "classification.boundary_fusion"

_TABLE: list[tuple[str, str, str | None, Callable]] = [
    # (iota2 sections, iota2 key, geoclass key, handler)
    ("chain", "outputPath", "chain.output_path", _path),
    ("chain", "listTile", "chain.list_tile", _tiles),
    ("chain", "groundTruth", "chain.ground_truth", _path),
    ("chain", "dataField", "chain.data_field", _plain),
    ("chain", "spatialResolution", "chain.spatial_resolution", _resolution),
    ("chain", "regionPath", "chain.region_path", _region_path),
    ("chain", "mode", None, _mode),
    ("chain", "model", "chain.region_tiles", _model_file),
    ("chain", "regionField", "chain.region_field", _plain),
    ("chain", "nomenclaturePath", "chain.nomenclature_path", _path),
    ("chain", "colorTable", "chain.color_table", _path),
    ("chain", "S2Path", "chain.s2_path", _path),
    ("chain", "S2_S2C_Path", "chain.s2_s2c_path", _path),
    ("chain", "L8Path", "chain.l8_path", _path),
    ("chain", "L8Path_old", "chain.l8_path_old", _path),
    ("chain", "userFeatPath", "chain.user_feat_path", _path),
    ("chain|GlobChain", "proj", "chain.proj", _plain),
    ("chain|argTrain", "runs", "chain.runs", _plain),
    ("chain|argTrain", "ratio", "chain.ratio", _plain),
    ("chain|argTrain", "random_seed", "chain.random_seed", _plain),
    ("chain|argTrain", "cloud_threshold", "sampling.cloud_threshold", _cloud_threshold),
    ("chain|argTrain", "splitGroundTruth", "chain.split_ground_truth", _plain),
    ("chain|argTrain", "enable_autoContext", "chain.enable_autocontext", _plain),
    ("chain|argTrain", "autoContext_iterations", "chain.autocontext_iterations", _plain),
    ("chain|argClassification", "merge_final_classifications", f"{_MERGE}.enable", _plain),
    ("chain|argClassification", "merge_final_classifications_method", f"{_MERGE}.method",
     _plain),
    ("chain|argClassification", "merge_final_classifications_undecidedlabel",
     f"{_MERGE}.undecided_label", _plain),
    ("chain|argClassification", "dempstershafer_mob", f"{_MERGE}.dempstershafer_mob", _plain),
    ("chain|argClassification", "merge_final_classifications_ratio", None, _ignored(
        "not supported: geoclass computes each run's Dempster-Shafer masses from its own "
        "validation pixels and validates the fused map on the pixels that are validation "
        "pixels in every run")),
    ("chain|argClassification", "fusionOfClassificationAllSamplesValidation", None, _ignored(
        "not needed: geoclass validates the fused map on the pixels that are validation "
        "pixels in every run")),
    ("chain|argClassification", "keep_runs_results", None,
     _ignored("not needed: geoclass keeps every run's map")),
    ("chain", "S1Path", None, _unsupported_if_set(
        "iota2's S1Path is an S1Processor configuration file (raw Sentinel-1 GRD processed "
        "by iota2); geoclass reads calibrated, orthorectified backscatter GeoTIFFs from a "
        "folder, chain.s1_path (prepare them with S1Tiling)")),
    ("chain", "L5Path_old", None, _unsupported_if_set("Landsat-5 images")),
    ("chain", "S2_L3A_Path", None, _unsupported_if_set("Sentinel-2 L3A syntheses")),
    ("chain", "enableCrossValidation", None, _unsupported_if_true(
        "iota2's cross-validation of OTB models (scikit_models_parameters has geoclass's)")),
    ("chain", "firstStep", None, _STEPS),
    ("chain", "lastStep", None, _STEPS),
    ("chain", "remove_outputPath", None, _ignored(
        "not needed: geoclass reuses the up-to-date outputs of the same configuration and "
        "replaces another configuration's only with `geoclass run --overwrite`")),
    ("chain", "check_inputs", None, _ignored(
        "not needed: geoclass always checks the inputs (`geoclass check` runs the checks "
        "alone)")),
    ("chain", "logFileLevel", None, _LOGS),
    ("chain", "logFile", None, _LOGS),
    ("chain", "logConsoleLevel", None, _LOGS),
    ("chain", "logConsole", None, _LOGS),
    ("chain", "enableConsole", None, _LOGS),
    ("chain", "remove_tmp_files", None, _ignored("not needed: geoclass keeps no temporary "
                                                 "files")),
    ("chain", "jobsPath", None, _ignored("not needed: PBS job files; geoclass runs on a dask "
                                         "cluster")),
    ("chain", "outputStatistics", None, _ignored(
        "not supported yet: iota2's confidence histograms of the learning and validation "
        "pixels (the maps are unaffected)")),
    ("chain", "mode_outside_RegionSplit", None, _ignored(
        "not supported: iota2 splits the models of very large regions; geoclass trains one "
        "model per region")),
    ("chain", "force_standard_labels", None, _ignored(
        "not needed: geoclass names features after their sensor, band and date")),
    *[("chain", f"{name}_output_path", None, _CUBES)
      for name in ("S2", "S2_S2C", "S2_L3A", "L8", "L8_old", "L5_old")],
    # argTrain
    ("argTrain", "classifier", "models.classifier", _consumed),
    ("argTrain", "options", "models.params", _consumed),
    ("argTrain", "otb_classifier_options", "models.params", _consumed),
    ("argTrain", "sampleSelection", "sampling.sample_selection", _selection),
    ("argTrain", "sampleAugmentation", "sampling.sample_augmentation", _augmentation),
    ("argTrain", "sampleManagement", None, _unsupported_if_set(
        "copying samples between models (a CSV of class copies between regions)", yet=True)),
    ("argTrain", "dempster_shafer_SAR_Opt_fusion", None, _unsupported_if_true(
        "Dempster-Shafer fusion of SAR and optical classifications")),
    ("argTrain", "cropMix", None, _unsupported_if_true("cropMix (annual crops learnt from a "
                                                       "previous classification)")),
    ("argTrain", "samplesClassifMix", None, _unsupported_if_true(
        "samplesClassifMix (samples from a previous classification)")),
    *[("argTrain", key, None, _CROPMIX) for key in (
        "prevFeatures", "outputPrevFeatures", "annualCrop", "ACropLabelReplacement",
        "annualClassesExtractionSource", "validityThreshold")],
    # scikit_models_parameters: read together with argTrain.classifier
    ("scikit_models_parameters", "model_type", "models.classifier", _consumed),
    ("scikit_models_parameters", "keyword_arguments", "models.params", _consumed),
    ("scikit_models_parameters", "standardization", "models.standardization", _consumed),
    ("scikit_models_parameters", "cross_validation_parameters",
     "models.cross_validation.parameters", _consumed),
    ("scikit_models_parameters", "cross_validation_folds", "models.cross_validation.folds",
     _consumed),
    ("scikit_models_parameters", "cross_validation_grouped", "models.cross_validation.grouped",
     _consumed),
    # argClassification
    ("argClassification", "classifMode", None, _classif_mode),
    ("argClassification", "fusionOptions", None, _FUSION_ONLY),
    ("argClassification", "noLabelManagement", None, _FUSION_ONLY),
    ("argClassification", "enable_probability_map", "classification.enable_probability_map",
     _probability),
    ("argClassification", "generate_final_probability_map",
     "classification.enable_probability_map", _probability),
    ("argClassification", "enable_boundary_fusion", f"{_BOUNDARY}.enable", _plain),
    ("argClassification", "boundary_interior_buffer_size", f"{_BOUNDARY}.interior_buffer_size",
     _plain),
    ("argClassification", "boundary_exterior_buffer_size", f"{_BOUNDARY}.exterior_buffer_size",
     _plain),
    ("argClassification", "boundary_fusion_epsilon", f"{_BOUNDARY}.epsilon", _plain),
    ("argClassification", "boundary_comparison_mode", None, _ignored(
        "not supported yet: maps with and without boundary fusion for comparison")),
    # GlobChain (sensors_data_interpolation in newer iota2)
    ("GlobChain", "features", "features.indices", _indices),
    ("GlobChain", "useGapFilling", None, _gapfilling),
    ("GlobChain", "autoDate", None, _auto_date),
    ("GlobChain", "useAdditionalFeatures", None, _consumed),
    ("GlobChain", "writeOutputs", None, _CUBES),
    # iota2FeatureExtraction (i2_feature_extraction)
    ("iota2FeatureExtraction", "copyinput", "features.keep_reflectances", _plain),
    ("iota2FeatureExtraction", "extractBands", None, _consumed),
    ("iota2FeatureExtraction", "relrefl", None, _unsupported_if_true("relative reflectances")),
    ("iota2FeatureExtraction", "acorfeat", None, _unsupported_if_true(
        "ACORFEAT features")),
    ("iota2FeatureExtraction", "keepduplicates", None, _ignored(
        "not needed: used by iota2 with relrefl only")),
    # sensors
    *[row for section, name in SENSORS.items() for row in (
        (section, "temporalResolution", f"sensors.{name}.temporal_resolution", _plain),
        (section, "startDate", f"sensors.{name}.start_date", _date),
        (section, "endDate", f"sensors.{name}.end_date", _date),
        (section, "keepBands", None, _keep_bands),
        (section, "additionalFeatures", None, _additional),
        (section, "write_reproject_resampled_input_dates_stack", None, _CUBES))],
    # userFeat, external_features
    ("userFeat", "arbo", None, _arbo),
    ("userFeat", "patterns", "user_feat.patterns", _words),
    ("external_features", "module", "features.user_functions", _external_module),
    ("external_features", "functions", "features.user_functions", _external_functions),
    ("external_features", "concat_mode", None, _concat_mode),
    *[("external_features", key, None, _ignored(
        "not needed: geoclass computes the features chunk by chunk with dask (dask.chunk_size)"))
      for key in ("number_of_chunks", "chunk_size_x", "chunk_size_y", "chunk_size_mode")],
    ("external_features", "output_name", None, _ignored(
        "not needed: geoclass names the features after the functions' results")),
]


def _build() -> dict[tuple[str, str], Rule]:
    rules = {}
    for sections, key, target, handle in _TABLE:
        for section in sections.split("|"):
            rules[norm(section), norm(key)] = Rule(section, key, target, handle)
    return rules


RULES = _build()
# a section name as written (normalized) -> the normalized name its rules use
SECTIONS = {s: s for s, _ in RULES} | {alias: norm(name) for alias, name in
                                        SECTION_ALIASES.items()}


# --- sections geoclass does not read -----------------------------------------------------------


def _section_ignored(reason: str, error_key: str | None = None, error: str | None = None):
    """A section geoclass has no use for: one warning; an error if `error_key` has a value."""
    def handle(ctx, section, body):
        for key, value in body.items():
            if error_key and norm(key) == norm(error_key) and not is_unset(value) \
                    and value is not False:
                ctx.error(f"{section}.{key}", f"not supported: {error}")
        ctx.warn(section, reason)
    return handle


def _builders(ctx, section, body):
    for key, value in body.items():
        names = value if isinstance(value, list) else [value]
        if norm(key) == "buildersclassname" and set(map(str, names)) - {"i2_classification"}:
            ctx.error(f"{section}.{key}", f"not supported: builders {names} (geoclass "
                                          "builds land-cover classifications only)")
    ctx.warn(section, "not needed: geoclass's chain is iota2's classification builder")


SECTION_RULES: dict[str, Callable] = {
    "landsat5old": _section_ignored("ignored: Landsat-5 is not supported"),
    "sentinel2l3a": _section_ignored("ignored: Sentinel-2 L3A is not supported"),
    "sentinel1": _section_ignored("ignored: geoclass reads Sentinel-1 options from "
                                  "sensors.sentinel_1"),
    "dimred": _section_ignored("ignored: dimensionality reduction is not supported",
                               "dimRed", "dimensionality reduction of the features"),
    "coregistration": _section_ignored("ignored: co-registration is not supported",
                                       "VHRPath", "co-registration on a VHR image"),
    "simplification": _section_ignored("not supported yet: vectorisation of the final map "
                                       "(the raster maps are unaffected)"),
    "pythondatamanaging": _section_ignored("not needed: geoclass chunks the work with dask "
                                           "(dask.chunk_size)"),
    "taskretrylimits": _section_ignored("not needed: dask retries lost tasks"),
    "builders": _builders,
}


# --- names, for hints --------------------------------------------------------------------------

_SECTION_TARGETS = {
    "chain": "chain", "argTrain": "models / sampling", "argClassification": "classification",
    "GlobChain": "chain.proj / features.indices", "scikit_models_parameters": "models",
    "iota2FeatureExtraction": "features", "userFeat": "user_feat",
    "external_features": "features.user_functions",
    **{section: f"sensors.{name}" for section, name in SENSORS.items()},
}

IOTA2_NAMES: dict[str, str] = {
    **_SECTION_TARGETS,
    **{f"{r.section}.{r.key}": r.target for r in RULES.values() if r.target},
}


# names too common to be hinted outside their own section (`models.model` is no iota2 name)
_HINT_IN_SECTION_ONLY = {"chain.model"}


def hint_for(loc: tuple) -> str | None:
    """For an unknown key at `loc` (pydantic's location) that is one of iota2's names:
    'did you mean <geoclass key> (iota2's name)?'; None otherwise."""
    parts = [str(p) for p in loc]
    if not parts:
        return None
    whole, key, parent = norm(".".join(parts)), norm(parts[-1]), ".".join(parts[:-1])
    same_key = {}
    for name, target in IOTA2_NAMES.items():
        if norm(name) == whole:
            return f"did you mean {target} (iota2's name)?"
        if norm(name.rsplit(".", 1)[-1]) == key and name not in _HINT_IN_SECTION_ONLY:
            same_key[target] = name
    for target in same_key:
        if target.rsplit(".", 1)[0] == parent:
            return f"did you mean {target} (iota2's name)?"
    if len(same_key) == 1:
        return f"did you mean {next(iter(same_key))} (iota2's name)?"
    return None
