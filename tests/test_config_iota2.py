"""iota2 configuration files: the parser, the key map, the YAML export, the hints for iota2
names in YAML, and their wiring into load_config and the CLI. Fast: no chain runs."""

from __future__ import annotations

import datetime as dt
import logging
import re
from pathlib import Path

import pytest
import yaml

from geoclass.cli import main
from geoclass.config import parse_config
from geoclass.errors import ConfigError
from geoclass.io.configfile import load_config
from geoclass.io.iota2.convert import convert_iota2, to_yaml
from geoclass.io.iota2.keys import IOTA2_NAMES, hint_for
from geoclass.io.iota2.otb import otb_model
from geoclass.io.iota2.parser import is_unset, looks_like_iota2, parse_iota2, read_iota2
from geoclass.models import make_classifier

from .conftest import IOTA2 as SHARED_IOTA2
from .conftest import NO_IOTA2_DATA

# resolved: the config holds resolved paths, and ../shared may be a symbolic link
IOTA2 = SHARED_IOTA2.resolve()
RUNNING = IOTA2 / "references" / "running_iota2"
SPOT6 = IOTA2 / "spot_6_data"
needs_data = pytest.mark.skipif(not IOTA2.is_dir(), reason=NO_IOTA2_DATA)


# --- parser -----------------------------------------------------------------------------------

PARSE_CASES = {
    "comments after values and inside dicts": (
        "chain:\n{\n  runs: 2 # two runs\n  sel: {'a': 1, # inside\n        'b': 2}\n}\n",
        {"chain": {"runs": 2, "sel": {"a": 1, "b": 2}}}),
    "comment glued to a bare word": (
        "chain: { lastStep:validation#init,sampling\n logFileLevel:DEBUG }",
        {"chain": {"lastStep": "validation", "logFileLevel": "DEBUG"}}),
    "nested dict over several lines": (
        'argTrain:\n{\n  sampleSelection : { "sampler":"random",\n'
        '                      "strategy":"percent", #percent\n'
        '                      "strategy.percent.p":0.1,\n   "ram":4000\n  }\n}\n',
        {"argTrain": {"sampleSelection": {"sampler": "random", "strategy": "percent",
                                          "strategy.percent.p": 0.1, "ram": 4000}}}),
    "lists with and without commas": (
        "s: { res:[1.5], tiles: [a, 'b' 3], nested: [[1, 2], {x: 1}], empty: [] }",
        {"s": {"res": [1.5], "tiles": ["a", "b", 3], "nested": [[1, 2], {"x": 1}],
               "empty": []}}),
    "quoted strings holding ':' and '#'": (
        """s: { proj : "EPSG:2154", label: 'a#b:c', esc: 'it\\'s' }""",
        {"s": {"proj": "EPSG:2154", "label": "a#b:c", "esc": "it's"}}),
    "booleans, None and the string 'None'": (
        "s: { a: True, b: False, c: None, d: 'None', e: '', flag }",
        {"s": {"a": True, "b": False, "c": None, "d": "None", "e": "", "flag": True}}),
    "negative, float and exponent numbers": (
        "s: { a: -3, b: 0.7, c: -1.5, d: 1e3, e: 2.5e-2, f: 10. }",
        {"s": {"a": -3, "b": 0.7, "c": -1.5, "d": 1000.0, "e": 0.025, "f": 10.0}}),
    "bare words are strings": (
        "chain: { firstStep: init, mode:separate }",
        {"chain": {"firstStep": "init", "mode": "separate"}}),
    "leading blanks before a section, commas between entries": (
        "a: {x:1}\n userFeat:\n{\n    arbo:\"/*\", patterns:\"spot6\"\n}\n",
        {"a": {"x": 1}, "userFeat": {"arbo": "/*", "patterns": "spot6"}}),
    "top-level scalar values": (
        "AllDiffStats:'ValidNOK, ValidOK'\nValidNOK:\n{\n\tbins:'1 2'\n}\n",
        {"AllDiffStats": "ValidNOK, ValidOK", "ValidNOK": {"bins": "1 2"}}),
    "references and expressions": (
        "chain: { out: '/data/run', res: [10, 20] }\n"
        "paths: { final: $chain.out + '/final', res2: $chain.res[1] * 2, n: -(1 + 2) }",
        {"chain": {"out": "/data/run", "res": [10, 20]},
         "paths": {"final": "/data/run/final", "res2": 40, "n": -3}}),
    "environment variables": (
        "s: { a: '$GEOCLASS_TEST_ROOT/x', b: '${GEOCLASS_TEST_ROOT}y', c: '$NOT_SET_42',"
        " d: $GEOCLASS_TEST_ROOT, e: ${GEOCLASS_TEST_ROOT} }",
        {"s": {"a": "/env/root/x", "b": "/env/rooty", "c": "$NOT_SET_42",
               "d": "/env/root", "e": "/env/root"}}),
    "triple-quoted strings": (
        "s: { a: '''two\nlines''' }", {"s": {"a": "two\nlines"}}),
}


