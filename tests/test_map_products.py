"""Maps as the field reports them (issue 15), on a generated scene with added pixel noise run
through the whole chain once: uncertainty COGs, Bayesian smoothing (fewer isolated pixels, OA
not lower, the same map whatever the workers and chunks), the majority filter, QGIS styles and
attribute tables, area-adjusted estimates in the reports, uncertainty sampling."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
import xml.etree.ElementTree as ET

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio

from geoclass import lazy
from geoclass.cli import main
from geoclass.config import Smoothing
from geoclass.errors import ConfigError, InputError
from geoclass.io.configfile import load_config
from geoclass.kernels.areas import area_adjusted_accuracy
from geoclass.kernels.merge import PROBA_NODATA
from geoclass.kernels.smoothing import (
    bayes_smooth,
    isolated_pixels,
    labels_from_probabilities,
    majority_filter,
)
from geoclass.kernels.uncertainty import uncertainty
from geoclass.pipeline import BY_NAME, is_current, run_chain
from geoclass.steps import mosaic as mosaic_step
from geoclass.steps.report import geoclass_version
from geoclass.steps.suggest import _uncertainty, suggest
from geoclass.store import RunStore
from geoclass.views import maps as views

from .conftest import config_of, edit_config, make_scene

MEASURES = ["entropy", "margin", "least"]
SETTINGS = dict(
    chain={"runs": 2},
    models={"params": {"n_estimators": 20}},
    classification={"enable_probability_map": True, "uncertainty": MEASURES,
                    "smoothing": {"method": "bayes"},
                    "merge_final_classifications": {"enable": True}},
)
# a scene whose pixels are noisy (30 % of the reflectance): salt-and-pepper maps; 128 px tiles
# so that each run has enough validation polygons (at 96 px a run can hold a handful, whose
# accuracy then says little)
NOISY_SCENE = dict(size=128, dates=12, classes=4, regions=1, noise=0.3)
CLASS_MAPS = ["Classif_Seed_0.tif", "Classif_Seed_1.tif", "Classif_Smoothed_Seed_0.tif",
              "Classif_Smoothed_Seed_1.tif", "Classifications_fusion.tif"]


@pytest.fixture(scope="module")
def noisy(tmp_path_factory, client):
    path = make_scene(tmp_path_factory.mktemp("noisy"), **NOISY_SCENE)
    config = config_of(path, **SETTINGS)
    return config, run_chain(config)


def _read(path, band=None):
    with rasterio.open(path) as src:
        return src.read(band) if band else src.read()


def _final(config):
    return config.chain.output_path / "final"


def _whole_map_bayes(proba: np.ndarray, window: int = 9) -> np.ndarray:
    halo = window // 2
    padded = np.pad(proba, ((0, 0), (halo, halo), (halo, halo)), constant_values=PROBA_NODATA)
    return bayes_smooth(padded, window_size=window, halo=halo)


# --- smoothing ------------------------------------------------------------------------------


def test_smoothing_removes_isolated_pixels_without_losing_accuracy(noisy, capsys):
    config, metrics = noisy
    final = _final(config)
    smoothed = metrics["smoothed"]
    assert smoothed["method"] == "bayes" and len(smoothed["runs"]) == 2
    lines = []
    for raw, smooth in zip(metrics["runs"], smoothed["runs"]):
        run = raw["run"]
        before = _read(final / f"Classif_Seed_{run}.tif", 1)
        after = _read(final / f"Classif_Smoothed_Seed_{run}.tif", 1)
        # the figures of metrics.json are those of the COGs
        assert raw["isolated_pixels"] == isolated_pixels(np.pad(before, 1))[0]
        assert smooth["isolated_pixels"] == isolated_pixels(np.pad(after, 1))[0]
        oa, oa_smoothed = (m["scores"]["overall_accuracy"] for m in (raw, smooth))
        lines.append(f"run {run}: isolated pixels {raw['isolated_pixels']} -> "
                     f"{smooth['isolated_pixels']}, OA {oa:.4f} -> {oa_smoothed:.4f} "
                     f"({smooth['scores']['n_samples']} validation pixels)")
        assert smooth["isolated_pixels"] < raw["isolated_pixels"] / 10
        assert oa_smoothed >= oa
        assert (after > 0).sum() == (before > 0).sum()  # nodata stays nodata
    with capsys.disabled():
        print("\nBayesian smoothing on the noisy scene:\n  " + "\n  ".join(lines))
    text = (final / "ClassificationResults_Smoothed_seed_0.txt").read_text()
    assert "smoothed map (bayes)" in text and "Isolated pixels" in text
    assert "Smoothed maps (bayes)" in (final / "RESULTS.txt").read_text()


def test_smoothed_map_is_the_bayes_kernel_on_the_whole_map(noisy):
    config, _ = noisy
    final = _final(config)
    table = RunStore(config.chain.output_path).class_table()
    proba = _read(final / "ProbabilityMap_Seed_1.tif")
    expected = _whole_map_bayes(proba)
    np.testing.assert_array_equal(_read(final / "ProbabilityMap_Smoothed_Seed_1.tif"), expected)
    np.testing.assert_array_equal(_read(final / "Classif_Smoothed_Seed_1.tif", 1),
                                  labels_from_probabilities(expected, table.codes))


def test_smoothed_maps_are_the_same_with_one_or_two_workers_and_any_chunks(noisy):
    from distributed import Client, LocalCluster

    config, _ = noisy
    store = RunStore(config.chain.output_path)
    codes = store.class_table().codes
    bayes = _read(_final(config) / "Classif_Smoothed_Seed_0.tif", 1)
    raw = _read(_final(config) / "Classif_Seed_0.tif", 1)
    majority = majority_filter(np.pad(raw, 2), radius=2)
    stored = lazy.read_zarr(store.mosaic(0), "probabilities")
    classes = lazy.read_zarr(store.mosaic(0), "classification")
    assert stored.chunks[1][0] == config.dask.chunk_size == 64  # the chain's chunks
    results = []
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=False,
                          dashboard_address=":0") as cluster, Client(cluster):
            for chunk in (32, 40):
                proba = stored.rechunk({1: chunk, 2: chunk})
                labels = views.labels_of(views.bayes_smoothed(proba, 9, 0.5, 20.0), codes)
                mode = views.majority_smoothed(classes.rechunk(chunk), 2)
                assert labels.chunks[0][0] == chunk
                results.append((workers, chunk, *lazy.compute_all([labels, mode], "test")))
    for workers, chunk, labels, mode in results:
        np.testing.assert_array_equal(labels, bayes, err_msg=f"{workers} workers, {chunk}")
        np.testing.assert_array_equal(mode, majority, err_msg=f"{workers} workers, {chunk}")


def test_majority_smoothing_of_a_stored_map(noisy, tmp_path):
    config, _ = noisy
    source = RunStore(config.chain.output_path)
    store = RunStore(tmp_path / "run")  # a copy: the module's run stays as it is
    shutil.copytree(source.mosaic(0), store.mosaic(0))
    store.samples_dir.mkdir(parents=True)
    shutil.copy(source.samples_dir / "classes.json", store.samples_dir / "classes.json")
    table = store.class_table()
    grid = views.output_grid(views.tile_grids(config.chain.list_tile, source),
                             config.chain.proj, 40)  # other chunks than the stored ones
    options = Smoothing(method="majority", radius=2, undecided_label=99)
    mosaic_step.smooth_run(options, store, 0, grid, table, probability_cog=True)
    raw = _read(_final(config) / "Classif_Seed_0.tif", 1)
    smoothed = _read(store.smoothed_cog(0), 1)
    np.testing.assert_array_equal(smoothed, majority_filter(np.pad(raw, 2), 2, undecided=99))
    assert isolated_pixels(np.pad(smoothed, 1))[0] < isolated_pixels(np.pad(raw, 1))[0]
    assert not store.smoothed_probability_cog(0).exists()  # no probabilities to smooth
    rat = _rat(store.smoothed_cog(0))
    if rat is not None and (smoothed == 99).any():
        assert [99, float((smoothed == 99).sum()), "undecided"] == rat[-1][:3]


def test_smoothness_per_class_by_name_label_or_code(noisy):
    config, _ = noisy
    table = RunStore(config.chain.output_path).class_table()
    first, second = table.classes[0], table.classes[1]
    values = mosaic_step.smoothness_per_class({first.name: 5, str(second.code): 7}, table)
    assert values == [5.0, 7.0] + [20.0] * (len(table.codes) - 2)
    assert mosaic_step.smoothness_per_class(10, table) == 10.0
    with pytest.raises(InputError, match="unknown classes"):
        mosaic_step.smoothness_per_class({"no such class": 5}, table)


# --- uncertainty ------------------------------------------------------------------------------


def test_uncertainty_cogs_are_the_kernels_on_the_probabilities(noisy):
    from rio_cogeo.cogeo import cog_validate

    config, _ = noisy
    final = _final(config)
    proba = _read(final / "ProbabilityMap_Seed_0.tif")
    label = _read(final / "Classif_Seed_0.tif", 1)
    for measure in MEASURES:
        path = final / f"Uncertainty_{measure}_Seed_0.tif"
        assert cog_validate(path)[0], path
        with rasterio.open(path) as src:
            values = src.read(1)
            assert src.dtypes[0] == "uint16" and src.nodata == 65535
            assert src.scales[0] == pytest.approx(1e-4)
            assert src.descriptions[0] == f"{measure} uncertainty (0-1)"
        np.testing.assert_array_equal(values, uncertainty(proba, measure))
        assert (values[label == 0] == 65535).all()
        assert values[label > 0].max() <= 10_000 and values[label > 0].std() > 0


# --- QGIS styles and attribute tables -----------------------------------------------------


def _rat(tif) -> list | None:
    """The attribute table's rows as gdalinfo reads them (None without gdalinfo)."""
    if shutil.which("gdalinfo") is None:
        return None
    info = json.loads(subprocess.run(["gdalinfo", "-json", str(tif)], capture_output=True,
                                     text=True, check=True).stdout)
    rat = info.get("rat") or info["bands"][0]["rat"]  # GDAL < 3.7 puts it at the top
    assert [f["name"] for f in rat["fieldDefn"]] == [
        "Value", "Count", "Class_Name", "Red", "Green", "Blue", "Alpha"]
    return [row["f"] for row in rat["row"]]


