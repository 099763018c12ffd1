"""Sen2Cor SAFE reader on generated products: values, BOA offset, SCL masks, dates, grid, and
lazy per-chunk reading."""

from __future__ import annotations

import datetime as dt

import dask
import numpy as np
import pytest
import rasterio

import geoclass.io.sensors.base as base
from geoclass.errors import InputError
from geoclass.io.sensors.sen2cor import SCL_INVALID, quantification, read_sen2cor
from geoclass.steps.check import check_inputs
from geoclass.testing.layouts import sen2cor_metadata
from geoclass.views.cube import open_cubes, open_series
from geoclass.views.sources import find_sources

from .conftest import config_of, make_scene


@pytest.fixture(scope="module")
def s2c(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("s2c"), tiles=1, size=64, dates=4,
                      format="sen2cor")


def _jp2(product, pattern):
    with rasterio.open(next(product.glob(f"GRANULE/*/IMG_DATA/{pattern}"))) as src:
        return src.read(1), src.res


def test_metadata_gives_quantification_and_offsets(tmp_path):
    new, old = tmp_path / "new.xml", tmp_path / "old.xml"
    new.write_text(sen2cor_metadata("04.00"))
    old.write_text(sen2cor_metadata("02.12"))
    value, offsets = quantification(new)
    assert value == 10000 and offsets["B2"] == -1000 and offsets["B8A"] == -1000
    assert len(offsets) == 13
    assert quantification(old) == (10000, {})
    assert quantification(None) == (10000, {})


def test_values_dates_and_grid(s2c):
    series = read_sen2cor(s2c.parent / "sen2cor", "T31TCJ", chunk=32)
    assert series.sensor == "sentinel_2_s2c" and series.band_names[-1] == "B12"
    assert series.grid.crs.to_epsg() == 32631 and series.grid.shape == (64, 64)
    assert series.grid.transform.a == 10 and series.grid.transform.c == 300000
    names = [a.product for a in series.acquisitions]
    assert [dt.datetime.strptime(n[11:19], "%Y%m%d").date() for n in names] == series.dates
    refl = open_series(series, series.grid).values
    for t, acq in enumerate(series.acquisitions):
        product = s2c.parent / "sen2cor" / "T31TCJ" / acq.product
        offset = 1000 if "_N0400_" in acq.product else 0  # baselines >= 04.00: DN - 1000
        dn, res = _jp2(product, "R10m/*_B04_10m.jp2")
        assert res == (10.0, 10.0)
        scl, scl_res = _jp2(product, "R20m/*_SCL_20m.jp2")
        assert scl_res == (20.0, 20.0)
        scl10 = np.repeat(np.repeat(scl, 2, 0), 2, 1)
        b4 = refl[t, series.band_names.index("B4")]
        invalid = np.isin(scl10, SCL_INVALID)
        assert np.isnan(b4[invalid]).all()
        ok = ~invalid & (dn > 0)
        assert ok.mean() > 0.3
        np.testing.assert_allclose(b4[ok], (dn[ok].astype(float) - offset) / 10000, atol=1e-6)
        # a 20 m band: where its 2x2 block is valid, the bilinear 10 m value stays in the range
        b11, _ = _jp2(product, "R20m/*_B11_20m.jp2")
        got = refl[t, series.band_names.index("B11")][::2, ::2][1:-1, 1:-1]
        near = (b11.astype(float) - offset) / 10000
        assert np.nanmax(np.abs(got - near[1:-1, 1:-1])) < 0.2
    assert {"_N0400_" in n for n in names} == {True, False}


def test_cube_features_match_theia_names_and_inputs_check(s2c):
    assert check_inputs(config_of(s2c)).ok
    ds = open_cubes(config_of(s2c))["T31TCJ"]
    names = list(ds["feature"].values)
    assert names[0].startswith("B2_2018") and any(n.startswith("NDVI_") for n in names)
    assert list(ds.attrs["dates"]) == ["sentinel_2_s2c"]
    assert ds.rio.crs.to_epsg() == 32631


def test_missing_scl_is_a_clear_error(s2c, tmp_path):
    import shutil

    root = tmp_path / "s2c"
    shutil.copytree(s2c.parent / "sen2cor", root)
    next(root.glob("T31TCJ/*.SAFE/GRANULE/*/IMG_DATA/R20m/*_SCL_20m.jp2")).unlink()
    with pytest.raises(InputError, match="SCL_20m"):
        read_sen2cor(root, "T31TCJ")
    with pytest.raises(InputError, match="no folder for tile T31TDJ"):
        read_sen2cor(root, "T31TDJ")


def test_reading_is_lazy_and_per_chunk(tmp_path, monkeypatch):
    config = config_of(make_scene(tmp_path, tiles=1, size=128, dates=4, format="sen2cor"),
                       dask={"chunk_size": 64})
    ds = open_cubes(config)["T31TCJ"]
    graph = dict(ds.features.data.__dask_graph__())
    reads = [k for k in graph if isinstance(k, tuple) and str(k[0]).startswith("read-")]
    assert len(reads) == 4  # one task per 64 x 64 chunk, reading every date
    windows = []
    real = base.read_masked_window

    def spy(path, indexes, grid, window, *args, **kwargs):
        windows.append(window)
        return real(path, indexes, grid, window, *args, **kwargs)

    monkeypatch.setattr(base, "read_masked_window", spy)
    with dask.config.set(scheduler="synchronous"):
        ds.features[:, :64, :64].compute()
    dates = len(find_sources(config, "T31TCJ").series[0].dates)
    assert len(windows) == dates * 11  # 10 band files and the SCL, per date, one chunk only
    assert {(w.col_off, w.row_off, w.width, w.height) for w in windows} == {(0, 0, 64, 64)}