@pytest.mark.parametrize("text, expected", PARSE_CASES.values(), ids=PARSE_CASES.keys())
def test_parser_reads_iota2_syntax(text, expected, monkeypatch):
    monkeypatch.setenv("GEOCLASS_TEST_ROOT", "/env/root")
    monkeypatch.delenv("NOT_SET_42", raising=False)
    assert parse_iota2(text) == expected


ERROR_CASES = {
    "unterminated brace": ("chain:\n{\n  runs: 1\n", "line 4, column 1: expected '}' to "
                                                      "close the '{' of line 2"),
    "unterminated string": ("chain:\n{\n  outputPath:'/data\n}\n",
                            "line 3, column 14: unterminated string"),
    "unterminated list": ("s: { a: [1, 2 }", "line 1, column 15: expected a value, ',' or ']'"),
    "unquoted path": ("s: { a: /data }", "line 1, column 9: expected a value, found '/' "
                                         "(write paths between quotes)"),
    "number glued to a word": ("s: { a: 10m }", "line 1, column 9: expected a number"),
    "repeated key": ("s: {a: 1}\ns: {b: 2}", "line 2, column 1: repeated key 's'"),
    "missing colon value": ("s: { a: }", "line 1, column 9: expected a value"),
    "unknown reference": ("s: { a: $s.b }", "line 1, column 9: '$s.b' refers to nothing"),
    "circular reference": ("s: { a: $s.b, b: $s.a }", "circular reference"),
    "stray top-level token": ("s: {a: 1}\n}", "line 2, column 1: expected a key"),
}


@pytest.mark.parametrize("text, message", ERROR_CASES.values(), ids=ERROR_CASES.keys())
def test_parser_errors_name_the_file_line_and_what_was_expected(text, message):
    with pytest.raises(ConfigError) as err:
        parse_iota2(text, "my.cfg")
    assert str(err.value).startswith("my.cfg, line ")
    assert message in str(err.value)


@pytest.mark.parametrize("text, expected", [
    ("chain:\n{\n  runs: 1\n}\n", True),
    ("# comment\n\n chain :  # why\n  # more\n{ runs: 1 }", True),
    ("AllDiffStats:'a'\nValidNOK:\n{\n bins:'1'\n}", True),
    ("chain:\n  output_path: run\n  list_tile: [T1]\n", False),
    ("chain:\n  - {a: 1}\n", False),
])
def test_looks_like_iota2_by_content(text, expected):
    assert looks_like_iota2(text) is expected


def test_unset_values():
    assert all(is_unset(v) for v in (None, "None", "none", "", "  "))
    assert not any(is_unset(v) for v in (0, False, "x", [], {}))


@needs_data
def test_real_iota2_files_parse():
    thrs = read_iota2(SPOT6 / "config_thrs.cfg")
    assert thrs["chain"]["spatialResolution"] == [1.5]
    assert thrs["chain"]["firstStep"] == "init" and thrs["chain"]["lastStep"] == "validation"
    assert thrs["argTrain"]["sampleSelection"] == {
        "sampler": "random", "strategy": "percent", "strategy.percent.p": 0.1, "ram": 4000}
    assert thrs["argTrain"]["sampleAugmentation"] == {"activate": False}
    assert thrs["userFeat"] == {"arbo": "/*", "patterns": "spot6"}
    assert thrs["GlobChain"] == {"proj": "EPSG:2154", "useGapFilling": False}
    i2 = read_iota2(RUNNING / "i2_config.cfg")
    assert i2["argTrain"] == {"classifier": "sharkrf",
                              "options": " -classifier.sharkrf.nodesize 25 "}
    assert read_iota2(RUNNING / "i2_config_scikit.cfg")["scikit_models_parameters"] == {}
    for stats in IOTA2.rglob("*_stats_seed_*.cfg"):
        assert read_iota2(stats)["AllDiffStats"] == "ValidNOK, ValidOK, AppNOK, AppOK"


# --- OTB classifiers --------------------------------------------------------------------------

