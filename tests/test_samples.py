"""Reference polygons to samples: split, selection strategies, augmentation, extraction."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from geoclass.api import read_samples, sample
from geoclass.config import SampleAugmentation, SelectionRule
from geoclass.kernels.sampling import augment, pixel_keys, split_polygons, target_counts
from geoclass.steps.samples import reference_pieces
from geoclass.store import RunStore
from geoclass.views.cube import open_cube

from .conftest import config_of, edit_config


def rule(**kw) -> SelectionRule:
    return SelectionRule.model_validate(kw)


COUNTS = pd.Series({1: 100, 2: 40, 3: 7})


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"strategy": "all"}, [100, 40, 7]),
        ({"strategy": "constant", "strategy.constant.nb": 30}, [30, 30, 7]),
        ({"strategy": "percent", "strategy.percent.p": 0.5}, [50, 20, 4]),
        ({"strategy": "smallest"}, [7, 7, 7]),
        ({"strategy": "total", "strategy.total.v": 60}, [41, 16, 3]),
        ({"strategy": "byclass", "strategy.byclass.in": {"a": 10, "b": 50}}, [10, 40, 0]),
    ],
)
def test_each_strategy_gives_the_counts_it_promises(options, expected):
    wanted = target_counts(COUNTS, rule(**options), {1: "a", 2: "b", 3: "c"})
    assert wanted.tolist() == expected
    if options["strategy"] == "total":
        assert wanted.sum() == 60


def test_strategy_parameters_are_required():
    with pytest.raises(ValueError, match="strategy.constant.nb"):
        rule(strategy="constant")


def test_pixel_keys_are_uniform_and_depend_on_position_seed_and_run():
    rows, cols = np.divmod(np.arange(200_000), 1000)
    keys = pixel_keys(0, rows, cols, seed=3, run=0)
    assert 0 <= keys.min() and keys.max() < 1 and abs(keys.mean() - 0.5) < 0.01
    np.testing.assert_array_equal(keys, pixel_keys(0, rows, cols, 3, 0))
    assert not np.allclose(keys, pixel_keys(0, rows, cols, 3, 1))
    assert not np.allclose(keys, pixel_keys(1, rows, cols, 3, 0))


def _pieces(n_per_class: dict[tuple[int, int], int]) -> pd.DataFrame:
    rows = [(region, code) for (region, code), n in n_per_class.items() for _ in range(n)]
    frame = pd.DataFrame(rows, columns=["region", "code"])
    frame["piece"] = np.arange(1, len(frame) + 1)
    return frame


def test_split_is_per_class_and_region_reproducible_and_differs_between_runs():
    pieces = _pieces({(1, 1): 10, (1, 2): 4, (2, 1): 6, (2, 3): 1})
    learn0, notes = split_polygons(pieces, 0.5, run=0, seed=7)
    again, _ = split_polygons(pieces, 0.5, run=0, seed=7)
    learn1, _ = split_polygons(pieces, 0.5, run=1, seed=7)
    pd.testing.assert_series_equal(learn0, again)
    assert not learn0.equals(learn1)
    per_group = learn0.groupby([pieces["region"], pieces["code"]]).sum()
    assert per_group.to_dict() == {(1, 1): 5, (1, 2): 2, (2, 1): 3, (2, 3): 1}
    assert any("class 3 has a single polygon" in n and "no validation" in n for n in notes)


def test_no_split_uses_every_polygon_for_both_with_a_warning():
    pieces = _pieces({(1, 1): 4})
    learn, notes = split_polygons(pieces, 0.5, run=0, seed=0, split=False)
    assert learn.all() and "optimistic" in notes[0]


def _learning_table(counts: dict[int, int], n_features=3) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    codes = np.repeat(list(counts), list(counts.values()))
    frame = pd.DataFrame(rng.random((len(codes), n_features)).astype(np.float32),
                         columns=[f"f{i}" for i in range(n_features)])
    frame["code"], frame["region"], frame["synthetic"] = codes, 1, False
    frame["tile"], frame["row"], frame["col"] = "T", np.arange(len(codes)), 0
    return frame


@pytest.mark.parametrize("strategy", ["replicate", "jitter", "smote"])
def test_augmentation_reaches_the_balance_and_flags_synthetic_rows(strategy):
    table = _learning_table({1: 50, 2: 12, 3: 20})
    options = SampleAugmentation.model_validate({"activate": True, "strategy": strategy})
    new = augment(table, ["f0", "f1", "f2"], options, {}, np.random.default_rng(1))
    assert new["synthetic"].all() and (new["row"] == -1).all()
    total = pd.concat([table, new])["code"].value_counts().sort_index()
    assert total.tolist() == [50, 50, 50]
    originals = set(map(tuple, table[["f0", "f1", "f2"]].to_numpy()))
    copied = [tuple(r) in originals for r in new[["f0", "f1", "f2"]].to_numpy()]
    assert all(copied) if strategy == "replicate" else not any(copied)


def test_augmentation_min_number_and_by_class():
    table = _learning_table({1: 50, 2: 12})
    features = ["f0", "f1", "f2"]
    options = SampleAugmentation.model_validate(
        {"activate": True, "samples.strategy": "minNumber", "samples.strategy.minNumber": 30})
    new = augment(table, features, options, {}, np.random.default_rng(0))
    assert new["code"].value_counts().to_dict() == {2: 18}
    options = SampleAugmentation.model_validate(
        {"activate": True, "samples.strategy": "byClass",
         "samples.strategy.byClass": {"wheat": 60, "2": 20}})
    new = augment(table, features, options, {1: "wheat", 2: "2"}, np.random.default_rng(0))
    assert new["code"].value_counts().sort_index().to_dict() == {1: 10, 2: 8}


# --- on a generated scene ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def sampled(scene_template, tmp_path_factory, client):
    """The session scene sampled with two runs and the default strategy (all pixels)."""
    target = tmp_path_factory.mktemp("sampled") / "scene"
    shutil.copytree(scene_template.parent, target)
    config = config_of(target / "config.yaml", chain={"runs": 2})
    sample(config)
    return config


def test_runs_are_disjoint_reproducible_and_different(sampled):
    pieces, _ = reference_pieces(sampled)
    learn = [read_samples(sampled, r, "learn") for r in range(2)]
    valid = [read_samples(sampled, r, "validation") for r in range(2)]
    for lrn, val in zip(learn, valid):
        assert not set(lrn["piece"]) & set(val["piece"])
        assert len(lrn) and len(val)
    assert set(learn[0]["piece"]) != set(learn[1]["piece"])
    # every polygon's pixels are all in one set: extraction keeps whole polygons
    used = set(learn[0]["piece"]) | set(valid[0]["piece"])
    assert used <= set(pieces["piece"])


def test_extracted_values_equal_the_cube_at_those_pixels(sampled):
    learn = read_samples(sampled, 0, "learn")
    for tile, part in learn.groupby("tile"):
        cube = open_cube(sampled.chain.output_path / "cubes" / f"{tile}.zarr")
        names = list(cube["feature"].values)
        picks = part.sample(50, random_state=0)
        values = cube.features.values[:, picks["row"].to_numpy(), picks["col"].to_numpy()].T
        np.testing.assert_array_equal(picks[names].to_numpy(), values)
        np.testing.assert_allclose(picks["x"], cube.x.values[picks["col"]])
        np.testing.assert_allclose(picks["y"], cube.y.values[picks["row"]])
        np.testing.assert_array_equal(picks["validity"],
                                      cube.validity.values[picks["row"], picks["col"]])


def test_string_labels_give_the_table_csv_with_codes_and_colors(sampled):
    out = sampled.chain.output_path / "final" / "ground_truth_table.csv"
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "USER_LABEL,GEOCLASS_LABEL,RED,GREEN,BLUE"
    nomenclature = dict(line.rsplit(":", 1)[::-1] for line in
                        sampled.chain.nomenclature_path.read_text(encoding="utf-8").splitlines())
    colors = {line.split()[0]: line.split()[1:] for line in
              sampled.chain.color_table.read_text().splitlines()}
    labels = sorted(nomenclature.values())
    for code, line in enumerate(lines[1:], start=1):
        label, geoclass_code, *rgb = [v.strip() for v in line.split(",")]
        user_code = {v: k for k, v in nomenclature.items()}[label]
        assert label == labels[code - 1] and int(geoclass_code) == code
        assert rgb == colors[user_code]


def test_reports_count_samples_and_chunks_read(sampled):
    report = json.loads((sampled.chain.output_path / "samples" / "report_seed_0.json")
                        .read_text())
    learn = read_samples(sampled, 0, "learn")
    total = sum(c["learn"] for region in report["counts"].values() for c in region.values())
    assert total == len(learn)
    assert 0 < report["chunks_read"] <= report["chunks_total"]


def test_samples_step_is_skipped_when_nothing_changed(sampled):
    manifest = sampled.chain.output_path / "manifests" / "samples.json"
    before = manifest.stat().st_mtime_ns
    sample(sampled)
    assert manifest.stat().st_mtime_ns == before


def test_constant_strategy_with_cloud_threshold_and_per_model_override(scene, client):
    config = config_of(scene, sampling={
        "cloud_threshold": 3,
        "sample_selection": {"strategy": "constant", "strategy.constant.nb": 25,
                             "per_model": [{"target_model": 2, "strategy": "percent",
                                            "strategy.percent.p": 0.5}]}})
    sample(config)
    learn = read_samples(config, 0, "learn")
    assert (learn["validity"] > 3).all()
    region1 = learn[learn["region"] == 1].groupby("code").size()
    assert (region1 <= 25).all() and (region1 == 25).sum() >= 3
    report = json.loads((config.chain.output_path / "samples" / "report_seed_0.json")
                        .read_text())
    assert sum(c["learn"] for c in report["counts"]["2"].values()) == \
        (learn["region"] == 2).sum()
    # same config, same samples
    again = edit_config(scene, chain={"output_path": "run2"})
    config2 = config_of(again)
    sample(config2)
    pd.testing.assert_frame_equal(learn, read_samples(config2, 0, "learn"))


def test_extraction_reads_only_chunks_that_touch_polygons(scene, client):
    import geopandas as gpd

    gt_path = scene.parent / "vector" / "ground_truth.shp"
    gt = gpd.read_file(gt_path)
    few = gt[gt.geometry.bounds["maxx"] < gt.total_bounds[0] + 300]
    small = scene.parent / "vector" / "few_fields.gpkg"
    few.to_file(small)
    config = config_of(scene, chain={"ground_truth": str(small)})
    sample(config)
    report = json.loads((config.chain.output_path / "samples" / "report_seed_0.json")
                        .read_text())
    assert report["chunks_read"] < report["chunks_total"] / 2
    learn = read_samples(config, 0, "learn")
    assert learn["fid"].between(1, len(few)).all()  # GeoPackage FIDs start at 1


def test_polygons_crossing_a_region_boundary_are_cut_by_the_regions(sampled):
    import geopandas as gpd

    pieces, _ = reference_pieces(sampled)
    regions = gpd.read_file(sampled.chain.region_path)
    samples = pd.concat([read_samples(sampled, 0, "learn"), read_samples(sampled, 0, "validation")])
    points = gpd.GeoDataFrame(samples[["region"]], geometry=gpd.points_from_xy(samples.x,
                                                                              samples.y),
                              crs=regions.crs)
    located = gpd.sjoin(points, regions, predicate="within")
    assert (located["region_left"] == located["region_right"].astype(int)).all()
    cut = pieces.groupby("fid")["region"].nunique()
    assert (cut > 1).any()  # the generated scene has fields across the region boundary
    fid = cut[cut > 1].index[0]
    assert sorted(pieces.loc[pieces.fid == fid, "region"]) == [1, 2]


def test_regions_by_tile_learn_and_classify_each_tile_with_its_region(scene, client):
    """`chain.region_tiles` (iota2's multi_regions mode): every pixel of a tile is in that
    tile's region, for the samples, the models and the maps."""
    import geopandas as gpd
    import xarray as xr

    from geoclass.api import classify, model_path
    from geoclass.views.maps import region_polygons, tile_grids, tile_regions

    first, second = config_of(scene).chain.list_tile
    config = config_of(scene, chain={"region_path": None, "region_tiles": {7: [second],
                                                                           3: [first]}},
                       models={"params": {"n_estimators": 10}})
    maps = classify(config)
    learn = read_samples(config, 0, "learn")
    assert set(learn.groupby("tile")["region"].unique().map(tuple)) == {(3,), (7,)}
    assert dict(learn.groupby("tile")["region"].first()) == {first: 3, second: 7}
    assert model_path(config, 3, 0).exists() and model_path(config, 7, 0).exists()
    store_grids = tile_grids(config.chain.list_tile, RunStore(config.chain.output_path))
    polygons = region_polygons(config.chain, store_grids)
    assert isinstance(polygons, gpd.GeoDataFrame) and polygons["region"].tolist() == [3, 7]
    for tile, region in ((first, 3), (second, 7)):
        assert (tile_regions(polygons, store_grids[tile]).compute() == region).all()
        classes = xr.open_zarr(maps[0][tile])["classification"].values
        assert (classes > 0).mean() > 0.9


def test_check_warns_about_tiles_in_no_region(scene):
    from geoclass.steps.check import check_inputs

    first, second = config_of(scene).chain.list_tile
    config = config_of(scene, chain={"region_path": None, "region_tiles": {1: [first]}})
    report = check_inputs(config)
    assert report.ok, report.problems
    assert [w for w in report.warnings if "no region" in w] == [
        f"tiles {second} are in no region of chain.region_tiles: left unclassified (0) where "
        "no other tile covers them"]
