"""The synthetic scene generator: layout, georeferencing, determinism, references, realism."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.features import rasterize
from sklearn.ensemble import RandomForestClassifier

from geoclass.io.configfile import load_config
from geoclass.testing import scene as scene_module
from geoclass.testing import synth as synth_module
from geoclass.testing.synth import (
    BANDS,
    BANDS_20M,
    NODATA,
    class_archetypes,
    clouds,
    make_parcels,
    region_polygons,
    synth,
)

from .conftest import IOTA2, NO_IOTA2_DATA

REFERENCE = IOTA2 / "references" / "running_iota2"
PRODUCT = re.compile(r"^SENTINEL2[AB]_(2018\d{4})-\d{6}-\d{3}_L2A_(T31T[C-H][J-V])_C_V2-2$")
SIZE, DATES = 128, 8


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scene")
    synth(out, tiles=2, size=SIZE, dates=DATES, seed=0)
    return out


@pytest.fixture(scope="module")
def ml_scene(tmp_path_factory) -> Path:
    """One larger tile, cut in two by a region boundary, nearly clear: many parcels to sample."""
    out = tmp_path_factory.mktemp("ml")
    synth(out, tiles=1, size=192, dates=DATES, seed=0, cloud_cover=0.05)
    return out


def products(out: Path, tile: str) -> list[Path]:
    """A tile's product folders in date order."""
    return sorted((out / "sensor_data" / tile).iterdir(), key=lambda p: p.name.split("_")[1])


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def rasters(out: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(out)): read(p) for p in sorted(out.rglob("*.tif"))}