OTB_CASES = {
    "sharkrf": ("sharkrf", "-classifier.sharkrf.nodesize 5 -classifier.sharkrf.nbtrees 100",
                "random_forest", {"n_estimators": 100, "min_samples_split": 6,
                                  "min_samples_leaf": 1, "max_depth": None}),
    "sharkrf defaults": ("sharkrf", "", "random_forest",
                         {"n_estimators": 100, "min_samples_split": 26, "max_depth": None}),
    "rf": ("rf", "-classifier.rf.max 25 -classifier.rf.min 5 -classifier.rf.nbtrees 200 "
                 "-classifier.rf.var 4", "random_forest",
           {"max_depth": 25, "min_samples_split": 6, "min_samples_leaf": 1, "n_estimators": 200,
            "max_features": 4}),
    "rf defaults": ("rf", "", "random_forest",
                    {"max_depth": 5, "min_samples_split": 11, "n_estimators": 100}),
    "libsvm": ("libsvm", "-classifier.libsvm.k rbf -classifier.libsvm.c 10", "svm",
               {"kernel": "rbf", "C": 10.0, "gamma": 1.0}),
    "svm": ("svm", "", "svm", {"kernel": "linear", "C": 1.0}),
    "knn": ("knn", "-classifier.knn.k 7", "sklearn.neighbors.KNeighborsClassifier",
            {"n_neighbors": 7}),
    "bayes": ("bayes", "", "sklearn.discriminant_analysis.QuadraticDiscriminantAnalysis", {}),
    "dt": ("dt", "-classifier.dt.max 8", "sklearn.tree.DecisionTreeClassifier",
           {"max_depth": 8, "min_samples_split": 11}),
    "boost": ("boost", "-classifier.boost.w 50", "sklearn.ensemble.AdaBoostClassifier",
              {"n_estimators": 50}),
    "ann": ("ann", "-classifier.ann.sizes 64 32 -classifier.ann.f ident -classifier.ann.iter 200",
            "sklearn.neural_network.MLPClassifier",
            {"hidden_layer_sizes": [64, 32], "activation": "identity", "max_iter": 200}),
}


@pytest.mark.parametrize("name, options, classifier, params", OTB_CASES.values(),
                         ids=OTB_CASES.keys())
def test_otb_classifiers_map_to_geoclass_models(name, options, classifier, params):
    model = otb_model(name, options)
    assert model.errors == []
    assert model.classifier == classifier
    assert {k: model.params[k] for k in params} == params
    from geoclass.config import Models

    make_classifier(Models(classifier=model.classifier, params=model.params))  # accepted


def test_otb_options_geoclass_cannot_use_are_named():
    model = otb_model("sharkrf", "-classifier.sharkrf.foo 3 -classifier.rf.max 4 -rand 2 "
                                 "-classifier.sharkrf.oobr 0.5")
    text = "\n".join(model.warnings)
    for flag in ("-classifier.sharkrf.foo: not supported", "-classifier.rf.max: ignored",
                 "-rand: not needed", "-classifier.sharkrf.oobr: not supported"):
        assert flag in text
    assert otb_model("libsvm", "-classifier.libsvm.k chi2").errors
    assert otb_model("sharkkm", "").errors
    assert otb_model("xgboost", "") is None


# --- the key map ------------------------------------------------------------------------------


def _convert(raw, base=Path("/base")):
    return convert_iota2(raw, base)


