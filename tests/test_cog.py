"""COG writing from a chunked source: overviews, palette, descriptions, atomicity."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rio_cogeo.cogeo import cog_validate

from geoclass.grid import TileGrid
from geoclass.io.cog import write_cog

GRID = TileGrid("m", CRS.from_epsg(32632), Affine(10, 0, 300000, 0, -10, 5000000), 1100, 700,
                256)


def test_class_cog_has_overviews_of_class_values_and_the_palette(tmp_path):
    labels = np.random.default_rng(0).integers(0, 4, GRID.shape).astype(np.uint8)
    path = write_cog(tmp_path / "c.tif", labels, GRID, nodata=0,
                     colormap={1: (255, 0, 0), 2: (0, 255, 0), 3: (0, 0, 255)},
                     descriptions=["classification"], metadata={"CLASS_1": "blé"})
    assert cog_validate(path)[0]
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(src.read(1), labels)
        assert src.crs.to_epsg() == 32632 and src.transform == GRID.transform
        assert src.nodata == 0 and src.colormap(1)[2] == (0, 255, 0, 255)
        assert src.overviews(1)[0] == 2
        overview = src.read(1, out_shape=(350, 550))
        assert set(np.unique(overview)) <= {0, 1, 2, 3}  # nearest: no averaged classes
        assert src.descriptions == ("classification",) and src.tags()["CLASS_1"] == "blé"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.tif"]


def test_multiband_cog_keeps_descriptions_and_scale(tmp_path):
    proba = np.random.default_rng(1).integers(0, 1000, (3, *GRID.shape)).astype(np.uint16)
    path = write_cog(tmp_path / "p.tif", proba, GRID, nodata=65535, scale=0.001,
                     descriptions=["a", "b", "c"], overview_resampling="average")
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(src.read(), proba)
        assert src.descriptions == ("a", "b", "c") and src.scales == (0.001,) * 3


class _Broken:
    shape, dtype = GRID.shape, np.dtype(np.uint8)

    def __getitem__(self, key):
        raise OSError("disk gone")


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    (tmp_path / "c.tif").write_bytes(b"previous")
    with pytest.raises(OSError, match="disk gone"):
        write_cog(tmp_path / "c.tif", _Broken(), GRID, nodata=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.tif"]
    assert (tmp_path / "c.tif").read_bytes() == b"previous"
