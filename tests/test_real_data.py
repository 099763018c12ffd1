"""Real data without surprises: the odd shapes of real archives (a coarse, custom-CRS, lossy
series smaller than one chunk and not square, point ground truth, a table by position),
grids geoclass must refuse, failures that end in one message, broken inputs refused early."""

from __future__ import annotations

import json
import os

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
import yaml
from affine import Affine
from rasterio.warp import Resampling, reproject
from rasterio.windows import Window

from geoclass.api import read_samples
from geoclass.cli import main
from geoclass.errors import InputError
from geoclass.grid import grid_of_raster
from geoclass.io.configfile import load_config
from geoclass.steps.check import check_inputs
from geoclass.testing.synth import synth
from geoclass.views.cube import open_cube

from .conftest import edit_config

SINUSOIDAL = "+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +R=6371007.181 +units=m +no_defs"
MODIS_PIXEL = 231.656358  # metres


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _crop_series(folder, rows: int) -> None:
    """Keep the top `rows` rows of every file of a series (lossy JPEG 2000 again)."""
    for path in sorted(folder.glob("*.jp2")):
        with rasterio.open(path) as src:
            data = src.read(window=Window(0, 0, src.width, rows))
            profile = dict(driver="JP2OpenJPEG", width=src.width, height=rows, count=1,
                           dtype=src.dtypes[0], crs=src.crs, transform=src.transform,
                           QUALITY=25, REVERSIBLE="NO", RESOLUTIONS=1)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)


def _truth_on(grid_path, root, codes) -> np.ndarray:
    """The scene's truth, as geoclass codes, on the grid of the raster `grid_path`."""
    scene = json.loads((root / "scene.json").read_text())
    name_of = {c["code"]: c["name"] for c in scene["classes"]}
    lut = np.zeros(256, np.uint8)
    for code, name in name_of.items():
        lut[code] = codes[name]
    with rasterio.open(grid_path) as ref, rasterio.open(root / "truth" / "T31TCJ.tif") as t:
        truth = np.zeros((ref.height, ref.width), np.uint8)
        reproject(t.read(1), truth, src_transform=t.transform, src_crs=t.crs,
                  dst_transform=ref.transform, dst_crs=ref.crs,
                  resampling=Resampling.nearest)
    return lut[truth]


def test_coarse_custom_crs_series_smaller_than_a_chunk_runs_end_to_end(tmp_path, capsys):
    """iota2's crash case: a MODIS-like NDVI series (lossy JPEG 2000, sinusoidal CRS without
    an EPSG code, 231.656 m pixels, a tile not square and smaller than one chunk,
    spatial_resolution left out), point ground truth in EPSG:4326 that only validates, and
    an external table of labelled series matched by position."""
    config_path = synth(tmp_path / "modis", tiles=1, size=96, dates=12, classes=4, regions=1,
                        seed=3, format="series", series_crs=SINUSOIDAL, resolution=MODIS_PIXEL,
                        series_ndvi=True, series_jp2=True, points=40, external_samples=800,
                        chunk_size=256)
    root = config_path.parent
    _crop_series(root / "series" / "T31TCJ", rows=55)  # ~100 x 55 px: far from square
    with rasterio.open(next((root / "series" / "T31TCJ").glob("*.jp2"))) as src:
        footprint, crs = src.bounds, src.crs
    points = gpd.read_file(root / "vector" / "ground_truth.gpkg")
    inside = points.to_crs(crs.to_wkt()).within(shapely.box(*footprint)).to_numpy()
    points[inside].to_file(root / "vector" / "ground_truth.gpkg")
    data = yaml.safe_load(config_path.read_text())
    assert "spatial_resolution" not in data["chain"] and data["dask"]["chunk_size"] == 256

    code, out, _ = _run(capsys, "check", config_path)
    assert code == 0, out
    code, out, err = _run(capsys, "run", config_path, "--workers", "1")
    assert code == 0, err
    assert "warning: run 0: ground_truth_role is validation" in out

    config = load_config(config_path)
    cube = open_cube(config.chain.output_path / "cubes" / "T31TCJ.zarr")
    height, width = cube.sizes["y"], cube.sizes["x"]
    assert height < 256 and width < 256 and abs(width - height) > 30
    assert cube.rio.crs.to_epsg() is None
    classif = config.chain.output_path / "final" / "Classif_Seed_0.tif"
    with rasterio.open(classif) as src:
        assert src.crs.to_epsg() is None and "Sinusoidal" in src.crs.to_wkt()
        assert src.transform.a == pytest.approx(MODIS_PIXEL, rel=1e-3)
        predicted = src.read(1)
    assert (read_samples(config, 0)["tile"] == "external").all()
    validation = read_samples(config, 0, "validation")
    assert 0.8 * inside.sum() <= len(validation) <= inside.sum()
    table = {line.split(",")[0]: int(line.split(",")[1]) for line in
             (config.chain.output_path / "final" / "ground_truth_table.csv").read_text()
             .splitlines()[1:]}
    truth = _truth_on(classif, root, table)
    mapped = (predicted > 0) & (truth > 0)
    assert mapped.mean() > 0.8
    agreement = (predicted[mapped] == truth[mapped]).mean()
    assert agreement > 0.7, agreement  # 4 classes: chance is 0.25