KEY_CASES = {
    "sensor paths": (
        {"chain": {"S2Path": "/s2", "S2_S2C_Path": "/s2c", "L8Path": "/l8",
                   "L8Path_old": "/l8old", "userFeatPath": "rel/uf", "regionPath": "None"}},
        {"chain.s2_path": "/s2", "chain.s2_s2c_path": "/s2c", "chain.l8_path": "/l8",
         "chain.l8_path_old": "/l8old", "chain.user_feat_path": "/base/rel/uf",
         "chain.region_path": None}, [], []),
    "tiles, resolution, runs": (
        {"chain": {"listTile": "T31TCJ T31TDJ", "spatialResolution": 10, "runs": 3,
                   "ratio": 0.6, "random_seed": 7, "regionField": "reg",
                   "splitGroundTruth": False}},
        {"chain.list_tile": ["T31TCJ", "T31TDJ"], "chain.spatial_resolution": 10.0,
         "chain.runs": 3, "chain.ratio": 0.6, "chain.random_seed": 7,
         "chain.region_field": "reg", "chain.split_ground_truth": False}, [], []),
    "square resolution as a list": (
        {"chain": {"spatialResolution": [10, -10]}}, {"chain.spatial_resolution": 10.0},
        [], []),
    "cloud threshold: seen at least n times is more than n - 1": (
        {"chain": {"cloud_threshold": 3}}, {"sampling.cloud_threshold": 2}, [], []),
    "cloud threshold 0 (newer iota2's section)": (
        {"argTrain": {"cloud_threshold": 0}}, {"sampling.cloud_threshold": 0}, [], []),
    "non-square resolution": (
        {"chain": {"spatialResolution": [10, 20]}}, {}, [], ["chain.spatialResolution"]),
    "S1 configuration file": (
        {"chain": {"S1Path": "/s1.cfg", "L5Path_old": "None"}}, {}, [], ["chain.S1Path"]),
    "dates with autoDate False": (
        {"chain": {"S2Path": "/s2"}, "GlobChain": {"autoDate": False},
         "Sentinel_2": {"temporalResolution": 5, "startDate": "20180101", "endDate": 20181231}},
        {"sensors.sentinel_2.temporal_resolution": 5,
         "sensors.sentinel_2.start_date": dt.date(2018, 1, 1),
         "sensors.sentinel_2.end_date": dt.date(2018, 12, 31)}, [], []),
    "dates ignored by iota2's autoDate": (
        {"Landsat8_old": {"startDate": "20180101", "endDate": ""}},
        {"sensors.landsat_8_old.start_date": None}, ["Landsat8_old.startDate"], []),
    "gap-filling off with dated sensors": (
        {"chain": {"S2Path": "/s2"}, "GlobChain": {"useGapFilling": False}}, {}, [],
        ["GlobChain.useGapFilling"]),
    "band selection": (
        {"iota2FeatureExtraction": {"extractBands": True},
         "Sentinel_2": {"keepBands": ["B2", "B3"]},
         "Landsat8": {"keepBands": ["B1", "B2", "B3", "B4", "B5", "B6", "B7"]}},
        {}, ["Landsat8.keepBands: not needed"], ["Sentinel_2.keepBands"]),
    "band list without extractBands": (
        {"Sentinel_2": {"keepBands": ["B2"]}}, {}, ["Sentinel_2.keepBands: ignored"], []),
    "BandMath features": (
        {"GlobChain": {"useAdditionalFeatures": True},
         "Sentinel_2": {"additionalFeatures": "b1+b2"}}, {}, [],
        ["Sentinel_2.additionalFeatures"]),
    "fusion mode": (
        {"argClassification": {"classifMode": "fusion", "fusionOptions": "-method dempstershafer"}},
        {}, ["argClassification.fusionOptions"], ["argClassification.classifMode"]),
    "fusion of runs with iota2's undecided label": (
        {"chain": {"runs": 3, "merge_final_classifications": True,
                   "merge_final_classifications_method": "dempstershafer",
                   "dempstershafer_mob": "recall"}},
        {"classification.merge_final_classifications.enable": True,
         "classification.merge_final_classifications.method": "dempstershafer",
         "classification.merge_final_classifications.dempstershafer_mob": "recall",
         "classification.merge_final_classifications.undecided_label": 255}, [], []),
    "newer iota2 names": (
        {"chain": {"output_path": "/out", "list_tile": "T1", "proj": "EPSG:32631"},
         "arg_train": {"runs": 2, "random_seed": 3, "sample_selection": {"sampler": "periodic"},
                       "enable_autocontext": True, "autocontext_iterations": 2},
         "arg_classification": {"enable_boundary_fusion": True,
                                "boundary_interior_buffer_size": 20,
                                "boundary_exterior_buffer_size": 30,
                                "boundary_fusion_epsilon": 0.01,
                                "generate_final_probability_map": True},
         "sensors_data_interpolation": {"use_gapfilling": True}},
        {"chain.output_path": "/out", "chain.list_tile": ["T1"], "chain.proj": "EPSG:32631",
         "chain.runs": 2, "chain.random_seed": 3, "chain.enable_autocontext": True,
         "chain.autocontext_iterations": 2,
         "sampling.sample_selection": {"sampler": "periodic"},
         "classification.boundary_fusion.enable": True,
         "classification.boundary_fusion.interior_buffer_size": 20,
         "classification.boundary_fusion.exterior_buffer_size": 30,
         "classification.boundary_fusion.epsilon": 0.01,
         "classification.enable_probability_map": True}, [], []),
    "crop mix and sample management": (
        {"argTrain": {"cropMix": True, "sample_management": "/copies.csv",
                      "annualCrop": ["11", "12"]}},
        {}, ["argTrain.annualCrop"], ["argTrain.cropMix", "argTrain.sample_management"]),
    "sample augmentation": (
        {"argTrain": {"sampleAugmentation": {"activate": True, "target_models": ["1", "all"],
                                             "strategy": "jitter",
                                             "strategy.jitter.stdfactor": 5,
                                             "samples.strategy": "minNumber",
                                             "samples.strategy.minNumber": 100}}},
        {"sampling.sample_augmentation": {
            "activate": True, "target_models": [1, "all"], "strategy": "jitter",
            "strategy.jitter.stdfactor": 5, "samples.strategy": "minNumber",
            "samples.strategy.minNumber": 100}}, [], []),
    "features": (
        {"GlobChain": {"features": ["NDVI", "NDWI"], "writeOutputs": False},
         "iota2FeatureExtraction": {"copyinput": False}},
        {"features.indices": ["NDVI", "NDWI"], "features.keep_reflectances": False}, [], []),
    "unknown index": ({"GlobChain": {"features": ["NDVI", "MSAVI"]}}, {}, [],
                      ["GlobChain.features"]),
    "user features": (
        {"userFeat": {"arbo": "/*/*", "patterns": "ALT, ASP,SLP"}},
        {"user_feat.patterns": ["ALT", "ASP", "SLP"]}, ["userFeat.arbo"], []),
    "external functions": (
        {"external_features": {"module": "/code/my_feats.py", "functions": "soi ndvi2",
                                "number_of_chunks": 50}},
        {"features.user_functions": ["my_feats:soi", "my_feats:ndvi2"]},
        ["external_features.functions: check", "external_features.number_of_chunks"], []),
    "external functions without module": (
        {"external_features": {"module": "None", "functions": [["soi"]]}}, {}, [],
        ["external_features.functions"]),
    "unsupported sections": (
        {"coregistration": {"VHRPath": "/vhr.tif"}, "dimRed": {"dimRed": False},
         "Simplification": {"mmu": 1000}},
        {}, ["dimRed: ignored", "Simplification: not supported yet"],
        ["coregistration.VHRPath"]),
    "unset values": (
        {"chain": {"regionPath": None, "random_seed": "None", "colorTable": ""},
         "argClassification": {"classifMode": "None", "enable_probability_map": "None"},
         "GlobChain": {"features": "None"}, "userFeat": {"patterns": ""}},
        {"chain.region_path": None, "chain.random_seed": None, "chain.color_table": None,
         "classification": None, "features": None, "user_feat": None}, [], []),
    "unknown names": (
        {"chain": {"colour": 1}, "extras": {"a": 1}, "loose": 3}, {},
        ["chain.colour: unknown key", "extras: unknown section", "loose: unknown top-level"],
        []),
}


