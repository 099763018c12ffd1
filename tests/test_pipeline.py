"""The whole chain from Python: outputs, accuracy reports, resume, partial redo, ownership of
the output folder, the report in a browser."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import rasterio

from geoclass.errors import InputError
from geoclass.io.configfile import load_config
from geoclass.pipeline import run_chain

from .conftest import edit_config

CHAIN_SETTINGS = dict(
    chain={"runs": 2},
    models={"params": {"n_estimators": 20}},
    classification={"enable_probability_map": True,
                    "boundary_fusion": {"enable": True},
                    "merge_final_classifications": {"enable": True}},
)


def chain_scene(template, target, **extra):
    """A copy of the session scene set up for the whole chain; returns its config path."""
    shutil.copytree(template.parent, target, ignore=shutil.ignore_patterns("run"))
    config = edit_config(target / "config.yaml", **CHAIN_SETTINGS)
    return edit_config(config, **extra) if extra else config


@pytest.fixture(scope="module")
def finished(scene_template, tmp_path_factory, client):
    path = chain_scene(scene_template, tmp_path_factory.mktemp("chain") / "scene")
    config = load_config(path)
    return config, run_chain(config)


def _mtimes(folder):
    return {p: p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_chain_writes_iota2s_outputs_and_reports(finished):
    config, metrics = finished
    final = config.chain.output_path / "final"
    for name in ("Classif_Seed_0.tif", "Classif_Seed_1.tif", "Confidence_Seed_1.tif",
                 "ProbabilityMap_Seed_0.tif", "PixelsValidity.tif",
                 "Classifications_fusion.tif", "ClassificationResults_seed_0.txt",
                 "confusion_seed_1.csv", "metrics_seed_0.json", "RESULTS.txt", "metrics.json",
                 "report.html", "ground_truth_table.csv"):
        assert (final / name).exists(), name
    assert list((config.chain.output_path / "logs").glob("geoclass-*.log"))
    assert metrics == json.loads((final / "metrics.json").read_text())
    assert len(metrics["runs"]) == 2 and metrics["fusion"] is not None


def test_confusion_matrix_counts_every_validation_pixel_against_the_map(finished):
    config, metrics = finished
    final = config.chain.output_path / "final"
    validation = pd.read_parquet(config.chain.output_path / "samples"
                                 / "validation_seed_1.parquet")
    with rasterio.open(final / "Classif_Seed_1.tif") as src:
        label = src.read(1)  # the two tiles are side by side in one UTM zone
        tile_col = {"T31TCJ": 0, "T31TDJ": 96}
        predicted = label[validation["row"], validation["row"] * 0 + validation["col"]
                          + validation["tile"].map(tile_col)]
    codes = [c["code"] for c in metrics["runs"][1]["scores"]["per_class"]]
    expected = np.zeros((len(codes), len(codes)), int)
    for ref, pred in zip(validation["code"], predicted):
        if pred in codes:
            expected[codes.index(ref), codes.index(pred)] += 1
    np.testing.assert_array_equal(metrics["runs"][1]["confusion"], expected)
    run1 = metrics["runs"][1]["scores"]
    assert run1["overall_accuracy"] == pytest.approx(np.trace(expected) / expected.sum())
    assert run1["overall_accuracy"] > 0.4  # 5 classes, few fields: chance is ~0.2
    csv = pd.read_csv(final / "confusion_seed_1.csv", index_col=0)
    np.testing.assert_array_equal(csv.to_numpy(), expected)
    names = [c["name"] for c in run1["per_class"]]
    assert list(csv.index) == names
    text = (final / "ClassificationResults_seed_1.txt").read_text()
    assert f"{run1['overall_accuracy']:.4f}" in text and names[0][:12] in text


def test_results_give_the_mean_and_student_interval_over_runs(finished):
    from scipy import stats

    config, metrics = finished
    oa = [r["scores"]["overall_accuracy"] for r in metrics["runs"]]
    summary = metrics["summary"]["overall_accuracy"]
    assert summary["mean"] == pytest.approx(np.mean(oa))
    half = stats.t.ppf(0.975, 1) * np.std(oa, ddof=1) / np.sqrt(2)
    assert summary["ci95"] == pytest.approx(half)
    text = (config.chain.output_path / "final" / "RESULTS.txt").read_text()
    assert f"OA = {np.mean(oa):.3f} +- {half:.3f}" in text
    assert "Fusion of runs" in text


def test_a_second_run_skips_every_step(finished, caplog):
    config, metrics = finished
    before = _mtimes(config.chain.output_path / "final")
    with caplog.at_level("INFO", logger="geoclass"):
        assert run_chain(config) == metrics
    assert _mtimes(config.chain.output_path / "final") == before
    said = [r.getMessage() for r in caplog.records]
    assert "step 1/8: check" in said and "step 8/8: report" in said
    for step in ("cubes", "samples", "train", "classify", "mosaic", "validate", "report"):
        assert f"{step}: up to date" in said, step


def test_changing_the_classifier_retrains_without_rebuilding_cubes_or_samples(
        scene_template, tmp_path, client):
    path = chain_scene(scene_template, tmp_path / "scene", chain={"runs": 1},
                       classification={"merge_final_classifications": {"enable": False}})
    run_chain(load_config(path))
    out = load_config(path).chain.output_path
    cubes, samples = _mtimes(out / "cubes"), _mtimes(out / "samples")
    models, maps = _mtimes(out / "model"), _mtimes(out / "final")
    edit_config(path, models={"classifier": "extra_trees", "params": {"n_estimators": 10}})
    run_chain(load_config(path))
    assert _mtimes(out / "cubes") == cubes and _mtimes(out / "samples") == samples
    assert _mtimes(out / "model").keys() == models.keys() != {}
    changed = [p for p, t in _mtimes(out / "model").items() if models[p] != t]
    assert any(p.suffix == ".joblib" for p in changed)
    assert all(_mtimes(out / "final")[p] != t for p, t in maps.items() if p.suffix == ".tif")


def test_only_step_redoes_that_step_alone(finished):
    config, _ = finished
    out = config.chain.output_path
    models, reports = _mtimes(out / "model"), (out / "final" / "RESULTS.txt").stat().st_mtime_ns
    run_chain(config, only_step="validate")
    assert _mtimes(out / "model") == models
    assert (out / "final" / "RESULTS.txt").stat().st_mtime_ns != reports
    with pytest.raises(InputError, match="unknown step"):
        run_chain(config, only_step="classification")


def test_an_output_folder_of_another_config_is_refused_unless_overwrite(finished, tmp_path):
    config, _ = finished
    other = tmp_path / "other.yaml"
    shutil.copy(config.source, other)
    edit_config(other, chain={"output_path": str(config.chain.output_path),
                              "s2_path": str(config.chain.s2_path),
                              "ground_truth": str(config.chain.ground_truth),
                              "region_path": str(config.chain.region_path),
                              "nomenclature_path": str(config.chain.nomenclature_path),
                              "color_table": str(config.chain.color_table)})
    with pytest.raises(InputError, match="another configuration"):
        run_chain(load_config(other), only_step="check")
    assert (config.chain.output_path / "final" / "Classif_Seed_0.tif").exists()


def test_the_report_is_self_contained_and_renders_in_a_browser(finished, tmp_path):
    import subprocess

    config, metrics = finished
    page = config.chain.output_path / "final" / "report.html"
    text = page.read_text()
    assert "data:image/png;base64," in text and "http://" not in text
    assert f"{metrics['runs'][0]['scores']['overall_accuracy']:.3f}" in text
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    shot = tmp_path / "report.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                    f"--screenshot={shot}", "--window-size=1200,3000", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 20_000
