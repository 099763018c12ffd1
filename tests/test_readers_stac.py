"""Local STAC catalogs and ItemCollections loaded with odc-stac: tile selection (property or
footprint), values with raster:bands scaling, cloud mask asset, errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pystac
import pytest
import rasterio

from geoclass.api import build_cubes
from geoclass.config import StacOptions
from geoclass.errors import InputError
from geoclass.io.sensors.stac import read_stac, tile_code
from geoclass.testing.layouts import SCL_INVALID, STAC_CONFIG
from geoclass.views.cube import open_cube, open_cubes, open_series
from geoclass.views.sources import find_sources

from .conftest import config_of, make_scene

OPTIONS = StacOptions.model_validate(STAC_CONFIG)
pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


@pytest.fixture(scope="module")
def stac(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("stac"), size=64, dates=4, format="stac")


def _read(path):
    with rasterio.open(path) as src:
        return src.read(1)


def test_tile_codes_from_item_properties():
    assert tile_code({"s2:mgrs_tile": "31TCJ"}) == "31TCJ"
    assert tile_code({"grid:code": "MGRS-31TDJ"}) == "31TDJ"
    assert tile_code({"mgrs:utm_zone": 31, "mgrs:latitude_band": "T",
                      "mgrs:grid_square": "CJ"}) == "31TCJ"
    assert tile_code({"grid:code": "WRS2-198030"}) is None and tile_code({}) is None


def test_catalog_items_by_tile_property_values_and_cloud_mask(stac):
    catalog = stac.parent / "stac" / "catalog.json"
    for tile in ("T31TCJ", "T31TDJ"):  # s2:mgrs_tile on the first tile, grid:code on the other
        series = read_stac(catalog, tile, OPTIONS, chunk=32)
        assert all(tile[1:] in a.product for a in series.acquisitions)
        assert len(series.dates) == 4 and series.grid.shape == (64, 64)
        assert str(catalog.resolve()) in series.extra_files
    series = read_stac(catalog, "T31TCJ", OPTIONS, chunk=32)
    values = open_series(series, series.grid).values
    red = series.band_names.index("B4")
    for t, acq in enumerate(series.acquisitions):
        dn = _read(acq.bands[red].path)
        scl = np.repeat(np.repeat(_read(acq.masks[0].path), 2, 0), 2, 1)
        invalid = np.isin(scl, SCL_INVALID)
        assert np.isnan(values[t, :, invalid]).all()
        ok = ~invalid & (dn > 0)
        assert ok.mean() > 0.3
        # raster:bands scale 0.0001, offset -0.1 (processing baseline >= 04.00)
        np.testing.assert_allclose(values[t, red][ok], dn[ok] * 1e-4 - 0.1, atol=1e-6)


def test_item_collection_gives_the_same_series(stac, tmp_path):
    catalog = pystac.read_file(str(stac.parent / "stac" / "catalog.json"))
    items = list(catalog.get_items(recursive=True))
    for item in items:
        item.make_asset_hrefs_absolute()
    path = tmp_path / "items.json"
    pystac.ItemCollection(items).save_object(dest_href=str(path))
    assert json.loads(path.read_text())["type"] == "FeatureCollection"
    a = read_stac(path, "T31TDJ", OPTIONS, chunk=32)
    b = read_stac(stac.parent / "stac" / "catalog.json", "T31TDJ", OPTIONS, chunk=32)
    assert a.dates == b.dates
    np.testing.assert_array_equal(open_series(a, a.grid).values, open_series(b, b.grid).values)


def test_items_without_tile_property_are_matched_by_footprint(stac, tmp_path):
    root = tmp_path / "scene"
    shutil.copytree(stac.parent, root)
    for path in (root / "stac").glob("*/*.json"):
        item = json.loads(path.read_text())
        item["properties"].pop("s2:mgrs_tile", None)
        item["properties"].pop("grid:code", None)
        path.write_text(json.dumps(item))
    config = root / "config.yaml"
    with pytest.raises(InputError, match="only be matched to tile T31TCJ by footprint"):
        find_sources(config_of(config), "T31TCJ")
    # with Sentinel-1 defining the tile grid, each tile takes the items that overlap it
    make_scene(tmp_path / "s1", size=64, dates=4, format="theia", s1=True)
    shutil.copytree(tmp_path / "s1" / "s1", root / "s1")
    config = config_of(config, chain={"s1_path": "s1"})
    for tile in ("T31TCJ", "T31TDJ"):
        stac_series = next(s for s in find_sources(config, tile).series if s.sensor == "stac")
        assert len(stac_series.acquisitions) == 4
        assert all(tile[1:] in a.product for a in stac_series.acquisitions)


def test_stac_errors(stac, tmp_path):
    catalog = stac.parent / "stac" / "catalog.json"
    with pytest.raises(InputError, match="no asset 'coastal'"):
        read_stac(catalog, "T31TCJ", StacOptions(bands={"B1": "coastal"}))
    with pytest.raises(InputError, match="no STAC item for tile T32ABC"):
        read_stac(catalog, "T32ABC", OPTIONS)
    with pytest.raises(InputError, match="stac.bands is required"):
        read_stac(catalog, "T31TCJ", StacOptions())
    with pytest.raises(InputError, match="does not exist"):
        read_stac(tmp_path / "nothing.json", "T31TCJ", OPTIONS)


def test_stac_cube_features_and_settings(stac):
    config = config_of(stac, stac={"prefix": "S2_"}, dask={"chunk_size": 32})
    ds = open_cubes(config)["T31TCJ"]
    names = list(ds["feature"].values)
    assert all(n.startswith("S2_") for n in names)
    assert any(n.startswith("S2_B2_") for n in names)
    assert any(n.startswith("S2_NDVI_") for n in names)
    assert list(ds.attrs["dates"]) == ["stac"]
    assert ds.features.data.chunks[1] == (32, 32)
    assert not np.isnan(ds.features.values[:, ds.validity.values > 0]).any()


def test_stac_cube_persists_on_the_cluster(stac, tmp_path, client):
    root = tmp_path / "scene"
    shutil.copytree(stac.parent, root, ignore=shutil.ignore_patterns("run"))
    config = config_of(root / "config.yaml", chain={"list_tile": ["T31TCJ"]})
    sources = find_sources(config, "T31TCJ")
    assert str((root / "stac" / "catalog.json").resolve()) in sources.files()
    assert any(f.endswith(".json") and "S2" in f for f in sources.files())  # item files
    path = build_cubes(config)["T31TCJ"]
    stored = open_cube(path)
    lazy = open_cubes(config)["T31TCJ"]
    np.testing.assert_array_equal(stored.features.values, lazy.features.values)
    np.testing.assert_array_equal(stored.validity.values, lazy.validity.values)
    # a changed cloud rule changes the cube's fingerprint: it is rebuilt
    stamp = stored.attrs["geoclass_fingerprint"]
    config.stac.invalid_values = [0, 8, 9]
    build_cubes(config)
    assert open_cube(path).attrs["geoclass_fingerprint"] != stamp