@pytest.mark.parametrize("raw, expected, warnings, errors", KEY_CASES.values(),
                         ids=KEY_CASES.keys())
def test_key_map(raw, expected, warnings, errors, tmp_path):
    conversion = _convert(raw)
    for key, value in expected.items():
        node = conversion.data
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        assert node == value, key
        if value is not None:
            assert conversion.origins[key].split(".")[0] in raw
    for prefix in warnings:
        assert any(w.startswith(prefix) for w in conversion.warnings), prefix
    assert sorted(e.split(":")[0] for e in conversion.errors) == sorted(errors)
    if not errors:  # geoclass accepts every converted value
        data = yaml.safe_load(yaml.safe_dump(conversion.data))
        data.setdefault("chain", {}).setdefault("output_path", str(tmp_path))
        data["chain"].setdefault("list_tile", ["T1"])
        parse_config(data, tmp_path)


def test_selection_rules_per_model_and_class_counts(tmp_path):
    counts = tmp_path / "counts.csv"
    counts.write_text("11,100\n12,250\n")
    raw = {"argTrain": {"sampleSelection": {
        "sampler": "random", "strategy": "byclass", "strategy.byclass.in": "counts.csv",
        "rand": 3, "per_model": [{"target_model": "2", "strategy": "constant",
                                  "strategy.constant.nb": 500}]}}}
    conversion = convert_iota2(raw, tmp_path)
    selection = conversion.data["sampling"]["sample_selection"]
    assert selection["strategy.byclass.in"] == {"11": 100, "12": 250}
    assert selection["per_model"] == [{"target_model": 2, "strategy": "constant",
                                       "strategy.constant.nb": 500}]
    assert [w.split(":")[0] for w in conversion.warnings] == ["argTrain.sampleSelection.rand"]
    data = {**conversion.data, "chain": {"output_path": "out", "list_tile": ["T1"]}}
    rule = parse_config(data, tmp_path).sampling.sample_selection.rule_for(2)
    assert (rule.strategy, rule.constant_nb) == ("constant", 500)


def test_scikit_model_with_cross_validation():
    raw = {"scikit_models_parameters": {
        "model_type": "RandomForestClassifier", "keyword_arguments": {"n_estimators": 50},
        "standardization": True, "cross_validation_parameters": {"max_depth": [5, 10]},
        "cross_validation_folds": 3}, "argTrain": {"classifier": "sharkrf"}}
    conversion = _convert(raw)
    models = conversion.data["models"]
    assert models == {"classifier": "sklearn.ensemble.RandomForestClassifier",
                      "params": {"n_estimators": 50}, "standardization": True,
                      "cross_validation": {"parameters": {"max_depth": [5, 10]}, "folds": 3,
                                           "grouped": False}}
    assert conversion.origins["models.classifier"] == "scikit_models_parameters.model_type"
    assert any(w.startswith("argTrain.classifier: ignored") for w in conversion.warnings)
    assert _convert({"scikit_models_parameters": {"model_type": "NoSuchModel"}}).errors