def test_a_tile_grid_must_be_north_up_with_square_pixels(tmp_path):
    base = dict(driver="GTiff", width=8, height=6, count=1, dtype="uint8", crs="EPSG:32631")
    cases = {"rotated.tif": (Affine(10, 2, 0, 2, -10, 0), "rotated geotransform"),
             "south_up.tif": (Affine(10, 0, 0, 0, 10, 0), "south-up"),
             "oblong.tif": (Affine(10, 0, 0, 0, -20, 0), "non-square pixels")}
    for name, (transform, words) in cases.items():
        with rasterio.open(tmp_path / name, "w", transform=transform, **base) as dst:
            dst.write(np.ones((1, 6, 8), np.uint8))
        with pytest.raises(InputError) as err:
            grid_of_raster(tmp_path / name, "T1")
        assert name in str(err.value) and words in str(err.value)


def test_a_series_in_degrees_needs_a_projected_grid(tmp_path):
    path = synth(tmp_path / "geo", tiles=1, size=64, dates=3, classes=3, regions=1,
                 format="series", series_crs="EPSG:4326")
    report = check_inputs(load_config(path))
    assert any("geographic CRS" in p and "set chain.proj, e.g. EPSG:32631" in p
               for p in report.problems), report.problems
    edit_config(path, chain={"proj": "EPSG:32631"})
    report = check_inputs(load_config(path))
    assert report.ok, report.problems


# --- failures end in one message -----------------------------------------------------------


def test_an_unexpected_error_is_one_message_with_the_log_path(scene, capsys, monkeypatch):
    import dataclasses

    from geoclass import pipeline

    def broken(config, store, force=False):
        raise RuntimeError("boom in the samples")

    step = dataclasses.replace(pipeline.BY_NAME["samples"], run=broken)
    monkeypatch.setitem(pipeline.BY_NAME, "samples", step)
    code, out, err = _run(capsys, "run", scene, "--workers", "1")
    assert code == 1
    assert "geoclass run: unexpected error in step samples: RuntimeError: boom" in err
    assert "Traceback" not in err and "Traceback" not in out
    log = err.split("the full traceback is in ")[1].split()[0]
    text = open(log, encoding="utf-8").read()
    assert "Traceback" in text and "boom in the samples" in text and "step 2/8: cubes" in text
    final = scene.parent / "run" / "final"
    assert not final.exists() or not any(final.iterdir())
    code, _, err = _run(capsys, "--debug", "check", scene)  # --debug still works
    assert code == 0


def test_the_checks_run_before_the_cluster_starts(scene, capsys, monkeypatch):
    import distributed

    def no_cluster(*args, **kwargs):
        raise AssertionError("a cluster was started before the checks")

    monkeypatch.setattr(distributed, "LocalCluster", no_cluster)
    monkeypatch.setattr("geoclass.cluster.LocalCluster", no_cluster)
    edit_config(scene, chain={"data_field": "label"})
    for command in ("run", "cube", "samples", "train", "classify"):
        code, _, err = _run(capsys, command, scene, "--workers", "1")
        assert code == 2 and "no field 'label'" in err, (command, err)
    assert not (scene.parent / "run").exists()


def test_generator_options_out_of_range_are_one_message(tmp_path, capsys):
    for argv in (["synth", tmp_path / "s", "--size", "10"],
                 ["demo", "--size", "10", "--out", tmp_path / "d"]):
        code, _, err = _run(capsys, *argv)
        assert code == 2 and "size must be >= 32, got 10" in err and "Traceback" not in err
    assert not (tmp_path / "s").exists() and not (tmp_path / "d").exists()
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.startswith("geoclass ")


# --- broken inputs that used to get through -------------------------------------------------


