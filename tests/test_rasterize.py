"""Lazy per-chunk rasterization: same result as burning everything at once, touching only the
chunks polygons intersect, in any tile CRS."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.features import rasterize

from geoclass.grid import TileGrid
from geoclass.kernels.rasterize import shapes_by_window
from geoclass.lazy import lazy_rasterize

GRID = TileGrid("T", CRS.from_epsg(32631), Affine(10, 0, 300000, 0, -10, 4900000), 100, 90, 32)


def _polygons(crs="EPSG:32631") -> gpd.GeoDataFrame:
    boxes = [shapely.box(300050, 4899500, 300400, 4899900),   # spans several chunks
             shapely.box(300700, 4899200, 300760, 4899260),   # inside one chunk
             shapely.box(301500, 4899000, 301600, 4899100)]   # outside the tile
    gdf = gpd.GeoDataFrame({"id": [1, 2, 3]}, geometry=boxes, crs="EPSG:32631")
    return gdf.to_crs(crs)


def test_lazy_rasterize_equals_a_full_rasterize():
    gdf = _polygons()
    lazy = lazy_rasterize(gdf, "id", GRID)
    assert lazy.chunks == GRID.chunks
    full = rasterize(zip(gdf.geometry, gdf["id"]), out_shape=GRID.shape,
                     transform=GRID.transform, dtype="int32")
    np.testing.assert_array_equal(lazy.compute(), full)
    assert set(np.unique(full)) == {0, 1, 2}


def test_only_chunks_that_polygons_touch_get_geometries():
    per_window = shapes_by_window(_polygons(), "id", GRID)
    assert set(per_window) == {(0, 0), (0, 1), (1, 0), (1, 1), (2, 2)}
    assert all(len(shapes) == 1 for shapes in per_window.values())
    # geometries are clipped to their chunk, so no task carries a whole country-sized polygon
    (geom, value), = per_window[(0, 0)]
    assert value == 1 and geom.bounds[2] <= 300320 + 1e-6


def test_tiles_in_another_utm_zone_get_the_same_pixels():
    zone32 = CRS.from_epsg(32632)
    gdf = _polygons()
    center = gpd.GeoSeries([shapely.Point(300000, 4900000)], crs="EPSG:32631").to_crs(zone32)
    x0, y0 = round(center.x[0] / 10) * 10, round(center.y[0] / 10) * 10
    grid = TileGrid("T32", zone32, Affine(10, 0, x0, 0, -10, y0), 100, 100, 40)
    lazy = lazy_rasterize(gdf.to_crs(zone32), "id", grid).compute()
    expected = rasterize(zip(gdf.to_crs(zone32).geometry, gdf["id"]), out_shape=grid.shape,
                         transform=grid.transform, dtype="int32")
    np.testing.assert_array_equal(lazy, expected)
    assert (lazy == 1).sum() > 1000  # the 35 x 40 px field, slightly rotated