def test_older_iota2_multi_regions_mode_reads_the_region_list_of_chain_model(tmp_path):
    """iota2 before 2019: `chain.mode: 'multi_regions'` and `chain.model`, a text file of
    `name : tile,tile` lines, region k being the k-th line, read up to the first empty
    line; regionPath is then where iota2 writes the regions it makes of the tiles."""
    (tmp_path / "model.txt").write_text("R1 : T31TCJ,T31TDJ\nR2 : T31TCK\n\nR3 : T31TCL\n")
    raw = {"chain": {"listTile": "T31TCJ T31TDJ T31TCK", "mode": "multi_regions",
                     "model": "model.txt", "regionPath": "/out/MyRegion.shp",
                     "regionField": "region"}}
    conversion = _convert(raw, tmp_path)
    assert conversion.errors == []
    assert conversion.data["chain"]["region_tiles"] == {1: ["T31TCJ", "T31TDJ"],
                                                        2: ["T31TCK"]}
    assert "region_path" not in conversion.data["chain"]
    assert conversion.origins["chain.region_tiles"] == "chain.model"
    warned = {w.split(":")[0] for w in conversion.warnings}
    assert warned == {"chain.regionPath", "chain.model"}  # the lines after the empty one
    data = yaml.safe_load(to_yaml(conversion))  # the YAML keeps integer regions
    data["chain"]["output_path"] = str(tmp_path)
    config = parse_config(data, tmp_path)
    assert config.chain.region_tiles == {1: ["T31TCJ", "T31TDJ"], 2: ["T31TCK"]}
    assert [config.chain.region_of_tile(t) for t in ("T31TCK", "T31TDJ", "T31UDP")] == [2, 1, 0]


@pytest.mark.parametrize("chain, warnings, errors", [
    ({"mode": "one_region", "model": "None"}, ["chain.mode: not needed"], []),
    ({"mode": "outside", "regionPath": "/r.shp", "model": "/m.txt"},
     ["chain.mode: not needed", "chain.model: ignored"], []),
    ({"mode": "multi_regions"}, [], ["chain.mode"]),
    ({"mode": "multi_regions", "model": "missing.txt"}, [], ["chain.model"]),
    ({"mode": "regions"}, [], ["chain.mode"]),
])
def test_older_iota2_region_modes(chain, warnings, errors, tmp_path):
    conversion = _convert({"chain": chain}, tmp_path)
    for prefix in warnings:
        assert any(w.startswith(prefix) for w in conversion.warnings), prefix
    assert sorted(e.split(":")[0] for e in conversion.errors) == errors
    assert "region_tiles" not in conversion.data.get("chain", {})


@pytest.mark.parametrize("region_tiles, message", [
    ({1: ["T1"], 2: ["T1"]}, "tile T1 is in regions 1 and 2"),
    ({1: ["T1", "T9"]}, "tiles T9 are not in list_tile"),
    ({0: ["T1"]}, "regions are integers > 0"),
    ({1: []}, "region 1 has no tile"),
])
def test_region_tiles_are_checked(region_tiles, message, tmp_path):
    data = {"chain": {"output_path": str(tmp_path), "list_tile": ["T1", "T2"],
                      "region_tiles": region_tiles}}
    with pytest.raises(ConfigError, match=message):
        parse_config(data, tmp_path)
    data["chain"] |= {"region_tiles": {1: ["T1"]}, "region_path": "regions.shp"}
    with pytest.raises(ConfigError, match="region_path and region_tiles"):
        parse_config(data, tmp_path)


# --- the three real iota2 files ---------------------------------------------------------------


def _fill(raw: dict, **chain) -> dict:
    raw["chain"].update(chain)
    return raw


@needs_data
def test_config_thrs_converts_to_what_iota2_runs(tmp_path):
    raw = _fill(read_iota2(SPOT6 / "config_thrs.cfg"), outputPath=str(tmp_path / "run"),
                groundTruth=str(SPOT6 / "fake_samples.shp"),
                nomenclaturePath=str(SPOT6 / "Nomenclature_thrs"),
                colorTable=str(SPOT6 / "colorFile_thrs"), userFeatPath=str(SPOT6 / "images"))
    conversion = convert_iota2(raw, SPOT6)
    assert conversion.errors == []
    config = parse_config(conversion.data, SPOT6)
    chain = config.chain
    assert chain.list_tile == ["T32TLR"] and chain.spatial_resolution == 1.5
    assert (chain.runs, chain.ratio, chain.proj, chain.data_field) == (1, 0.7, "EPSG:2154",
                                                                       "coden2")
    assert chain.user_feat_path.resolve() == (SPOT6 / "images").resolve()
    assert config.sampling.cloud_threshold == 0  # iota2: seen >= 1 times; geoclass: > 0
    selection = config.sampling.sample_selection
    assert (selection.sampler, selection.strategy, selection.percent_p) == (
        "random", "percent", 0.1)
    assert config.sampling.sample_augmentation.activate is False
    assert config.models.classifier == "random_forest"
    assert config.models.params == {"n_estimators": 100, "min_samples_split": 6,
                                    "min_samples_leaf": 1, "max_depth": None}
    assert config.user_feat.patterns == ["spot6"]
    merge = config.classification.merge_final_classifications  # fusionOptions: not for runs
    assert (merge.enable, merge.method, merge.undecided_label) == (False, "majorityvoting", None)
    warned = {w.split(":")[0] for w in conversion.warnings}
    assert warned == {"chain.remove_outputPath", "chain.firstStep", "chain.lastStep",
                      "chain.logFileLevel", "argTrain.sampleSelection.ram",
                      "argClassification.fusionOptions", "GlobChain.useGapFilling"}
    assert "argTrain.sampleSelection.ram: not needed: OTB RAM hint" in conversion.warnings
    assert conversion.origins["chain.list_tile"] == "chain.listTile"
    assert conversion.origins["sampling.cloud_threshold"] == (
        "chain.cloud_threshold = 1 (clear dates >= 1)")
    assert conversion.origins["models.params"] == "argTrain.options"