def time_series(out: Path, tile: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pixels, dates x bands) reflectances, all-dates-clear flag and truth code, per pixel."""
    series, clear = [], True
    for folder in products(out, tile):
        name = folder.name
        series += [read(folder / f"{name}_FRE_{band}.tif").ravel() for band in BANDS]
        clear = clear & (read(folder / "MASKS" / f"{name}_CLM_R1.tif").ravel() == 0)
        clear = clear & (read(folder / "MASKS" / f"{name}_EDG_R1.tif").ravel() == 0)
    truth = read(out / "truth" / f"{tile}.tif").ravel()
    return np.stack(series, axis=1).astype(np.float32), clear, truth


def region_raster(out: Path, tile: str) -> np.ndarray:
    regions = gpd.read_file(out / "vector" / "regions.shp")
    with rasterio.open(out / "truth" / f"{tile}.tif") as src:
        shape, transform = src.shape, src.transform
    shapes = zip(regions.geometry, regions["region"].astype(int))
    return rasterize(shapes, out_shape=shape, transform=transform).ravel()


def balanced(rng, mask: np.ndarray, truth: np.ndarray, per_class: int) -> np.ndarray:
    """Up to `per_class` random pixels of each class where `mask` holds, shuffled."""
    picks = [rng.permutation(np.flatnonzero(mask & (truth == c)))[:per_class] for c in set(truth)]
    return rng.permutation(np.concatenate(picks))


def overall_accuracy(x_train, y_train, x_test, y_test) -> float:
    model = RandomForestClassifier(n_estimators=50, n_jobs=2, random_state=0)
    return float((model.fit(x_train, y_train).predict(x_test) == y_test).mean())


# ---------------------------------------------------------------- layout and georeferencing


def test_layout_and_file_names(scene):
    for name in ("config.yaml", "scene.json", "nomenclature.txt", "colors.txt"):
        assert (scene / name).is_file()
    for name in ("ground_truth", "regions"):
        for ext in ("shp", "shx", "dbf", "prj"):
            assert (scene / "vector" / f"{name}.{ext}").is_file()
    summary = json.loads((scene / "scene.json").read_text())
    assert summary["tiles"] == ["T31TCJ", "T31TDJ"]
    assert sorted(p.name for p in (scene / "sensor_data").iterdir()) == ["T31TCJ", "T31TDJ"]
    for tile in summary["tiles"]:
        assert (scene / "truth" / f"{tile}.tif").is_file()
        folders = products(scene, tile)
        assert len(folders) == DATES
        dates = []
        for i, folder in enumerate(folders):
            match = PRODUCT.match(folder.name)
            assert match and match.group(2) == tile, folder.name
            assert folder.name.startswith("SENTINEL2A" if i % 2 == 0 else "SENTINEL2B")
            dates.append(dt.datetime.strptime(match.group(1), "%Y%m%d").date().isoformat())
            expected = {f"{folder.name}_FRE_{band}.tif" for band in BANDS} | {"MASKS"}
            assert {p.name for p in folder.iterdir()} == expected
            masks = {p.name for p in (folder / "MASKS").iterdir()}
            assert masks == {f"{folder.name}_CLM_R1.tif", f"{folder.name}_EDG_R1.tif"}
        assert dates == summary["dates"][tile]
        assert [p.name for p in folders] == summary["products"][tile]


def test_rasters_are_georeferenced_tiled_and_typed(scene):
    for tile in ("T31TCJ", "T31TDJ"):
        folder = products(scene, tile)[0]
        with rasterio.open(folder / f"{folder.name}_FRE_B4.tif") as src:
            assert src.crs.to_epsg() == 32631
            assert src.res == (10.0, 10.0) and src.shape == (SIZE, SIZE) and src.count == 1
            assert src.dtypes[0] == "int16" and src.nodata == NODATA
            assert src.profile["tiled"] and src.block_shapes[0] == (256, 256)
            assert src.compression.name.lower() == "deflate"
            valid = src.read(1)
            assert valid.min() >= 0 or valid.min() == NODATA
        for mask in ("CLM_R1", "EDG_R1"):
            with rasterio.open(folder / "MASKS" / f"{folder.name}_{mask}.tif") as src:
                assert src.dtypes[0] == "uint8" and src.shape == (SIZE, SIZE)
        with rasterio.open(scene / "truth" / f"{tile}.tif") as src:
            assert src.dtypes[0] == "uint8" and src.nodata == 0 and src.crs.to_epsg() == 32631
            assert src.read(1).min() > 0


def test_tiles_are_adjacent(scene):
    with rasterio.open(scene / "truth" / "T31TCJ.tif") as first:
        with rasterio.open(scene / "truth" / "T31TDJ.tif") as second:
            assert first.bounds.left == 300000 and first.bounds.top == 4900000
            assert second.bounds.left == first.bounds.right
            assert second.bounds.top == first.bounds.top
            assert second.bounds.bottom == first.bounds.bottom


def test_dates_are_irregular_revisits_with_a_common_range(scene):
    dates = json.loads((scene / "scene.json").read_text())["dates"]
    spans = []
    for isos in dates.values():
        days = [dt.date.fromisoformat(d) for d in isos]
        assert all(d.year == 2018 for d in days)
        gaps = np.diff([d.toordinal() for d in days])
        assert (gaps > 0).all() and (gaps % 5 == 0).all()
        assert len(set(gaps)) > 1  # irregular
        spans.append((days[0], days[-1]))
    assert dates["T31TCJ"] != dates["T31TDJ"]
    common = min(s[1] for s in spans) - max(s[0] for s in spans)
    assert common.days > 0.7 * (spans[0][1] - spans[0][0]).days


def test_swath_edge_on_the_last_tile_only(scene):
    edges = []
    for tile in ("T31TCJ", "T31TDJ"):
        for folder in products(scene, tile):
            edg = read(folder / "MASKS" / f"{folder.name}_EDG_R1.tif").astype(bool)
            if tile == "T31TCJ":
                assert not edg.any()
                continue
            if edg.any():
                assert edg[:, -1].all() and not edg[:, 0].any()  # a strip along the right edge
                assert edg.mean() < 0.1
                for band in ("B2", "B8", "B12"):
                    values = read(folder / f"{folder.name}_FRE_{band}.tif")
                    assert (values[edg] == NODATA).all() and (values[~edg] != NODATA).all()
            edges.append(edg.any())
    assert any(edges) and not all(edges)


# ---------------------------------------------------------------- determinism and config


def test_same_seed_same_scene_other_seed_other_scene(tmp_path):
    kwargs = dict(tiles=2, size=64, dates=3)
    synth(tmp_path / "a", seed=7, **kwargs)
    synth(tmp_path / "b", seed=7, **kwargs)
    synth(tmp_path / "c", seed=8, **kwargs)
    a, b, c = (rasters(tmp_path / n) for n in "abc")
    assert a.keys() == b.keys() and len(a) == 2 * (1 + 3 * 12)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    for name in ("scene.json", "nomenclature.txt", "colors.txt", "config.yaml"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    gt_a = gpd.read_file(tmp_path / "a" / "vector" / "ground_truth.shp")
    gt_b = gpd.read_file(tmp_path / "b" / "vector" / "ground_truth.shp")
    assert gt_a.geometry.geom_equals_exact(gt_b.geometry, 0).all()
    assert (gt_a["class"] == gt_b["class"]).all()
    assert not np.array_equal(a["truth/T31TCJ.tif"], c["truth/T31TCJ.tif"])
    b4 = [k for k in a if k.endswith("_FRE_B4.tif")][0]
    assert not np.array_equal(a[b4], next(v for k, v in c.items() if k.endswith("_FRE_B4.tif")))


class _Quiet:
    """A generator without pixel noise."""

    def standard_normal(self, shape, dtype):
        return np.zeros(shape, dtype)


@pytest.mark.parametrize("options", [{}, {"layout": "stack"}, {"r2_20m": True}])
def test_windows_do_not_show(tmp_path, monkeypatch, options):
    """Written by windows (16 of them, the last ones narrower), the scene is the one written
    in one window but for the pixel noise, drawn per window: without it, the same files."""
    real = synth_module._rng
    monkeypatch.setattr(synth_module, "_rng", lambda seed, *keys: (
        _Quiet() if keys[0] == synth_module._NOISE else real(seed, *keys)))
    kwargs = dict(tiles=2, size=100, dates=3, seed=5, cloud_cover=0.4, **options)
    synth(tmp_path / "one", **kwargs)
    monkeypatch.setattr(scene_module, "WINDOW", 32)
    synth(tmp_path / "many", **kwargs)
    one, many = (sorted((tmp_path / n).rglob("*.tif")) for n in ("one", "many"))
    assert [p.relative_to(tmp_path / "one") for p in one] == [
        p.relative_to(tmp_path / "many") for p in many]
    for a, b in zip(one, many):
        with rasterio.open(a) as first, rasterio.open(b) as second:
            np.testing.assert_array_equal(first.read(), second.read(), err_msg=str(a))
    assert not list((tmp_path / "many").glob(".synth-*"))  # the window cache is removed
    for name in ("scene.json", "config.yaml"):
        assert (tmp_path / "one" / name).read_text() == (tmp_path / "many" / name).read_text()


def test_config_validates_with_relative_paths(scene):
    config = load_config(scene / "config.yaml")
    chain = config.chain
    assert chain.list_tile == ["T31TCJ", "T31TDJ"]
    assert chain.output_path == (scene / "run").resolve()
    assert chain.s2_path == (scene / "sensor_data").resolve()
    assert chain.ground_truth.is_file() and chain.region_path.is_file()
    assert chain.nomenclature_path.is_file() and chain.color_table.is_file()
    assert chain.data_field == "class" and chain.region_field == "region"
    assert chain.spatial_resolution == 10 and chain.ratio == 0.5 and chain.runs == 1
    assert chain.random_seed == 0
    assert config.dask.chunk_size == 64


# ---------------------------------------------------------------- references


def test_ground_truth_polygons_are_pure_fields(scene):
    gt = gpd.read_file(scene / "vector" / "ground_truth.shp")
    assert gt.crs.to_epsg() == 32631
    assert {"class", "code"} <= set(gt.columns)
    assert gt["code"].dtype.kind == "i" and gt["class"].map(type).eq(str).all()
    assert gt.groupby("class")["code"].nunique().eq(1).all()
    geoms = gt.geometry.to_numpy()
    assert shapely.is_valid(geoms).all()
    left, right = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    pairs = left < right
    assert np.allclose(
        shapely.area(shapely.intersection(geoms[left[pairs]], geoms[right[pairs]])), 0
    )
    for tile in ("T31TCJ", "T31TDJ"):
        with rasterio.open(scene / "truth" / f"{tile}.tif") as src:
            truth, transform = src.read(1), src.transform
        burned = rasterize(zip(gt.geometry, gt["code"]), out_shape=truth.shape, transform=transform)
        covered = burned > 0
        assert 0.1 < covered.mean() < 0.6  # part of each tile
        np.testing.assert_array_equal(burned[covered], truth[covered])


def test_every_class_in_every_region(scene):
    gt = gpd.read_file(scene / "vector" / "ground_truth.shp")
    regions = gpd.read_file(scene / "vector" / "regions.shp")
    assert regions["region"].map(type).eq(str).all()
    assert sorted(regions["region"].astype(int)) == [1, 2]
    # Regions partition the scene and do not follow the tile border.
    scene_box = shapely.box(300000, 4900000 - SIZE * 10, 300000 + 2 * SIZE * 10, 4900000)
    assert np.isclose(regions.union_all().area, scene_box.area)
    assert np.isclose(regions.area.sum(), scene_box.area)
    border = shapely.LineString([(300000 + SIZE * 10, 4890000), (300000 + SIZE * 10, 4910000)])
    assert not any(regions.boundary.buffer(100).contains(border.intersection(scene_box)))
    overlap = np.stack([gt.intersection(r).area for r in regions.geometry], axis=1)
    majority = regions["region"].to_numpy()[overlap.argmax(axis=1)]
    classes = set(gt["class"])
    assert len(classes) == 8
    for region in regions["region"]:
        assert set(gt["class"][majority == region]) == classes, region


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_defaults_give_three_polygons_per_class_and_region(seed):
    shapes = region_polygons(seed, 2, 2, 256)
    parcels = make_parcels(seed, 2, 256, 8, shapes)
    counts = np.zeros((2, 8), int)
    np.add.at(counts, (parcels.region[parcels.ground_truth], parcels.cls[parcels.ground_truth]), 1)
    assert counts.min() >= 3
    assert 0.3 <= parcels.ground_truth.mean() <= 0.5


def test_nomenclature_and_colors_are_iota2s(scene):
    lines = (scene / "nomenclature.txt").read_text(encoding="utf-8").splitlines()
    table = {name: int(code) for name, code in (line.rsplit(":", 1) for line in lines)}
    expected = {a.name for a in class_archetypes(8)}
    assert set(table) == expected
    assert {"eau", "batis denses", "maïs", "colza", "prairies", "tournesol"} <= set(table)
    colors = {
        int(c): (int(r), int(g), int(b))
        for c, r, g, b in map(str.split, (scene / "colors.txt").read_text().splitlines())
    }
    assert set(colors) == set(table.values())
    gt = gpd.read_file(scene / "vector" / "ground_truth.shp")
    assert all(table[name] == code for name, code in zip(gt["class"], gt["code"]))
    if not REFERENCE.is_dir():
        pytest.skip(NO_IOTA2_DATA)
    ref_lines = (REFERENCE / "nomenclature.txt").read_text(encoding="utf-8").splitlines()
    reference = {n.strip(): int(c) for n, c in (line.rsplit(":", 1) for line in ref_lines if line)}
    ref_colors = {
        int(v[0]): tuple(map(int, v[1:]))
        for v in map(str.split, (REFERENCE / "color.txt").read_text().splitlines())
        if v
    }
    for name, code in table.items():
        assert reference[name] == code and ref_colors[code] == colors[code]


# ---------------------------------------------------------------- clouds


def test_cloud_masks_cover_about_cloud_cover(scene):
    fractions, b2_cloud, b2_clear = [], [], []
    for tile in ("T31TCJ", "T31TDJ"):
        for folder in products(scene, tile):
            clm = read(folder / "MASKS" / f"{folder.name}_CLM_R1.tif")
            valid = read(folder / "MASKS" / f"{folder.name}_EDG_R1.tif") == 0
            fractions.append((clm[valid] > 0).mean())
            b2 = read(folder / f"{folder.name}_FRE_B2.tif")
            b2_cloud.append(b2[(clm & 0b10) > 0])
            b2_clear.append(b2[(clm == 0) & valid])
    assert abs(np.mean(fractions) - 0.2) < 0.05
    assert min(fractions) < 0.02 and max(fractions) > 0.3  # some clear dates, some cloudy
    assert np.median(np.concatenate(b2_cloud)) > 2.5 * np.median(np.concatenate(b2_clear))


def test_thin_cloud_edges_are_left_unflagged():
    sky = clouds(seed=0, tile=0, date=0, size=128, cover=0.3)
    cloudy = sky.opacity > 0
    unflagged = (cloudy & (sky.clm == 0)).sum() / cloudy.sum()
    assert 0.01 < unflagged < 0.06
    assert abs((sky.clm > 0).mean() - 0.3) < 0.03
    assert sky.shadow.any() and (sky.clm[sky.shadow] > 0).all()


# ---------------------------------------------------------------- realism for classifiers


def test_time_series_separate_classes_single_dates_do_not(ml_scene):
    features, clear, truth = time_series(ml_scene, "T31TCJ")
    rng = np.random.default_rng(0)
    pixels = balanced(rng, clear, truth, 600)
    assert len(set(truth[pixels])) == 8
    train, test = pixels[: len(pixels) // 2], pixels[len(pixels) // 2 :]
    full = overall_accuracy(features[train], truth[train], features[test], truth[test])
    single = []
    for d in range(DATES):
        cols = slice(d * len(BANDS), (d + 1) * len(BANDS))
        single.append(
            overall_accuracy(features[train, cols], truth[train], features[test, cols], truth[test])
        )
    assert full > 0.85
    assert max(single) < full - 0.1 and np.mean(single) < full - 0.15


def test_per_region_models_beat_the_other_regions_model(ml_scene):
    features, clear, truth = time_series(ml_scene, "T31TCJ")
    region = region_raster(ml_scene, "T31TCJ")
    rng = np.random.default_rng(0)
    gains = []
    for r in (1, 2):
        own = balanced(rng, clear & (region == r), truth, 300)
        other = balanced(rng, clear & (region != r) & (region > 0), truth, 200)
        train, test = own[: len(own) // 2], own[len(own) // 2 :]
        local = overall_accuracy(features[train], truth[train], features[test], truth[test])
        foreign = overall_accuracy(features[other], truth[other], features[test], truth[test])
        gains.append(local - foreign)
    assert min(gains) > 0.03 and np.mean(gains) > 0.05


# ---------------------------------------------------------------- options


def test_int_labels_and_stack_layout(tmp_path):
    synth(tmp_path / "bands", tiles=1, size=64, dates=2, seed=3)
    config = synth(
        tmp_path / "stack", tiles=1, size=64, dates=2, seed=3, labels="int", layout="stack"
    )
    assert load_config(config).chain.data_field == "code"
    for folder in products(tmp_path / "stack", "T31TCJ"):
        assert {p.name for p in folder.iterdir()} == {f"{folder.name}_FRE_STACK.tif", "MASKS"}
        with rasterio.open(folder / f"{folder.name}_FRE_STACK.tif") as src:
            assert src.count == 10 and set(src.dtypes) == {"int16"} and src.nodata == NODATA
            assert src.descriptions == BANDS
            stack = src.read()
        same = tmp_path / "bands" / "sensor_data" / "T31TCJ" / folder.name
        for i, band in enumerate(BANDS):  # the same pixels as the band-per-file layout
            np.testing.assert_array_equal(stack[i], read(same / f"{folder.name}_FRE_{band}.tif"))


def test_r2_20m_writes_half_size_bands_and_masks(tmp_path):
    synth(tmp_path / "r1", tiles=1, size=64, dates=2, seed=3)
    synth(tmp_path / "r2", tiles=1, size=64, dates=2, seed=3, r2_20m=True)
    for folder in products(tmp_path / "r2", "T31TCJ"):
        name = folder.name
        r1 = tmp_path / "r1" / "sensor_data" / "T31TCJ" / name
        for band in BANDS:
            with rasterio.open(folder / f"{name}_FRE_{band}.tif") as src:
                coarse = band in BANDS_20M
                assert src.shape == ((32, 32) if coarse else (64, 64))
                assert src.res == ((20.0, 20.0) if coarse else (10.0, 10.0))
                assert src.bounds.left == 300000 and src.bounds.top == 4900000
                values = src.read(1).astype(float)
            fine = read(r1 / f"{name}_FRE_{band}.tif").astype(float)
            positive = fine > 0  # away from no-data and from reflectances clipped at 0
            if coarse:  # the 2x2 mean of the 10 m signal (up to rounding)
                fine = fine.reshape(32, 2, 32, 2).mean(axis=(1, 3))
                positive = positive.reshape(32, 2, 32, 2).all(axis=(1, 3))
            assert positive.mean() > 0.5
            assert np.abs(values - fine)[positive].max() <= 1
        for mask in ("CLM", "EDG"):
            assert read(folder / "MASKS" / f"{name}_{mask}_R1.tif").shape == (64, 64)
            assert read(folder / "MASKS" / f"{name}_{mask}_R2.tif").shape == (32, 32)


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError):
        synth(tmp_path, size=63, r2_20m=True)
    with pytest.raises(ValueError):
        synth(tmp_path, classes=99)
    with pytest.raises(ValueError):
        synth(tmp_path, labels="float")
    with pytest.raises(ValueError):
        synth(tmp_path, cloud_cover=1.5)
