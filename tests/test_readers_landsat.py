"""Landsat-8 in THEIA's current L2A layout: values, masks, its 16-day date grid, and with
Sentinel-2 in one cube on the 10 m grid."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import rasterio

from geoclass.errors import InputError
from geoclass.io.sensors import read_landsat8
from geoclass.views.cube import open_cubes, open_series

from .conftest import config_of, make_scene


@pytest.fixture(scope="module")
def l8(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("l8"), tiles=1, size=96, dates=4,
                      format="landsat8")


def _read(path):
    with rasterio.open(path) as src:
        return src.read(1), src.res


def test_values_masks_dates_and_grid(l8):
    series = read_landsat8(l8.parent / "landsat8", "T31TCJ")
    assert series.sensor == "landsat_8" and series.band_names == tuple(f"B{i}" for i in range(1, 8))
    assert series.grid.resolution == 30
    assert series.grid.shape == (32, 32)
    names = [a.product for a in series.acquisitions]
    assert series.dates == [dt.datetime.strptime(n[20:28], "%Y%m%d").date() for n in names]
    values = open_series(series, series.grid).values
    for t, acq in enumerate(series.acquisitions):
        b5, res = _read(acq.bands[4].path)
        assert res == (30.0, 30.0)
        clm, _ = _read(acq.masks[0].path)
        edg, _ = _read(acq.masks[1].path)
        invalid = (clm > 0) | (edg > 0)
        assert np.isnan(values[t, 4][invalid]).all()
        np.testing.assert_allclose(values[t, 4][~invalid], b5[~invalid] * 1e-4, rtol=1e-6)


def test_own_16_day_grid_next_to_sentinel2(l8, tmp_path):
    theia = make_scene(tmp_path / "theia", tiles=1, size=96, dates=4)
    config = config_of(theia, chain={"l8_path": str(l8.parent / "landsat8")})
    ds = open_cubes(config)["T31TCJ"]
    dates = {s: [dt.date.fromisoformat(d) for d in v] for s, v in ds.attrs["dates"].items()}
    assert list(dates) == ["sentinel_2", "landsat_8"]
    assert {(b - a).days for a, b in zip(dates["landsat_8"], dates["landsat_8"][1:])} == {16}
    assert ds.rio.resolution() == (10.0, -10.0) and ds.features.shape[1:] == (96, 96)
    names = list(ds["feature"].values)
    assert f"L8_NDVI_{dates['landsat_8'][0]:%Y%m%d}" in names
    # the 30 m bands are resampled onto the 10 m grid: close to Sentinel-2's matching band
    s2 = ds.features.sel(feature=[n for n in names if n.startswith("B4_")]).values.mean(0)
    l8b4 = ds.features.sel(feature=[n for n in names if n.startswith("L8_B4_")]).values.mean(0)
    ok = ~np.isnan(s2) & ~np.isnan(l8b4)
    assert np.corrcoef(s2[ok], l8b4[ok])[0, 1] > 0.6


def test_no_product_is_a_clear_error(tmp_path):
    (tmp_path / "T31TCJ").mkdir()
    with pytest.raises(InputError, match="no THEIA Landsat-8 L2A product"):
        read_landsat8(tmp_path, "T31TCJ")
