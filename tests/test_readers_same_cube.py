"""The same generated scene written as THEIA, Sen2Cor SAFE, a STAC catalog and a dated series
gives the same cube, up to the layouts' quantization and their masks' resolution."""

from __future__ import annotations

import numpy as np
import pytest

from geoclass.io.configfile import load_config
from geoclass.views.cube import open_cubes, open_series
from geoclass.views.sources import find_sources

from .conftest import make_scene

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

LAYOUTS = {
    "theia": {},  # 10 m bands: what the series layout holds
    "theia_r2": {"r2_20m": True},  # 20 m bands at 20 m, as Sen2Cor and STAC hold them
    "sen2cor": {"format": "sen2cor"},
    "stac": {"format": "stac"},
    "series": {"format": "series"},
}


@pytest.fixture(scope="module")
def cubes(tmp_path_factory):
    root = tmp_path_factory.mktemp("same")
    out = {}
    for name, options in LAYOUTS.items():
        # (not `config_of`: rewriting the YAML would sort stac.bands, and so the features)
        config = load_config(make_scene(root / name, tiles=1, size=64, dates=4, **options))
        sources = find_sources(config, "T31TCJ")
        series = sources.series[0]
        out[name] = (open_cubes(config)["T31TCJ"], open_series(series, sources.grid).values)
    return out


def test_same_feature_names_grid_and_dates(cubes):
    names = list(cubes["theia"][0]["feature"].values)
    for ds, _ in cubes.values():
        assert list(ds["feature"].values) == names
        assert ds.rio.transform() == cubes["theia"][0].rio.transform()
        assert list(ds.attrs["dates"].values()) == list(cubes["theia"][0].attrs["dates"].values())


def test_series_cube_equals_theia_cube(cubes):
    (a, _), (b, _) = cubes["theia"], cubes["series"]
    np.testing.assert_allclose(a.features.values, b.features.values, atol=1e-6)
    np.testing.assert_array_equal(a.validity.values, b.validity.values)


def test_stac_cube_equals_sen2cor_cube(cubes):
    (a, _), (b, _) = cubes["sen2cor"], cubes["stac"]
    np.testing.assert_array_equal(a.validity.values, b.validity.values)
    # reflectances differ by 1e-4 at most (a DN of 0 is no data, so Sen2Cor's baseline 02.12
    # products hold 1e-4 where the others hold 0), indices by what that makes of dark pixels
    names = list(a["feature"].values)
    bands = [i for i, n in enumerate(names) if n.startswith("B")]
    np.testing.assert_allclose(a.features.values[bands], b.features.values[bands], atol=1.01e-4)
    np.testing.assert_allclose(a.features.values, b.features.values, atol=1e-3)


def test_sen2cor_reflectances_equal_theia_where_both_are_clear(cubes):
    (theia, t_obs), (s2c, s_obs) = cubes["theia_r2"], cubes["sen2cor"]
    both = ~np.isnan(t_obs) & ~np.isnan(s_obs)
    assert both.mean() > 0.6
    np.testing.assert_allclose(t_obs[both], s_obs[both], atol=1.01e-4)
    # where both layouts' masks keep the same dates (the SCL is at 20 m, THEIA's CLM at 10 m),
    # the gap-filled features agree too
    same = (np.isnan(t_obs[:, 0]) == np.isnan(s_obs[:, 0])).all(axis=0)
    same &= theia.validity.values > 0
    assert same.mean() > 0.5
    names = list(theia["feature"].values)
    bands = [i for i, n in enumerate(names) if n.startswith("B")]
    a, b = theia.features.values[:, same], s2c.features.values[:, same]
    np.testing.assert_allclose(a[bands], b[bands], atol=1.01e-4)
    ndvi = [i for i, n in enumerate(names) if n.startswith("NDVI_")]
    assert np.abs(a[ndvi] - b[ndvi]).mean() < 1e-4


def test_synth_formats_write_their_config_keys(tmp_path):
    import yaml

    from geoclass.testing.synth import synth

    config = synth(tmp_path / "a", tiles=1, size=64, dates=2, format="series", s1=True)
    data = yaml.safe_load(config.read_text())
    assert data["chain"]["series_path"] == "series" and data["chain"]["s1_path"] == "s1"
    assert "s2_path" not in data["chain"] and data["series"]["band_names"][0] == "B2"
    assert load_config(config).series.mask_pattern == "MASK_{tile}_{date:%Y%m%d}.tif"
    for bad in ({"format": "planet"}, {"format": "landsat8", "size": 64},
                {"series_crs": "EPSG:4326"}):
        with pytest.raises(ValueError):
            synth(tmp_path / "b", **({"tiles": 1, "size": 64, "dates": 2} | bad))