@needs_data
def test_i2_config_converts_to_what_iota2_runs(tmp_path):
    raw = _fill(read_iota2(RUNNING / "i2_config.cfg"), outputPath=str(tmp_path),
                groundTruth="ground_truth.shp", dataField="code",
                nomenclaturePath="nomenclature.txt", colorTable="color.txt")
    conversion = convert_iota2(raw, RUNNING)
    assert conversion.errors == []
    config = parse_config(conversion.data, RUNNING)
    assert config.chain.ground_truth.resolve() == (RUNNING / "ground_truth.shp").resolve()
    assert config.chain.nomenclature_path.resolve() == (RUNNING / "nomenclature.txt").resolve()
    assert config.chain.list_tile == ["T31TCJ"] and config.chain.proj == "EPSG:2154"
    assert config.models.classifier == "random_forest"
    assert config.models.params == {"n_estimators": 100, "min_samples_split": 26,
                                    "min_samples_leaf": 1, "max_depth": None}
    assert config.features.user_functions == []
    assert {w.split(":")[0] for w in conversion.warnings} == {"chain.remove_outputPath",
                                                              "chain.check_inputs"}


@needs_data
def test_empty_scikit_section_means_iota2s_default_classifier(tmp_path):
    raw = _fill(read_iota2(RUNNING / "i2_config_scikit.cfg"), outputPath=str(tmp_path),
                dataField="code")
    conversion = convert_iota2(raw, RUNNING)
    assert conversion.errors == []
    config = parse_config(conversion.data, RUNNING)
    assert "ground_truth" not in conversion.data["chain"]  # '' means unset
    assert config.models.classifier == "random_forest"
    assert config.models.params == {"n_estimators": 100, "max_depth": 25,
                                    "min_samples_split": 6, "min_samples_leaf": 1}
    assert conversion.origins["models.classifier"].endswith("(iota2's default: rf)")


# --- YAML, hints, load_config, CLI -------------------------------------------------------------


@needs_data
def test_to_yaml_round_trips_with_origin_comments(tmp_path):
    raw = _fill(read_iota2(SPOT6 / "config_thrs.cfg"), outputPath=str(tmp_path))
    conversion = convert_iota2(raw, SPOT6)
    text = to_yaml(conversion)
    assert yaml.safe_load(text) == conversion.data
    lines = text.splitlines()
    first_key = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    assert lines[:first_key][1:] == [f"# warning: {w}" for w in conversion.warnings]
    assert f"  output_path: {tmp_path}  # iota2: chain.outputPath" in lines
    for key, origin in conversion.origins.items():
        last = key.rsplit(".", 1)[-1]
        assert any(line.strip().startswith(f"{last}:") and line.endswith(f"# iota2: {origin}")
                   for line in lines), key


def test_to_yaml_lists_errors_first():
    text = to_yaml(_convert({"chain": {"S1Path": "/s1.cfg"}, "extras": {}}))
    assert text.splitlines()[1].startswith("# error: chain.S1Path: not supported")
    assert "# warning: extras: unknown section: ignored" in text


@pytest.mark.parametrize("loc, target", [
    (("chain", "outputPath"), "chain.output_path"),
    (("chain", "cloud_threshold"), "sampling.cloud_threshold"),
    (("argTrain",), "models / sampling"),
    (("sampling", "sampleSelection"), "sampling.sample_selection"),
    (("sensors", "Sentinel_2"), "sensors.sentinel_2"),
    (("sensors", "sentinel_2", "temporalResolution"), "sensors.sentinel_2.temporal_resolution"),
    (("chain", "no_such_thing"), None),
    (("chain", "model"), "chain.region_tiles"),
    (("models", "model"), None),
])
def test_hint_for_iota2_names(loc, target):
    hint = hint_for(loc)
    assert hint == (f"did you mean {target} (iota2's name)?" if target else None)


def test_every_iota2_name_points_to_a_geoclass_key():
    from geoclass.config import Config

    for name, target in IOTA2_NAMES.items():
        for key in target.split(" / "):
            node = Config
            for part in key.split("."):
                assert part in node.model_fields, (name, target)
                node = node.model_fields[part].annotation
                node = next((a for a in getattr(node, "__args__", ()) if hasattr(
                    a, "model_fields")), node)