def test_every_class_map_has_a_qgis_style_and_an_attribute_table(noisy):
    config, _ = noisy
    final = _final(config)
    table = RunStore(config.chain.output_path).class_table()
    for name in CLASS_MAPS:
        tif = final / name
        label = _read(tif, 1)
        qml = tif.with_suffix(".qml")
        root = ET.parse(qml).getroot()  # well-formed XML
        assert qml.read_text(encoding="utf-8").startswith("<!DOCTYPE qgis")
        assert root.tag == "qgis" and root.find("pipe/rasterrenderer").get("type") == "paletted"
        entries = root.findall("pipe/rasterrenderer/colorPalette/paletteEntry")
        assert [(int(e.get("value")), e.get("label"), e.get("color")) for e in entries] == [
            (c.code, c.name, "#{:02x}{:02x}{:02x}".format(*c.color)) for c in table.classes]
        assert (final / f"{name}.aux.xml").exists()
        rows = _rat(tif)
        if rows is None:
            continue
        assert rows == [[c.code, float((label == c.code).sum()), c.name, *c.color, 255]
                        for c in table.classes], name


def _qgis_python() -> str | None:
    """A Python that imports QGIS's bindings (python3-qgis), or None."""
    for python in ("/usr/bin/python3", shutil.which("python3")):
        if python and subprocess.run([python, "-c", "import qgis.core"], capture_output=True,
                                     check=False).returncode == 0:
            return python
    return None


