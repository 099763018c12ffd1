"""External training samples (`chain.external_samples`): wide and long tables matched to the
cube's features by name or by position, learning with or instead of the ground truth, their
checks; and a run whose only input is a MODIS-like series, trained from a table and validated
on points."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml
from rasterio.warp import transform as warp

from geoclass.api import (
    build_cubes,
    classify_lazy,
    load_class_table,
    load_model,
    read_samples,
    sample,
    train,
)
from geoclass.cli import main
from geoclass.config import ExternalSamples
from geoclass.errors import InputError
from geoclass.io.configfile import load_config
from geoclass.io.external import external_path, matched_values, parse_table, read_external
from geoclass.pipeline import run_chain
from geoclass.steps.check import check_inputs
from geoclass.steps.samples import reference_pieces
from geoclass.views.cube import grid_of_cube, open_cube

from .conftest import edit_config, make_scene

SINUSOIDAL = "+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +R=6371007.181 +units=m +no_defs"


def table_from_truth(root: Path, cube, n: int, seed: int, avoid=None) -> pd.DataFrame:
    """`n` labelled samples (the class names of the truth raster) with their features taken
    from the built `cube` (any CRS), at pixels of the truth raster away from `avoid`."""
    names = {c["code"]: c["name"] for c in json.loads((root / "scene.json").read_text())
             ["classes"]}
    with rasterio.open(root / "truth" / "T31TCJ.tif") as src:
        truth, transform, crs = src.read(1), src.transform, src.crs
    rows, cols = np.nonzero(truth > 0)
    x, y = transform * (cols + 0.5, rows + 0.5)
    keep = np.ones(len(x), bool)
    if avoid is not None:
        keep = ~gpd.GeoSeries(gpd.points_from_xy(x, y), crs=crs).intersects(avoid).to_numpy()
    grid = grid_of_cube(cube)
    pick = np.random.default_rng(seed).permutation(np.flatnonzero(keep))
    cx, cy = warp(crs, grid.crs, x[pick], y[pick])
    c, r = ~grid.transform * (np.asarray(cx), np.asarray(cy))
    r, c = np.floor(r).astype(int), np.floor(c).astype(int)
    inside = (r >= 0) & (r < grid.height) & (c >= 0) & (c < grid.width)
    values = cube.features.values[:, r[inside], c[inside]].T
    fine = np.isfinite(values).all(axis=1)
    labels = [names[int(v)] for v in truth[rows[pick][inside][fine], cols[pick][inside][fine]]]
    table = pd.DataFrame(values[fine], columns=[str(f) for f in cube["feature"].values])
    table.insert(0, "label", labels)
    return table.iloc[:n].reset_index(drop=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory, client):
    """A 1-tile, 2-region scene with its cube built in `run/`, and a table of 120 samples
    drawn from its truth raster: (config path, feature names, table)."""
    path = make_scene(tmp_path_factory.mktemp("external"), tiles=1, size=64, dates=4,
                      classes=4, regions=2, seed=3)
    cube = open_cube(build_cubes(load_config(path))["T31TCJ"])
    table = table_from_truth(path.parent, cube, 120, seed=0)
    return path, [str(f) for f in cube["feature"].values], table


def setup(built, name: str, table: pd.DataFrame | None = None, file: str = "samples.parquet",
          **chain):
    """Config `<name>.yaml` next to the scene's: output `<name>/` (with the built cube),
    `table` written to `file`, and `chain` merged; `chain.external_samples` points at `file`
    unless given."""
    path, _, default = built
    root = path.parent
    shutil.copytree(root / "run" / "cubes", root / name / "cubes")
    table = default if table is None else table
    target = root / f"{name}_{file}"
    if target.suffix == ".csv":
        table.to_csv(target, index=False)
    else:
        table.to_parquet(target, index=False)
    data = yaml.safe_load(path.read_text())
    data["chain"] |= {"output_path": name,
                      "external_samples": {"path": target.name}} | chain
    config = root / f"{name}.yaml"
    config.write_text(yaml.safe_dump(data, allow_unicode=True))
    return load_config(config)


def external_rows(config, run=0, kind="learn") -> pd.DataFrame:
    rows = read_samples(config, run, kind)
    return rows[rows["tile"] == "external"]


def test_wide_table_by_name_learns_together_with_the_polygons(built):
    _, names, table = built
    shuffled = table[["label", *names[::-1]]]  # by name: the column order does not matter
    config = setup(built, "wide", shuffled)
    assert check_inputs(config).problems == []
    sample(config)
    learn, ext = read_samples(config, 0), external_rows(config)
    assert (learn["tile"] != "external").any()  # polygon samples too
    assert len(ext) == 2 * len(table)  # no region column: copied to both regions' models
    assert sorted(ext.groupby("region").size().tolist()) == [len(table)] * 2
    assert not (read_samples(config, 0, "validation")["tile"] == "external").any()
    pieces, _ = reference_pieces(config)
    assert ext["piece"].min() > pieces["piece"].max()
    assert ext.groupby("region")["piece"].nunique().tolist() == [len(table)] * 2
    assert (ext[["row", "col", "fid", "validity"]] == -1).all().all()
    assert ext[["x", "y"]].isna().all().all() and not ext["synthetic"].any()
    for _, part in ext.groupby("region"):
        np.testing.assert_array_equal(part[names].to_numpy(), table[names].to_numpy())
    # one class table for both sources: codes decode to the labels of either file
    classes = load_class_table(config)
    for _, part in ext.groupby("region"):
        assert list(classes.decode(part["code"])) == table["label"].tolist()
    gt = gpd.read_file(config.chain.ground_truth)
    polygons = learn[learn["tile"] != "external"].drop_duplicates("fid")
    labels = gt["class"].to_numpy()[polygons["fid"].to_numpy()]
    assert list(classes.decode(polygons["code"])) == list(labels)
    csv = (config.chain.output_path / "final" / "ground_truth_table.csv").read_text("utf-8")
    assert sorted(set(table["label"]) | set(gt["class"])) == \
        [line.split(",")[0] for line in csv.splitlines()[1:]]
    report = json.loads((config.chain.output_path / "samples" / "report_seed_0.json")
                        .read_text())
    assert sum(c["external"] for r in report["counts"].values() for c in r.values()) == len(ext)
    models = train(config)
    assert sorted(region for region, _ in models) == [1, 2]
    for path in models.values():
        assert load_model(path).features == names


def test_position_match_a_region_column_and_a_csv(built):
    _, names, table = built
    by_position = table[names].set_axis([f"v{i:03d}" for i in range(len(names))], axis=1)
    by_position.insert(0, "zone", np.where(np.arange(len(table)) < 40, "1", "2.0"))
    by_position.insert(0, "klass", table["label"])
    config = setup(built, "position", by_position, "samples.csv",
                   external_samples={"path": "position_samples.csv", "label_field": "klass",
                                     "match": "position", "region_field": "zone"})
    assert check_inputs(config).problems == []
    sample(config)
    ext = external_rows(config)
    assert len(ext) == len(table)  # each sample in its own region only
    assert ext["region"].tolist() == [1] * 40 + [2] * (len(table) - 40)
    np.testing.assert_allclose(ext[names].to_numpy(), table[names].to_numpy(), rtol=1e-6)


def long_table(table: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """The wide `table` in long form: sample_id, date, label, one column per band/index."""
    parts = []
    for name in names:
        band, day = name.rsplit("_", 1)
        parts.append(pd.DataFrame({"sample_id": np.arange(len(table)) + 100, "band": band,
                                   "date": pd.to_datetime(day).strftime("%Y-%m-%d"),
                                   "value": table[name].to_numpy(),
                                   "label": table["label"].to_numpy()}))
    frame = pd.concat(parts).pivot_table(index=["sample_id", "date", "label"], columns="band",
                                         values="value", sort=False).reset_index()
    return frame.sample(frac=1, random_state=0)  # any row order


def test_long_table_is_pivoted_to_the_cube_features(built):
    _, names, table = built
    config = setup(built, "long", long_table(table, names), "samples.csv")
    external = read_external(config)
    assert sorted(external.names) == sorted(f"sample_id {i + 100}" for i in range(len(table)))
    order = np.argsort([int(n.split()[1]) for n in external.names])
    by_name = matched_values(external, names, "name").to_numpy()[order]
    np.testing.assert_allclose(by_name, table[names].to_numpy(), rtol=1e-6)
    assert external.labels.iloc[order].tolist() == table["label"].tolist()
    # the pivot orders each band over the dates, bands in the cube's order: the same values
    # by position
    by_position = matched_values(external, names, "position").to_numpy()[order]
    np.testing.assert_array_equal(by_position, by_name)


def test_external_only_learning_with_the_ground_truth_for_validation(built):
    _, names, table = built
    config = setup(built, "only", long_table(table, names), "samples.csv",
                   ground_truth_role="validation")
    assert check_inputs(config).problems == []
    sample(config)
    learn, validation = read_samples(config, 0), read_samples(config, 0, "validation")
    assert (learn["tile"] == "external").all() and len(learn) == 2 * len(table)
    pieces, _ = reference_pieces(config)
    assert set(validation["piece"]) == set(pieces["piece"])  # no split: all for validation
    report = json.loads((config.chain.output_path / "samples" / "report_seed_0.json")
                        .read_text())
    assert any("ground_truth_role is validation" in w for w in report["warnings"])
    models = train(config)
    maps = classify_lazy(config, run=0, models=models)["T31TCJ"]
    classes = maps.classification.values
    assert (classes > 0).mean() > 0.9
    assert set(np.unique(classes)) - {0} <= set(load_class_table(config).codes)


def test_the_table_alone_trains_the_models(built):
    config = setup(built, "alone", ground_truth=None)
    assert check_inputs(config).problems == []
    sample(config)
    assert len(read_samples(config, 0, "validation")) == 0
    assert (read_samples(config, 0)["tile"] == "external").all()
    assert (config.chain.output_path / "final" / "alone_samples_table.csv").exists()
    assert sorted(region for region, _ in train(config)) == [1, 2]


def _drop(table, names, i):
    return table.drop(columns=names[i])


ERRORS = {
    "missing column": (lambda t, n: _drop(t, n, 5), {},
                       ["feature columns do not match the cube's", "missing 1 of the cube's "
                        "features: {n5}"]),
    "unknown column": (lambda t, n: t.assign(cloud=0.0), {}, ["unknown columns: cloud"]),
    "count mismatch": (lambda t, n: _drop(t, n, 0), {"match": "position"},
                       ["{nm1} feature columns but the cube has {nn} features"]),
    "label field": (lambda t, n: t, {"label_field": "Label"},
                    ["no column 'Label'", "columns are: label,", "did you mean 'label'"]),
    "NaN rows": (lambda t, n: t.assign(**{n[3]: t[n[3]].where(~t.index.isin([1, 4]))}), {},
                 ["row 2, row 5: missing (NaN)"]),
    "labels kind": (lambda t, n: t.assign(label=np.arange(len(t)) % 3 + 1), {},
                    ["its labels are integers but those of ground_truth.shp are strings"]),
    "unknown class": (lambda t, n: t.assign(label=t["label"].where(t.index != 0, "banana")),
                      {}, ["nomenclature.txt: no entry for classes banana of errors_",
                           "colors.txt: no color for classes banana"]),
    "region": (lambda t, n: t.assign(zone="north"), {"region_field": "zone"},
               ["row 1, row 2", "column 'zone' must hold integer regions"]),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_table_problems_are_clear_in_check_and_samples(built, case):
    _, names, table = built
    change, options, expected = ERRORS[case]
    name = f"errors_{case.replace(' ', '_')}"
    config = setup(built, name, change(table, names),
                   external_samples={"path": f"{name}_samples.parquet", **options})
    problems = check_inputs(config).problems
    assert len(problems) == (2 if case == "unknown class" else 1), problems
    words = {"n5": names[5], "nm1": len(names) - 1, "nn": len(names)}
    for text in expected:
        assert text.format(**words) in "\n".join(problems)
    with pytest.raises(InputError):
        sample(config)


def test_missing_file_and_role_without_table(built):
    setup(built, "missing")
    edited = edit_config(built[0].parent / "missing.yaml",
                         chain={"external_samples": {"path": "nowhere/samples.parquet"}})
    problems = check_inputs(load_config(edited)).problems
    assert len(problems) == 1 and "samples.parquet: file not found" in problems[0]
    data = yaml.safe_load(edited.read_text())
    del data["chain"]["external_samples"]
    data["chain"]["ground_truth_role"] = "validation"
    edited.write_text(yaml.safe_dump(data, allow_unicode=True))
    assert check_inputs(load_config(edited)).problems == [
        "ground_truth_role: validation needs chain.external_samples to learn from"]


def test_geoclass_check_lists_the_table_problems(built, capsys):
    _, names, table = built
    config = setup(built, "cli", table.drop(columns=names[:2]).assign(label=None))
    assert main(["check", str(config.source)]) == 1
    out = capsys.readouterr().out
    assert "cli_samples.parquet" in out and "field 'label' holds no value" in out
    assert not config.chain.output_path.joinpath("samples").exists()


def test_relative_paths_resolve_against_the_config_folder(built):
    config = setup(built, "relative")  # written as `path: relative_samples.parquet`
    assert external_path(config) == built[0].parent / "relative_samples.parquet"


def test_long_tables_need_one_label_and_one_row_per_sample_and_date():
    options = ExternalSamples(path="t.csv")
    frame = pd.DataFrame({"sample_id": [1, 1, 2, 2], "date": ["2018-05-01", "2018-05-11"] * 2,
                          "label": ["a", "b", "c", "c"], "NDVI": [0.1, 0.2, 0.3, 0.4]})
    _, problems = parse_table(frame, options, "t.csv")
    assert problems == ["t.csv: sample_id 1: several values of 'label' for one sample; give "
                        "each sample one value"]
    frame.loc[1, "date"] = "2018-05-01"
    _, problems = parse_table(frame, options, "t.csv")
    assert "several rows for one (sample_id, date)" in problems[0]
    _, problems = parse_table(frame.drop(columns="sample_id"), options, "t.csv")
    assert "a 'date' column but no 'sample_id' column" in problems[0]
    frame = frame.assign(label="a", date=["2018-05-01", "2018-05-11", "2018-05-01", "x"])
    _, problems = parse_table(frame, options, "t.csv")
    assert problems == ["t.csv: row 4: 'date' is not a date"]


# --- must show: a MODIS-like series alone, a table to learn, points to validate -----------


def test_series_only_run_trained_on_a_table_and_validated_on_points(tmp_path, client):
    """The only raster input is a dated series in a sinusoidal CRS (no EPSG code) with lossy
    fill values; the models learn from a Parquet table of labelled series (no geometry); the
    accuracy is measured on points (ground_truth_role: validation)."""
    path = make_scene(tmp_path / "modis", tiles=1, size=128, dates=6, classes=4, regions=2,
                      seed=2, format="series", series_crs=SINUSOIDAL)
    root = path.parent
    config = load_config(path)
    cube = open_cube(build_cubes(config)["T31TCJ"])
    assert cube.rio.crs.to_epsg() is None and "Sinusoidal" in cube.rio.crs.to_wkt()
    # validation: 4 points in each ground-truth field
    gt = gpd.read_file(root / "vector" / "ground_truth.shp")
    inner = gt.geometry.buffer(-15)
    inner = inner[~inner.is_empty]
    points = gpd.GeoDataFrame({"class": gt.loc[inner.index, "class"]},
                              geometry=inner.sample_points(4, rng=0).values, crs=gt.crs)
    points = points.explode(index_parts=False).reset_index(drop=True)
    points.to_file(root / "vector" / "points.gpkg")
    # learning: a table of truth pixels (not those of the points), features from the cube
    table = table_from_truth(root, cube, 800, seed=1, avoid=points.buffer(15).union_all())
    table.to_parquet(root / "samples.parquet", index=False)
    edit_config(path, chain={"ground_truth": "vector/points.gpkg",
                             "ground_truth_role": "validation",
                             "external_samples": {"path": "samples.parquet"}},
                models={"params": {"n_estimators": 50}})
    config = load_config(path)
    metrics = run_chain(config)
    final = config.chain.output_path / "final"
    assert (final / "Classif_Seed_0.tif").exists() and (final / "report.html").exists()
    with rasterio.open(final / "Classif_Seed_0.tif") as src:
        assert src.crs.to_epsg() is None and (src.read(1) > 0).mean() > 0.8
    assert (read_samples(config, 0)["tile"] == "external").all()
    # one validation pixel per point, labelled as the truth there
    validation = read_samples(config, 0, "validation")
    assert 0.9 * len(points) <= len(validation) <= len(points)
    x, y = warp(cube.rio.crs, gt.crs, validation["x"], validation["y"])
    with rasterio.open(root / "truth" / "T31TCJ.tif") as src:
        truth = np.array([v[0] for v in src.sample(zip(x, y))])
    names = {c["code"]: c["name"] for c in json.loads((root / "scene.json").read_text())
             ["classes"]}
    assert [names[v] for v in truth] == list(load_class_table(config).decode(validation["code"]))
    scores = json.loads((final / "metrics.json").read_text())["runs"][0]["scores"]
    assert scores == metrics["runs"][0]["scores"]
    assert scores["n_samples"] == len(validation)
    chance = 1 / len(set(points["class"]))
    assert scores["overall_accuracy"] > chance + 0.35, scores["overall_accuracy"]
