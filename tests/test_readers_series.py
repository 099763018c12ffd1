"""The dated raster series reader: name patterns, values, masks (nodata, valid range, mask
files), native dates, and a non-EPSG (MODIS sinusoidal) series on a UTM tile grid."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from affine import Affine

from geoclass.config import SeriesOptions
from geoclass.errors import InputError
from geoclass.io.configfile import load_config
from geoclass.io.sensors.pattern import NamePattern
from geoclass.io.sensors.series import read_series
from geoclass.views.cube import open_cubes, open_series
from geoclass.views.sources import find_sources

from .conftest import config_of, make_scene

SINUSOIDAL = "+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +R=6371007.181 +units=m +no_defs"


def test_name_patterns_parse_dates_and_fields():
    p = NamePattern("TERRA_MODIS_012010_NDVI_{date:%Y-%m-%d}.tif")
    date, fields = p.match("TERRA_MODIS_012010_NDVI_2018-05-11.tif")
    assert date == dt.datetime(2018, 5, 11) and fields == {}
    assert p.match("TERRA_MODIS_012010_NDVI_2018-13-11.tif") is None  # not a date
    assert p.match("TERRA_MODIS_012010_NDVI_2018-05-11.tif.aux.xml") is None
    s1 = NamePattern("s1?_{tile}_{pol}_{orbit}_{date:%Y%m%dt%H%M%S}*.tif", tile="T31TCJ")
    date, fields = s1.match("s1b_31TCJ_VH_DES_20180511t060102_filtered.tif")
    assert date == dt.datetime(2018, 5, 11, 6, 1, 2)
    assert fields == {"tile": "31TCJ", "pol": "VH", "orbit": "DES"}
    assert s1.match("s1b_T31TDJ_vh_DES_20180511t060102.tif") is None  # another tile
    with pytest.raises(ValueError, match="no {date"):
        NamePattern("NDVI_{day}.tif")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("series")
    kw = dict(tiles=1, size=64, dates=4)
    return {"theia": make_scene(root / "theia", **kw),
            "series": make_scene(root / "series", format="series", **kw)}


def test_series_reads_the_theia_reflectances_with_masks_and_valid_range(scenes):
    config = config_of(scenes["series"])
    series = find_sources(config, "T31TCJ").series[0]
    assert series.sensor == "series" and series.valid_range == (0, 15000)
    theia = find_sources(config_of(scenes["theia"]), "T31TCJ").series[0]
    assert series.dates == theia.dates
    assert all(len(a.masks) == 1 for a in series.acquisitions)
    a = open_series(series, series.grid).values
    b = open_series(theia, theia.grid).values
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))  # mask files + lossy fills
    np.testing.assert_allclose(a, b, atol=1e-6)
    # the jittered fill values are masked by the valid range only
    folder = scenes["series"].parent / "series" / "T31TCJ"
    edges = 0
    for t, path in enumerate(sorted(folder.glob("S2_*.tif"))):
        with rasterio.open(path) as src:
            raw = src.read(1)
            assert src.nodata is None
        fills = raw < 0
        edges += fills.any()
        assert len(np.unique(raw[fills])) > 10 or not fills.any()
        assert np.isnan(a[t, 0][fills]).all()
    assert edges


def test_series_cube_equals_the_theia_cube(scenes):
    a = open_cubes(config_of(scenes["series"]))["T31TCJ"]
    b = open_cubes(config_of(scenes["theia"]))["T31TCJ"]
    assert list(a["feature"].values) == list(b["feature"].values)
    np.testing.assert_allclose(a.features.values, b.features.values, atol=1e-6)
    np.testing.assert_array_equal(a.validity.values, b.validity.values)


def _write(path: Path, array, transform, crs, nodata=None):
    with rasterio.open(path, "w", driver="GTiff", width=array.shape[-1], height=array.shape[-2],
                       count=1 if array.ndim == 2 else array.shape[0], dtype=array.dtype.name,
                       crs=crs, transform=transform, nodata=nodata) as dst:
        dst.write(array, 1) if array.ndim == 2 else dst.write(array)


@pytest.fixture
def modis(tmp_path):
    """A MODIS-like NDVI series on a sinusoidal grid at 250 m, three dates, with lossy fill
    values (around -3000), a nodata value (-5000) and one mask file."""
    folder = tmp_path / "modis" / "T31TCJ"
    folder.mkdir(parents=True)
    transform = Affine(250, 0, 37000, 0, -250, 4918000)
    rng = np.random.default_rng(0)
    days = ["2018-05-01", "2018-05-17", "2018-06-02"]
    for i, day in enumerate(days):
        ndvi = (rng.integers(0, 8000, (40, 40)) + 500 * i).astype(np.int16)
        ndvi[:3] = -3000 + rng.integers(-30, 30, (3, 40))  # lossy fill
        ndvi[:, :2] = -5000
        _write(folder / f"TERRA_MODIS_012010_NDVI_{day}.tif", ndvi, transform, SINUSOIDAL, -5000)
    mask = np.zeros((40, 40), np.uint8)
    mask[20:] = 1
    _write(folder / "MASK_2018-05-17.tif", mask, transform, SINUSOIDAL)
    _write(folder / "MASK_2018-05-01.tif", np.zeros_like(mask), transform, SINUSOIDAL)
    _write(folder / "MASK_2018-06-02.tif", np.zeros_like(mask), transform, SINUSOIDAL)
    return folder.parent, days


def _options(**kw):
    base = {"pattern": "TERRA_MODIS_012010_NDVI_{date:%Y-%m-%d}.tif", "band_names": ["NDVI"],
            "valid_range": [-2000, 10000], "scale": 0.0001}
    return SeriesOptions.model_validate(base | kw)


def test_sinusoidal_series_on_its_own_grid_keeps_values_and_masks(modis):
    root, days = modis
    series = read_series(root, "T31TCJ", _options(mask_pattern="MASK_{date:%Y-%m-%d}.tif"))
    assert series.grid.crs.to_epsg() is None and "Sinusoidal" in series.grid.crs.to_wkt()
    assert series.grid.shape == (40, 40) and [str(d) for d in series.dates] == days
    values = open_series(series, series.grid).values[:, 0]
    with rasterio.open(root / "T31TCJ" / f"TERRA_MODIS_012010_NDVI_{days[2]}.tif") as src:
        raw = src.read(1)
    assert np.isnan(values[:, :3]).all() and np.isnan(values[:, :, :2]).all()  # fill, nodata
    np.testing.assert_allclose(values[2, 3:, 2:], raw[3:, 2:] * 1e-4, rtol=1e-6)
    assert np.isnan(values[1, 20:]).all() and not np.isnan(values[1, 3:20, 2:]).any()
    with pytest.raises(InputError, match="no mask file"):
        (root / "T31TCJ" / "MASK_2018-05-01.tif").unlink()
        read_series(root, "T31TCJ", _options(mask_pattern="MASK_{date:%Y-%m-%d}.tif"))


def test_series_alone_gets_a_utm_grid_from_proj_and_native_dates(modis, tmp_path):
    root, days = modis
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "chain": {"output_path": "out", "list_tile": ["T31TCJ"], "series_path": str(root),
                  "proj": "EPSG:32631", "spatial_resolution": 50},
        "series": {"pattern": "TERRA_MODIS_012010_NDVI_{date:%Y-%m-%d}.tif",
                   "band_names": ["NDVI"], "valid_range": [-2000, 10000], "scale": 0.0001},
        "dask": {"chunk_size": 64}}))
    config = load_config(config)
    ds = open_cubes(config)["T31TCJ"]
    assert ds.rio.crs.to_epsg() == 32631 and ds.rio.resolution() == (50.0, -50.0)
    left, top = ds.rio.transform().c, ds.rio.transform().f
    assert left % 50 == 0 and top % 50 == 0
    assert list(ds["feature"].values) == [f"NDVI_{d.replace('-', '')}" for d in days]
    sources = find_sources(config, "T31TCJ")
    observed = open_series(sources.series[0], sources.grid).values[:, 0]
    features = ds.features.values
    for t, day in enumerate(days):
        # 250 m sinusoidal pixels onto 50 m UTM ones (nearest): the same values, ~25 times
        with rasterio.open(root / "T31TCJ" / f"TERRA_MODIS_012010_NDVI_{day}.tif") as src:
            raw = src.read(1)
        valid = raw[raw >= -2000]
        seen = observed[t][~np.isnan(observed[t])]
        assert 20 * valid.size < seen.size < 30 * valid.size
        assert np.isin(np.rint(seen * 1e4).astype(int), valid).all()
        clear = ~np.isnan(observed[t])  # gap-filling keeps every observation at its own date
        np.testing.assert_array_equal(features[t][clear], observed[t][clear])
    never = np.isnan(observed).all(axis=0)  # outside the footprint or never clear
    assert never.any() and not never.all()
    np.testing.assert_array_equal(np.isnan(features).any(axis=0), never)


def test_series_errors_name_the_problem(modis, tmp_path):
    root, _ = modis
    with pytest.raises(InputError, match="no file matches series.pattern"):
        read_series(root, "T31TCJ", _options(pattern="NDVI_{date:%Y%m%d}.tif"))
    with pytest.raises(InputError, match="has 1 band"):
        read_series(root, "T31TCJ", _options(band_names=["NDVI", "EVI"]))
    with pytest.raises(InputError, match="series.pattern is required"):
        read_series(root, "T31TCJ", SeriesOptions())


def test_sinusoidal_series_is_warped_onto_the_sentinel2_tile_grid(tmp_path):
    theia = make_scene(tmp_path / "theia", tiles=1, size=64, dates=4)
    sinu = make_scene(tmp_path / "sinu", tiles=1, size=64, dates=4, format="series",
                      series_crs=SINUSOIDAL)
    with rasterio.open(next((sinu.parent / "series" / "T31TCJ").glob("S2_*.tif"))) as src:
        assert src.crs.to_epsg() is None and src.shape != (64, 64)
    series = yaml.safe_load(sinu.read_text())["series"] | {"prefix": "SIN_"}
    config = config_of(theia, chain={"series_path": str(sinu.parent / "series")}, series=series)
    ds = open_cubes(config)["T31TCJ"]
    assert list(ds.attrs["dates"]) == ["sentinel_2", "series"] and ds.rio.crs.to_epsg() == 32631
    names = list(ds["feature"].values)
    s2 = ds.features.sel(feature=[n for n in names if n.startswith("B")]).values
    warped = ds.features.sel(feature=[n for n in names if n.startswith("SIN_B")]).values
    ok = ~np.isnan(s2) & ~np.isnan(warped)
    assert ok.mean() > 0.95
    # nearest neighbour there and back: nearly every pixel keeps its own value
    assert np.mean(np.abs(s2[ok] - warped[ok]) < 1e-6) > 0.95
