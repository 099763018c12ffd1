"""Sentinel-1 backscatter per orbit, a mixed Sentinel-2 + Sentinel-1 cube, and the errors for a
sensor without dates on a tile and for a footprint that misses the tile."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import rasterio
from affine import Affine

from geoclass.config import Sentinel1Options
from geoclass.errors import InputError
from geoclass.io.sensors.sentinel1 import read_sentinel1
from geoclass.views.cube import open_cubes, open_series
from geoclass.views.sources import find_sources

from .conftest import config_of, make_scene


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """THEIA Sentinel-2 and Sentinel-1 of the same 2-tile scene."""
    return make_scene(tmp_path_factory.mktemp("mixed"), size=64, dates=4, s1=True)


def _read(path):
    with rasterio.open(path) as src:
        return src.read(1)


def test_orbits_are_separate_series_in_linear_units(mixed):
    asc, des = read_sentinel1(mixed.parent / "s1", "T31TDJ", Sentinel1Options(), chunk=32)
    assert (asc.sensor, des.sensor) == ("sentinel_1_asc", "sentinel_1_des")
    assert asc.band_names == ("VV", "VH") and asc.prefix == "S1ASC_"
    assert len(asc.dates) == 4 and set(asc.dates).isdisjoint(des.dates)
    values = open_series(asc, asc.grid).values
    for t, acq in enumerate(asc.acquisitions):
        assert "_vv_ASC_" in acq.bands[0].path and "_vh_ASC_" in acq.bands[1].path
        vv = _read(acq.bands[0].path)
        np.testing.assert_array_equal(np.isnan(values[t, 0]), vv == 0)  # nodata 0
        np.testing.assert_allclose(values[t, 0][vv > 0], vv[vv > 0], rtol=1e-6)
    assert (values[:, 0] == 0).sum() == 0 and np.isnan(values).any()  # a swath edge


def test_db_input_is_converted_to_linear(mixed, tmp_path):
    folder = tmp_path / "T31TCJ"
    folder.mkdir()
    for path in (mixed.parent / "s1" / "T31TCJ").glob("*_ASC_*.tif"):
        with rasterio.open(path) as src:
            profile, linear = src.profile, src.read(1)
        with rasterio.open(folder / path.name, "w", **profile) as dst:
            dst.write(np.where(linear > 0, 10 * np.log10(linear), 0).astype(np.float32), 1)
    options = Sentinel1Options(db_input=True, orbits=["ASC"])
    (db,) = read_sentinel1(tmp_path, "T31TCJ", options, chunk=32)
    (lin,) = read_sentinel1(mixed.parent / "s1", "T31TCJ", Sentinel1Options(orbits=["ASC"]))
    np.testing.assert_allclose(open_series(db, db.grid).values, open_series(lin, lin.grid).values,
                               rtol=1e-4)


def test_two_band_files_with_a_custom_pattern(mixed, tmp_path):
    folder = tmp_path / "T31TCJ"
    folder.mkdir()
    for vv in (mixed.parent / "s1" / "T31TCJ").glob("*_vv_DES_*.tif"):
        with rasterio.open(vv) as a, rasterio.open(str(vv).replace("_vv_", "_vh_")) as b:
            profile = a.profile | {"count": 2}
            stack = np.stack([a.read(1), b.read(1)])
        date = vv.stem.split("_")[-1]
        with rasterio.open(folder / f"S1_{date[:8]}_DESCENDING.tif", "w", **profile) as dst:
            dst.write(stack)
    options = Sentinel1Options(pattern="S1_{date:%Y%m%d}_{orbit}.tif")
    (des,) = read_sentinel1(tmp_path, "T31TCJ", options)
    (ref,) = read_sentinel1(mixed.parent / "s1", "T31TCJ", Sentinel1Options(orbits=["DES"]))
    assert des.sensor == "sentinel_1_des" and des.dates == ref.dates
    np.testing.assert_array_equal(open_series(des, des.grid).values,
                                  open_series(ref, ref.grid).values)


def test_mixed_cube_stacks_both_sensors_on_one_grid(mixed):
    config = config_of(mixed, dask={"chunk_size": 32})
    ds = open_cubes(config)["T31TCJ"]
    assert list(ds.attrs["dates"]) == ["sentinel_2", "sentinel_1_asc", "sentinel_1_des"]
    names = list(ds["feature"].values)
    assert len(names) == len(set(names))
    s1 = [n for n in names if n.startswith("S1")]
    dates = {s: len(v) for s, v in ds.attrs["dates"].items()}
    assert len(s1) == 2 * (dates["sentinel_1_asc"] + dates["sentinel_1_des"])
    assert "S1ASC_VV_" + ds.attrs["dates"]["sentinel_1_asc"][0].replace("-", "") in names
    assert len(names) - len(s1) == 13 * dates["sentinel_2"]
    assert ds.rio.crs.to_epsg() == 32631 and ds.features.shape[1:] == (64, 64)
    vh = ds.features.sel(feature=[n for n in s1 if "_VH_" in n]).values
    vv = ds.features.sel(feature=[n for n in s1 if "_VV_" in n]).values
    assert -30 < np.nanmean(vh) < np.nanmean(vv) < 0  # dB
    # the backscatter separates the classes: a large share of its variance is between classes
    truth = _read(mixed.parent / "truth" / "T31TCJ.tif")
    signal = vh.mean(axis=0)
    classes = [signal[truth == c] for c in np.unique(truth)]
    between = sum(len(c) * (c.mean() - signal.mean()) ** 2 for c in classes)
    assert between / ((signal - signal.mean()) ** 2).sum() > 0.3


def test_sensor_without_dates_on_a_tile_is_an_error(mixed, tmp_path):
    root = tmp_path / "scene"
    shutil.copytree(mixed.parent, root)
    for path in (root / "s1" / "T31TDJ").glob("*_DES_*"):
        path.unlink()
    with pytest.raises(InputError, match="sentinel_1_des has no date for tile T31TDJ"):
        open_cubes(config_of(root / "config.yaml"))
    config = config_of(root / "config.yaml", sensors={"sentinel_1": {"orbits": ["ASC"]}})
    assert list(open_cubes(config)["T31TDJ"].attrs["dates"]) == ["sentinel_2", "sentinel_1_asc"]
    shutil.rmtree(root / "s1" / "T31TDJ")
    with pytest.raises(InputError, match="no folder for tile T31TDJ in chain.s1_path"):
        find_sources(config, "T31TDJ")


def test_footprint_missing_the_tile_is_an_error(mixed, tmp_path):
    root = tmp_path / "scene"
    shutil.copytree(mixed.parent, root)
    for path in (root / "s1" / "T31TCJ").glob("*.tif"):  # moved 50 km east
        with rasterio.open(path, "r+") as src:
            src.transform = src.transform * Affine.translation(5000, 0)
    with pytest.raises(InputError, match="sentinel_1_asc: no file of tile T31TCJ overlaps"):
        find_sources(config_of(root / "config.yaml"), "T31TCJ")


def test_mixed_sentinel2_sentinel1_chain_end_to_end(mixed, tmp_path, client):
    """The whole chain on S2 + S1 features: maps and accuracy from both sensors."""
    import json

    from geoclass.api import load_model
    from geoclass.io.configfile import load_config
    from geoclass.pipeline import run_chain

    target = tmp_path / "scene"
    shutil.copytree(mixed.parent, target, ignore=shutil.ignore_patterns("run"))
    config = config_of(target / "config.yaml", models={"params": {"n_estimators": 20}})
    metrics = run_chain(load_config(config.source))
    final = config.chain.output_path / "final"
    assert (final / "Classif_Seed_0.tif").exists() and (final / "report.html").exists()
    features = load_model(config.chain.output_path / "model" / "model_1_seed_0.joblib").features
    assert any(f.startswith("S1ASC_") for f in features) and any(f.startswith("B4_")
                                                                 for f in features)
    assert metrics["runs"][0]["scores"]["overall_accuracy"] > 0.3
    assert json.loads((final / "metrics.json").read_text()) == metrics
