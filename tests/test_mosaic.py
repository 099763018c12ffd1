"""Mosaicking tile maps: aligned tiles are copied, tiles in another UTM zone are warped,
overlaps go to the more confident tile."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform as transform_points

from geoclass.grid import TileGrid
from geoclass.grid import union_grid as mosaic_grid
from geoclass.io.regrid import TileMap
from geoclass.steps.mosaic import lazy_mosaic, lazy_validity

UTM31, UTM32 = CRS.from_epsg(32631), CRS.from_epsg(32632)


def _tile_map(path, grid: TileGrid, label: int, confidence: int, p_first: int) -> TileMap:
    group = zarr.open_group(str(path), mode="w")
    shape = grid.shape
    group.create_array("classification", data=np.full(shape, label, np.uint16), chunks=(32, 32))
    group.create_array("confidence", data=np.full(shape, confidence, np.uint8),
                       chunks=(32, 32))
    proba = np.stack([np.full(shape, p_first), np.full(shape, 1000 - p_first)]).astype(np.uint16)
    group.create_array("probabilities", data=proba, chunks=(2, 32, 32))
    group.create_array("validity", data=np.full(shape, label + 3, np.uint16), chunks=(32, 32))
    return TileMap(str(path), grid)


def _grid(name, crs, left, top, size=64, res=10.0) -> TileGrid:
    return TileGrid(name, crs, Affine(res, 0, left, 0, -res, top), size, size, 32)


def test_aligned_tiles_are_copied_and_overlaps_go_to_the_higher_confidence(tmp_path):
    a = _grid("A", UTM31, 500000, 4800000)
    b = _grid("B", UTM31, 500000 + 540, 4800000 - 100)  # overlaps A by 10 columns
    tiles = [_tile_map(tmp_path / "a", a, 1, 70, 900), _tile_map(tmp_path / "b", b, 2, 90, 100)]
    grid = mosaic_grid([a, b], chunk=48)
    assert (grid.width, grid.height) == (118, 74) and grid.transform.c == 500000
    out = lazy_mosaic(tiles, grid, 2, probabilities=True).compute()
    label, confidence, p_first = out[0], out[1], out[2]
    assert (label[:64, :54] == 1).all() and (label[10:, 64:] == 2).all()
    assert (label[10:64, 54:64] == 2).all()  # overlap: B is more confident
    assert (label[64:, :54] == 0).all() and (label[:10, 64:] == 0).all()
    assert (confidence[label == 1] == 70).all() and (p_first[label == 2] == 100).all()
    assert (out[2:, label == 0] == 65535).all()
    tiles[1] = _tile_map(tmp_path / "b2", b, 2, 50, 100)
    out = lazy_mosaic(tiles, grid, 2, probabilities=False).compute()
    assert out.shape == (2, 74, 118) and (out[0][10:64, 54:64] == 1).all()
    validity = lazy_validity(tiles, grid).compute()
    assert (validity[10:64, 54:64] == 5).all() and (validity[64:, :54] == 65535).all()


def test_a_tile_in_another_utm_zone_is_warped_into_the_mosaic(tmp_path):
    a = _grid("A", UTM31, 760000, 4800000, size=96, res=20.0)
    # a tile of zone 32 just east of A (the zone boundary, 6 degrees E, is near x=760 km)
    (x32,), (y32,) = transform_points(UTM31, UTM32, [760000 + 96 * 20 - 600],
                                      [4800000 - 300])
    b = _grid("B", UTM32, round(x32), round(y32), size=96, res=20.0)
    tiles = [_tile_map(tmp_path / "a", a, 3, 60, 400), _tile_map(tmp_path / "b", b, 5, 80, 300)]
    grid = mosaic_grid([a, b], chunk=64)
    assert grid.crs == UTM31 and grid.resolution == 20
    out = lazy_mosaic(tiles, grid, 2, probabilities=True).compute()
    label, p_first = out[0], out[2]
    assert set(np.unique(label)) == {0, 3, 5}
    # the centre of B, in zone 31 coordinates, is class 5 with B's probabilities
    (cx,), (cy,) = transform_points(UTM32, UTM31, [b.transform.c + 960], [b.transform.f - 960])
    col, row = ~grid.transform * (cx, cy)
    assert label[int(row), int(col)] == 5 and p_first[int(row), int(col)] == 300
    assert (p_first[label == 5] == 300).all()  # bilinear of a constant stays exact
    # A alone where B does not reach, nothing outside both
    col0, row0 = (int(round(v)) for v in ~grid.transform * (a.transform.c, a.transform.f))
    assert (label[row0:row0 + 96, col0:col0 + 50] == 3).all()
    assert (label[:row0, :50] == 0).all() and (label[row0 + 96:, :50] == 0).all()
    assert (label == 5).sum() == pytest.approx(96 * 96, rel=0.05)
    assert (label == 0).any()