def test_qgis_loads_the_style_of_each_class_map(noisy, tmp_path):
    python = _qgis_python()
    if python is None:
        pytest.skip("QGIS's Python bindings are not installed (apt-get install python3-qgis)")
    config, _ = noisy
    script = textwrap.dedent("""
        import json, os, sys
        from qgis.core import QgsApplication, QgsRasterLayer
        app = QgsApplication([], False)
        app.initQgis()
        out = {}
        for path in sys.argv[1:]:
            layer = QgsRasterLayer(path, "map")
            message, ok = layer.loadDefaultStyle()  # <name>.qml next to the raster
            renderer = layer.renderer()
            out[path] = {"ok": ok, "message": message, "type": renderer.type(),
                         "classes": [[c.value, c.label, c.color.name()]
                                     for c in renderer.classes()]
                         if renderer.type() == "paletted" else []}
        print(json.dumps(out), flush=True)
        os._exit(0)  # QGIS may crash while tearing down; what it read is printed
    """)
    paths = [str(_final(config) / name) for name in CLASS_MAPS]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path),
           "XDG_RUNTIME_DIR": str(tmp_path)}
    done = subprocess.run([python, "-c", script, *paths], capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    table = RunStore(config.chain.output_path).class_table()
    expected = [[float(c.code), c.name, "#{:02x}{:02x}{:02x}".format(*c.color)]
                for c in table.classes]
    for path in paths:
        assert loaded[path]["ok"], loaded[path]["message"]
        assert loaded[path]["type"] == "paletted"
        assert loaded[path]["classes"] == expected  # names, not codes 0..255


def test_a_missing_style_makes_the_mosaic_step_run_again(noisy):
    config, _ = noisy
    store = RunStore(config.chain.output_path)
    qml = _final(config) / "Classif_Smoothed_Seed_1.qml"
    assert is_current(BY_NAME["mosaic"], config, store)
    hidden = qml.with_name("hidden.qml")
    qml.rename(hidden)
    try:
        assert not is_current(BY_NAME["mosaic"], config, store)
    finally:
        hidden.rename(qml)


# --- areas ------------------------------------------------------------------------------------


def test_metrics_hold_the_area_adjusted_estimates_of_every_map(noisy):
    config, metrics = noisy
    final = _final(config)
    assert metrics == json.loads((final / "metrics.json").read_text())
    codes = RunStore(config.chain.output_path).class_table().codes
    maps = [(f"Classif_Seed_{r['run']}.tif", r) for r in metrics["runs"]]
    maps += [(f"Classif_Smoothed_Seed_{r['run']}.tif", r) for r in metrics["smoothed"]["runs"]]
    maps.append(("Classifications_fusion.tif", metrics["fusion"]))
    for name, entry in maps:
        label = _read(final / name, 1)
        counts = [int((label == c).sum()) for c in codes]
        areas = entry["areas"]
        assert [e["mapped_pixels"] for e in areas["per_class"]] == counts, name
        assert areas["pixel_area"] == pytest.approx(0.01) and areas["unit"] == "ha"  # 10 m
        expected = area_adjusted_accuracy(entry["confusion"], counts, codes, pixel_area=0.01)
        for key in ("overall_accuracy", "overall_accuracy_se", "total_area", "proportions"):
            assert areas[key] == expected[key], (name, key)
        for mine, theirs in zip(areas["per_class"], expected["per_class"]):
            assert {k: mine[k] for k in theirs} == theirs
        assert "stratified random sampling" in areas["design"]
        assert "held out" in areas["design"]
    summary = metrics["summary"]["areas"]
    assert summary["n_runs"] == 2
    first = [r["areas"]["per_class"][0]["area"] for r in metrics["runs"]]
    assert summary["per_class"][0]["area"]["mean"] == pytest.approx(np.mean(first))
    per_run = json.loads((final / "metrics_seed_1.json").read_text())
    assert per_run["areas"] == metrics["runs"][1]["areas"]


def test_text_reports_hold_the_area_adjusted_estimates(noisy):
    config, metrics = noisy
    final = _final(config)
    text = (final / "ClassificationResults_seed_0.txt").read_text()
    assert "Area-adjusted accuracy and area estimates (Olofsson et al. 2014)" in text
    assert "Design assumed: stratified random sampling" in text
    first = metrics["runs"][0]["areas"]["per_class"][0]
    assert f"{first['area']:,.2f} +- {first['area_ci95']:,.2f}" in text
    results = (final / "RESULTS.txt").read_text()
    assert "Area-adjusted estimates over 2 runs" in results
    assert "Fused map:" in results and "held out of learning" in results


# --- report --------------------------------------------------------------------------------


def test_the_report_shows_areas_uncertainty_smoothing_samples_and_version(noisy):
    config, metrics = noisy
    store = RunStore(config.chain.output_path)
    text = (_final(config) / "report.html").read_text(encoding="utf-8")
    headings = [h.strip() for h in
                pd.Series(text.split("<h2>")[1:]).str.split("</h2>").str[0]]
    assert headings == ["Summary", "Warnings", "Classification map", "Uncertainty",
                        "Class areas", "Accuracy per run", "Confusion matrix (run 0)",
                        "Confusion matrix (fused map)", "Smoothed maps (bayes)",
                        "Per-class F1", "Samples per class", "Settings"]
    assert ("The quicklook and the class areas below come from Classifications_fusion.tif, "
            "the fusion of the 2 runs") in text
    assert f"by geoclass {geoclass_version()}" in text
    assert "from Uncertainty_entropy_Seed_0.tif" in text
    # map, uncertainty, areas, confusion of run 0 and of the fusion, F1
    assert text.count("data:image/png;base64,") == 6
    fused = metrics["fusion"]["areas"]
    for entry in fused["per_class"]:
        assert f"{entry['mapped_area']:,.2f}" in text
    assert "Validation design assumed: stratified random sampling" in text
    learn = pd.read_parquet(store.samples(1, "learn"), columns=["code"])["code"]
    assert f"<td>{int((learn == learn.iloc[0]).sum())}</td>" in text


# --- uncertainty sampling ---------------------------------------------------------------------


def test_suggest_writes_spread_out_uncertain_locations(noisy):
    config, _ = noisy
    store = RunStore(config.chain.output_path)
    path, points = suggest(config, store, n=24, min_distance=60.0, measure="margin", run=1)
    assert path == store.suggestions(1) and path.suffix == ".gpkg"
    read = gpd.read_file(path)
    assert len(read) == 24 and read.crs == points.crs and read.crs.to_epsg() == 32631
    assert list(read.columns) == ["code", "name", "uncertainty", "measure", "run", "row", "col",
                                  "geometry"]
    xy = np.c_[read.geometry.x, read.geometry.y]
    distances = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(distances, np.inf)
    assert distances.min() >= 60.0
    final = _final(config)
    label = _read(final / "Classif_Seed_1.tif", 1)
    margin = _read(final / "Uncertainty_margin_Seed_1.tif", 1)
    np.testing.assert_array_equal(read["code"], label[read["row"], read["col"]])
    np.testing.assert_allclose(read["uncertainty"], margin[read["row"], read["col"]] / 1e4)
    assert read["code"].nunique() >= 3  # shared out between the predicted classes
    # the most uncertain pixel of the map is the first suggestion
    valid = margin[label > 0]
    assert read["uncertainty"].iloc[0] == pytest.approx(valid.max() / 1e4)
    with rasterio.open(final / "Classif_Seed_1.tif") as src:
        x, y = src.xy(int(read["row"].iloc[0]), int(read["col"].iloc[0]))
    assert (read.geometry.x.iloc[0], read.geometry.y.iloc[0]) == pytest.approx((x, y))


def test_suggest_from_the_command_line(noisy, tmp_path, capsys):
    config, _ = noisy
    out = tmp_path / "label_next.gpkg"
    code = main(["suggest", str(config.source), "--n", "10", "--min-distance", "100",
                 "--measure", "entropy", "--min-uncertainty", "0.2", "--workers", "1",
                 "-o", str(out)])
    said = capsys.readouterr().out
    assert code == 0 and str(out) in said and "10 locations to label" in said
    points = gpd.read_file(out)
    assert len(points) == 10 and (points["uncertainty"] >= 0.2).all()
    assert set(points["measure"]) == {"entropy"}


def test_suggest_needs_a_map_with_probabilities(scene, tmp_path, client):
    import dask.array as da

    config = load_config(edit_config(scene, chain={"runs": 1}))
    store = RunStore(config.chain.output_path)
    with pytest.raises(InputError, match="no map of run 0"):
        suggest(config, store, n=5)
    lazy.write_zarr({"classification": da.ones((8, 8), np.uint16, chunks=4)},
                    store.mosaic(0), "a map without probabilities")
    with pytest.raises(InputError, match="classification.uncertainty"):
        _uncertainty(store, 0, "entropy")


# --- configuration ----------------------------------------------------------------------------


def test_smoothing_and_uncertainty_settings_are_checked(scene):
    config = config_of(scene, classification={"uncertainty": "margin",
                                              "smoothing": {"method": "majority"}})
    assert config.classification.uncertainty == ["margin"]
    assert config.classification.needs_probabilities
    assert not config_of(scene, classification={"uncertainty": [], "smoothing": {
        "method": "majority"}}).classification.needs_probabilities
    assert config_of(scene, classification={"smoothing": {"method": "bayes"}}) \
        .classification.needs_probabilities
    for bad, message in (({"smoothing": {"method": "bayes", "window_size": 8}}, "odd"),
                         ({"smoothing": {"method": "gauss"}}, "smoothing.method"),
                         ({"smoothing": {"smoothness": {"colza": -1}}}, "positive"),
                         ({"uncertainty": ["entropy", "entropy"]}, "twice"),
                         ({"uncertainty": ["variance"]}, "uncertainty")):
        with pytest.raises(ConfigError, match=message):
            config_of(scene, classification=bad)
