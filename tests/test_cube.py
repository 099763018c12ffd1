"""The cube: gap-filling and index kernels on small arrays, and readers on the real iota2 data."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import rasterio
import yaml

from geoclass.config import SensorOptions
from geoclass.errors import InputError
from geoclass.io.configfile import load_config
from geoclass.io.sensors import read_landsat8_old
from geoclass.kernels.timeseries import (
    SensorRecipe,
    days,
    decode_block,
    features_block,
    gapfill_block,
    indices_block,
)
from geoclass.views.cube import open_cubes
from geoclass.views.sources import date_grid

from .conftest import NO_IOTA2_DATA, SHARED

NAN = np.nan


def test_gapfill_interpolates_linearly_between_clear_dates():
    # one band, one pixel; clear on days 0, 10 and 30, masked on day 20
    values = np.array([1.0, 2.0, NAN, 6.0], np.float32).reshape(4, 1, 1, 1)
    out = gapfill_block(values, np.array([0, 10, 20, 30]), np.array([0, 5, 20, 25, 30]))
    np.testing.assert_allclose(out[:, 0, 0, 0], [1.0, 1.5, 4.0, 5.0, 6.0])


def test_gapfill_extrapolates_nearest_clear_at_the_ends_and_keeps_nan_without_clear_date():
    values = np.array(
        [[NAN, NAN], [3.0, NAN], [5.0, NAN], [NAN, NAN]], np.float32
    ).reshape(4, 1, 1, 2)
    out = gapfill_block(values, np.array([0, 10, 20, 30]), np.array([0, 10, 15, 30]))
    np.testing.assert_allclose(out[:, 0, 0, 0], [3.0, 3.0, 4.0, 5.0])
    assert np.isnan(out[:, 0, 0, 1]).all()


def test_gapfill_fills_every_band_from_the_same_dates_on_random_series():
    rng = np.random.default_rng(0)
    days = np.sort(rng.choice(365, 15, replace=False))
    values = rng.random((15, 3, 4, 5)).astype(np.float32)
    clear = rng.random((15, 4, 5)) > 0.4
    clear[0] = True  # every pixel has a clear date
    masked = np.where(clear[:, None], values, np.nan).astype(np.float32)
    grid = np.arange(days[0], days[-1], 7)
    out = gapfill_block(masked, days, grid)
    assert not np.isnan(out).any()
    for b, y, x in [(0, 0, 0), (2, 3, 4), (1, 2, 1)]:
        ok = clear[:, y, x]
        expected = np.interp(grid, days[ok], values[ok, b, y, x])
        np.testing.assert_allclose(out[:, b, y, x], expected, rtol=1e-5)


def test_indices_follow_their_formulas():
    bands = ("B3", "B4", "B8", "B11")
    refl = np.array([0.1, 0.05, 0.4, 0.2], np.float32).reshape(1, 4, 1, 1)
    roles = {"green": "B3", "red": "B4", "nir": "B8", "swir": "B11"}
    out = indices_block(refl, bands, roles, ("NDVI", "NDWI", "Brightness"))[0, :, 0, 0]
    np.testing.assert_allclose(out[0], (0.4 - 0.05) / 0.45, rtol=1e-6)
    np.testing.assert_allclose(out[1], (0.4 - 0.2) / 0.6, rtol=1e-6)
    np.testing.assert_allclose(out[2], np.sqrt(0.01 + 0.0025 + 0.16 + 0.04), rtol=1e-6)


def test_features_block_orders_bands_then_indices_over_dates():
    filled = np.arange(2 * 4 * 1 * 1, dtype=np.float32).reshape(2, 4, 1, 1) + 1
    roles = {"green": "B3", "red": "B4", "nir": "B8", "swir": "B11"}
    out = features_block(filled, ("B3", "B4", "B8", "B11"), roles, ("NDVI",), True)
    assert out.shape == (4 * 2 + 2, 1, 1)
    np.testing.assert_array_equal(out[:8, 0, 0], filled[:, :, 0, 0].T.ravel())


@pytest.mark.parametrize("dtype, sentinel", [(np.int16, -32768), (np.uint16, 65535),
                                             (np.float32, np.nan)])
def test_stored_observations_give_the_features_of_their_decoded_values(dtype, sentinel):
    """The recipe gap-fills stored observations decoding only what it uses, straight into
    the feature block: the same float32 values as decoding the block, gap-filling it and
    laying the features out (features_block), bit for bit."""
    rng = np.random.default_rng(3)
    obs = sorted(dt.date(2020, 1, 1) + dt.timedelta(days=int(d))
                 for d in rng.choice(360, 12, replace=False))
    grid = tuple(dt.date(2019, 12, 20) + dt.timedelta(days=10 * i) for i in range(40))
    raw = (rng.random((12, 4, 9, 11)) * 10000).astype(dtype)
    raw[np.broadcast_to((rng.random((12, 9, 11)) > 0.6)[:, None], raw.shape)] = sentinel
    raw[:, :, 0, 0] = sentinel  # never clear
    scale = (rng.random((12, 4)) * 1e-3).astype(np.float32)
    offset = (rng.random((12, 4)) - 0.5).astype(np.float32)
    bands, roles = ("B3", "B4", "B8", "B11"), {"red": "B4", "nir": "B8", "swir": "B11"}
    recipe = SensorRecipe("obs_s2", "S2", bands, tuple(obs), grid, scale, offset, sentinel,
                          roles, ("NDVI", "NDWI", "Brightness"))
    decoded = decode_block(raw, scale, offset, sentinel)
    filled = gapfill_block(decoded, days(obs), days(grid))
    expected = features_block(filled, bands, roles, recipe.indices, True)
    got = recipe.features(raw)
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))
    np.testing.assert_array_equal(recipe.gapfilled(raw), filled)
    assert np.isnan(got[:, 0, 0]).all()


def test_date_grid_uses_dates_common_to_all_tiles():
    class S:
        sensor = "sentinel_2"

        def __init__(self, dates):
            self.dates = dates

    a = S([dt.date(2018, 1, 3), dt.date(2018, 3, 1), dt.date(2018, 12, 20)])
    b = S([dt.date(2018, 1, 10), dt.date(2018, 12, 1)])
    grid = date_grid([a, b], SensorOptions(temporal_resolution=30))
    assert grid[0] == dt.date(2018, 1, 10) and grid[-1] <= dt.date(2018, 12, 1)
    assert all((y - x).days == 30 for x, y in zip(grid, grid[1:]))
    fixed = date_grid([a], SensorOptions(temporal_resolution=10, start_date=dt.date(2018, 2, 1),
                                         end_date=dt.date(2018, 2, 21)))
    assert fixed == [dt.date(2018, 2, 1), dt.date(2018, 2, 11), dt.date(2018, 2, 21)]


L8 = SHARED / "data" / "iota2" / "L8_50x50"


@pytest.mark.skipif(not L8.exists(), reason=NO_IOTA2_DATA)
def test_real_landsat8_n2a_crops_become_the_same_cube_form(tmp_path):
    series = read_landsat8_old(L8, "D0005H0002")
    assert [str(d) for d in series.dates] == ["2016-03-30", "2016-04-15"]
    assert series.grid.crs.to_epsg() == 2154 and series.grid.shape == (50, 50)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump({
        "chain": {"output_path": "out", "list_tile": "D0005H0002 D0005H0003",
                  "l8_path_old": str(L8)},
        "sensors": {"landsat_8_old": {"temporal_resolution": 16}},
        "dask": {"chunk_size": 32},
    }))
    cubes = open_cubes(load_config(config_file))
    ds = cubes["D0005H0003"]
    assert ds.features.dims == ("feature", "y", "x") and ds.features.shape[1:] == (49, 56)
    assert ds.features.data.chunks[1:] == ((32, 17), (32, 24))
    assert ds.rio.crs.to_epsg() == 2154
    names = list(ds.features["feature"].values)
    assert names[:2] == ["L8_B1_20160330", "L8_B1_20160415"] and "L8_NDVI_20160415" in names
    image = next((L8 / "D0005H0003").glob("*20160415*/*PENTE*.TIF"))
    with rasterio.open(image) as src:
        b4 = src.read(4).astype(np.float32) / 1000
        assert ds.rio.transform() == src.transform
    np.testing.assert_allclose(ds.features.sel(feature="L8_B4_20160415").values, b4, rtol=1e-6)
    np.testing.assert_array_equal(ds.validity.values, 2)


def test_missing_tile_folder_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="no folder for tile T99XXX"):
        read_landsat8_old(tmp_path, "T99XXX")


def test_a_cube_stored_with_another_codec_is_not_taken_as_current(scene, monkeypatch):
    import numcodecs

    from geoclass.steps import cube as cube_step

    config = load_config(scene)
    _, stamps = cube_step._stamps(config)
    assert cube_step._stamps(config)[1] == stamps  # the same inputs give the same stamps
    monkeypatch.setattr(cube_step, "COMPRESSOR", numcodecs.Blosc(cname="zstd", clevel=1))
    changed = cube_step._stamps(config)[1]
    assert changed.keys() == stamps.keys() and all(changed[t] != stamps[t] for t in stamps)
