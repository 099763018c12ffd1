"""The cube of generated THEIA scenes: dims, grid, dates, gap-filling, validity, persistence."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import rasterio
import xarray as xr

from geoclass.api import build_cubes, cube_path
from geoclass.errors import InputError
from geoclass.views.cube import open_cube, open_cubes
from geoclass.views.sources import find_sources

from .conftest import NO_IOTA2_DATA, SHARED, config_of, make_scene


def _clm(product_dir):
    with rasterio.open(next(product_dir.glob("MASKS/*_CLM_R1.tif"))) as src:
        clm = src.read(1)
    with rasterio.open(next(product_dir.glob("MASKS/*_EDG_R1.tif"))) as src:
        edg = src.read(1)
    return (clm == 0) & (edg == 0)


def test_cube_dims_grid_and_dates(scene):
    config = config_of(scene, sensors={"sentinel_2": {"temporal_resolution": 20}})
    cubes = open_cubes(config)
    assert list(cubes) == ["T31TCJ", "T31TDJ"]
    ds = cubes["T31TCJ"]
    first_band = next((scene.parent / "sensor_data" / "T31TCJ").glob("*/*_FRE_B2.tif"))
    with rasterio.open(first_band) as src:
        assert ds.rio.crs == src.crs and ds.rio.transform() == src.transform
        assert ds.features.shape[1:] == src.shape
    assert ds.features.dims == ("feature", "y", "x")
    assert ds.features.data.chunks[1] == (64, 32)
    dates = [dt.date.fromisoformat(d) for d in ds.attrs["dates"]["sentinel_2"]]
    assert all((b - a).days == 20 for a, b in zip(dates, dates[1:]))
    src_dates = [s.dates for s in (find_sources(config, t).series[0] for t in cubes)]
    assert dates[0] == max(d[0] for d in src_dates) and dates[-1] <= min(d[-1] for d in src_dates)
    names = list(ds["feature"].values)
    assert names[0] == f"B2_{dates[0]:%Y%m%d}" and f"NDVI_{dates[-1]:%Y%m%d}" in names
    assert len(names) == 13 * len(dates)


def test_gapfilled_values_equal_linear_interpolation_and_validity_counts_clear_dates(scene):
    config = config_of(scene, sensors={"sentinel_2": {"temporal_resolution": 15}})
    ds = open_cubes(config)["T31TDJ"]
    series = find_sources(config, "T31TDJ").series[0]
    products = [scene.parent / "sensor_data" / "T31TDJ" / a.product for a in series.acquisitions]
    clear = np.stack([_clm(p) for p in products])
    b8 = []
    for p in products:
        with rasterio.open(next(p.glob("*_FRE_B8.tif"))) as src:
            b8.append(src.read(1) / 10000)
    b8 = np.stack(b8)
    validity = ds.validity.values
    np.testing.assert_array_equal(validity, clear.sum(axis=0))
    features = ds.features.values
    assert not np.isnan(features[:, validity > 0]).any()
    assert np.isnan(features[:, validity == 0]).all()
    days = np.array([d.toordinal() for d in series.dates])
    grid = [dt.date.fromisoformat(d) for d in ds.attrs["dates"]["sentinel_2"]]
    rows, cols = np.nonzero(validity >= 2)
    for y, x in list(zip(rows, cols))[::997][:12]:
        ok = clear[:, y, x]
        expected = np.interp([d.toordinal() for d in grid], days[ok], b8[ok, y, x])
        got = [features[list(ds["feature"].values).index(f"B8_{d:%Y%m%d}"), y, x] for d in grid]
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_build_persists_atomically_and_reuses_unchanged_cubes(scene, client):
    config = config_of(scene)
    paths = build_cubes(config)
    path = paths["T31TCJ"]
    assert path == cube_path(config, "T31TCJ") and path.is_dir()
    assert not list(path.parent.glob(".*tmp*"))
    ds = open_cube(path)
    lazy = open_cubes(config)["T31TCJ"]
    xr.testing.assert_equal(ds.features.load(), lazy.features.load())
    assert ds.rio.crs.to_epsg() == 32631
    stamp = (path / ".zattrs").stat().st_mtime_ns
    build_cubes(config)
    assert (path / ".zattrs").stat().st_mtime_ns == stamp
    # a changed input rebuilds the cube
    band = next((scene.parent / "sensor_data" / "T31TCJ").glob("*/*_FRE_B4.tif"))
    band.touch()
    build_cubes(config)
    assert (path / ".zattrs").stat().st_mtime_ns != stamp


def test_a_failed_build_leaves_no_cube_behind(scene, client, monkeypatch):
    import geoclass.views.cube as cube

    config = config_of(scene)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(cube, "read_observations", broken)
    with pytest.raises(RuntimeError):
        build_cubes(config)
    assert not (config.chain.output_path / "cubes").exists() or not any(
        (config.chain.output_path / "cubes").iterdir())


def test_stack_layout_and_20m_bands_give_the_same_cube(tmp_path):
    bands = config_of(make_scene(tmp_path / "bands", tiles=1, size=64, dates=4))
    stack = config_of(make_scene(tmp_path / "stack", tiles=1, size=64, dates=4, layout="stack"))
    r2 = config_of(make_scene(tmp_path / "r2", tiles=1, size=64, dates=4, r2_20m=True))
    cubes = [open_cubes(cfg)["T31TCJ"] for cfg in (bands, stack, r2)]
    a, b, c = (ds.features.values for ds in cubes)
    np.testing.assert_array_equal(a, b)
    assert c.shape == a.shape
    names = list(cubes[2]["feature"].values)
    b4 = [i for i, n in enumerate(names) if n.startswith("B4_")]
    b11 = [i for i, n in enumerate(names) if n.startswith("B11_")]
    # 10 m bands are untouched where the 20 m bands' masks agree
    same = cubes[0].validity.values == cubes[2].validity.values
    assert same.mean() > 0.95
    np.testing.assert_array_equal(a[b4][:, same], c[b4][:, same])
    ok = ~np.isnan(a[b11]) & ~np.isnan(c[b11])
    assert np.corrcoef(a[b11][ok], c[b11][ok])[0, 1] > 0.8  # 20 m resampled onto the 10 m grid


def add_ndvi_amplitude(cube):
    """A user feature: the NDVI amplitude over the year, (y, x)."""
    red, nir = cube.sel(band="B4"), cube.sel(band="B8")
    ndvi = (nir - red) / (nir + red)
    return (ndvi.max("time") - ndvi.min("time")).rename("NDVI_amplitude")


def test_user_function_adds_a_lazy_feature(scene):
    config = config_of(scene, features={"user_functions": [f"{__name__}:add_ndvi_amplitude"]})
    ds = open_cubes(config)["T31TCJ"]
    assert ds.features.chunks is not None
    names = list(ds["feature"].values)
    ndvi = ds.features.sel(feature=[n for n in names if n.startswith("NDVI_2")]).values
    amplitude = ds.features.sel(feature="NDVI_amplitude").values
    np.testing.assert_allclose(amplitude, ndvi.max(0) - ndvi.min(0), rtol=1e-5, atol=1e-6)


def test_bad_user_function_is_a_clear_error(scene):
    config = config_of(scene, features={"user_functions": ["no_such_module:f"]})
    with pytest.raises(InputError, match="cannot import 'no_such_module:f'"):
        open_cubes(config)


DEM = SHARED / "data" / "iota2" / "references" / "MNT"


@pytest.mark.skipif(not DEM.exists(), reason=NO_IOTA2_DATA)
def test_user_feature_rasters_alone_define_the_grid(tmp_path):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(
        f"chain:\n  output_path: out\n  list_tile: [D0005H0002]\n  user_feat_path: {DEM}\n"
        "user_feat:\n  patterns: [MNT]\n"
    )
    ds = open_cubes(config_of(config_file))["D0005H0002"]
    with rasterio.open(DEM / "D0005H0002" / "MNT.tif") as src:
        dem = src.read(1).astype(np.float32)
        assert ds.rio.transform() == src.transform and ds.rio.crs == src.crs
    assert list(ds["feature"].values) == ["MNT_b1"]
    np.testing.assert_array_equal(ds.features.values[0], dem)


@pytest.mark.skipif(not DEM.exists(), reason=NO_IOTA2_DATA)
def test_user_feature_rasters_are_resampled_onto_the_sensor_grid(tmp_path):
    l8 = SHARED / "data" / "iota2" / "L8_50x50"
    config_file = tmp_path / "config.yaml"
    config_file.write_text(
        f"chain:\n  output_path: out\n  list_tile: [D0005H0002]\n  l8_path_old: {l8}\n"
        f"  user_feat_path: {DEM}\n  spatial_resolution: 60\n"
        "sensors:\n  landsat_8_old: {temporal_resolution: 16}\n"
        "user_feat:\n  patterns: [MNT]\n"
    )
    ds = open_cubes(config_of(config_file))["D0005H0002"]
    assert ds.features.shape[1:] == (25, 25) and ds.rio.resolution() == (60.0, -60.0)
    with rasterio.open(DEM / "D0005H0002" / "MNT.tif") as src:
        dem = src.read(1).astype(np.float32)
    coarse = dem.reshape(25, 2, 25, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(ds.features.sel(feature="MNT_b1").values, coarse,
                               atol=0.05 * np.ptp(dem) + 1e-3)


SPOT6 = SHARED / "data" / "iota2" / "spot_6_data" / "images"


@pytest.mark.skipif(not SPOT6.exists(), reason=NO_IOTA2_DATA)
def test_user_feature_rasters_alone_take_proj_and_spatial_resolution(tmp_path):
    """iota2's spot-6 image has 1.5007 x 1.4992 m pixels: alone, it defines the tile grid only
    at chain.spatial_resolution (square pixels over its footprint, in chain.proj)."""
    config_file = tmp_path / "config.yaml"
    text = (f"chain:\n  output_path: out\n  list_tile: [T32TLR]\n  user_feat_path: {SPOT6}\n"
            "user_feat:\n  patterns: [spot6]\n")
    config_file.write_text(text)
    with pytest.raises(InputError, match="non-square pixels.*chain.spatial_resolution"):
        find_sources(config_of(config_file), "T32TLR")
    config_file.write_text(text.replace("chain:\n", "chain:\n  spatial_resolution: 1.5\n"
                                        "  proj: 'EPSG:2154'\n"))
    grid = find_sources(config_of(config_file), "T32TLR").grid
    with rasterio.open(SPOT6 / "T32TLR" / "spot6_sub.tif") as src:
        left, bottom, right, top = src.bounds
        image = src.read(1)
    assert grid.resolution == 1.5 and grid.transform.e == -1.5
    assert grid.crs.to_epsg() == 2154 and grid.transform.c % 1.5 == 0
    g_left, g_bottom, g_right, g_top = grid.bounds
    assert g_left <= left < g_left + 1.5 and g_top - 1.5 < top <= g_top
    assert g_right - 1.5 < right <= g_right and g_bottom <= bottom < g_bottom + 1.5
    ds = open_cubes(config_of(config_file))["T32TLR"]
    values = ds.features.values[0]
    assert values.shape == grid.shape and np.isnan(values).mean() < 0.01
    assert abs(np.nanmean(values) - image[image > 0].mean()) < 1