def test_yaml_with_iota2_names_gets_a_hint(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("chain: {outputPath: x, list_tile: [T1]}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert ("chain.outputPath: unknown key; did you mean chain.output_path (iota2's name)?"
            in str(err.value))
    assert "chain.output_path: required key is missing" in str(err.value)


def _filled_thrs(tmp_path: Path) -> str:
    text = (SPOT6 / "config_thrs.cfg").read_text()
    values = {"outputPath": tmp_path / "run", "groundTruth": SPOT6 / "fake_samples.shp",
              "nomenclaturePath": SPOT6 / "Nomenclature_thrs",
              "colorTable": SPOT6 / "colorFile_thrs", "userFeatPath": SPOT6 / "images"}
    for key, value in values.items():
        text, count = re.subn(rf"({key}\s*:\s*)'None'", rf"\1'{value}'", text)
        assert count == 1, key
    return text


@needs_data
@pytest.mark.parametrize("name", ["config_thrs.cfg", "iota2_named.yaml"])
def test_load_config_reads_iota2_files_by_content(tmp_path, name, caplog):
    path = tmp_path / name
    path.write_text(_filled_thrs(tmp_path))
    with caplog.at_level(logging.WARNING, logger="geoclass.config"):
        config = load_config(path)
    assert config.source == path.resolve()
    assert config.chain.output_path == tmp_path / "run"
    assert config.models.params["min_samples_split"] == 6
    assert any(w.startswith("chain.firstStep: ignored") for w in config._import_warnings)
    logged = [r.getMessage() for r in caplog.records if r.name == "geoclass.config"]
    assert logged == [f"{name}: {w}" for w in config._import_warnings]


@needs_data
def test_load_config_lists_every_iota2_setting_it_cannot_reproduce(tmp_path):
    text = _filled_thrs(tmp_path).replace("classifMode :'separate'", "classifMode :'fusion'")
    text = text.replace("userFeatPath:", "S1Path:'/data/s1.cfg'\n    userFeatPath:")
    path = tmp_path / "bad.cfg"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "geoclass cannot reproduce" in message
    assert "chain.S1Path: not supported" in message
    assert "argClassification.classifMode: 'fusion' is not supported" in message


@needs_data
def test_load_config_names_the_iota2_key_of_a_missing_value(tmp_path):
    path = tmp_path / "i2.cfg"
    path.write_text((RUNNING / "i2_config.cfg").read_text())
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "chain.output_path: required key is missing (iota2: chain.outputPath)" in str(
        err.value)


def test_broken_yaml_that_is_not_iota2_stays_a_yaml_error(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("chain:\n  output_path: [run\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(path)


@needs_data
def test_import_iota2_command(tmp_path, capsys):
    cfg = tmp_path / "config_thrs.cfg"
    cfg.write_text(_filled_thrs(tmp_path))
    assert main(["import-iota2", str(cfg)]) == 0
    printed = capsys.readouterr().out
    assert "  list_tile: [T32TLR]  # iota2: chain.listTile" in printed
    assert yaml.safe_load(printed) == convert_iota2(read_iota2(cfg), tmp_path).data
    out = tmp_path / "sub" / "config.yaml"
    assert main(["import-iota2", str(cfg), "-o", str(out)]) == 0
    assert out.read_text() == printed
    assert [p.name for p in out.parent.iterdir()] == ["config.yaml"]  # no temporary left
    config = load_config(out)
    assert config.models.params["n_estimators"] == 100 and config._import_warnings == []


@needs_data
def test_import_iota2_reports_errors(tmp_path, capsys):
    cfg = tmp_path / "bad.cfg"
    cfg.write_text(_filled_thrs(tmp_path).replace("classifMode :'separate'",
                                                  "classifMode :'fusion'"))
    assert main(["import-iota2", str(cfg)]) == 1
    captured = capsys.readouterr()
    assert "# error: argClassification.classifMode" in captured.out
    assert "error: argClassification.classifMode" in captured.err


@needs_data
def test_check_prints_the_ignored_iota2_settings(tmp_path, capsys):
    cfg = tmp_path / "config_thrs.cfg"
    cfg.write_text(_filled_thrs(tmp_path))
    main(["check", str(cfg)])
    out = capsys.readouterr().out
    assert "warning: chain.firstStep: ignored" in out
    assert "warning: GlobChain.useGapFilling: ignored" in out


def test_messages_name_the_key_and_say_why():
    conversion = _convert({"argTrain": {"sample_management": "/c.csv"},
                           "chain": {"logFileLevel": "DEBUG"}})
    assert conversion.errors == ["argTrain.sample_management: not supported yet: copying "
                                 "samples between models (a CSV of class copies between "
                                 "regions)"]
    assert conversion.warnings[0] == ("chain.logFileLevel: not needed: geoclass logs to the "
                                      "console and to output_path/logs/ (--debug for debug "
                                      "logs)")