def test_broken_inputs_are_refused_by_check(scene, tmp_path, capsys):
    edit_config(scene, chain={"list_tile": []})
    code, _, err = _run(capsys, "check", scene)
    assert code == 2 and "chain.list_tile: lists no tile" in err
    edit_config(scene, chain={"list_tile": ["T31TCJ", "T31TDJ"], "runs": 1},
                classification={"merge_final_classifications": {"enable": True}})
    code, _, err = _run(capsys, "check", scene)
    assert code == 2 and "chain.runs is 1: set chain.runs >= 2" in err
    edit_config(scene, classification={"merge_final_classifications": {"enable": False}},
                models={"params": {"n_estimators": -5}})
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    edit_config(scene, chain={"output_path": str(blocker / "run")})
    data = yaml.safe_load(scene.read_text())
    del data["chain"]["ground_truth"]
    scene.write_text(yaml.safe_dump(data))
    code, out, _ = _run(capsys, "check", scene)
    assert code == 1
    assert "models.params: Number of boosting rounds must be greater than 0. Got -5." in out
    assert f"chain.output_path {blocker / 'run'} cannot be created: {blocker}" in out
    assert "nothing to learn from: set chain.ground_truth" in out
    assert not (blocker.parent / "run").exists()


def test_an_empty_ground_truth_file_says_so(scene, capsys):
    gt = gpd.read_file(scene.parent / "vector" / "ground_truth.shp")
    gt.iloc[:0].to_file(scene.parent / "vector" / "empty.gpkg")
    edit_config(scene, chain={"ground_truth": "vector/empty.gpkg"})
    code, out, _ = _run(capsys, "check", scene)
    assert code == 1 and "empty.gpkg: the file has no feature (no polygon, no point)" in out
    assert "holds no value" not in out


def test_an_undated_product_folder_is_reported_not_dropped_silently(scene, capsys):
    tile = scene.parent / "sensor_data" / "T31TCJ"
    product = sorted(p for p in tile.iterdir() if p.is_dir())[0]
    product.rename(tile / product.name.replace("_2018", "_20XX", 1))
    code, out, _ = _run(capsys, "check", scene)
    assert code == 0
    assert (f"warning: tile T31TCJ: sentinel_2: {product.name.replace('_2018', '_20XX', 1)}: "
            "left out, not a THEIA Sentinel-2 L2A product name of this tile with a date") in out


def test_a_corrupt_raster_names_the_file_the_date_and_the_tile(scene, capsys):
    tile = scene.parent / "sensor_data" / "T31TDJ"
    product = sorted(p for p in tile.iterdir() if p.is_dir())[2]
    band = next(product.glob("*_FRE_B4.tif"))
    size = band.stat().st_size
    with open(band, "r+b") as f:
        f.truncate(size // 2)
    code, _, err = _run(capsys, "cube", scene, "--workers", "1")
    assert code == 2 and "Traceback" not in err
    assert f"tile T31TDJ, sentinel_2 acquisition of {product.name[11:15]}-" in err
    assert f"cannot read {band}" in err and "replace the file" in err
    cubes = scene.parent / "run" / "cubes"
    assert not (cubes / "T31TDJ.zarr").exists()


def test_write_permission_is_checked_where_it_can_be(tmp_path):
    from geoclass.steps.check import output_problems

    assert output_problems(tmp_path / "new" / "run") == []
    (tmp_path / "f").write_text("x")
    assert "is a file, not a folder" in output_problems(tmp_path / "f")[0]
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert "cannot be created" in output_problems(locked / "run")[0]


def test_progress_bars_are_named_after_their_step(client, capsys, monkeypatch):
    import dask.array as da

    from geoclass.cluster import compute

    monkeypatch.setenv("GEOCLASS_PROGRESS", "1")
    (total,) = compute(da.ones((64, 64), chunks=16).sum(), label="counting ones")
    assert total == 64 * 64
    out = capsys.readouterr().out
    assert "counting ones" in out and "100%" in out


def test_the_grid_of_a_cube_is_chunked_as_the_cube_whatever_its_shape():
    """A tile lower than one chunk but wider than several: the grid's blocks are the cube's
    (the chunk was once taken from the height alone)."""
    import dask.array as da
    import xarray as xr

    from geoclass.views.cube import grid_of_cube

    for attrs in ({}, {"chunk": 64}):
        data = da.zeros((40, 200), chunks=64)
        ds = xr.Dataset({"validity": (("y", "x"), data)},
                        attrs={"tile": "T1", "crs_wkt": "EPSG:32631",
                               "grid_transform": [10, 0, 0, 0, -10, 0], **attrs})
        ds.attrs["crs_wkt"] = rasterio.crs.CRS.from_epsg(32631).to_wkt()
        grid = grid_of_cube(ds)
        assert grid.chunks == data.chunks == ((40,), (64, 64, 64, 8))
        windows = dict(grid.block_windows())
        assert windows[0, 3].col_off == 192 and windows[0, 3].width == 8
